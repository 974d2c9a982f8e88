"""/metrics text (streams/exposition.py): the fast writer gives byte for byte what prometheus-client writes for the
same registry, including label values that need escaping, unknown tally keys and values that Go prints with an
exponent."""

from __future__ import annotations

from datetime import datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from models.tally import LIVE
from streams.clock import FrozenClock
from streams.exposition import TextGauge, format_value, render
from streams.metrics import PipelineHealth, TallyBook, current_periods, new_registry
from streams.processor import Processor


class _Runtime:
    def __init__(self, units: list[str], values: list[int]) -> None:
        self.clock = FrozenClock(datetime.fromisoformat("2026-03-10T16:00:00+07:00"))
        self.processor = Processor()
        self.health = PipelineHealth()
        self.book = TallyBook()
        delta = {}
        keys = ["received", "received_online", "received_direct", "ended_on_time", "ended_late", "open_overdue",
                "population", "on_time", "processing_seconds_sum", "processing_count", "rated", "some_future_key"]
        for n, unit in enumerate(units):
            self.processor.unit_meta[unit] = {"province": "T99", "level": "commune" if n % 2 else None}
            for pk in current_periods(self.clock.now()).values():
                for i, key in enumerate(keys):
                    delta[(unit, pk, key)] = values[(n + i) % len(values)]
            delta[(unit, LIVE, "open_within")] = values[n % len(values)]
            delta[(unit, LIVE, "another_live_key")] = 1
        self.book.add(delta)
        now = self.clock.now()
        self.health.record(source='odd "source"\\x', event_time=now, now=now, duplicate=False, late=False)
        self.health.reject("schema")

    def tally_books(self) -> list[TallyBook]:
        return [self.book]

    def stats(self) -> dict[str, float]:
        return {"partitions": 4, "ready": 1, "dossiers": 10, "held": 0, "pending_checks": 3, "rebuild_seconds": 0.25}


@pytest.mark.parametrize("units, values", [
    (["T99.U001", "T99.U002", "T99.U003"], [0, 3, 17]),
    ([f"T99.U{n:03d}" for n in range(120)], [1, 999_999, 1_000_000, 123_456_789, 42]),
    (['quote"d', "back\\slash", "new\nline", "ưu tiên"], [5, -3, 2**40]),
], ids=["three-units", "province", "escaping"])
def test_render_writes_what_generate_latest_writes(units, values) -> None:
    registry = new_registry(_Runtime(units, values), process_metrics=False)
    fast = render(registry)
    assert fast == generate_latest(registry)
    names = {f.name for f in text_string_to_metric_families(fast.decode())}
    assert {"onestop_dossiers_received", "onestop_indicator_numerator", "onestop_tally"} <= names


def test_a_text_gauge_orders_labels_by_name_around_its_extra_label() -> None:
    gauge = TextGauge("g", "help", ["unit", "province", "level", "period"], "key")
    gauge.use(["U1", "P", "commune", "month"])
    gauge.add(7, "x")
    gauge.use(["U2", "P", "", "year"])
    gauge.add(1.5, "y")
    assert gauge.text() == ('g{key="x",level="commune",period="month",province="P",unit="U1"} 7.0\n'
                            'g{key="y",level="",period="year",province="P",unit="U2"} 1.5\n')
    assert [s.labels for s in gauge.samples][1] == {"unit": "U2", "province": "P", "level": "", "period": "year",
                                                    "key": "y"}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(type("C", (), {"collect": lambda self: [gauge]})())
    assert render(registry) == generate_latest(registry)


def test_a_text_gauge_refuses_names_it_could_not_write_plainly() -> None:
    with pytest.raises(ValueError):
        TextGauge("bad-name", "help", ["unit"])
    with pytest.raises(ValueError):
        TextGauge("ok", "help", ["unit"], "bad label")


@pytest.mark.parametrize("value", [0, 1, -1, 999_999, 1_000_000, 10**15, -(10**15), 2.5, 1e-9, float("inf"),
                                   float("nan"), 1234567.0])
def test_format_value_agrees_with_prometheus_client(value) -> None:
    assert format_value(value) == floatToGoString(value)
