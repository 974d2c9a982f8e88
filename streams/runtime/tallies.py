"""What the worker counts per partition: tally books (the derived per-unit counts) and the pipeline's health.

Both live in the runtime because the agent and the deadline clock write them; the exposition (streams.serve)
only reads them at scrape time. Tallies are rebuilt from the dossier table on every assignment, never persisted.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

from models.tally import GRANULARITIES, period_key

__all__ = ["LABEL_CAP", "PipelineHealth", "TallyBook", "TallyKey", "current_periods", "merge"]

TallyKey = tuple[str, str, str]  # (unit_code, period_key, metric)

#: Distinct values kept per free-form health label (source, reason, kind); the rest are folded into "other" so
#: a misbehaving producer cannot blow up the series count.
LABEL_CAP = 64


#: Shared by every book, so a (book, period, unit) version is never reused, even by a book built to replace another.
_VERSIONS = itertools.count(1)


class TallyBook:
    """One partition's tallies, nested by period and unit so a scrape touches only the current periods.

    Each (period, unit) also carries the version of its last change: a scrape writes a unit again only if one
    of its books' versions moved (``TallyCollector``), without comparing or even merging the counts.
    """

    __slots__ = ("_by_period", "_versions")

    def __init__(self) -> None:
        self._by_period: dict[str, dict[str, dict[str, int]]] = {}
        self._versions: dict[tuple[str, str], int] = {}

    def add(self, delta: Mapping[TallyKey, int]) -> None:
        by_period, versions = self._by_period, self._versions
        version = next(_VERSIONS)
        for (unit, pk, metric), n in delta.items():
            if not n:
                continue
            units = by_period.get(pk)
            if units is None:
                units = by_period[pk] = {}
            counts = units.get(unit)
            if counts is None:
                counts = units[unit] = {}
            v = counts.get(metric, 0) + n
            if v:
                counts[metric] = v
                versions[pk, unit] = version
                continue
            del counts[metric]
            if counts:
                versions[pk, unit] = version
                continue
            del units[unit]
            del versions[pk, unit]  # no counts is what "no version" means
            if not units:
                del by_period[pk]

    def units(self, pk: str) -> Mapping[str, Mapping[str, int]]:
        """The counts of each unit in a period, ``{unit: {metric: n}}`` (read only)."""
        return self._by_period.get(pk, {})

    def version(self, pk: str, unit: str) -> int | None:
        """Changes whenever the unit's counts in the period change; ``None`` while it has none."""
        return self._versions.get((pk, unit))

    def items(self) -> Iterator[tuple[TallyKey, int]]:
        for pk, units in self._by_period.items():
            for unit, counts in units.items():
                for metric, n in counts.items():
                    yield (unit, pk, metric), n

    def as_dict(self) -> dict[TallyKey, int]:
        return dict(self.items())

    def __len__(self) -> int:
        return sum(len(c) for units in self._by_period.values() for c in units.values())


def merge(books: Iterable[TallyBook]) -> dict[TallyKey, int]:
    total: dict[TallyKey, int] = defaultdict(int)
    for book in books:
        for key, n in book.items():
            total[key] += n
    return {k: v for k, v in total.items() if v}


def current_periods(now: datetime) -> dict[str, str]:
    """``{"month": "month:2026-03", "quarter": ..., "year": ...}`` in Vietnam time (the 766 reporting periods)."""
    return {g: period_key(g, now) for g in GRANULARITIES}


class _BoundedCounter:
    """A counter keyed by one label whose distinct values are capped."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def inc(self, label: str | None, n: float = 1) -> None:
        label = label or "unknown"
        if label not in self.values and len(self.values) >= LABEL_CAP:
            label = "other"
        self.values[label] = self.values.get(label, 0) + n


class PipelineHealth:
    """Counters of what the worker did since it started (they reset on restart, as Prometheus expects)."""

    def __init__(self) -> None:
        self.processed = _BoundedCounter()
        self.rejected = _BoundedCounter()
        self.alerts = _BoundedCounter()
        self.last_event = _BoundedCounter()  # holds the max event time per source, not a sum
        self.duplicates = 0
        self.late = 0
        self.lag_seconds: float | None = None
        self.collector_errors = 0
        #: National-portal sync bodies by (service, outcome: ``ok``, ``partial``, ``refused``) and their records by
        #: (service, outcome: ``accepted``, ``refused``); ``streams.runtime.sync_agent`` bounds the service.
        self.sync_bodies: dict[tuple[str, str], int] = {}
        self.sync_records: dict[tuple[str, str], int] = {}

    def record(self, *, source: str | None, event_time: datetime | None, now: datetime,
               duplicate: bool, late: bool) -> None:
        self.processed.inc(source)
        self.duplicates += bool(duplicate)
        self.late += bool(late)
        if event_time is not None:
            ts = event_time.timestamp()
            label = source or "unknown"
            if label not in self.last_event.values and len(self.last_event.values) >= LABEL_CAP:
                label = "other"
            if ts > self.last_event.values.get(label, float("-inf")):
                self.last_event.values[label] = ts
            self.lag_seconds = max(0.0, (now - event_time).total_seconds())

    def reject(self, reason: str) -> None:
        self.rejected.inc(reason)

    def alert(self, kind: str | None) -> None:
        self.alerts.inc(kind)

    def sync(self, service: str, outcome: str, accepted: int, refused: int) -> None:
        """One sync body handled and recorded: ``outcome`` is the body's, the counts its records'."""
        self.sync_bodies[service, outcome] = self.sync_bodies.get((service, outcome), 0) + 1
        for record_outcome, n in (("accepted", accepted), ("refused", refused)):
            if n:
                self.sync_records[service, record_outcome] = self.sync_records.get((service, record_outcome), 0) + n
