"""The worker's runtime: applies each batch of events to the dossier table, runs the deadline clock and sends
alerts and dead letters.

Everything that mutates state is synchronous; sends happen afterwards, so each record's (or tick's) change is
atomic on the one event loop. Tallies are never persisted: rebuilt from the table on every assignment
(``streams.runtime.partitions``), so a restart or a rebalance cannot double-count.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import faust


from streams.runtime.clock import Clock
from streams.runtime.heap import HeapPolicy
from streams.runtime.journal import WriteJournal
from streams.runtime.processor import RecordOutcome  # the runtime's own rejections take the same shape
from streams.runtime.tallies import PipelineHealth, TallyBook, merge
from streams.runtime.settings import WorkerSettings
from streams.runtime.stored_schedule import StoredAnnouncements, announcements_path, clear_abandoned


from streams.runtime.partitions import SCHEDULE_DIR, OwnedPartitions, PartitionState, _decode_key
from streams.runtime.transactions import TransactionalPath, Transactions

#: A scan of the table (``Runtime.views``) yields to the loop after this much work, checking the time every
#: ``SCAN_CHECK_EVERY`` dossiers.
SCAN_SLICE_SECONDS = 0.02
SCAN_CHECK_EVERY = 50

__all__ = ["DLQ_MAX_KEY_BYTES", "DLQ_MAX_VALUE_BYTES", "Runtime", "encode_alert"]

log = logging.getLogger(__name__)

MAX_HEADER_CHARS = 1000
#: Largest key and value copied into the DLQ. Faust's producer refuses records over 1,000,000 bytes, and a refused
#: send crashed the agent, which then acked the record: it was in neither the table nor the DLQ. The broker accepts
#: records up to ~1 MiB, so a hostile record near that size needs its copy cut (the header keeps the full size).
DLQ_MAX_VALUE_BYTES = 900 * 1024
DLQ_MAX_KEY_BYTES = 1024
#: Rebuilt dossiers whose unannounced alerts one clock tick announces, per partition, after the tick's own
#: deadlines: ~0.3 ms each (evaluation and send), so a restart's backlog never holds a new alert for long.
ANNOUNCE_PER_TICK = 1000


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__} in an alert")


def encode_alert(alert: dict) -> bytes:
    return json.dumps(alert, default=_json_default, ensure_ascii=False, separators=(",", ":")).encode()



class Runtime(TransactionalPath, OwnedPartitions):
    """Owned partitions' derived state plus the operations the agent, the timer and the web views share.

    Everything that mutates state is synchronous; sends happen afterwards. On one event loop that makes each
    record's (or each tick's) state change atomic with respect to the others.
    """

    def __init__(self, settings: WorkerSettings, processor: Any, clock: Clock) -> None:
        self.settings = settings
        self.processor = processor
        self.clock = clock
        self.health = PipelineHealth()
        self.partitions: dict[int, PartitionState] = {}
        self.ready = False
        # The process's garbage-collector policy: off here, set by the worker process (streams.worker.run_worker)
        # and not by the tests and tools that run a runtime inside their own process.
        self.heap = HeapPolicy(0, 0)
        # Records the agent was handed, rejected ones included: the stall watchdog's sign of life.
        self.records_received = 0
        self.generation = 0
        # Owned partitions whose table recovery is writing changelog records into: rebuilt once it is done.
        self._restoring: set[int] = set()
        # Source offsets whose records this worker has fully handled (state written, alerts and dead letters sent)
        # and not yet seen committed, per partition: the commit guard (streams.compat.repairs.guard_source_gaps) commits
        # only up to the first offset missing from here, whatever Faust's acks say.
        self.applied: dict[int, set[int]] = {}
        self.rebuild_seconds = 0.0
        self.app: faust.App | None = None
        self.table: Any = None
        self._fast_store: bool | None = None
        self.dlq_topic: Any = None
        self.alerts_topic: Any = None
        self._track_keys = settings.store == "memory"
        # Open dossiers' next checks off the Python heap (streams.runtime.stored_schedule) when the table is in RocksDB.
        self.schedule_dir: Path | None = None
        if settings.store == "rocksdb" and settings.schedule_store == "rocksdb":
            self.schedule_dir = settings.data_dir / SCHEDULE_DIR
            for path in clear_abandoned(self.schedule_dir):
                log.info("removed the deadline schedule %s of a process that is gone", path.name)
        self._schedule_serial = itertools.count(1)
        # ... and so is the processor's memory of the alerts it announced, one entry per alerting dossier.
        self.announcements: StoredAnnouncements | None = None
        keep_announced_in = getattr(processor, "keep_announced_in", None)
        if self.schedule_dir is not None and keep_announced_in is not None:
            self.announcements = StoredAnnouncements(
                announcements_path(self.schedule_dir, next(self._schedule_serial)))
            keep_announced_in(self.announcements)
        # Dossiers written locally whose changelog records may not be on the broker yet (streams.runtime.journal); only a
        # store that outlives the process needs it. ``hold_changelog`` is the test endpoint's simulated crash
        # window: states are written locally, their changelog records are kept back and the journal not released.
        self.journal: WriteJournal | None = None
        self.hold_changelog = False
        self._checkpointing = False
        self._journal_stuck = False
        # The last changelog record sent per partition since the journal's last rotation (direct table path):
        # records of one partition are acknowledged in order, so once these are, every earlier one is.
        self._last_changelog: dict[int, Any] = {}
        # Exactly-once outputs (streams.runtime.transactions): set up by ``use_transactions``; None runs at least once.
        self.txn: Transactions | None = None
        self._staged: dict[int, dict[str, bytes]] = {}  # per partition: dossiers written by the open transaction
        # The processor may check the record key against the event's subject; older ones take no key.
        try:
            self._handle_takes_key = "key" in inspect.signature(processor.handle).parameters
        except (TypeError, ValueError):
            self._handle_takes_key = False

    def use_transactions(self, client_config: dict[str, Any], changelog_topic: str) -> None:
        """Write every output in transactions from now on (before the worker starts)."""
        self.txn = Transactions(self.settings, client_config, changelog_topic)
        if hasattr(self.processor, "announced_in_state"):
            self.processor.announced_in_state = True

    async def on_recovered(self, owned: set[int]) -> None:
        if self.txn is not None:
            async with self.txn.lock:
                self.txn.fenced &= owned  # a partition assigned again is ours again, until fenced
                self.txn.broken &= owned
                for p in set(self.txn.before_failure) - self.txn.broken:
                    del self.txn.before_failure[p]
                await self.txn.release(set(self.txn.producers) - owned)
                for p in sorted(owned):
                    try:
                        await self.txn.own({p})
                        await self.txn.load_committed({p})
                    except Exception as exc:  # the broker away: the partition waits, batches and ticks try again
                        log.warning("partition %s: could not start its transactional producer (%r)", p, exc)
                        await self.txn.release({p})
                        self.txn.broken.add(p)
                await super().on_recovered(owned)
            return
        await super().on_recovered(owned)

    # -- read side (metrics, read API) --------------------------------------------------------------------------
    def tally_books(self) -> list[TallyBook]:
        return [s.tallies for s in self.partitions.values()]

    def all_tallies(self) -> dict:
        return merge(self.tally_books())

    def stats(self) -> dict[str, float]:
        return {
            "partitions": len(self.partitions),
            "ready": 1.0 if self.ready else 0.0,
            "dossiers": sum(s.dossiers for s in self.partitions.values()),
            "held": sum(s.held for s in self.partitions.values()),
            "pending_checks": sum(len(s.schedule) for s in self.partitions.values()),
            "rebuild_seconds": self.rebuild_seconds,
        }

    def now(self) -> datetime:
        return self.clock.now()

    async def views(self, keep: Any, make: Any = None) -> list[Any]:
        """``processor.dossier_view`` (or ``make(stored, now)``) of every owned dossier for which ``keep(view)`` is
        true.

        Scans the table (RocksDB iterators read a snapshot, the memory store a copied key list), yielding to the
        loop after every ``SCAN_SLICE_SECONDS`` of work so a large scan never stalls the agent or heartbeats for
        longer, however much ``make`` costs per dossier (2,000 dossiers of the at-risk scan took ~130 ms).
        """
        now = self.now()
        dossier_view = make or self.processor.dossier_view
        out: list[dict] = []
        n = 0
        slice_began = time.monotonic()
        for p in sorted(self.partitions):
            state = self.partitions.get(p)
            if state is None:
                continue
            for _code, stored in self._iter_partition(p, state):
                view = dossier_view(stored, now)
                if view is not None and keep(view):
                    out.append(view)
                n += 1
                if n % SCAN_CHECK_EVERY == 0 and time.monotonic() - slice_began >= SCAN_SLICE_SECONDS:
                    await asyncio.sleep(0)
                    slice_began = time.monotonic()
        return out

    # -- the deadline clock ------------------------------------------------------------------------------------
    def _advance(self, state: PartitionState, now: datetime, alerts: list[dict]) -> datetime:
        """Re-evaluate the partition's due dossiers up to ``now``; returns the partition's new evaluation time."""
        schedule = state.schedule
        prev = schedule.evaluated_at
        if now <= prev:
            return prev  # time never runs backwards for a partition
        for code in schedule.pop_due(now):
            stored = self._get(state.partition, code)
            if stored is None:
                continue
            try:
                outcome = self.processor.reevaluate(stored, prev, now)
            except Exception:
                log.exception("reevaluate failed in partition %s; dossier left unscheduled", state.partition)
                self.health.reject("reevaluate_error")
                continue
            self._apply(state, code, outcome, existed=True, alerts=alerts, reschedule=True)
        schedule.evaluated_at = now
        return now

    async def tick(self) -> None:
        """Timer body: bring every owned partition to the clock's now and publish the resulting alerts."""
        if not self.ready:
            return
        self.heap.tick()
        if self.txn is not None:
            await self._tick_in_transactions()
            return
        now = self.now()
        alerts: list[dict] = []
        for state in list(self.partitions.values()):
            self._advance(state, now, alerts)
        for state in list(self.partitions.values()):  # after every partition's own deadlines: those come first
            self._announce_rebuilt(state, now, alerts)
        await self._send_alerts(alerts)

    def _announce_rebuilt(self, state: PartitionState, now: datetime, alerts: list[dict]) -> None:
        """Announce up to ``ANNOUNCE_PER_TICK`` of the alerts a rebuild found unannounced (see ``Rebuilder.add``)."""
        backlog = state.unannounced
        for _ in range(min(len(backlog), ANNOUNCE_PER_TICK)):
            code = backlog.popleft()
            stored = self._get(state.partition, code)
            if stored is None:
                continue
            announce_stored = getattr(self.processor, "announce_stored", None) if self.txn is not None else None
            if announce_stored is None:  # memory only (at least once, or a processor that keeps nothing stored)
                alerts.extend(self.processor.announce(stored, now))
                continue
            announced, new = announce_stored(stored, now)
            alerts.extend(announced)
            if new is not None:  # marked announced in the same transaction as the alerts
                self._put(state.partition, state, code, new, True)

    # -- the agent ---------------------------------------------------------------------------------------------
    def _apply(self, state: PartitionState, code: str, outcome: Any, *, existed: bool, alerts: list[dict],
               reschedule: bool, store: bool = True) -> None:
        if outcome.state is not None and store:
            self._put(state.partition, state, code, outcome.state, existed)
        state.held += getattr(outcome, "held_delta", 0)  # processors built on an older outcome shape have none
        if outcome.tally_delta:
            state.tallies.add(outcome.tally_delta)
        if outcome.alerts:
            alerts.extend(outcome.alerts)
        # An unchanged state (a duplicate, say) keeps its pending check: its None means "nothing new", not "never".
        if reschedule or outcome.state is not None or outcome.next_check_at is not None:
            state.schedule.schedule(code, outcome.next_check_at)

    def _run_processor(self, msg: Any, code: str, value: Any, stored: Any, now: datetime) -> RecordOutcome:
        """One record through the processor, on every path; a processor bug on one record must not stop the
        partition, so it becomes a dead letter with the exception as its reason."""
        try:
            if self._handle_takes_key:
                return self.processor.handle(value, stored, now, key=code)
            return self.processor.handle(value, stored, now)
        except Exception as exc:
            log.exception("processor.handle failed at %s[%s]@%s", msg.topic, msg.partition, msg.offset)
            return RecordOutcome(dead_letter=("processor_error", f"{type(exc).__name__}: {exc}"))

    async def on_event(self, event: Any) -> None:
        if self.txn is not None:
            await self._on_events_in_transactions([event])
            return
        self.records_received += 1
        generation = self.generation
        msg = event.message
        partition = msg.partition
        raw_key, value = event.key, event.value
        code = _decode_key(raw_key)
        if code is None:
            await self._dead_letter(msg, raw_key, value, "missing_key", "record has no UTF-8 dossier code as key")
            self._handled(generation, msg)
            return
        if value is None:
            await self._dead_letter(msg, raw_key, value, "missing_value", "record has no value (tombstone)")
            self._handled(generation, msg)
            return
        state = await self._ensure_partition(partition)
        if state is None:
            return
        alerts: list[dict] = []
        now = self._advance(state, self.now(), alerts)
        stored = self._get(partition, code)
        outcome = self._run_processor(msg, code, value, stored, now)
        if outcome.dead_letter is None:
            self._apply(state, code, outcome, existed=stored is not None, alerts=alerts, reschedule=False)
            self.health.record(source=outcome.source, event_time=outcome.event_time, now=now,
                               duplicate=outcome.duplicate, late=outcome.late_arrival)
        await self._send_alerts(alerts)
        if outcome.dead_letter is not None:
            reason, message = outcome.dead_letter
            await self._dead_letter(msg, raw_key, value, reason, message)
        self._handled(generation, msg)

    async def on_events(self, events: list[Any]) -> None:
        """A batch of records: the same per-record decisions as ``on_event``, in the same order.

        Differences are only in cost: the clock is read once, each partition's deadline clock advanced once, a
        dossier touched several times is read once and written once (its last state: the changelog is compacted
        by key, so intermediate states were never needed), and alerts and dead letters go out after the batch.
        Nothing awaits between the first state change and the last table write, so the timer, the web views and
        rebalance callbacks never see a half-applied batch.
        """
        if self.txn is not None:
            await self._on_events_in_transactions(events)
            return
        self.records_received += len(events)
        generation = self.generation
        owned: dict[int, PartitionState | None] = {}
        for event in events:
            p = event.message.partition
            if p not in owned:
                owned[p] = await self._ensure_partition(p)
        clock_now = self.now()
        alerts: list[dict] = []
        dead: list[tuple] = []
        nows: dict[int, datetime] = {}
        # (partition, code) -> [latest state bytes, existed before the batch, changed in the batch]
        pending: dict[tuple[int, str], list] = {}
        health = self.health
        handled: list[Any] = []  # records applied or dead-lettered here, not left to another owner
        for event in events:
            msg = event.message
            partition = msg.partition
            raw_key, value = event.key, event.value
            code = _decode_key(raw_key)
            state = owned[partition]
            if state is not None or code is None or value is None:
                handled.append(msg)
            if code is None:
                dead.append((msg, raw_key, value, "missing_key", "record has no UTF-8 dossier code as key"))
                continue
            if value is None:
                dead.append((msg, raw_key, value, "missing_value", "record has no value (tombstone)"))
                continue
            if state is None:
                continue
            now = nows.get(partition)
            if now is None:
                now = nows[partition] = self._advance(state, clock_now, alerts)
            slot = pending.get((partition, code))
            if slot is None:
                stored = self._get(partition, code)
                slot = pending[(partition, code)] = [stored, stored is not None, False]
            outcome = self._run_processor(msg, code, value, slot[0], now)
            if outcome.dead_letter is None:
                if outcome.state is not None:
                    slot[0] = outcome.state
                    slot[2] = True
                self._apply(state, code, outcome, existed=slot[1], alerts=alerts, reschedule=False, store=False)
                health.record(source=outcome.source, event_time=outcome.event_time, now=now,
                              duplicate=outcome.duplicate, late=outcome.late_arrival)
            else:
                reason, message = outcome.dead_letter
                dead.append((msg, raw_key, value, reason, message))
        writes = [(key, slot) for key, slot in pending.items() if slot[2] and owned[key[0]] is not None]
        if self.journal is not None and writes:
            self.journal.record(key for key, _ in writes)  # before the table: see streams.runtime.journal
        for (partition, code), (stored, existed, _changed) in writes:
            self._put(partition, owned[partition], code, stored, existed, journaled=True)
        # Count the refusals with the batch's other counters, before the first await: a scrape must never see a
        # batch's records as processed and its refusals not yet counted.
        for record in dead:
            health.reject(record[3])
        await self._send_alerts(alerts)
        for record in dead:
            await self._dead_letter(*record, counted=True)
        if generation != self.generation:
            return  # a rebalance came in between: these records are read again from the committed offsets
        for msg in handled:
            self.applied_offsets(msg.partition).add(msg.offset)

    # -- output topics -----------------------------------------------------------------------------------------
    async def _dead_letter(self, msg: Any, key: bytes | None, value: bytes | None, reason: str, error: str, *,
                           counted: bool = False) -> None:
        if not counted:
            self.health.reject(reason)
        key, value, headers = self._dead_letter_parts(msg, key, value, reason, error)
        # force=True: produce now rather than at commit time; a duplicate in the DLQ after a crash is harmless,
        # a lost one is not.
        await self.dlq_topic.send(key=key, value=value, headers=headers, force=True)

    @staticmethod
    def _dead_letter_parts(msg: Any, key: bytes | None, value: bytes | None, reason: str,
                           error: str) -> tuple[bytes | None, bytes | None, dict[str, bytes]]:
        """A dead letter's key, value and headers: the record's own bytes (cut to fit a Kafka record) and where it
        came from, why it was refused; nothing else about it."""
        headers = {
            "x-reason": reason.encode(),
            "x-error": str(error)[:MAX_HEADER_CHARS].encode(),
            "x-source-topic": str(msg.topic).encode(),
            "x-source-partition": str(msg.partition).encode(),
            "x-source-offset": str(msg.offset).encode(),
        }
        if value is not None and len(value) > DLQ_MAX_VALUE_BYTES:
            headers["x-truncated-value-bytes"] = str(len(value)).encode()
            value = value[:DLQ_MAX_VALUE_BYTES]
        if key is not None and len(key) > DLQ_MAX_KEY_BYTES:
            headers["x-truncated-key-bytes"] = str(len(key)).encode()
            key = key[:DLQ_MAX_KEY_BYTES]
        return key, value, headers

    async def _send_alerts(self, alerts: list[dict]) -> None:
        for alert in alerts:
            alert_id = str(alert.get("alert_id") or "")
            self.health.alert(alert.get("kind"))
            await self.alerts_topic.send(key=alert_id.encode() or None, value=encode_alert(alert), force=True)


