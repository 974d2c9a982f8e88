"""The dossier state machine: ``apply(state, event, ctx) -> (state, effects)``.

The state is a merge of *facts* (when it was received, when each supplement was requested and completed, when it
ended, ...), each merged by a commutative, idempotent rule (earliest time wins, sets keyed by id, the latest rating
by event time). The lifecycle status, the timeliness outcome and the deadline state are *derived* from the facts at an
instant ``ctx.now`` by ``evaluate``. Two consequences the product depends on:

- duplicates change nothing (the ``(source, id)`` key is remembered), and
- the events of a dossier may arrive in any order: the merged facts, hence every figure, are the same.

Rules (domain reference §2.5, §2.7, §2.8): supplement intervals are removed from the processing time; a dossier still
waiting for its only supplement is judged at the request time; more than one supplement request makes it late;
withdrawal and stop end the clock; an apology slip's new date is kept apart from the original due date, which decides
timeliness by default.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import NamedTuple

import msgspec
from msgspec import Struct

from . import events as ev
from .calendar import TZ, WorkCalendar
from .config import DEFAULT_CONFIG, MonitorConfig

EPS = timedelta(microseconds=1)


class Reception(Struct):
    """What the ``received`` (or ``snapshot``) event fixed: the unit, the channel, the clock start and the due date."""

    rank: tuple[datetime, str]  # (received_at, event key): the earliest reception wins, whatever the arrival order
    received_at: datetime
    procedure_code: str
    handling_unit_code: str
    receiving_unit_code: str
    channel: str
    due_at: datetime
    due_source: str  # "event" (printed on the receipt slip) or "computed" (from the time limit and the calendar)
    limit_value: float | None
    limit_unit: str | None
    province_code: str | None
    unit_level: str | None
    has_fee: bool
    paper_result: bool
    pause_on_payment: bool | None
    computed_due_at: datetime | None  # the calendar's due date when a time limit was given, to check the slip


class Settled(Struct, array_like=True, frozen=True):
    """What a dossier adds to the tallies, stored with its facts so that a rebuild need not evaluate it.

    An ended dossier's contribution no longer moves with the clock, only with its facts (a later event rewrites
    the state and this with it), the calendar, the rules and the code that counts. ``stamp`` names those
    (``models.tally.settled_stamp``); a rebuild under any other stamp evaluates the facts as if this were absent.
    Metrics are numbered (``models.tally.METRICS``), the periods two day ordinals: ~70 bytes a dossier.

    An open dossier's contribution moves with the clock, but only at the instants ``next_change_at`` names (its
    due-soon and due instants, a month's start, a pause's start or end): between the instant it was counted
    at and the next of those, the same rows hold. ``ended_at`` is then None and ``counted_at`` and ``valid_until``
    bound where a rebuild may read the rows instead of evaluating the dossier; ``live`` is its ``live`` row and
    ``alerts`` what it has active all that time, for the rebuild to know whether any is still to be announced.
    """

    stamp: bytes
    unit_code: str
    province_code: str | None
    unit_level: str | None
    ended_at: datetime | None  # None: an open dossier, counted at ``counted_at`` and valid until ``valid_until``
    first_day: int  # date.toordinal() of the first and last days the dossier counts in (Vietnam time)
    last_day: int
    reception: bytes  # the numbers of the metrics it counts once each, all but the processing seconds:
    processing_seconds: int  # the one count that differs from dossier to dossier
    population: tuple[bytes, ...]  # one row of metric numbers per population period, in plan order
    live: bytes = b""
    counted_at: datetime | None = None
    valid_until: datetime | None = None
    alerts: tuple[str, ...] = ()  # ``alert_suffixes``: the ids without the dossier code


class DossierState(Struct):
    code: str
    seen: dict[bytes, bytes] = {}  # key digest of (source, id) -> content digest
    reception: Reception | None = None
    submitted_at: datetime | None = None
    refused_at: datetime | None = None
    supplement_requested: dict[str, datetime] = {}
    supplement_completed: dict[str, datetime] = {}
    payment_requested: dict[bytes, datetime] = {}
    payment_completed: dict[bytes, datetime] = {}
    paid_online: bool = False
    withdrawal_requested_at: datetime | None = None
    withdrawn_at: datetime | None = None
    stopped_at: datetime | None = None
    processed_at: datetime | None = None
    returned_at: datetime | None = None
    reschedules: dict[bytes, tuple[datetime, datetime, datetime]] = {}  # key -> (issued_at, previous_due, new_due)
    digitized: bool = False
    reused_data: bool = False
    personal_store: bool = False
    population_db: bool = False
    e_result: bool = False
    rating: tuple[datetime, bytes, bool] | None = None  # (event time, key digest, satisfied): latest wins
    transfers: int = 0
    last_event_time: datetime | None = None
    # Derived, not a fact: a msgpack-encoded ``Settled``, set by the stream processor when it stores the state.
    # Kept as bytes so that a state stays readable whatever layout its rows were written in (``read_settled``).
    settled: bytes | None = None


@dataclass(frozen=True)
class Context:
    """Everything ``apply`` and ``evaluate`` need besides the state. ``now`` is injected, never read from a clock."""

    now: datetime
    calendar: WorkCalendar
    config: MonitorConfig = DEFAULT_CONFIG

    def at(self, now: datetime) -> "Context":
        return Context(now=now, calendar=self.calendar, config=self.config)


class Alert(NamedTuple):
    alert_id: str  # stable: the same condition of the same dossier always has the same id
    kind: str  # due_soon | overdue | apology_missing | repeated_supplement | second_reschedule


class Effects(NamedTuple):
    duplicate: bool
    late_arrival: bool  # the event is older than the newest event already applied to this dossier


# ---------------------------------------------------------------------------------------------------------------
# apply

POST_RECEPTION = frozenset(ev.EVENT_TYPES) - {"submitted", "received", "reception_refused", "snapshot"}


def key_digest(source: str, event_id: str) -> bytes:
    return hashlib.blake2b(f"{source}\x00{event_id}".encode(), digest_size=8).digest()


def new_state(code: str) -> DossierState:
    return DossierState(code=code)


def apply(state: DossierState | None, event: ev.Event, ctx: Context) -> tuple[DossierState, Effects]:
    """Merge one validated event into the dossier's facts. Raises ``EventError`` for an event the dossier refuses."""
    if state is None:
        state = new_state(event.subject)
    elif state.code != event.subject:
        raise ev.EventError("key_mismatch", f"event of dossier {event.subject!r} applied to dossier {state.code!r}")
    kd = key_digest(event.source, event.id)
    seen = state.seen.get(kd)
    if seen is not None:
        if seen != event.digest:
            raise ev.EventError("conflicting_duplicate",
                                f"event id {event.id!r} from {event.source!r} was already received with other content")
        return state, Effects(True, False)
    if len(state.seen) >= ctx.config.max_events_per_dossier:
        raise ev.EventError("too_many_events", f"dossier {state.code!r} already has {len(state.seen)} events")
    _check_timeline(state, event)
    horizon = ctx.now + timedelta(seconds=ctx.config.future_tolerance_seconds)
    if event.time > horizon:
        raise ev.EventError("future_event", f"`$.time` {event.time.isoformat()} is in the future")
    if _event_instant(event) > horizon:
        raise ev.EventError("future_event", f"the {event.kind} step is dated in the future ({_event_instant(event).isoformat()})")

    new = msgspec.structs.replace(state, seen={**state.seen, kd: event.digest})
    _merge(new, event, kd, ctx)
    late = state.last_event_time is not None and event.time < state.last_event_time
    if new.last_event_time is None or event.time > new.last_event_time:
        new.last_event_time = event.time
    return new, Effects(False, late)


def _event_instant(event: ev.Event) -> datetime:
    """The moment the step happened, as the payload states it (the envelope time when the payload has none)."""
    d = event.data
    for name in ("processing_ended_at", "returned_at", "withdrawn_at", "stopped_at", "paid_at", "refused_at"):
        t = getattr(d, name, None)
        if t is not None and not isinstance(d, ev.Snapshot):
            return t
    if isinstance(d, ev.SupplementRequested):
        return d.supplement.requested_at
    if isinstance(d, ev.SupplementReceived):
        return d.supplement.completed_at
    if isinstance(d, ev.DueRescheduled):
        return d.apology.issued_at
    return event.time


def _check_timeline(state: DossierState, event: ev.Event) -> None:
    """Refuse steps that cannot have happened: a step of the handling dated before the dossier was received."""
    tol = ev.TIMELINE_TOLERANCE
    rec = state.reception
    if event.kind in POST_RECEPTION and rec is not None:
        t = _event_instant(event)
        if t + tol < rec.received_at:
            raise ev.EventError("impossible_timeline",
                                f"{event.kind} at {t.isoformat()} is before the dossier was received at {rec.received_at.isoformat()}")
    if event.kind in ("received", "snapshot"):
        received_at = event.data.received_at
        earliest = _earliest_handling_fact(state)
        if earliest is not None and earliest + tol < received_at:
            raise ev.EventError("impossible_timeline",
                                f"received at {received_at.isoformat()} after the dossier was already handled at {earliest.isoformat()}")
    if isinstance(event.data, ev.SupplementReceived):
        req = state.supplement_requested.get(event.data.supplement.request_id)
        if req is not None and event.data.supplement.completed_at + tol < req:
            raise ev.EventError("impossible_timeline", "supplement completed before it was requested")
    if isinstance(event.data, ev.SupplementRequested):
        done = state.supplement_completed.get(event.data.supplement.request_id)
        if done is not None and done + tol < event.data.supplement.requested_at:
            raise ev.EventError("impossible_timeline", "supplement requested after it was completed")


def _earliest_handling_fact(state: DossierState) -> datetime | None:
    times = [t for t in (state.processed_at, state.returned_at, state.stopped_at, state.withdrawn_at,
                         state.withdrawal_requested_at) if t is not None]
    times += list(state.supplement_requested.values()) + list(state.supplement_completed.values())
    times += list(state.payment_completed.values())
    return min(times) if times else None


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a <= b else b


def _merge(s: DossierState, event: ev.Event, kd: bytes, ctx: Context) -> None:
    d = event.data
    kind = event.kind
    if kind in ("received", "snapshot"):
        _merge_reception(s, event, kd, ctx)
        if kind == "snapshot":
            _merge_snapshot(s, d)
    elif kind == "submitted":
        s.submitted_at = _min(s.submitted_at, d.submitted_at)
    elif kind == "reception_refused":
        s.refused_at = _min(s.refused_at, d.refused_at or event.time)
    elif kind == "transferred":
        s.transfers += 1
    elif kind == "supplement_requested":
        rid = d.supplement.request_id
        s.supplement_requested = {**s.supplement_requested, rid: _min(s.supplement_requested.get(rid), d.supplement.requested_at)}
    elif kind == "supplement_received":
        rid = d.supplement.request_id
        s.supplement_completed = {**s.supplement_completed, rid: _min(s.supplement_completed.get(rid), d.supplement.completed_at)}
    elif kind == "payment_requested":
        s.payment_requested = {**s.payment_requested, kd: d.requested_at or event.time}
    elif kind == "payment_completed":
        s.payment_completed = {**s.payment_completed, kd: d.paid_at or event.time}
        s.paid_online = s.paid_online or d.paid_online
    elif kind == "withdrawal_requested":
        s.withdrawal_requested_at = _min(s.withdrawal_requested_at, d.requested_at or event.time)
    elif kind == "withdrawn":
        s.withdrawn_at = _min(s.withdrawn_at, d.withdrawn_at or event.time)
    elif kind == "stopped":
        s.stopped_at = _min(s.stopped_at, d.stopped_at or event.time)
    elif kind == "processed":
        s.processed_at = _min(s.processed_at, d.processing_ended_at)
        s.e_result = s.e_result or any(r.electronic for r in d.results)
    elif kind == "result_returned":
        s.returned_at = _min(s.returned_at, d.returned_at)
    elif kind == "due_rescheduled":
        a = d.apology
        s.reschedules = {**s.reschedules, kd: (a.issued_at, a.previous_due_at, a.new_due_at)}
    elif kind == "component_digitized":
        _merge_components(s, d.components)
    elif kind == "result_issued":
        s.e_result = s.e_result or any(r.electronic for r in d.results)
    elif kind == "rated":
        _merge_rating(s, event.time, kd, d.rating.satisfied)
    # step_changed carries nothing the figures use; it is remembered as seen (for duplicates) and as activity.


def _merge_rating(s: DossierState, t: datetime, kd: bytes, satisfied: bool) -> None:
    cand = (t, kd, satisfied)
    if s.rating is None or (cand[0], cand[1]) > (s.rating[0], s.rating[1]):
        s.rating = cand


def _merge_components(s: DossierState, components) -> None:
    for c in components:
        s.digitized = s.digitized or c.digitized
        s.reused_data = s.reused_data or c.reused_digitized_data
        s.personal_store = s.personal_store or c.from_personal_data_store
        s.population_db = s.population_db or (c.national_db_code or "").upper() in POPULATION_DB_CODES


POPULATION_DB_CODES = frozenset({"CSDLQGDC", "DANCU", "CSDLDC"})
"""Codes a publisher may use for the national population database in ``components[].national_db_code``."""


def _merge_reception(s: DossierState, event: ev.Event, kd: bytes, ctx: Context) -> None:
    d = event.data
    rank = (d.received_at, kd.hex())
    if s.reception is not None and s.reception.rank <= rank:
        _merge_reception_flags(s, d)
        return
    cal = ctx.calendar.for_unit(d.handling_unit_code)
    computed = None
    if d.time_limit is not None:
        try:
            computed = cal.due_from_limit(d.received_at, d.time_limit.value, d.time_limit.unit)
        except ValueError as exc:  # CalendarError: a limit that runs past the last year any calendar covers
            raise ev.EventError("impossible_timeline", f"the time limit of {d.time_limit.value:g} "
                                f"{d.time_limit.unit}s from `$.data.received_at` has no working calendar: {exc}") from None
    due = d.due_at if d.due_at is not None else computed
    s.reception = Reception(
        rank=rank, received_at=d.received_at, procedure_code=d.procedure_code,
        handling_unit_code=d.handling_unit_code, receiving_unit_code=d.receiving_unit_code, channel=d.channel,
        due_at=due, due_source="event" if d.due_at is not None else "computed",
        limit_value=d.time_limit.value if d.time_limit else None, limit_unit=d.time_limit.unit if d.time_limit else None,
        province_code=d.province_code, unit_level=d.unit_level, has_fee=d.has_fee,
        paper_result=d.result_is_paper_document, pause_on_payment=d.pause_on_payment_request,
        computed_due_at=computed,
    )
    _merge_reception_flags(s, d)


def _merge_reception_flags(s: DossierState, d) -> None:
    s.digitized = s.digitized or d.has_digitized_components
    s.population_db = s.population_db or d.vneid_authenticated
    if d.submitted_at is not None:
        s.submitted_at = _min(s.submitted_at, d.submitted_at)
    _merge_components(s, d.components)


def _merge_snapshot(s: DossierState, d: ev.Snapshot) -> None:
    s.processed_at = _min(s.processed_at, d.processing_ended_at)
    s.returned_at = _min(s.returned_at, d.returned_at)
    s.stopped_at = _min(s.stopped_at, d.stopped_at)
    s.withdrawn_at = _min(s.withdrawn_at, d.withdrawn_at)
    s.refused_at = _min(s.refused_at, d.refused_at)
    for sup in d.supplements:
        s.supplement_requested = {**s.supplement_requested, sup.request_id: _min(s.supplement_requested.get(sup.request_id), sup.requested_at)}
        if sup.completed_at is not None:
            s.supplement_completed = {**s.supplement_completed, sup.request_id: _min(s.supplement_completed.get(sup.request_id), sup.completed_at)}
    s.paid_online = s.paid_online or bool(d.paid_online)
    s.e_result = s.e_result or any(r.electronic for r in d.results)
    if d.rating is not None:
        # A snapshot's rating ranks by the reception time so that any later ``rated`` event wins.
        _merge_rating(s, d.received_at, b"", d.rating.satisfied)


# ---------------------------------------------------------------------------------------------------------------
# evaluate: the derived view at an instant


@dataclass(frozen=True)
class Judgement:
    on_time: bool
    bucket: str  # ended_early | ended_on_time | ended_late | open_within | open_due_soon | open_overdue | open_awaiting_supplement | open_awaiting_payment


@dataclass
class View:
    """A dossier as the figures see it. Everything here is derived from the facts and the calendar."""

    code: str
    unit_code: str
    province_code: str | None
    unit_level: str | None
    procedure_code: str
    channel: str
    received_at: datetime
    original_due_at: datetime
    judged_due_at: datetime
    due_source: str
    due_mismatch: bool
    end_at: datetime | None
    end_kind: str | None
    status: str
    supplement_requests: int
    open_supplement_at: datetime | None
    paused: list[tuple[datetime, datetime]]
    payment_hold: bool
    apology_in_time: bool
    reschedules: int
    has_fee: bool
    paid_online: bool
    paper_result: bool
    e_result: bool
    digitized: bool
    reused_data: bool
    personal_store: bool
    population_db: bool
    rated: bool
    satisfied: bool | None
    limit_working_seconds: float
    calendar: WorkCalendar = field(repr=False)
    config: MonitorConfig = field(repr=False)
    # judge(t) memo: a handle judges the same view at the same few instants many times (every carried-over period
    # ending after ``now``, the live bucket, alerts, the next deadline). Views are never mutated after ``evaluate``.
    _judged: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    # (now, parts, counted days) of the last ``models.tally._parts`` call: a handle asks for the new view's parts
    # at the same instant twice (its tally delta, then its settled rows).
    _parts_at: tuple = field(default=(None, None, None), init=False, repr=False, compare=False)

    @property
    def is_open(self) -> bool:
        return self.end_at is None

    def paused_seconds_until(self, t: datetime) -> float:
        return sum((min(b, t) - a).total_seconds() for a, b in self.paused if a < t)

    def effective_due_at(self, t: datetime) -> datetime:
        """The due date moved by the pauses completed before ``t`` (supplement, and payment when it pauses)."""
        if not self.paused:  # most dossiers never pause; a rebuild judges each of them several times
            return self.judged_due_at
        return self.judged_due_at + timedelta(seconds=sum((b - a).total_seconds() for a, b in self.paused if b <= t))

    def judge(self, t: datetime) -> Judgement:
        """The 766 test (spec §2.7) as of instant ``t``: ended dossiers by their adjusted end, open ones at ``t``."""
        memo = self._judged
        key = None if self.end_at is not None else t  # an ended dossier's judgement does not depend on ``t``
        j = memo.get(key)
        if j is None:
            if len(memo) >= 64:  # a long-lived view judged at ever new instants must not grow without bound
                memo.clear()
            j = memo[key] = self._judge(t)
        return j

    def _judge(self, t: datetime) -> Judgement:
        repeated_late = self.config.repeated_supplement_is_late and self.supplement_requests > 1
        if self.end_at is not None:
            adjusted = self.end_at
            if self.paused:
                adjusted -= timedelta(seconds=sum((b - a).total_seconds() for a, b in self.paused if b <= self.end_at))
            if repeated_late or adjusted > self.judged_due_at:
                return Judgement(False, "ended_late")
            early = adjusted.astimezone(TZ).date() < self.judged_due_at.astimezone(TZ).date()
            return Judgement(True, "ended_early" if early else "ended_on_time")
        if self.open_supplement_at is not None and self.open_supplement_at <= t:
            adjusted = self.open_supplement_at - timedelta(
                seconds=sum((b - a).total_seconds() for a, b in self.paused if b <= self.open_supplement_at))
            return Judgement(not repeated_late and adjusted <= self.judged_due_at, "open_awaiting_supplement")
        if self.payment_hold:
            due = self.effective_due_at(t)
            return Judgement(not repeated_late and t <= due, "open_awaiting_payment")
        state = self.deadline_state(t)
        return Judgement(not repeated_late and state != "overdue", "open_" + state)

    def deadline_state(self, t: datetime) -> str:
        due = self.effective_due_at(t)
        if t > due:
            return "overdue"
        if t >= self.due_soon_at(due):
            return "due_soon"
        return "within"

    def due_soon_at(self, effective_due: datetime) -> datetime:
        cfg = self.config
        return _due_soon_at(self.calendar, effective_due, effective_due.tzinfo, cfg.due_soon_min_working_days,
                            cfg.due_soon_fraction, self.limit_working_seconds)

    def overdue_working_seconds(self, t: datetime) -> float:
        due = self.effective_due_at(t)
        return max(0.0, self.calendar.working_seconds_between(due, t)) if t > due else 0.0


# Calendar walks are the costliest part of judging a dossier, and every event of a dossier (and the clock, and both
# sides of an event's ``after - before``) asks for the same few: memoised per calendar *object* (calendars are
# immutable; a new version is a new object, so a stale entry is never read). ``tzinfo`` is part of each key because
# equal instants with other offsets compare equal, and a cached result must keep the offset the caller would get.
CALENDAR_MEMO_SIZE = 16384


@lru_cache(maxsize=CALENDAR_MEMO_SIZE, typed=True)
def _due_soon_at(cal: WorkCalendar, effective_due: datetime, _tz, min_days: float, fraction: float,
                 limit_working_seconds: float) -> datetime:
    day = _standard_day_seconds(cal, effective_due)
    threshold = max(min_days * day, fraction * limit_working_seconds)
    return subtract_working_seconds(cal, effective_due, threshold)


def apology_deadline(cal: WorkCalendar, original_due: datetime, cfg: MonitorConfig) -> datetime:
    """Latest time an apology slip may be issued to count as notice (spec §2.8: one working day before the due)."""
    return _apology_deadline(cal, original_due, original_due.tzinfo, cfg.apology_notice_working_days)


@lru_cache(maxsize=CALENDAR_MEMO_SIZE, typed=True)
def _apology_deadline(cal: WorkCalendar, original_due: datetime, _tz, notice_days: float) -> datetime:
    return subtract_working_seconds(cal, original_due, notice_days * _standard_day_seconds(cal, original_due))


@lru_cache(maxsize=CALENDAR_MEMO_SIZE, typed=True)
def _limit_terms(cal: WorkCalendar, received_at: datetime, _tz, due_at: datetime, _due_tz, recompute: bool,
                 limit_value: float | None, limit_unit: str | None) -> tuple[datetime, float]:
    """(original due, working seconds from reception to it): what ``evaluate`` needs from the calendar."""
    original_due = cal.due_from_limit(received_at, limit_value, limit_unit) if recompute else due_at
    return original_due, max(0.0, cal.working_seconds_between(received_at, original_due))


@lru_cache(maxsize=CALENDAR_MEMO_SIZE)
def _working_seconds(cal: WorkCalendar, a: datetime, b: datetime) -> float:
    return cal.working_seconds_between(a, b)


def working_seconds_between(cal: WorkCalendar, a: datetime, b: datetime) -> float:
    """``cal.working_seconds_between(a, b)``, memoised (a float of the instants alone: offsets need no key)."""
    return _working_seconds(cal, a, b)


def _standard_day_seconds(cal: WorkCalendar, t: datetime) -> float:
    d = t.astimezone(TZ).date()
    for _ in range(14):
        secs = cal.working_day_seconds(d)
        if secs > 0:
            return secs
        d -= timedelta(days=1)
    return 8 * 3600.0


def subtract_working_seconds(cal: WorkCalendar, end: datetime, seconds: float) -> datetime:
    """The latest instant from which ``seconds`` of working time remain until ``end``."""
    if seconds <= 0:
        return end
    end = end.astimezone(TZ)
    left = seconds
    d = end.date()
    for _ in range(3660):
        for start, stop in reversed(cal.working_periods(d)):
            if start >= end:
                continue
            stop = min(stop, end)
            span = (stop - start).total_seconds()
            if span >= left:
                return stop - timedelta(seconds=left)
            left -= span
        d -= timedelta(days=1)
    return end - timedelta(seconds=seconds)


def evaluate(state: DossierState, ctx: Context) -> View | None:
    """The dossier as counted. ``None`` while it has not been received (submitted, refused, or events out of order)."""
    rec = state.reception
    if rec is None:
        return None
    cfg = ctx.config
    cal = ctx.calendar.for_unit(rec.handling_unit_code)
    ends = [(t, k) for t, k in ((state.processed_at, "processed"), (state.returned_at, "returned"),
                                (state.stopped_at, "stopped"), (state.withdrawn_at, "withdrawn")) if t is not None]
    # The end of processing is the first of these; "processed" is preferred over "returned" (spec §2.7).
    end_at, end_kind = (None, None)
    if state.processed_at is not None:
        end_at, end_kind = state.processed_at, "processed"
        for t, k in ends:
            if k in ("stopped", "withdrawn") and t < end_at:
                end_at, end_kind = t, k
    elif ends:
        end_at, end_kind = min(ends)
    paused: list[tuple[datetime, datetime]] = []
    open_supplement = None
    for rid, req in state.supplement_requested.items():
        done = state.supplement_completed.get(rid)
        if done is not None:
            paused.append((req, max(req, done)))
        elif open_supplement is None or req < open_supplement:
            open_supplement = req
    pause_payment = rec.pause_on_payment if rec.pause_on_payment is not None else cfg.pause_on_payment_request
    payment_hold = False
    if pause_payment and state.payment_requested:
        completions = sorted(state.payment_completed.values())
        for req in sorted(state.payment_requested.values()):
            done = next((c for c in completions if c >= req), None)
            if done is None:
                payment_hold = True
            else:
                paused.append((req, done))
    paused.sort()
    # A due date this product computed follows the calendar in force (an operator's corrected calendar must
    # move it); a due date printed on the receipt slip never moves.
    recompute = rec.due_source == "computed" and rec.limit_value is not None
    original_due, limit_working_seconds = _limit_terms(
        cal, rec.received_at, rec.received_at.tzinfo, rec.due_at, rec.due_at.tzinfo, recompute,
        rec.limit_value if recompute else None, rec.limit_unit if recompute else None)
    judged_due = original_due
    in_time_apology = False
    if state.reschedules:
        if cfg.judge_against == "rescheduled":
            judged_due = max([judged_due] + [new_due for _i, _p, new_due in state.reschedules.values()])
        deadline = apology_deadline(cal, original_due, cfg)
        in_time_apology = any(issued <= deadline for issued, _p, _n in state.reschedules.values())
    if end_at is not None:
        status = end_kind
    elif open_supplement is not None:
        status = "awaiting_supplement"
    elif payment_hold or (state.payment_requested and len(state.payment_completed) < len(state.payment_requested)):
        status = "awaiting_payment"
    elif state.withdrawal_requested_at is not None:
        status = "withdrawal_requested"
    else:
        status = "in_progress"
    return View(
        code=state.code, unit_code=rec.handling_unit_code, province_code=rec.province_code, unit_level=rec.unit_level,
        procedure_code=rec.procedure_code, channel=rec.channel, received_at=rec.received_at,
        original_due_at=original_due, judged_due_at=judged_due, due_source=rec.due_source,
        due_mismatch=rec.computed_due_at is not None and rec.due_source == "event" and abs((rec.computed_due_at - rec.due_at).total_seconds()) > 60,
        end_at=end_at, end_kind=end_kind, status=status,
        supplement_requests=len(state.supplement_requested), open_supplement_at=open_supplement, paused=paused,
        payment_hold=payment_hold and end_at is None, apology_in_time=in_time_apology, reschedules=len(state.reschedules),
        has_fee=rec.has_fee, paid_online=state.paid_online, paper_result=rec.paper_result, e_result=state.e_result,
        digitized=state.digitized, reused_data=state.reused_data, personal_store=state.personal_store,
        population_db=state.population_db, rated=state.rating is not None,
        satisfied=state.rating[2] if state.rating is not None else None,
        limit_working_seconds=limit_working_seconds,
        calendar=cal, config=cfg,
    )


# ---------------------------------------------------------------------------------------------------------------
# alerts and the deadline clock


def alerts_at(state: DossierState, ctx: Context) -> frozenset[Alert]:
    view = evaluate(state, ctx)
    return alerts_of(view, ctx.now) if view is not None else frozenset()


def alerts_of(view: View, now: datetime) -> frozenset[Alert]:
    out = []
    j = view.judge(now)
    if j.bucket in ("open_due_soon", "open_overdue", "ended_late"):  # the only ones whose id names the due date
        due_id = _due_id(view.judged_due_at)
        if j.bucket == "open_due_soon":
            out.append(Alert(f"{view.code}:due_soon:{due_id}", "due_soon"))
        if j.bucket == "open_overdue":
            out.append(Alert(f"{view.code}:overdue:{due_id}", "overdue"))
        if j.bucket != "open_due_soon" and not view.apology_in_time and view.end_kind not in ("stopped", "withdrawn"):
            out.append(Alert(f"{view.code}:apology_missing:{due_id}", "apology_missing"))
    if view.supplement_requests > 1:
        out.append(Alert(f"{view.code}:repeated_supplement", "repeated_supplement"))
    if view.reschedules > 1:
        out.append(Alert(f"{view.code}:second_reschedule", "second_reschedule"))
    return frozenset(out)


def alert_suffixes(code: str, alerts: frozenset[Alert]) -> tuple[str, ...]:
    """Alerts as stored with a dossier's rows: their ids without the dossier's code, which the key holds; each
    id names its kind right after the code."""
    return tuple(sorted(a.alert_id.removeprefix(code + ":") for a in alerts))


def alerts_from_suffixes(code: str, suffixes: tuple[str, ...]) -> frozenset[Alert]:
    return frozenset(Alert(f"{code}:{s}", s.split(":", 1)[0]) for s in suffixes)


def next_change_at(state: DossierState, ctx: Context, view: View | None = None) -> datetime | None:
    """The next instant after ``ctx.now`` at which this dossier's figures or alerts change with no new event.

    ``view`` is ``evaluate(state, ctx)`` when the caller already has it (the stream does, on every event).
    """
    if view is None:
        view = evaluate(state, ctx)
    if view is None or not view.is_open:
        return None
    now = ctx.now
    candidates = [next_month_start(now)]
    if view.received_at > now:  # counted from its reception on (a source whose clock is ahead of ours)
        candidates.append(view.received_at)
    supplement = view.open_supplement_at
    if supplement is not None and supplement > now:  # a request stamped ahead of our clock pauses it then
        candidates.append(supplement)
    if supplement is None or supplement > now:  # judged against its due date until a supplement pauses it
        due = view.effective_due_at(now)
        candidates.append(due + EPS)  # late from then on, even while it awaits a payment
        if not view.payment_hold:
            candidates.append(view.due_soon_at(due))  # due soon from that instant on (``deadline_state``)
        candidates.extend(end for _start, end in view.paused if end > now)  # the due date moves when one ends
    future = [c for c in candidates if c > now]
    return min(future) if future else None


def _due_id(due: datetime) -> str:
    return due.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def next_month_start(t: datetime) -> datetime:
    return _next_month_start(t)


@lru_cache(maxsize=256)  # the result depends on the instant alone; a batch of events shares one ``now``
def _next_month_start(t: datetime) -> datetime:
    local = t.astimezone(TZ)
    y, m = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(y, m, 1, tzinfo=TZ)


# ---------------------------------------------------------------------------------------------------------------
# storage

_STATE_ENCODER = msgspec.msgpack.Encoder()
_STATE_DECODER = msgspec.msgpack.Decoder(DossierState)


_SETTLED_ENCODER = msgspec.msgpack.Encoder()
_SETTLED_DECODER = msgspec.msgpack.Decoder(Settled)


def pack_settled(settled: Settled | None) -> bytes | None:
    return None if settled is None else _SETTLED_ENCODER.encode(settled)


def read_settled(packed: bytes | None) -> Settled | None:
    """The stored rows, or None if there are none or they are in a layout this code does not read (the stamp
    would not match anyway: it names the code)."""
    if packed is None:
        return None
    try:
        return _SETTLED_DECODER.decode(packed)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def encode_state(state: DossierState) -> bytes:
    return _STATE_ENCODER.encode(state)


def decode_state(raw: bytes) -> DossierState:
    return _STATE_DECODER.decode(raw)


def local_date(t: datetime) -> date:
    return t.astimezone(TZ).date()
