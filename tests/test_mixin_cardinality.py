"""Cardinality budget (alerts/README.md): what one worker exposes for a province of 150 units, counted on the real
exposition code (streams.serve.metrics.TallyCollector with the product's processor) fed synthetic tallies in which
every unit has every tally key in every period, so the count is the worst case for that many units."""

from __future__ import annotations

from datetime import datetime

from prometheus_client.parser import text_string_to_metric_families

from models.tally import LIVE
from streams.runtime.clock import FrozenClock
from streams.serve.metrics import (KNOWN_CHANNELS, KNOWN_OPEN, KNOWN_OUTCOMES, PLAIN_KEYS, RENAMED_KEYS, new_registry, render)
from streams.runtime.tallies import PipelineHealth, TallyBook, current_periods
from streams.runtime.processor import Processor

UNITS = 150
#: Series per unit that the exposition may use (documented in alerts/README.md).
PER_UNIT_BUDGET = 160
#: Families with series per unit: the tallies, the indicators and the unit's name (one info series each).
PER_UNIT_FAMILIES = ("onestop_dossiers_", "onestop_indicator_", "onestop_unit_info")
#: Series of a worker for a 150-unit province, health and process metrics included.
PROVINCE_BUDGET = 25_000
REJECTION_REASONS = ("too_large", "bad_json", "schema", "unknown_type", "impossible_timeline", "missing_key",
                     "key_mismatch", "future_event", "conflicting_duplicate", "too_many_events", "missing_value",
                     "processor_error")


class _Runtime:
    def __init__(self, units: int) -> None:
        self.clock = FrozenClock(datetime.fromisoformat("2026-03-10T16:00:00+07:00"))
        self.processor = Processor()
        self.health = PipelineHealth()
        self.book = TallyBook()
        keys = ["received", *(f"received_{c}" for c in KNOWN_CHANNELS), *(f"ended_{o}" for o in KNOWN_OUTCOMES),
                *(f"open_{s}" for s in KNOWN_OPEN), *PLAIN_KEYS, *RENAMED_KEYS]
        delta = {}
        for n in range(units):
            unit = f"T99.U{n:03d}"
            self.processor.unit_meta[unit] = {"province": "T99", "level": "commune" if n % 3 else "agency"}
            for pk in current_periods(self.clock.now()).values():
                for key in keys:
                    delta[(unit, pk, key)] = 3
            for state in KNOWN_OPEN:
                delta[(unit, LIVE, f"open_{state}")] = 1
        self.book.add(delta)
        now = self.clock.now()
        for source in ("igate.t99", "kiosk", "national_portal"):
            self.health.record(source=source, event_time=now, now=now, duplicate=False, late=False)
        for reason in REJECTION_REASONS:
            self.health.reject(reason)
        for kind in ("due_soon", "overdue", "apology_missing", "second_reschedule", "repeated_supplement"):
            self.health.alert(kind)

    def tally_books(self) -> list[TallyBook]:
        return [self.book]

    def stats(self) -> dict[str, float]:
        return {"partitions": 4, "ready": 1, "dossiers": 1000, "pending_checks": 10, "rebuild_seconds": 0.5}


def _series(units: int, process_metrics: bool) -> dict[str, int]:
    text = render(new_registry(_Runtime(units), process_metrics=process_metrics)).decode()
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            counts[sample.name] = counts.get(sample.name, 0) + 1
    return counts


def test_worker_series_for_a_150_unit_province_stay_under_budget() -> None:
    counts = _series(UNITS, process_metrics=True)
    total = sum(counts.values())
    per_unit = {n: c for n, c in counts.items() if n.startswith(PER_UNIT_FAMILIES)}
    unit_series = sum(v for k, v in per_unit.items() if k != "onestop_dossiers_tracked")
    assert unit_series / UNITS <= PER_UNIT_BUDGET, (unit_series / UNITS, per_unit)
    assert total <= PROVINCE_BUDGET, total
    assert total - unit_series < 200, "health metrics must not grow with units"
    print(f"\n{UNITS} units: {total} series ({unit_series / UNITS:.0f} per unit, {total - unit_series} others)")


def test_series_grow_linearly_with_units_and_no_label_carries_a_dossier() -> None:
    small, large = _series(10, False), _series(20, False)
    grow = {k: large[k] - small[k] for k in large if large[k] != small.get(k)}
    assert sum(grow.values()) / 10 <= PER_UNIT_BUDGET
    assert all(name.startswith(PER_UNIT_FAMILIES) for name in grow), grow
    text = render(new_registry(_Runtime(3), process_metrics=False)).decode()
    labels = {name for family in text_string_to_metric_families(text) for s in family.samples for name in s.labels}
    # name, name_en and parent are carried by onestop_unit_info alone, one series per unit (joined in PromQL).
    assert labels <= {"unit", "province", "level", "period", "channel", "outcome", "state", "indicator", "key",
                      "source", "reason", "kind", "name", "name_en", "parent"}, labels
    named = {family.name for family in text_string_to_metric_families(text)
             if any("name" in s.labels for s in family.samples)}
    assert named <= {"onestop_unit_info"}, named
