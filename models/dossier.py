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
from dataclasses import dataclass
from functools import cached_property
from datetime import date, datetime, timedelta
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


class DossierState(Struct, omit_defaults=True):
    """A dossier's facts, merged. Stored as a msgpack map without the fields still at their default (most are,
    for most dossiers): a fifth fewer bytes in the table and the changelog; older states, written with every
    field, read the same."""

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
    # Any reception of the dossier said it bears a fee. A fact that only grows: senders of full snapshots (DVCQG
    # sync) state the fee once it is known, so receptions of one dossier may differ in it (only one is kept).
    fee_declared: bool = False
    withdrawal_requested_at: datetime | None = None
    withdrawn_at: datetime | None = None
    stopped_at: datetime | None = None
    processed_at: datetime | None = None
    # The latest ``processed`` read from a processing step (``from_step``): the end of processing only while no
    # end was stated as a date of its own (``processed_at``), since a sender may mark an intermediate step done.
    step_processed_at: datetime | None = None
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
    # Derived, not a fact: the alerts already published for this dossier, as alert id suffixes (the id without the
    # dossier code, as in ``Settled.alerts``). Set by the stream processor under exactly-once outputs, where it is
    # committed in the same transaction as the alert itself, so a rebuild never announces one again; empty otherwise.
    announced: tuple[str, ...] = ()


@dataclass(frozen=True)
class Context:
    """Everything ``apply`` and ``evaluate`` need besides the state. ``now`` is injected, never read from a clock."""

    now: datetime
    calendar: WorkCalendar
    config: MonitorConfig = DEFAULT_CONFIG

    def at(self, now: datetime) -> "Context":
        return Context(now=now, calendar=self.calendar, config=self.config)

    @cached_property
    def horizon(self) -> datetime:
        """The latest instant an event may state: ``now`` plus the clock skew the rules tolerate."""
        return self.now + timedelta(seconds=self.config.future_tolerance_seconds)


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
    instant = _event_instant(event)
    _check_timeline(state, event, instant)
    horizon = ctx.horizon
    if event.time > horizon:
        raise ev.EventError("future_event", f"`$.time` {event.time.isoformat()} is in the future")
    if instant is not event.time and instant > horizon:
        raise ev.EventError("future_event", f"the {event.kind} step is dated in the future ({instant.isoformat()})")

    new = msgspec.structs.replace(state, seen={**state.seen, kd: event.digest})
    _merge(new, event, kd, ctx)
    late = state.last_event_time is not None and event.time < state.last_event_time
    if new.last_event_time is None or event.time > new.last_event_time:
        new.last_event_time = event.time
    return new, Effects(False, late)


def _event_instant(event: ev.Event) -> datetime:
    """The moment the step happened, as the payload states it (the envelope time when the payload has none)."""
    t = _INSTANT_OF[type(event.data)](event.data)
    return event.time if t is None else t


_STEP_TIME_FIELDS = ("processing_ended_at", "returned_at", "withdrawn_at", "stopped_at", "paid_at", "refused_at")


def _instant_reader(cls: type):
    """How to read the step's own time from a payload of this class (None: the envelope's time), decided once per
    class: the first of ``_STEP_TIME_FIELDS`` it has, a supplement's or an apology's time, else nothing. A
    snapshot states many steps, so it has no single one."""
    if cls is ev.SupplementRequested:
        return lambda d: d.supplement.requested_at
    if cls is ev.SupplementReceived:
        return lambda d: d.supplement.completed_at
    if cls is ev.DueRescheduled:
        return lambda d: d.apology.issued_at
    names = () if issubclass(cls, ev.Snapshot) else tuple(n for n in _STEP_TIME_FIELDS if n in cls.__struct_fields__)
    if not names:
        return lambda d: None

    def first_stated(d):
        for name in names:
            t = getattr(d, name)
            if t is not None:
                return t
        return None
    return first_stated


class _InstantReaders(dict):
    def __missing__(self, cls: type):
        reader = self[cls] = _instant_reader(cls)
        return reader


_INSTANT_OF = _InstantReaders()


def _check_timeline(state: DossierState, event: ev.Event, instant: datetime) -> None:
    """Refuse steps that cannot have happened: a step of the handling dated before the dossier was received."""
    tol = ev.TIMELINE_TOLERANCE
    rec = state.reception
    if event.kind in POST_RECEPTION and rec is not None:
        t = instant
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
    times = [t for t in (state.processed_at, state.step_processed_at, state.returned_at, state.stopped_at,
                         state.withdrawn_at, state.withdrawal_requested_at) if t is not None]
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
        if d.from_step:  # the last step counts (the latest, whatever the order), a stated end the earliest
            t = d.processing_ended_at
            s.step_processed_at = t if s.step_processed_at is None else max(s.step_processed_at, t)
        else:
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
    s.fee_declared = s.fee_declared or d.has_fee
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
