"""Prometheus exposition of the tallies this worker owns, and of the pipeline's health.

Values are computed at scrape time by a custom collector (no inc/dec gauges): the tallies are the truth, and a
gauge that was incremented on every event could drift from them after a rebalance. Each worker exports only
the partitions it owns, so ``sum by (unit)`` across workers gives the exact figure. Every name, label and unit is
documented in docs/metrics.md; labels are bounded (unit, province, level and small enums, never a dossier).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector

from models.tally import LIVE

from streams.runtime.tallies import PipelineHealth, TallyBook, current_periods

from streams.serve.exposition import Chunk, LabelValues, NamedRegistry, TextGauge, render
from streams.serve.units import UnitInfoCollector

__all__ = [
    "TallyCollector",
    "new_registry",
    "render",
    "CONTENT_TYPE_LATEST",
]

log = logging.getLogger(__name__)


# Tally keys folded into one family with an enum label, by prefix.
CHANNEL_PREFIX, OUTCOME_PREFIX, OPEN_PREFIX = "received_", "ended_", "open_"
# Tally keys exported one family each, as onestop_dossiers_<key>.
PLAIN_KEYS = {
    "online_qualified": "Received online and, for paper-result procedures, with an electronic result (766 3.3).",
    "fee_bearing": "Received with a fee obligation (766 3.6 denominator).",
    "paid_online": "Received with a fee obligation and paid online (766 3.6 numerator).",
    "paper_result": "Received for a procedure whose result is a paper document (766 4.1 denominator).",
    "paper_result_e_result": "Paper-result dossiers that also got an electronic result (766 4.1 numerator).",
    "digitized": "Received with digitized components (and an electronic result when paper-result) (766 4.2).",
    "reused_data": "Received reusing already digitized data (766 4.4).",
    "personal_store": "Received using the personal data store (766 4.5).",
    "population_db": "Received using the population database or VNeID (766 4.6).",
    "rated": "Received in the period and rated by the applicant.",
    "rated_satisfied": "Received in the period and rated satisfied.",
    "population": "766 2.1 population: received in the period or carried over open into it.",
    "on_time": "Population dossiers judged on time.",
    "late_with_apology": "Late population dossiers with an apology slip issued in time.",
    "late_without_apology": "Late population dossiers without an apology slip issued in time.",
    "late_or_dissatisfied": "Population dossiers not on time or rated unsatisfied (766 5.4).",
}
RENAMED_KEYS = {
    "processing_seconds_sum": (
        "onestop_dossiers_ended_working_seconds",
        "Working seconds from reception to end, summed over dossiers received in the period that ended.",
    ),
    "processing_count": (
        "onestop_dossiers_ended_timed",
        "Dossiers counted in onestop_dossiers_ended_working_seconds (divide the two for the mean).",
    ),
}
KNOWN_OPEN = ("within", "due_soon", "overdue", "awaiting_supplement", "awaiting_payment")
KNOWN_OUTCOMES = ("early", "on_time", "late")
KNOWN_CHANNELS = ("direct", "online", "postal")
#: The families built from the tallies (``TallyCollector._tally_families``), most of a scrape's cost: a scrape
#: asking for none of them by name (``?name[]=``) does not build them.
TALLY_FAMILIES = frozenset({
    "onestop_dossiers_received", "onestop_dossiers_completed", "onestop_dossiers_open_in_period",
    "onestop_dossiers_open", *(f"onestop_dossiers_{key}" for key in PLAIN_KEYS),
    *(name for name, _help in RENAMED_KEYS.values()), "onestop_indicator_numerator",
    "onestop_indicator_denominator", "onestop_tally",
})

class RuntimeView(Protocol):
    """What the collector needs from the running worker (implemented by streams.runtime.runtime.Runtime)."""

    processor: Any
    clock: Any
    health: PipelineHealth

    def tally_books(self) -> list[TallyBook]: ...
    def stats(self) -> Mapping[str, float]: ...


UNIT_LABELS = ("unit", "province", "level")


class _UnitBlock:
    """What one unit wrote into every per-period family at a scrape, reused while its period, labels and counts
    stay the same.

    A scrape is a pure function of the tallies, the unit labels and the catalogue, but a province's is ~18 k
    samples and, written out, a few tens of milliseconds of the event loop the agent shares. Between two scrapes
    most units' counts do not change (at live rates nearly none do), so only the units whose books' versions moved
    are written again.
    """

    __slots__ = ("pk", "base", "versions", "parts")

    def __init__(self, pk: str, base: LabelValues, versions: tuple[int | None, ...],
                 parts: list[tuple[str, Chunk]]) -> None:
        self.pk, self.base, self.versions, self.parts = pk, base, versions, parts


class TallyCollector:
    """Builds every ``onestop_*`` family at scrape time from the owned partitions' tallies."""

    def __init__(self, runtime: RuntimeView) -> None:
        self.runtime = runtime
        self._blocks: dict[tuple[str, str], _UnitBlock] = {}

    def describe(self) -> list[Metric]:
        # Returning nothing keeps registration from calling collect() before the worker has any state.
        return []

    def collect(self) -> Iterator[Metric]:
        return self._collect(units=True)

    def collect_named(self, names: frozenset[str]) -> Iterator[Metric]:
        """``collect`` for a scrape that names what it wants: the unit families only if it names one of them
        (``streams.serve.exposition.collect_named`` keeps the named samples)."""
        return self._collect(units=not names.isdisjoint(TALLY_FAMILIES))

    def _collect(self, *, units: bool) -> Iterator[Metric]:
        rt = self.runtime
        now = rt.clock.now()
        periods = current_periods(now)
        if units:
            yield from self._tally_families(rt, periods)
        yield from self._health_families(rt, now, periods)

    # -- figures ------------------------------------------------------------------------------------------------
    @staticmethod
    def _counts(per_book: list[Mapping[str, Mapping[str, int]]], unit: str) -> Mapping[str, int]:
        """A unit's counts summed over the books (the book's own mapping when only one has any: read only)."""
        found = [units[unit] for units in per_book if unit in units]
        if len(found) == 1:
            return found[0]
        total: dict[str, int] = {}
        for counts in found:
            for metric, n in counts.items():
                total[metric] = total.get(metric, 0) + n
        return total

    def _unit_labels(self, unit: str, cache: dict[str, list[str]]) -> list[str]:
        labels = cache.get(unit)
        if labels is None:
            try:
                info = self.runtime.processor.unit_info(unit) or {}
            except Exception:  # an unknown unit must not break the whole scrape
                self.runtime.health.collector_errors += 1
                log.exception("unit_info failed for a unit; exporting it with empty province/level")
                info = {}
            labels = cache[unit] = [unit, str(info.get("province") or ""), str(info.get("level") or "")]
        return labels

    def _tally_families(self, rt: RuntimeView, periods: Mapping[str, str]) -> Iterator[Metric]:
        books = rt.tally_books()
        info: dict[str, list[str]] = {}
        p_labels = [*UNIT_LABELS, "period"]
        received = TextGauge("onestop_dossiers_received", "Dossiers received in the current period, by channel.",
                             p_labels, "channel")
        completed = TextGauge("onestop_dossiers_completed",
                              "Population dossiers that ended in the current period, by outcome.", p_labels, "outcome")
        open_in_period = TextGauge(
            "onestop_dossiers_open_in_period",
            "Population dossiers of the current period still open, judged at min(period end, now).", p_labels, "state")
        open_now = TextGauge("onestop_dossiers_open", "Dossiers open now, by deadline state.", UNIT_LABELS, "state")
        plain = {key: TextGauge(f"onestop_dossiers_{key}", help_, p_labels) for key, help_ in PLAIN_KEYS.items()}
        renamed = {key: TextGauge(name, help_, p_labels) for key, (name, help_) in RENAMED_KEYS.items()}
        numerator = TextGauge("onestop_indicator_numerator",
                              "Numerator of a 766 indicator for the unit and current period.", p_labels, "indicator")
        denominator = TextGauge("onestop_indicator_denominator",
                                "Denominator of a 766 indicator for the unit and current period.", p_labels, "indicator")
        other = TextGauge("onestop_tally",
                          "Tally keys this runtime has no dedicated family for yet (forward compatibility).",
                          p_labels, "key")
        per_period = (received, completed, open_in_period, *plain.values(), *renamed.values(), numerator,
                      denominator, other)

        blocks: dict[tuple[str, str], _UnitBlock] = {}
        for granularity, pk in periods.items():
            per_book = [book.units(pk) for book in books]
            for unit in sorted(set().union(*per_book)):
                labels = (*self._unit_labels(unit, info), granularity)
                versions = tuple([book.version(pk, unit) for book in books])
                block = self._blocks.get((granularity, unit))
                if block is not None and block.pk == pk and block.base.values == labels and block.versions == versions:
                    for family, (text, rows) in zip(per_period, block.parts):
                        family.extend(text, rows)
                    blocks[(granularity, unit)] = block
                    continue
                base = block.base if block is not None and block.base.values == labels else LabelValues(p_labels, labels)
                errors_before = rt.health.collector_errors
                parts = self._write_unit(per_period, base, self._counts(per_book, unit),
                                         block.parts if block is not None else [None] * len(per_period))
                if rt.health.collector_errors == errors_before:  # a failed processor call is retried next scrape
                    blocks[(granularity, unit)] = _UnitBlock(pk, base, versions, parts)
        self._blocks = blocks

        live = [book.units(LIVE) for book in books]
        for unit in sorted(set().union(*live)):
            counts = self._counts(live, unit)
            base = self._unit_labels(unit, info)
            open_now.use(LabelValues(UNIT_LABELS, base))
            other.use(LabelValues(p_labels, [*base, LIVE]))
            opens = {s: 0 for s in KNOWN_OPEN}
            for metric, n in counts.items():
                if metric.startswith(OPEN_PREFIX):
                    opens[metric[len(OPEN_PREFIX):]] = n
                else:
                    other.add(n, metric)
            for state, n in opens.items():
                open_now.add(n, state)

        yield from (received, completed, open_now, open_in_period, *plain.values(), *renamed.values(),
                    numerator, denominator, other)

    def _write_unit(self, per_period: tuple[TextGauge, ...], base: LabelValues, counts: Mapping[str, int],
                    previous: list) -> list[tuple[str, Chunk]]:
        """One unit's lines in one period, for every family of ``per_period`` in its order (``previous``: what
        the unit wrote at the last scrape, per family, or None)."""
        channels = {c: 0 for c in KNOWN_CHANNELS}
        outcomes = {o: 0 for o in KNOWN_OUTCOMES}
        opens = {s: 0 for s in KNOWN_OPEN}
        plain_values = dict.fromkeys(PLAIN_KEYS, 0)
        renamed_values = dict.fromkeys(RENAMED_KEYS, 0)
        others: list[tuple[str | None, float]] = []
        total_received = 0
        for metric, n in counts.items():
            if metric == "received":
                total_received = n
            elif metric.startswith(CHANNEL_PREFIX):
                channels[metric[len(CHANNEL_PREFIX):]] = n
            elif metric.startswith(OUTCOME_PREFIX):
                outcomes[metric[len(OUTCOME_PREFIX):]] = n
            elif metric.startswith(OPEN_PREFIX):
                opens[metric[len(OPEN_PREFIX):]] = n
            elif metric in plain_values:
                plain_values[metric] = n
            elif metric in renamed_values:
                renamed_values[metric] = n
            else:
                others.append((metric, n))
        # Keep sum(channel) == received even if a channel is missing from the breakdown.
        unknown = total_received - sum(channels.values())
        if unknown > 0:
            channels["unknown"] = unknown
        terms = self._indicator_terms(counts)
        rows = [list(channels.items()), list(outcomes.items()), list(opens.items()),
                *[[(None, v)] for v in plain_values.values()], *[[(None, v)] for v in renamed_values.values()],
                [(indicator, num) for indicator, (num, _) in terms.items()],
                [(indicator, den) for indicator, (_, den) in terms.items()],
                others]
        return [family.write(base, family_rows, before)
                for family, family_rows, before in zip(per_period, rows, previous, strict=True)]

    def _indicator_terms(self, counts: Mapping[str, int]) -> Mapping[str, tuple[float, float]]:
        try:
            return self.runtime.processor.indicator_terms(dict(counts)) or {}
        except Exception:
            self.runtime.health.collector_errors += 1
            log.exception("indicator_terms failed; indicators left out of this scrape")
            return {}

    # -- pipeline health ----------------------------------------------------------------------------------------
    def _health_families(self, rt: RuntimeView, now: datetime, periods: Mapping[str, str]) -> Iterator[Metric]:
        h = rt.health
        yield _labelled(CounterMetricFamily, "onestop_events_processed",
                        "Events accepted and applied (duplicates and late arrivals included), by CloudEvents source.",
                        "source", h.processed.values)
        yield _labelled(CounterMetricFamily, "onestop_events_rejected",
                        "Records sent to the dead-letter topic, by reason code.", "reason", h.rejected.values)
        yield CounterMetricFamily("onestop_events_duplicate", "Events already applied (same source and id).",
                                  value=h.duplicates)
        yield CounterMetricFamily("onestop_events_late",
                                  "Events that arrived after a later event of the same dossier.", value=h.late)
        yield _labelled(CounterMetricFamily, "onestop_sync_bodies",
                        "National-portal sync bodies recorded (HTTP and the dvcqg-sync topic), by service and outcome: "
                        "ok, partial (some records refused), refused (nothing recorded).", ("service", "outcome"),
                        h.sync_bodies)
        yield _labelled(CounterMetricFamily, "onestop_sync_records",
                        "Records of national-portal sync bodies, accepted (converted into events) or refused "
                        "(dead-lettered one by one), by service.", ("service", "outcome"), h.sync_records)
        yield _labelled(CounterMetricFamily, "onestop_alerts_emitted",
                        "Alerts written to the alerts topic, by kind.", "kind", h.alerts.values)
        yield _labelled(GaugeMetricFamily, "onestop_last_event_timestamp_seconds",
                        "Latest event time seen, by source (Unix seconds).", "source", h.last_event.values)
        lag = GaugeMetricFamily("onestop_processing_lag_seconds",
                                "Clock time minus event time of the most recently processed event.")
        if h.lag_seconds is not None:
            lag.add_metric([], h.lag_seconds)
        yield lag
        stats = rt.stats()
        yield GaugeMetricFamily("onestop_worker_partitions_assigned",
                                "Partitions of the events topic this worker owns.",
                                value=stats.get("partitions", 0))
        yield GaugeMetricFamily("onestop_worker_ready",
                                "1 once owned partitions are recovered and their tallies rebuilt.",
                                value=stats.get("ready", 0))
        yield GaugeMetricFamily("onestop_dossiers_tracked", "Dossier states held in the owned partitions.",
                                value=stats.get("dossiers", 0))
        yield GaugeMetricFamily("onestop_dossiers_held",
                                "Dossier states in the owned partitions holding events but no reception: counted in "
                                "no figure until their reception arrives.",
                                value=stats.get("held", 0))
        yield GaugeMetricFamily("onestop_deadline_checks_pending",
                                "Dossiers waiting for a deadline re-evaluation in the owned partitions.",
                                value=stats.get("pending_checks", 0))
        yield GaugeMetricFamily("onestop_tally_rebuild_duration_seconds",
                                "Wall time of the last rebuild of tallies from the dossier table.",
                                value=stats.get("rebuild_seconds", 0))
        yield GaugeMetricFamily("onestop_clock_timestamp_seconds", "The worker's notion of now (Unix seconds).",
                                value=now.timestamp())
        info = GaugeMetricFamily("onestop_period_info", "Which period key each period label means right now.",
                                 labels=["period", "key"])
        for granularity, pk in periods.items():
            info.add_metric([granularity, pk], 1)
        yield info
        yield CounterMetricFamily("onestop_collector_errors",
                                  "Processor calls that failed during scrapes (see the worker log).",
                                  value=h.collector_errors)


def _labelled(cls: type, name: str, help_: str, label: str | tuple[str, ...],
              values: Mapping[str, float] | Mapping[tuple[str, ...], float]) -> Metric:
    """A family with one sample per key of ``values``: one label (keys are its values) or several (keys are
    tuples of their values, in the order of ``label``)."""
    family = cls(name, help_, labels=[label] if isinstance(label, str) else list(label))
    for value, n in sorted(values.items()):
        family.add_metric([value] if isinstance(label, str) else list(value), n)
    return family


def new_registry(runtime: RuntimeView, *, process_metrics: bool = True) -> CollectorRegistry:
    """A registry of our own, so nothing registered globally by libraries leaks into /metrics."""
    registry = NamedRegistry()
    registry.register(TallyCollector(runtime))
    registry.register(UnitInfoCollector(runtime))  # onestop_unit_info: names to join on in PromQL
    if process_metrics:
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
    return registry
