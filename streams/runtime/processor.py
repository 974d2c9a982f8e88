"""The bridge between the runtime and the domain core, with no runtime imports of its own.

The Faust agent hands each record's bytes and the dossier's stored bytes to ``Processor.handle`` and gets back what
to store, what to dead-letter, how the tallies move and which alerts to publish. Keeping this runtime-free means the
whole per-record decision can be tested without a broker, and the runtime could be swapped without touching it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import NamedTuple

import msgspec
from msgspec import Struct

from models import events as ev
from models.calendar import TZ, WorkCalendar
from models.config import DEFAULT_CONFIG, MonitorConfig
from models.dossier import Alert, Context, apply, decode_state, encode_state, pack_settled, read_settled
from models.evaluation import View, alert_suffixes, alerts_from_suffixes, alerts_of, evaluate, next_change_at
from models.figures import document_from_tallies
from models.index766 import Catalogue, load_catalogue
from models.tally import ContributionSum, contribution_delta, settled_of, settled_stamp

TallyKey = tuple[str, str, str]


class RecordOutcome(NamedTuple):
    """What the runtime does with one record; the defaults describe "nothing to do" (never mutate them)."""

    state: bytes | None = None
    dead_letter: tuple[str, str] | None = None
    tally_delta: dict[TallyKey, int] = {}
    alerts: list[dict] = []
    duplicate: bool = False
    late_arrival: bool = False
    event_time: datetime | None = None
    source: str | None = None
    next_check_at: datetime | None = None
    dossier_code: str | None = None
    # +1 when the record leaves a dossier holding events but no reception (not received yet, or its reception still
    # on its way), -1 when a reception ends that: the worker's onestop_dossiers_held gauge.
    held_delta: int = 0


class Restored(NamedTuple):
    """One stored dossier as a rebuild counts it."""

    tallies: dict[TallyKey, int]
    held: bool  # holds events but no reception (onestop_dossiers_held)
    next_check_at: datetime | None
    unannounced: bool  # has alerts to announce (``Processor.announce``), which the rebuild leaves for later


def _rejected(reason: str, message: str, event: ev.Event | None = None) -> RecordOutcome:
    return RecordOutcome(None, (reason, message), {}, [], False, False,
                         event.time if event else None, event.source if event else None, None,
                         event.subject if event else None)


#: Dossiers whose last evaluation the processor keeps (about 2 kB each). A dossier's next event usually finds its
#: view here, so the state before the event is not evaluated again. 0 turns the memo off.
VIEW_MEMO_SIZE = 4096


class _ViewMemo:
    """The view this processor last derived for a dossier, valid while the stored bytes, the calendar and the
    rules are the ones it was derived from (``evaluate`` reads nothing else, not even the clock)."""

    __slots__ = ("size", "_views")

    def __init__(self, size: int) -> None:
        self.size = size
        self._views: OrderedDict[str, tuple[bytes, WorkCalendar, MonitorConfig, View | None]] = OrderedDict()

    def get(self, code: str, stored: bytes, ctx: Context) -> tuple[bool, View | None]:
        hit = self._views.get(code)
        if hit is not None and hit[1] is ctx.calendar and hit[2] is ctx.config and hit[0] == stored:
            return True, hit[3]
        return False, None

    def put(self, code: str, stored: bytes, ctx: Context, view: View | None) -> None:
        if not self.size:
            return
        views = self._views
        views[code] = (stored, ctx.calendar, ctx.config, view)
        views.move_to_end(code)
        if len(views) > self.size:
            views.popitem(last=False)

    def forget(self, code: str) -> None:
        self._views.pop(code, None)


class Processor:
    def __init__(self, calendar: WorkCalendar | None = None, config: MonitorConfig = DEFAULT_CONFIG,
                 catalogue: Catalogue | None = None, view_memo_size: int = VIEW_MEMO_SIZE):
        self.calendar = calendar or WorkCalendar.default()
        # Under exactly-once outputs the alerts announced are part of the stored dossier (``DossierState.announced``,
        # committed with the alert in one transaction): see ``announce_in_state``. Otherwise they are this worker's
        # memory only, and a rebuild announces a dossier's active alerts again.
        self.announced_in_state = False
        self.config = config
        self.catalogue = catalogue or load_catalogue()
        self.unit_meta: dict[str, dict] = {}
        self._announced: dict[str, frozenset[Alert]] = {}
        self._views = _ViewMemo(view_memo_size)
        self._context: Context | None = None
        # (id, numerator terms, denominator terms) as tuples of (tally key, coefficient): models.index766.combine,
        # unrolled, because a scrape asks for these for every unit whose counts changed.
        self._terms = [(i.id, tuple(i.numerator.items()), tuple(i.denominator.items()))
                       for i in self.catalogue.indicators
                       if i.computable_from_events and i.numerator is not None and i.denominator is not None]

    def context(self, now: datetime) -> Context:
        # A batch handles its records at one instant: the same context (and its cached horizon) serves them all.
        ctx = self._context
        if ctx is None or ctx.now != now or ctx.now.tzinfo is not now.tzinfo or ctx.calendar is not self.calendar \
                or ctx.config is not self.config:
            ctx = self._context = Context(now=now, calendar=self.calendar, config=self.config)
        return ctx

    def set_calendar(self, calendar: WorkCalendar) -> None:
        """A new calendar version changes deadlines the system computed; callers rebuild tallies afterwards."""
        self.calendar = calendar

    # -- per record ---------------------------------------------------------------------------------------------

    def handle(self, value: bytes, stored: bytes | None, now: datetime, key: str | None = None) -> RecordOutcome:
        try:
            event = ev.decode_event(value)
        except ev.EventError as exc:
            return _rejected(exc.reason, exc.message)
        if key is not None and key != event.subject:
            return _rejected("key_mismatch", f"record key {key[:64]!r} differs from `$.subject` {event.subject!r}", event)
        ctx = self.context(now)
        old = decode_state(stored) if stored is not None else None
        try:
            new, effects = apply(old, event, ctx)
        except ev.EventError as exc:
            return _rejected(exc.reason, exc.message, event)
        if effects.duplicate:
            return RecordOutcome(None, None, {}, [], True, False, event.time, event.source, None, event.subject)
        old_view = None
        if old is not None:
            hit, old_view = self._views.get(event.subject, stored, ctx)
            if not hit:
                old_view = evaluate(old, ctx)
        new_view = evaluate(new, ctx)
        self._learn(new_view)
        delta = contribution_delta(new_view, old_view, now)
        next_check = next_change_at(new, ctx, new_view)
        active = alerts_of(new_view, now) if new_view is not None else frozenset()
        new.settled = (pack_settled(settled_of(new_view, now, settled_stamp(self.calendar.version, self.config),
                                               next_check, active)) if new_view is not None else None)
        fresh = event.time >= now - timedelta(seconds=self.config.alert_catch_up_seconds)
        alerts, keep = self._announce(new.code, new_view, now, fresh, active, new)
        if keep is not None:
            new.announced = keep
        if not fresh and new_view is not None and new_view.is_open:
            settle = now + timedelta(seconds=self.config.alert_settle_seconds)
            next_check = settle if next_check is None else min(next_check, settle)
        encoded = encode_state(new)
        self._views.put(event.subject, encoded, ctx, new_view)
        held_delta = (new.reception is None) - (old is not None and old.reception is None)
        return RecordOutcome(encoded, None, delta, alerts, False, effects.late_arrival, event.time,
                             event.source, next_check, event.subject, held_delta)

    def reevaluate(self, stored: bytes, prev_now: datetime, now: datetime) -> RecordOutcome:
        """The deadline clock moved from ``prev_now`` to ``now``: what changed for this dossier without an event."""
        state = decode_state(stored)
        ctx = self.context(now)
        hit, view = self._views.get(state.code, stored, ctx)
        if not hit:
            view = evaluate(state, ctx)
            self._views.put(state.code, stored, ctx, view)
        if view is None:
            return RecordOutcome(None, None, {}, [], False, False, None, None, None, state.code)
        delta = contribution_delta(view, view, now, prev_now)
        active = alerts_of(view, now)
        alerts, keep = self._announce(state.code, view, now, True, active, state)
        next_check = next_change_at(state, ctx, view)
        encoded = None if keep is None else self._restamped(state, view, ctx, next_check, active, keep)
        return RecordOutcome(encoded, None, delta, alerts, False, False, None, None, next_check, state.code)

    def _restamped(self, state, view: View, ctx: Context, next_check: datetime | None, active: frozenset[Alert],
                   announced: tuple[str, ...]) -> bytes:
        """The stored dossier with what it announced now, and its rows counted afresh at ``ctx.now`` (those it had
        held until this instant, which is why it is looked at now)."""
        state.announced = announced
        state.settled = pack_settled(settled_of(view, ctx.now, settled_stamp(self.calendar.version, self.config),
                                                next_check, active))
        encoded = encode_state(state)
        self._views.put(state.code, encoded, ctx, view)
        return encoded

    def rebuilder(self, now: datetime) -> "Rebuilder":
        """What a partition rebuild (start, restart, rebalance, new calendar) feeds every stored dossier to."""
        return Rebuilder(self, now)

    def restore(self, stored: bytes, now: datetime) -> Restored:
        """One stored dossier as a rebuild counts it."""
        rebuild = self.rebuilder(now)
        held, check, unannounced = rebuild.add(stored)
        return Restored(rebuild.tallies(), held, check, unannounced)

    def announce(self, stored: bytes, now: datetime) -> list[dict]:
        """The alerts of a rebuilt dossier that this worker has not announced yet, now marked announced."""
        return self.announce_stored(stored, now)[0]

    def announce_stored(self, stored: bytes, now: datetime) -> tuple[list[dict], bytes | None]:
        """``announce``, and the dossier to store with them marked announced (None: nothing to store, as always
        when announcements are memory only)."""
        state = decode_state(stored)
        ctx = self.context(now)
        hit, view = self._views.get(state.code, stored, ctx)
        if not hit:
            view = evaluate(state, ctx)
        if view is None:
            return [], None
        active = alerts_of(view, now)
        alerts, keep = self._announce(state.code, view, now, True, active, state)
        if keep is None:
            return alerts, None
        return alerts, self._restamped(state, view, ctx, next_change_at(state, ctx, view), active, keep)

    # -- read side ----------------------------------------------------------------------------------------------

    def dossier_view(self, stored: bytes, now: datetime) -> dict | None:
        """A dossier as the read API lists it: codes, dates and state; never anything about the applicant."""
        view = evaluate(decode_state(stored), self.context(now))
        if view is None:
            return None
        j = view.judge(now)
        return {
            "dossier_code": view.code, "unit_code": view.unit_code, "procedure_code": view.procedure_code,
            "status": view.status, "state": j.bucket.removeprefix("open_").removeprefix("ended_"),
            "open": view.is_open, "received_at": _local(view.received_at),
            "due_at": _local(view.judged_due_at), "effective_due_at": _local(view.effective_due_at(now)),
            "overdue_working_hours": round(view.overdue_working_seconds(now) / 3600, 2) if view.is_open else 0.0,
        }

    def indicator_terms(self, tallies: Mapping[str, int]) -> dict[str, tuple[float, float]]:
        """Numerator and denominator of each indicator the events can compute: ``combine`` of its coefficients."""
        get = tallies.get
        terms = {}
        for iid, num, den in self._terms:
            n = d = 0
            for key, c in num:
                n += c * get(key, 0)
            for key, c in den:
                d += c * get(key, 0)
            terms[iid] = (n, d)
        return terms

    def unit_info(self, unit_code: str) -> dict:
        return self.unit_meta.get(unit_code, {"province": None, "level": None})

    def figures(self, tallies: dict[TallyKey, int], period: str, now: datetime) -> dict:
        return document_from_tallies(tallies, self.unit_meta, period, now, self.context(now), self.catalogue)

    # -- helpers ------------------------------------------------------------------------------------------------

    def _learn(self, view: View | None) -> None:
        if view is not None:
            self._learn_unit(view.unit_code, view.province_code, view.unit_level)

    def _learn_unit(self, unit: str, province: str | None, level: str | None) -> None:
        meta = self.unit_meta.get(unit)
        if meta is None or (meta["province"] is None and province) or (meta["level"] is None and level):
            self.unit_meta[unit] = {"province": (meta or {}).get("province") or province,
                                    "level": (meta or {}).get("level") or level}

    def _announce(self, code: str, view: View | None, now: datetime, fresh: bool,
                  active: frozenset[Alert] | None = None, state=None) -> tuple[list[dict], tuple[str, ...] | None]:
        """Alerts to publish now: those active (``alerts_of``, unless the caller has them) and not yet announced
        (ids are stable, so a re-announcement after a restart or a rebalance is harmless to consumers that
        de-duplicate), and the announced alerts to store with the dossier ``state`` when they are kept in it and
        changed (else None: nothing to store for them).

        With ``announced_in_state`` what was announced is read from the stored dossier and written back with it, in
        the transaction that publishes the alert, and an id stays there once announced (a dossier's overdue alert
        that a pause ended and the end of the pause brought back, same due date and so same id, was announced
        twice otherwise); otherwise it is this worker's memory (``keep_announced_in``), which forgets an alert no
        longer active."""
        if active is None:
            active = alerts_of(view, now) if view is not None else frozenset()
        in_state = self.announced_in_state and state is not None
        if in_state:
            announced = alerts_from_suffixes(code, state.announced) if state.announced else frozenset()
        else:
            announced = self._announced.get(code, frozenset())
        if in_state:  # an id once announced stays announced: never published twice, even if its condition comes back
            new, keep = (sorted(active - announced), announced | active) if fresh else ([], announced)
        elif fresh:
            new, keep = sorted(active - announced), active
        else:
            new, keep = [], announced & active
        stored = None
        if keep != announced:  # most events change nothing here: no write
            if in_state:
                stored = tuple(sorted(alert_suffixes(code, keep)))
            elif keep:
                self._announced[code] = keep
            else:
                self._announced.pop(code, None)
        return [self._alert_record(a, view, now) for a in new], stored

    def keep_announced_in(self, store) -> None:
        """Remember announced alerts in ``store`` (``get``, ``__setitem__`` and ``pop`` as a dict's) instead of a
        dictionary: the runtime gives a ``streams.runtime.stored_schedule.StoredAnnouncements`` before it owns a
        partition, to keep them off the Python heap."""
        self._announced = store

    def forget(self, codes) -> None:
        """Drop the announcement memory of dossiers whose partition this worker no longer owns."""
        for c in codes:
            self._announced.pop(c, None)
            self._views.forget(c)

    @staticmethod
    def _alert_record(alert: Alert, view: View, now: datetime) -> dict:
        return {
            "alert_id": alert.alert_id, "kind": alert.kind, "dossier_code": view.code, "unit_code": view.unit_code,
            "province_code": view.province_code, "unit_level": view.unit_level, "procedure_code": view.procedure_code,
            "due_at": _local(view.judged_due_at), "effective_due_at": _local(view.effective_due_at(now)),
            "raised_at": _local(now),
            "overdue_working_hours": round(view.overdue_working_seconds(now) / 3600, 2),
        }


def _local(t: datetime) -> str:
    """Times shown to operators are Vietnam time, whatever offset the state was stored with."""
    return t.astimezone(TZ).isoformat()


def default_processor() -> Processor:
    return Processor()


class _SettledOnly(Struct):
    """A stored dossier read for its settled rows and its code alone: msgspec skips every other field unread."""

    code: str
    settled: bytes | None = None
    announced: tuple[str, ...] = ()


_SETTLED_ONLY = msgspec.msgpack.Decoder(_SettledOnly)


class Rebuilder:
    """Rebuilds one partition's tallies and deadline schedule from its stored dossiers, each decoded and
    evaluated once; the tallies are summed as counts of identical rows (``ContributionSum``) and read at the end.
    A rebuild visits every dossier the worker holds, so this loop is most of the time to exact figures after a
    restart (bench/rebuild_cost.py)."""

    __slots__ = ("_processor", "_now", "_ctx", "_sum", "_catch_up", "_stamp", "settled", "standing")

    def __init__(self, processor: Processor, now: datetime) -> None:
        self._processor, self._now, self._ctx = processor, now, processor.context(now)
        self._sum = ContributionSum()
        self._catch_up = now - timedelta(seconds=processor.config.alert_catch_up_seconds)
        self._stamp = settled_stamp(processor.calendar.version, processor.config)
        self.settled = 0  # ended dossiers counted from their stored Settled rows, without evaluating them
        self.standing = 0  # open ones counted so, their rows still valid at ``now``

    def add(self, stored: bytes) -> tuple[bool, datetime | None, bool]:
        """Count one dossier; returns (held: events but no reception, when the clock must look at it next,
        whether it has alerts to announce).

        An open dossier with an alert this worker has not announced is to be announced, so deadlines crossed while
        no worker owned the partition are still announced (ids are stable, so consumers de-duplicate a
        re-announcement); the runtime does that in bounded chunks after each clock tick's own work, because after
        a restart there can be tens of thousands (29 k at 41 k simulated dossiers) and announcing them all in the
        first tick held the next overdue alert for 6-10 s. So is one that ended within ``alert_catch_up_seconds``:
        its alert may have died with a crashed worker after the state was written. Older ended dossiers are not: a
        late one keeps its ``apology_missing`` alert active for good, and every restart announced all of them
        again.

        An ended dossier stored with its ``Settled`` rows under this worker's stamp, and ended before the catch-up
        window, is counted from those rows alone (~7 µs instead of ~60-100: bench/rebuild_cost.py): nothing about it
        can change or be announced. So is an open one whose rows were counted at or before ``now`` and hold until
        after it: neither its figures nor its alerts change before ``valid_until``, which is therefore when the clock
        must look at it next, and its alerts are stored with the rows, so what is still to be announced is known
        without evaluating it. After a restart that is most open dossiers; those the clock moved since their last
        event (a due date crossed, a month begun) are evaluated."""
        only = _SETTLED_ONLY.decode(stored)
        settled = read_settled(only.settled)
        if settled is not None and settled.stamp == self._stamp and (
                settled.ended_at < self._catch_up if settled.ended_at is not None
                else settled.counted_at <= self._now < settled.valid_until):
            self._processor._learn_unit(settled.unit_code, settled.province_code, settled.unit_level)
            self._sum.add_settled(settled)
            if settled.ended_at is None:
                self.standing += 1
                if settled.alerts:
                    announced = self._announced(only.code, only.announced)
                    alerts = alerts_from_suffixes(only.code, settled.alerts)
                    return False, settled.valid_until, not announced.issuperset(alerts)
            else:
                self.settled += 1
            return False, settled.valid_until, False
        state = decode_state(stored)
        if state.reception is None:  # holds events but no reception: counted in no figure, checked by no clock
            return True, None, False
        processor, now = self._processor, self._now
        view = evaluate(state, self._ctx)
        processor._learn(view)
        self._sum.add(view, now)
        recent = view.end_at is None or view.end_at >= self._catch_up
        unannounced = recent and bool(alerts_of(view, now) - self._announced(state.code, state.announced))
        return False, next_change_at(state, self._ctx, view), unannounced

    def _announced(self, code: str, stored: tuple[str, ...]) -> frozenset[Alert]:
        """What was announced for the dossier: stored with it under exactly-once outputs, else this worker's memory."""
        if self._processor.announced_in_state:
            return alerts_from_suffixes(code, stored) if stored else frozenset()
        return self._processor._announced.get(code, frozenset())

    def tallies(self) -> dict[TallyKey, int]:
        return self._sum.totals()
