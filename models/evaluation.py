"""Evaluation: what a dossier's merged facts mean at an instant ``ctx.now``.

``models.dossier`` merges facts (commutative, idempotent); this module derives from them the lifecycle status, the
timeliness outcome (early / on time / late), the open state (within / due soon / overdue / awaiting), the alerts and
the next instant at which any of these can change. Rules: domain reference §2.5, §2.7, §2.8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from models.calendar import TZ, WorkCalendar
from models.config import MonitorConfig
from models.dossier import EPS, Alert, Context, DossierState

#: The states of an open dossier, as its bucket names them without ``open_`` (the read API's ``state`` filter and
#: the ``state`` label of the open-dossier counts).
OPEN_STATES = ("within", "due_soon", "overdue", "awaiting_supplement", "awaiting_payment")
#: The kinds of a dossier alert (``alerts_of``; the ``kind`` of alert records and of their counter).
ALERT_KINDS = ("due_soon", "overdue", "apology_missing", "repeated_supplement", "second_reschedule")

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


#: How far back ``subtract_working_seconds`` looks before it gives up and counts plain time.
SUBTRACT_HORIZON_DAYS = 3660


def subtract_working_seconds(cal: WorkCalendar, end: datetime, seconds: float) -> datetime:
    """The latest instant from which ``seconds`` of working time remain until ``end``: the calendar's prefix
    sums, and the day-by-day walk (``subtract_working_seconds_walk``, the reference) only where the answer would
    be further back than it looks."""
    if seconds <= 0:
        return end
    found = cal.subtract_working_seconds(end, seconds)
    if found is not None and (end - found).days < SUBTRACT_HORIZON_DAYS - 2:
        return found
    return subtract_working_seconds_walk(cal, end, seconds)


def subtract_working_seconds_walk(cal: WorkCalendar, end: datetime, seconds: float) -> datetime:
    """The reference: walk back from ``end`` through each day's working periods (at most 3,660 days, then plain
    time)."""
    if seconds <= 0:
        return end
    end = end.astimezone(TZ)
    left = seconds
    d = end.date()
    for _ in range(SUBTRACT_HORIZON_DAYS):
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
    # A stated end of processing wins over one read from processing steps (the last of them).
    processed_at = state.processed_at if state.processed_at is not None else state.step_processed_at
    ends = [(t, k) for t, k in ((processed_at, "processed"), (state.returned_at, "returned"),
                                (state.stopped_at, "stopped"), (state.withdrawn_at, "withdrawn")) if t is not None]
    # The end of processing is the first of these; "processed" is preferred over "returned" (spec §2.7).
    end_at, end_kind = (None, None)
    if processed_at is not None:
        end_at, end_kind = processed_at, "processed"
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
        # Fee-bearing if any reception said so, or once paid online (a payment made online is a fee's).
        has_fee=rec.has_fee or state.fee_declared or state.paid_online, paid_online=state.paid_online,
        paper_result=rec.paper_result, e_result=state.e_result,
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
