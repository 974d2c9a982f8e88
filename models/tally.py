"""A dossier's contribution to the per-unit, per-period tallies.

Every figure (766 numerators and denominators, shares, counts of open dossiers) is a sum over dossiers of small
integers. Computing a dossier's whole contribution from its derived view, and applying ``after - before`` when an
event or the clock changes it, is what lets the stream processor keep exact running totals under duplicates,
reordering, restarts and rebalances: a tally is always the sum of the contributions of the dossiers it holds.

Period keys are ``month:2026-03``, ``quarter:2026-Q1``, ``year:2026`` (Vietnam time) and ``live`` (open now).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections import Counter
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

import msgspec

from .calendar import TZ
from .config import MonitorConfig, config_as_dict
from models.dossier import Settled
from models.evaluation import View, alert_suffixes, alerts_of, working_seconds_between

GRANULARITIES = ("month", "quarter", "year")
LIVE = "live"

TallyKey = tuple[str, str, str]  # (unit_code, period_key, metric)


def period_key(granularity: str, t: datetime | date) -> str:
    d = t.astimezone(TZ).date() if isinstance(t, datetime) else t
    return _period_key_of_day(granularity, d)


# Replays and rebuilds ask for the keys of the same few hundred days millions of times.
@lru_cache(maxsize=65536)
def _period_key_of_day(granularity: str, d: date) -> str:
    if granularity == "month":
        return f"month:{d.year:04d}-{d.month:02d}"
    if granularity == "quarter":
        return f"quarter:{d.year:04d}-Q{(d.month - 1) // 3 + 1}"
    if granularity == "year":
        return f"year:{d.year:04d}"
    raise ValueError(f"unknown period granularity {granularity!r}")


def parse_period(key: str) -> tuple[datetime, datetime]:
    """``month:2026-03`` -> [start, end) in Vietnam time. Raises ValueError with the accepted forms."""
    return _parse_period(key)


@lru_cache(maxsize=4096)
def _parse_period(key: str) -> tuple[datetime, datetime]:
    try:
        gran, value = key.split(":", 1)
        if gran == "month":
            y, m = (int(x) for x in value.split("-"))
            start = datetime(y, m, 1, tzinfo=TZ)
            end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=TZ)
        elif gran == "quarter":
            y, q = value.split("-Q")
            y, q = int(y), int(q)
            if not 1 <= q <= 4:
                raise ValueError
            start = datetime(y, 3 * q - 2, 1, tzinfo=TZ)
            end = datetime(y + (q == 4), (3 * q) % 12 + 1, 1, tzinfo=TZ)
        elif gran == "year":
            y = int(value)
            start, end = datetime(y, 1, 1, tzinfo=TZ), datetime(y + 1, 1, 1, tzinfo=TZ)
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"period {key!r} is not month:YYYY-MM, quarter:YYYY-QN or year:YYYY") from None
    if not 1990 <= start.year <= 2100:
        raise ValueError(f"period {key!r} is out of range")
    return start, end


def periods_between(granularity: str, first: datetime, last: datetime) -> list[str]:
    """Keys of every period of this granularity from the one holding ``first`` to the one holding ``last``."""
    return list(_periods_from_to(granularity, period_key(granularity, first), period_key(granularity, last)))


@lru_cache(maxsize=16384)
def _periods_from_to(granularity: str, first_key: str, end_key: str) -> tuple[str, ...]:
    keys = [first_key]
    while keys[-1] != end_key and len(keys) < 2000:
        cursor = parse_period(keys[-1])[1]
        keys.append(period_key(granularity, cursor))
    return tuple(keys)


def contribution(view: View | None, now: datetime) -> Counter:
    """What one dossier adds to the tallies when the clock reads ``now``."""
    out: Counter = Counter()
    if view is None:
        return out
    unit = view.unit_code
    for (pk, _part), row in _parts(view, now).items():
        for metric, n in row:
            if n:  # every count is >= 0, so dropping zeros is what ``+Counter`` did
                key = (unit, pk, metric)
                out[key] = out.get(key, 0) + n
    return out


class ContributionSum:
    """The sum of many dossiers' contributions, as a rebuild or a batch score needs it.

    Dossiers mostly contribute the same few rows per unit and period (a population row comes from a small cached
    set, and reception rows repeat too), so rows are counted as they come and multiplied out once at the end,
    instead of building a dictionary of ~35 keys per dossier and adding it key by key into the totals: a third of
    a partition rebuild's time went there. ``totals()`` equals the sum of the dossiers' ``contribution``
    (tests/test_tally_properties.py).
    """

    __slots__ = ("_rows", "_seconds")

    def __init__(self) -> None:
        # (unit, period key, row) -> how many dossiers have it; a row is ((metric, n), ...), or for settled
        # dossiers the bytes of its metric numbers (each counted once)
        self._rows: dict[tuple[str, str, tuple], int] = {}
        self._seconds: dict[tuple[str, int], int] = {}  # settled processing seconds by (unit, reception day)

    def add(self, view: View | None, now: datetime) -> None:
        if view is None:
            return
        unit, rows = view.unit_code, self._rows
        for (pk, _part), row in _parts(view, now).items():
            key = (unit, pk, row)
            rows[key] = rows.get(key, 0) + 1

    def add_settled(self, settled: Settled) -> None:
        """A dossier's contribution as ``settled_of`` stored it: the same rows as ``add(view, now)`` at any
        ``now`` from its end on, or for an open one from ``counted_at`` until ``valid_until``, without the view
        (the caller checks the stamp and the instant). Rows are counted per period as ``add`` counts them, their
        metrics still numbered (bytes hash and compare faster than tuples); the processing seconds, the one count
        that differs from dossier to dossier, are summed apart by reception day so that the rows repeat."""
        unit, rows = settled.unit_code, self._rows
        received_keys, population = _day_plan(settled.first_day, settled.last_day)
        row = settled.reception
        for pk in received_keys:
            key = (unit, pk, row)
            rows[key] = rows.get(key, 0) + 1
        for ((pk, _part), _end), row in zip(population, settled.population):
            key = (unit, pk, row)
            rows[key] = rows.get(key, 0) + 1
        if settled.live:
            key = (unit, LIVE, settled.live)
            rows[key] = rows.get(key, 0) + 1
        if settled.processing_seconds:
            key = (unit, settled.first_day)
            self._seconds[key] = self._seconds.get(key, 0) + settled.processing_seconds

    def totals(self) -> dict[TallyKey, int]:
        out: dict[TallyKey, int] = {}
        for (unit, pk, row), times in self._rows.items():
            if type(row) is bytes:  # a settled row: metric numbers, each counted once
                for number in row:
                    key = (unit, pk, METRICS[number])
                    out[key] = out.get(key, 0) + times
                continue
            for metric, n in row:
                if n:  # every count is >= 0: a zero adds nothing, and ``contribution`` leaves it out
                    key = (unit, pk, metric)
                    out[key] = out.get(key, 0) + n * times
        for (unit, first_day), seconds in self._seconds.items():
            for pk in _day_plan(first_day, first_day)[0]:  # the reception periods
                key = (unit, pk, "processing_seconds_sum")
                out[key] = out.get(key, 0) + seconds
        return out


def contribution_delta(after: View | None, before: View | None, now: datetime,
                       before_now: datetime | None = None) -> dict:
    """``difference(contribution(after, now), contribution(before, before_now or now))``, computed part by part:
    a period's reception counts or population judgement that is the same on both sides cancels out and is
    skipped, so an event or a clock tick pays only for what it changes."""
    before_now = now if before_now is None else before_now
    if before is None:
        return dict(contribution(after, now))
    if after is None or after.unit_code != before.unit_code:
        return difference(contribution(after, now), contribution(before, before_now))
    unit = after.unit_code
    parts_a, parts_b = _parts(after, now), _parts(before, before_now)
    out: dict = {}
    for part, row in parts_a.items():
        old = parts_b.get(part)
        if old is row or old == row:
            continue
        pk = part[0]
        for metric, n in row:
            key = (unit, pk, metric)
            out[key] = out.get(key, 0) + n
        if old:
            for metric, n in old:
                key = (unit, pk, metric)
                out[key] = out.get(key, 0) - n
    for part, old in parts_b.items():
        if part not in parts_a:
            pk = part[0]
            for metric, n in old:
                key = (unit, pk, metric)
                out[key] = out.get(key, 0) - n
    return {k: v for k, v in out.items() if v}


RECEPTION, POPULATION = 0, 1


def _parts(view: View, now: datetime) -> dict[tuple[str, int], tuple[tuple[str, int], ...]]:
    """The dossier's contribution in parts: ``{(pk, RECEPTION | POPULATION): ((metric, n), ...)}``, ``live``
    included as a population part. Metric names never repeat within a period, so the parts simply add up.
    Callers only read the result: it is memoised on the view for the same ``now``, with the first and last days
    it counts in (``_counted_days``)."""
    memo_now, parts, _days = view._parts_at
    if memo_now == now:
        return parts
    parts = {}
    received_at = view.received_at
    if received_at > now:
        view._parts_at = (now, parts, None)
        return parts
    days = _counted_days(view, now)
    received_keys, population = _period_plan(*days)
    reception = _reception_counts(view)
    for pk in received_keys:
        parts[(pk, RECEPTION)] = reception
    apology, unsatisfied = view.apology_in_time, view.satisfied is False
    judge = view.judge
    for part, p_end in population:
        j = judge(p_end if p_end < now else now)
        parts[part] = _population_row(j.on_time, j.bucket, apology, unsatisfied)
    if view.is_open:
        parts[(LIVE, POPULATION)] = ((judge(now).bucket, 1),)
    view._parts_at = (now, parts, days)
    return parts


def _counted_days(view: View, now: datetime) -> tuple[date, date]:
    """The first and last days (Vietnam time) whose periods the dossier counts in when the clock reads ``now``."""
    first_day = view.received_at.astimezone(TZ).date()
    if not view.config.carry_over_open_dossiers:
        return first_day, first_day
    last = min(view.end_at, now) if view.end_at is not None else now
    return first_day, max(last, view.received_at).astimezone(TZ).date()


# Dossiers received on the same day and counted up to the same day share their periods; the stream asks for the
# same pair on both sides of every event, so the walk over carried-over periods is done once per pair.
@lru_cache(maxsize=16384)
def _period_plan(first_day: date, last_day: date) -> tuple[tuple[str, ...], tuple[tuple[tuple[str, int], datetime], ...]]:
    """(keys of the reception periods, ((key, POPULATION), end) of every period from ``first_day``'s to
    ``last_day``'s)."""
    received = tuple(_period_key_of_day(g, first_day) for g in GRANULARITIES)
    population = tuple(((pk, POPULATION), parse_period(pk)[1]) for g, first in zip(GRANULARITIES, received)
                       for pk in _periods_from_to(g, first, _period_key_of_day(g, last_day)))
    return received, population


@lru_cache(maxsize=256)
def _population_row(on_time: bool, bucket: str, apology_in_time: bool, unsatisfied: bool) -> tuple[tuple[str, int], ...]:
    """A population period's metrics; a handful of distinct rows exist, so they are built once."""
    row = [("population", 1)]
    if on_time:
        row.append(("on_time", 1))
    row.append((bucket, 1))
    if bucket == "ended_late":
        row.append(("late_with_apology" if apology_in_time else "late_without_apology", 1))
    if not on_time or unsatisfied:
        row.append(("late_or_dissatisfied", 1))
    return tuple(row)


def _reception_counts(v: View) -> tuple[tuple[str, int], ...]:
    """The reception metrics of a dossier, the same for each of its period keys (so worked out once)."""
    counts = [("received", 1), ("received_" + v.channel, 1)]
    if v.channel == "online" and (not v.paper_result or v.e_result):
        counts.append(("online_qualified", 1))
    if v.has_fee:
        counts.append(("fee_bearing", 1))
        if v.paid_online:
            counts.append(("paid_online", 1))
    if v.paper_result:
        counts.append(("paper_result", 1))
        if v.e_result:
            counts.append(("paper_result_e_result", 1))
    if v.digitized and (not v.paper_result or v.e_result):
        counts.append(("digitized", 1))
    if v.reused_data:
        counts.append(("reused_data", 1))
    if v.personal_store:
        counts.append(("personal_store", 1))
    if v.population_db or v.personal_store:
        counts.append(("population_db", 1))
    if v.rated:
        counts.append(("rated", 1))
        if v.satisfied:
            counts.append(("rated_satisfied", 1))
    if v.end_at is not None:
        counts.append(("processing_count", 1))
        counts.append(("processing_seconds_sum",
                       round(working_seconds_between(v.calendar, v.received_at, max(v.received_at, v.end_at)))))
    return tuple(counts)


# ---------------------------------------------------------------------------------------------------------------
# settled contributions: a dossier's rows, stored with its state for the rebuilds, for good once it has ended

#: Every metric a contribution row can hold, numbered for ``Settled`` rows. Renumbering is safe: the stamp
#: covers this file, so rows stored under another numbering are never read as such.
METRICS = (
    "received", "received_direct", "received_online", "received_postal", "online_qualified", "fee_bearing",
    "paid_online", "paper_result", "paper_result_e_result", "digitized", "reused_data", "personal_store",
    "population_db", "rated", "rated_satisfied", "processing_count", "processing_seconds_sum",
    "population", "on_time", "late_with_apology", "late_without_apology", "late_or_dissatisfied",
    "ended_early", "ended_on_time", "ended_late", "open_within", "open_due_soon", "open_overdue",
    "open_awaiting_supplement", "open_awaiting_payment",
)
_METRIC_NUMBER = {name: i for i, name in enumerate(METRICS)}
#: The modules whose code decides a contribution: any change to them retires every stored ``Settled``.
_RULE_SOURCES = ("calendar.py", "calendar_documents.py", "config.py", "dossier.py", "evaluation.py", "tally.py")


@lru_cache(maxsize=64)
def settled_stamp(calendar_version: str, config: MonitorConfig) -> bytes:
    """Names what a settled contribution was derived from: the calendar version, the rules and the counting code.

    The code is named by the bytes of its source files rather than a release number that someone must remember to
    bump: after an upgrade that touches them, rebuilds evaluate every dossier again (as before settled rows
    existed) until each is rewritten by its next event. The version of the ``holidays`` package is part of it too:
    the baseline calendar comes from it, and a new release can move a holiday under the same calendar version."""
    h = hashlib.blake2b(digest_size=8)
    h.update(calendar_version.encode())
    h.update(importlib.metadata.version("holidays").encode())
    h.update(msgspec.json.encode(config_as_dict(config)))
    here = Path(__file__).parent
    for name in _RULE_SOURCES:
        h.update((here / name).read_bytes())
    return h.digest()


def settled_of(view: View | None, now: datetime, stamp: bytes, until: datetime | None = None,
               alerts: frozenset | None = None) -> Settled | None:
    """The dossier's contribution for good, if it has ended by ``now``; or, if it is open and ``until`` is its
    ``next_change_at`` as of ``now``, its contribution and its alerts from ``now`` until then. None while it can
    still move (or when it does not fit the layout: it is then evaluated, as every dossier once was).
    ``alerts`` is ``alerts_of(view, now)`` when the caller has it already."""
    if view is None or view.received_at > now:
        return None
    if view.end_at is not None:
        if view.end_at > now or view.received_at > view.end_at:
            return None  # (an end before the reception would make the rows depend on the clock again)
    elif until is None or until <= now:
        return None
    parts = _parts(view, now)
    first_day, last_day = view._parts_at[2]  # the same days at any later instant up to ``until``
    received_keys, population = _period_plan(first_day, last_day)
    live = parts.get((LIVE, POPULATION))
    if len(parts) != len(received_keys) + len(population) + (live is not None):
        return None  # not the plan this layout assumes: keep evaluating this dossier
    try:
        reception = parts[(received_keys[0], RECEPTION)]
        seconds = [n for metric, n in reception if metric == "processing_seconds_sum"]
        numbered = _numbered_row(tuple(r for r in reception if r[0] != "processing_seconds_sum"))
        rows = tuple(_numbered_row(parts[part]) for part, _end in population)
        live_row = _numbered_row(live) if live is not None else b""
    except (KeyError, ValueError):  # a metric with no number, or a count other than 1: keep evaluating it
        return None
    if view.end_at is not None:
        return Settled(stamp, view.unit_code, view.province_code, view.unit_level, view.end_at,
                       first_day.toordinal(), last_day.toordinal(), numbered, sum(seconds), rows)
    return Settled(stamp, view.unit_code, view.province_code, view.unit_level, None, first_day.toordinal(),
                   last_day.toordinal(), numbered, 0, rows, live_row, now, until, alert_suffixes(view.code, alerts_of(view, now) if alerts is None else alerts))


@lru_cache(maxsize=4096)  # a few hundred distinct rows exist once the processing time is taken out
def _numbered_row(row: tuple[tuple[str, int], ...]) -> bytes:
    if any(n != 1 for _metric, n in row):
        raise ValueError("a settled row holds counts of one")
    return bytes(_METRIC_NUMBER[metric] for metric, _n in row)


@lru_cache(maxsize=16384)
def _day_plan(first: int, last: int):
    return _period_plan(date.fromordinal(first), date.fromordinal(last))


def add_into(total: dict, delta: dict, sign: int = 1) -> None:
    """Add a contribution (or subtract, with sign=-1) into running tallies, dropping keys that reach zero."""
    for k, n in delta.items():
        v = total.get(k, 0) + sign * n
        if v:
            total[k] = v
        else:
            total.pop(k, None)


def difference(after: dict, before: dict) -> dict:
    out = dict(after)
    for k, n in before.items():
        v = out.get(k, 0) - n
        if v:
            out[k] = v
        else:
            out.pop(k, None)
    return out


def unit_period_tallies(tallies: dict, period: str) -> dict[str, dict[str, int]]:
    """{unit: {metric: n}} for one period key."""
    out: dict[str, dict[str, int]] = {}
    for (unit, pk, metric), n in tallies.items():
        if pk == period:
            out.setdefault(unit, {})[metric] = n
    return out
