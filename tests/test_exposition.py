"""/metrics text (streams/serve/exposition.py): the fast writer gives byte for byte what prometheus-client writes for the
same registry, including label values that need escaping, unknown tally keys and values that Go prints with an
exponent."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from models.tally import LIVE
from streams.runtime.clock import FrozenClock
from streams.serve.exposition import TextGauge, format_value, render
from streams.runtime.tallies import PipelineHealth, TallyBook, current_periods
from streams.serve.metrics import new_registry
from streams.runtime.processor import Processor


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


# -- a scrape reuses the lines of units whose counts did not change -------------------------------------------------

class _CountingProcessor(Processor):
    """The product's processor, counting (and on request failing) the 766 terms a scrape asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.terms_calls = 0
        self.fail_terms = False

    def indicator_terms(self, tallies):
        self.terms_calls += 1
        if self.fail_terms:
            raise RuntimeError("catalogue unavailable")
        return super().indicator_terms(tallies)


class _Books:
    """Three partitions' books, as a worker owning several partitions holds them, and a clock that can cross a month."""

    def __init__(self) -> None:
        self.clock = FrozenClock(datetime.fromisoformat("2026-03-31T23:00:00+07:00"))
        self.processor = _CountingProcessor()
        self.health = PipelineHealth()
        self.books = {p: TallyBook() for p in range(3)}

    def tally_books(self) -> list[TallyBook]:
        return list(self.books.values())

    def stats(self) -> dict[str, float]:
        return {"partitions": len(self.books)}


UNITS = ["T99.U001", "T99.U002", "T99.U003", 'odd"unit']
KEYS = ["received", "received_online", "ended_late", "open_overdue", "population", "on_time", "rated",
        "processing_seconds_sum", "some_future_key"]
_step = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 2), st.sampled_from(UNITS), st.sampled_from(KEYS),
              st.booleans(), st.integers(-3, 5)),
    st.tuples(st.just("label"), st.sampled_from(UNITS), st.sampled_from(["T99", "T98"]),
              st.sampled_from(["commune", "agency", None])),
    st.tuples(st.just("replace"), st.integers(0, 2)),
    st.tuples(st.just("drop"), st.integers(0, 2)),
    st.just(("next_month",)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_step, min_size=1, max_size=30))
def test_a_long_lived_collector_writes_what_a_fresh_one_writes(steps) -> None:
    rt = _Books()
    kept = new_registry(rt, process_metrics=False)
    for step in steps:
        kind = step[0]
        if kind == "add":
            _, p, unit, key, live, n = step
            if p not in rt.books:
                rt.books[p] = TallyBook()
            pk = LIVE if live else current_periods(rt.clock.now())["month"]
            current = rt.books[p].as_dict().get((unit, pk, key), 0)
            rt.books[p].add({(unit, pk, key): max(n, -current)})  # counts never go below zero
        elif kind == "label":
            rt.processor.unit_meta[step[1]] = {"province": step[2], "level": step[3]}
        elif kind == "replace":  # a partition revoked and assigned again: a new book with the same counts
            old = rt.books.pop(step[1], None)
            rt.books[step[1]] = TallyBook()
            if old is not None:
                rt.books[step[1]].add(old.as_dict())
        elif kind == "drop":
            rt.books.pop(step[1], None)
        else:
            rt.clock.set(rt.clock.now() + timedelta(days=1))
        got = render(kept)  # scraped after every step, so each change meets lines kept from the step before
        assert got == render(new_registry(rt, process_metrics=False))
    assert got == generate_latest(kept)


def test_a_scrape_asks_for_the_766_terms_of_changed_units_only() -> None:
    rt = _Books()
    now = rt.clock.now()
    for n, unit in enumerate(UNITS):
        rt.books[n % 3].add({(unit, pk, key): n + 1 for pk in current_periods(now).values() for key in KEYS})
    registry = new_registry(rt, process_metrics=False)
    first = render(registry)
    assert rt.processor.terms_calls == 3 * len(UNITS)  # every unit in month, quarter and year
    assert render(registry) == first
    assert rt.processor.terms_calls == 3 * len(UNITS)  # nothing changed, nothing asked again
    rt.books[0].add({(UNITS[0], current_periods(now)["month"], "rated"): 1})
    changed = render(registry)
    assert rt.processor.terms_calls == 3 * len(UNITS) + 1
    assert changed != first and changed == render(new_registry(rt, process_metrics=False))


def test_a_failed_processor_call_is_asked_again_at_the_next_scrape() -> None:
    rt = _Books()
    now = rt.clock.now()
    rt.books[0].add({(UNITS[0], current_periods(now)["month"], "received"): 2})
    registry = new_registry(rt, process_metrics=False)
    rt.processor.fail_terms = True
    without = render(registry)
    assert b"onestop_indicator_numerator{" not in without and rt.health.collector_errors == 1
    rt.processor.fail_terms = False
    with_terms = render(registry)
    assert b"onestop_indicator_numerator{" in with_terms and rt.health.collector_errors == 1


def test_a_unit_is_written_again_when_a_count_falls_to_zero_or_its_period_turns() -> None:
    rt = _Books()
    march = current_periods(rt.clock.now())["month"]
    april = current_periods(rt.clock.now() + timedelta(days=1))["month"]
    unit = UNITS[0]
    # One delta for two months, as a dossier carried over into the next period gives: the same change version.
    rt.books[0].add({(unit, march, "received"): 2, (unit, march, "rated"): 1, (unit, april, "received"): 7})
    registry = new_registry(rt, process_metrics=False)
    render(registry)
    rt.books[0].add({(unit, march, "rated"): -1})  # the unit still has counts, one fewer key
    assert b'onestop_dossiers_rated{level="",period="month",province="",unit="T99.U001"} 0.0' in render(registry)
    rt.books[1].add({(UNITS[1], march, "received"): 3, (UNITS[1], april, "received"): 5})
    render(registry)
    rt.clock.set(rt.clock.now() + timedelta(days=1))
    assert render(registry) == render(new_registry(rt, process_metrics=False))
    assert b'onestop_dossiers_received{channel="unknown",level="",period="month",province="",unit="T99.U002"} 5.0' \
        in render(registry)


def test_a_unit_is_written_again_when_its_labels_are_learnt() -> None:
    rt = _Books()
    rt.books[0].add({(UNITS[0], current_periods(rt.clock.now())["month"], "received"): 2})
    registry = new_registry(rt, process_metrics=False)
    assert b'province=""' in render(registry)
    rt.processor.unit_meta[UNITS[0]] = {"province": "T99", "level": "commune"}  # learnt from a later event
    relabelled = render(registry)
    assert b'province=""' not in relabelled and b'level="commune",period="month",province="T99"' in relabelled
    assert relabelled == render(new_registry(rt, process_metrics=False))


def _families(text: bytes) -> dict[str, list[str]]:
    """Exposition lines by family, the HELP and TYPE lines included."""
    out: dict[str, list[str]] = {}
    name = None
    for line in text.decode().splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
        out.setdefault(name, []).append(line)
    return out


@pytest.mark.parametrize("names", [
    {"onestop_events_processed_total"},                                  # a counter, asked by its sample name
    {"onestop_events_processed_total", "onestop_worker_ready"},
    {"onestop_dossiers_received", "onestop_dossiers_open"},              # unit families
    {"onestop_dossiers_ended_working_seconds", "onestop_tally"},
    {"onestop_unit_info", "onestop_events_rejected_total"},              # another collector's family too
    {"no_such_metric"},
])
def test_a_scrape_by_name_writes_those_families_as_the_full_scrape_writes_them(names) -> None:
    registry = new_registry(_Runtime(["T99.U001", "T99.U002"], [0, 3, 17]), process_metrics=True)
    full = _families(render(registry))
    some = _families(render(registry, frozenset(names)))
    assert set(some) == names & set(full)  # a counter's HELP names it with its _total, as its samples
    for name, lines in some.items():
        assert lines == full[name]


def test_a_scrape_naming_no_unit_family_does_not_build_them(monkeypatch) -> None:
    from streams.serve.metrics import TALLY_FAMILIES, TallyCollector

    rt = _Runtime(["T99.U001"], [2, 5])
    registry = new_registry(rt, process_metrics=False)
    built = {f.name for f in text_string_to_metric_families(render(registry).decode())}
    made = set(TALLY_FAMILIES)
    assert made <= built  # every name the collector is told it builds, it builds...
    health = {m.name for m in TallyCollector(rt)._health_families(rt, rt.clock.now(), current_periods(rt.clock.now()))}
    assert built - made - {"onestop_unit_info"} == health  # ...and nothing else but the health families

    def refuse(*_args):
        raise AssertionError("the unit families were built for a scrape that named none")

    monkeypatch.setattr(TallyCollector, "_tally_families", refuse)
    text = render(registry, frozenset({"onestop_events_processed_total"})).decode()
    assert "onestop_events_processed_total" in text and "onestop_dossiers_received" not in text
    with pytest.raises(AssertionError, match="named none"):
        render(registry, frozenset({"onestop_dossiers_received"}))


def test_every_collector_of_the_worker_exports_only_what_its_declared_families_say() -> None:
    # A scrape by name skips a collector whose FAMILIES (or library namespace) cannot match; a family outside
    # its declaration would silently vanish from such scrapes.
    from prometheus_client.gc_collector import GCCollector
    from prometheus_client.process_collector import ProcessCollector

    from streams.serve.exposition import _LIBRARY_PREFIXES, _may_export

    registry = new_registry(_Runtime(["T99.U001"], [1, 2]), process_metrics=True)
    kinds = set()
    for collector in registry.collectors():
        kinds.add(type(collector))
        for metric in collector.collect():
            for sample in metric.samples:
                assert _may_export(collector, frozenset({sample.name})), (type(collector).__name__, sample.name)
        families = getattr(collector, "FAMILIES", None)
        if families is not None:
            assert not _may_export(collector, frozenset({"onestop_events_processed_total", "process_open_fds"}))
    assert {ProcessCollector, GCCollector} <= kinds and {k for k, _ in _LIBRARY_PREFIXES} <= kinds


def test_the_risk_collector_declares_every_family_it_writes() -> None:
    import re
    from pathlib import Path

    from streams.serve.risk import RiskCollector

    source = Path(__file__).resolve().parents[1] / "streams" / "serve" / "risk.py"
    written = set(re.findall(r'MetricFamily\(\s*"(onestop_[a-z_]+)"', source.read_text()))
    assert written and written == set(RiskCollector.FAMILIES)
