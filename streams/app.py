"""The Faust application: dossier table, the agent on the events topic, the deadline timer and rebalance hooks.

The domain logic lives behind the processor interface (streams.processor); this module only moves bytes
between Kafka, the changelog-backed table and the derived state (tallies in memory; deadline schedules in scratch
RocksDB databases with the RocksDB store, in memory with the memory store).

Tallies are never persisted. On every assignment they are rebuilt from the recovered table, and dropped on
revocation, so a restart or a rebalance cannot double-count: the table is the one source of truth.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import os
import time
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
from faust.streams import _current_event, current_event

try:
    from orjson import dumps as _orjson_dumps
except ImportError:  # pragma: no cover - without orjson the key probe fails and Faust's table does the encoding
    def _orjson_dumps(obj: Any) -> bytes:
        return json.dumps(obj).encode()

from .clock import Clock, DeadlineSchedule
from .journal import WriteJournal
from .processor import RecordOutcome  # the runtime's own rejections take the same shape
from .metrics import PipelineHealth, TallyBook, merge
from .repairs import (install_closed_transport_repair, install_complete_buffer_flush,
                      guard_source_gaps, rebuild_partitions_ahead_of_changelog, watch_stalled_source)
from .pacing import install_empty_fetch_pause
from .security import faust_broker_settings, kafka_client_config
from .settings import WorkerSettings
from .stored_schedule import StoredAnnouncements, StoredSchedule, announcements_path, clear_abandoned, schedule_path

__all__ = ["build_app", "Runtime", "PartitionState"]

log = logging.getLogger(__name__)

#: Yield to the event loop every so many dossiers while scanning a partition, so heartbeats and web requests
#: keep flowing during a rebuild of millions of dossiers.
SCAN_YIELD_EVERY = 2000
MAX_HEADER_CHARS = 1000
#: Records handed to the runtime at once (``stream.take_events``), and how long a partial batch may wait. A batch
#: reads the clock once, writes each touched dossier once and sends its alerts together, which removes part of
#: the per-record overhead that kept the worker at a few hundred events/s (docs/benchmarks.md). A partial batch
#: adds at most 20 ms to produce-to-/metrics latency (50 ms gave a p99 0.2-0.4 s higher at 1,000 ev/s,
#: docs/benchmarks.md). ONESTOP_BATCH_MAX=1 restores one record at a time.
BATCH_MAX = int(os.environ.get("ONESTOP_BATCH_MAX", "1000"))
BATCH_WITHIN = float(os.environ.get("ONESTOP_BATCH_WITHIN", "0.02"))
#: Linger of Faust's producer (changelog, alerts, DLQ) unless PRODUCER_LINGER is set: with Faust's default of 0
#: every changelog record became its own produce request and the producer buffer stalled the agent.
PRODUCER_LINGER_SECONDS = 0.02
#: Largest key and value copied into the DLQ. Faust's producer refuses records over 1,000,000 bytes, and a refused
#: send crashed the agent, which then acked the record: it was in neither the table nor the DLQ. The broker accepts
#: records up to ~1 MiB, so a hostile record near that size needs its copy cut (the header keeps the full size).
DLQ_MAX_VALUE_BYTES = 900 * 1024
DLQ_MAX_KEY_BYTES = 1024
#: Where the write journal lives in the data directory (outside Faust's table directory, which a discard removes),
#: and how often its confirmed entries are released: a crash repairs at most this many seconds of writes, plus
#: whatever the producer had not sent.
JOURNAL_DIR = "write-journal"
#: Where the partitions' deadline schedules live in the data directory (streams.stored_schedule): scratch
#: databases, rebuilt from the table with the partition, never read back after a restart.
SCHEDULE_DIR = "schedules"
JOURNAL_CHECKPOINT_SECONDS = float(os.environ.get("ONESTOP_JOURNAL_CHECKPOINT_SECONDS", "5"))
#: Rebuilt dossiers whose unannounced alerts one clock tick announces, per partition, after the tick's own
#: deadlines: ~0.3 ms each (evaluation and send), so a restart's backlog never holds a new alert for long.
ANNOUNCE_PER_TICK = 1000


class PartitionState:
    """Derived state of one owned partition of the events topic."""

    __slots__ = ("partition", "tallies", "schedule", "keys", "dossiers", "held", "unannounced")

    def __init__(self, partition: int, now: datetime, track_keys: bool, schedule: Any = None) -> None:
        self.partition = partition
        self.tallies = TallyBook()
        # A DeadlineSchedule, or a StoredSchedule (same methods) that the runtime closes with the partition.
        self.schedule = DeadlineSchedule(now) if schedule is None else schedule
        # Only the in-memory store needs our own key index (it does not record which partition a key written
        # by the agent belongs to); RocksDB keeps one database per partition, which we scan directly.
        self.keys: set[str] | None = set() if track_keys else None
        self.dossiers = 0
        self.held = 0  # dossiers holding events but no reception
        # Rebuilt dossiers with alerts this worker has not announced, drained a chunk per clock tick.
        self.unannounced: deque[str] = deque()

    def count_restored(self, code: str, rebuild: Any, stored: bytes) -> None:
        """One stored dossier into a partition being rebuilt (its tallies are summed by ``rebuild``)."""
        held, check, unannounced = rebuild.add(stored)
        self.held += held
        if check is not None:  # a rebuild starts from an empty schedule and meets each code once
            self.schedule.load(code, check)
        if unannounced:
            self.unannounced.append(code)


class _StandIn:
    """Minimal stand-in for a Faust event, carrying only the partition a table write or read belongs to."""

    def __init__(self, topic: str, partition: int) -> None:
        self.message = SimpleNamespace(topic=topic, partition=partition)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__} in an alert")


def encode_alert(alert: dict) -> bytes:
    return json.dumps(alert, default=_json_default, ensure_ascii=False, separators=(",", ":")).encode()


class Runtime:
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
        # Records the agent was handed, rejected ones included: the stall watchdog's sign of life.
        self.records_received = 0
        self.generation = 0
        # Owned partitions whose table recovery is writing changelog records into: rebuilt once it is done.
        self._restoring: set[int] = set()
        # Source offsets whose records this worker has fully handled (state written, alerts and dead letters sent)
        # and not yet seen committed, per partition: the commit guard (streams.repairs.guard_source_gaps) commits
        # only up to the first offset missing from here, whatever Faust's acks say.
        self.applied: dict[int, set[int]] = {}
        self.rebuild_seconds = 0.0
        self.app: faust.App | None = None
        self.table: Any = None
        self._fast_store: bool | None = None
        self.dlq_topic: Any = None
        self.alerts_topic: Any = None
        self._track_keys = settings.store == "memory"
        # Open dossiers' next checks off the Python heap (streams.stored_schedule) when the table is in RocksDB.
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
        # Dossiers written locally whose changelog records may not be on the broker yet (streams.journal); only a
        # store that outlives the process needs it. ``hold_changelog`` is the test endpoint's simulated crash
        # window: states are written locally, their changelog records are kept back and the journal not released.
        self.journal: WriteJournal | None = None
        self.hold_changelog = False
        self._checkpointing = False
        self._journal_stuck = False
        # The last changelog record sent per partition since the journal's last rotation (direct table path):
        # records of one partition are acknowledged in order, so once these are, every earlier one is.
        self._last_changelog: dict[int, Any] = {}
        # The processor may check the record key against the event's subject; older ones take no key.
        try:
            self._handle_takes_key = "key" in inspect.signature(processor.handle).parameters
        except (TypeError, ValueError):
            self._handle_takes_key = False

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

    async def views(self, keep: Any) -> list[dict]:
        """``processor.dossier_view`` of every owned dossier for which ``keep(view)`` is true.

        Scans the table (RocksDB iterators read a snapshot, the memory store a copied key list), yielding to the
        loop now and then so a large scan never stalls the agent or heartbeats.
        """
        now = self.now()
        dossier_view = self.processor.dossier_view
        out: list[dict] = []
        n = 0
        for p in sorted(self.partitions):
            state = self.partitions.get(p)
            if state is None:
                continue
            for _code, stored in self._iter_partition(p, state):
                view = dossier_view(stored, now)
                if view is not None and keep(view):
                    out.append(view)
                n += 1
                if n % SCAN_YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        return out

    # -- table access ------------------------------------------------------------------------------------------
    @contextmanager
    def _in_partition(self, partition: int) -> Iterator[None]:
        """Make Faust's table route a read or write to ``partition`` outside of stream iteration.

        Faust decides a table key's partition (and RocksDB database) from the event being processed. The
        deadline timer and the rebuild have no event, so they borrow one that names the partition.
        """
        event = current_event()
        if event is not None and event.message.partition == partition:
            yield
            return
        stand_in = _StandIn(self.settings.events, partition)
        token = _current_event.set(weakref.ref(stand_in))
        try:
            yield
        finally:
            _current_event.reset(token)

    def _partition_db(self) -> Any:
        """The RocksDB store when the runtime encodes keys and values exactly as Faust's table does (JSON of the
        dossier code, raw bytes), else None: then every access goes through Faust's table.

        Faust's table routes each access through the current event (borrowed outside of the agent), a mapping
        wrapper, the serializer registry and the store; for the one key and value encoding this table uses that
        was ~15 % of the worker's samples. With a RocksDB store the runtime reads and writes the partition's
        database directly and sends the changelog record exactly as ``Table.on_key_set`` does, so the changelog
        and the database hold what Faust would have written (tests/test_table_access.py pins the encoding; the
        restart and kill -9 tests of tests/test_worker_smoke.py restore from both, for both stores).
        """
        store = getattr(self.table, "data", None)  # a plain mapping stands in for the table in unit tests
        fast = self._fast_store
        if fast is None:
            fast = (hasattr(store, "_db_for_partition") and not self.table.is_global
                    and not self.table.use_partitioner and not self.table._should_expire_keys()
                    and all(store._encode_key(k) == _table_key(k) for k in _KEY_PROBES)
                    and store._encode_value(b"\x00v") == b"\x00v" and store._decode_value(b"\x00v") == b"\x00v")
            self._fast_store = fast
            if not fast:
                log.info("dossier table accessed through Faust's table (store %s)", type(store).__name__)
        return store if fast else None

    def _get(self, partition: int, code: str) -> bytes | None:
        store = self._partition_db()
        if store is not None:
            return store._db_for_partition(partition).get(_table_key(code))
        with self._in_partition(partition):
            return self.table.get(code)

    def _put(self, partition: int, state: PartitionState, code: str, value: bytes, existed: bool,
             journaled: bool = False) -> None:
        if self.journal is not None and not journaled:
            self.journal.record(((partition, code),))
        store = self._partition_db()
        if store is not None:
            self._send_changelog(partition, code, value)  # what Table.on_key_set sends, before the store
            store._db_for_partition(partition).put(_table_key(code), value)
        else:
            with self._in_partition(partition):
                self.table[code] = value
        if not existed:
            state.dossiers += 1
        if state.keys is not None:
            state.keys.add(code)

    def _send_changelog(self, partition: int, code: str, value: bytes) -> None:
        """The dossier's changelog record, key already encoded (Faust's key serializer passes bytes through);
        kept as the partition's last one for the journal's checkpoint."""
        if not self.hold_changelog:
            self._last_changelog[partition] = self.table.send_changelog(partition, _table_key(code), value)

    def _iter_partition(self, partition: int, state: PartitionState) -> Iterator[tuple[str, bytes]]:
        store = self.table.data
        if hasattr(store, "_db_for_partition"):  # RocksDB: one database per partition
            db = store._db_for_partition(partition)
            for k, v in store._visible_items(db):
                if v is not None:
                    yield store._decode_key(k), store._decode_value(v)
            return
        if hasattr(store, "_key_partition"):  # memory store: recovered keys are indexed by partition
            keys = {k for k, p in store._key_partition.items() if p == partition}
            if state.keys:
                keys |= state.keys
            for k in sorted(keys):
                v = store.data.get(k)
                if v is not None:
                    yield k, v
            return
        raise NotImplementedError(f"cannot enumerate a partition of store {type(store).__name__}")

    # -- rebalance ---------------------------------------------------------------------------------------------
    def on_assigned(self, assigned: set[int]) -> None:
        """New assignment: drop what we no longer own; the rest is rebuilt once the table has recovered."""
        self.generation += 1
        self.ready = False
        for p in list(self.partitions):
            if p not in assigned:
                self._drop(p)

    def _drop(self, partition: int) -> None:
        state = self.partitions.pop(partition)
        forget = getattr(self.processor, "forget", None)
        if forget is not None:
            # Per-dossier memory in the processor (announced alerts) belongs to the new owner now.
            forget(set(state.schedule.codes()) | (state.keys or set()) | set(state.unannounced))
        self._release(state)
        log.info("partition %s revoked: tallies and deadline schedule dropped", partition)

    def _new_state(self, partition: int, now: datetime) -> PartitionState:
        schedule = None
        if self.schedule_dir is not None:
            path = schedule_path(self.schedule_dir, partition, next(self._schedule_serial))
            schedule = StoredSchedule(now, path)
        return PartitionState(partition, now, self._track_keys, schedule)

    @staticmethod
    def _release(state: PartitionState) -> None:
        """Close a dropped partition state's stored schedule, deleting its database.

        An empty in-memory schedule takes its place: a batch that fetched the state before the drop may still
        apply its records to it (they are read again from the committed offsets), as it always could."""
        close = getattr(state.schedule, "close", None)
        if close is not None:
            close()
            state.schedule = DeadlineSchedule(state.schedule.evaluated_at)

    def on_revoked(self) -> None:
        self.ready = False

    def applied_offsets(self, partition: int) -> set[int]:
        done = self.applied.get(partition)
        if done is None:
            done = self.applied[partition] = set()
        return done

    def _handled(self, generation: int, msg: Any) -> None:
        if generation == self.generation:  # after a rebalance the record is read again from the committed offset
            self.applied_offsets(msg.partition).add(msg.offset)

    def on_table_restoring(self, partitions: set[int]) -> None:
        """Recovery is writing changelog records these partitions' tables did not hold.

        Tallies of a partition kept through a rebalance are normally still right, but not when its table changes
        under them: after the local store was dropped because the broker lost changelog records, or when another
        member wrote the changelog while this one was out of the group. Those partitions are rebuilt from the
        table once recovery is done, like newly owned ones.
        """
        self._restoring |= partitions
        kept = sorted(partitions & set(self.partitions))
        if kept:
            log.info("partition(s) %s: the table is being restored from the changelog; tallies are rebuilt after", kept)

    async def on_recovered(self, owned: set[int]) -> None:
        """Table recovery done: rebuild tallies and schedules of newly owned partitions, and of kept partitions
        whose table the recovery changed, from the table."""
        generation = self.generation
        for p in list(self.partitions):
            if p not in owned:
                self._drop(p)
        stale, self._restoring = self._restoring & owned, set()
        started = time.monotonic()
        await self._repair_changelog(owned)
        if generation != self.generation:
            self._restoring |= stale  # the next recovery repairs what is still pending and rebuilds
            return
        for p in sorted((owned - set(self.partitions)) | stale):
            old = self.partitions.pop(p, None)  # never serve or update tallies of the table's former content
            if old is not None:
                self._release(old)
            state = await self._rebuild(p, keys=old.keys if old is not None else None)
            if generation != self.generation:
                self._release(state)
                self._restoring |= stale  # the next recovery redoes it
                log.info("rebalanced during rebuild of partition %s; the next recovery redoes it", p)
                return
            self.partitions[p] = state
        if owned - set(self.partitions) == set():
            self.rebuild_seconds = time.monotonic() - started
            self.ready = True
            log.info("ready: owning partitions %s", sorted(self.partitions))

    async def checkpoint_journal(self) -> None:
        """Release the journal's entries whose changelog records are on the broker (timer body).

        With the direct table path it waits for the last changelog record sent to each partition before the
        rotation, which the producer delivers on its own schedule; a producer flush (the fallback for Faust's
        table path) forces out every batch at once and, every 5 s under load, added ~0.35 s to the p99 from
        produce to /metrics at 1,000 ev/s (docs/benchmarks.md). After a send that failed nothing is released any
        more in this run: its record may be missing for good, so its entries wait for a crash repair (a clean stop
        flushes everything and drops them)."""
        if self.journal is None or self.hold_changelog or self._checkpointing or self._journal_stuck:
            return
        self._checkpointing = True
        try:
            old = self.journal.rotate()
            sent, self._last_changelog = list(self._last_changelog.values()), {}
            if self._partition_db() is not None:
                await asyncio.gather(*sent)
            else:
                await self.app.producer.flush()
            self.journal.release(old)
        except Exception as exc:
            self._journal_stuck = True
            log.warning("a changelog send failed (%r): the write journal keeps every entry from now on", exc)
        finally:
            self._checkpointing = False

    async def _repair_changelog(self, owned: set[int]) -> None:
        """After a crash with the local state kept: send the journal's dossiers of these partitions to the
        changelog as the local table holds them now (after Faust has read the changelog's tail into it)."""
        journal = self.journal
        todo = {p: codes for p, codes in (journal.pending if journal is not None else {}).items() if p in owned}
        if not todo:
            return
        sent = 0
        for p, codes in sorted(todo.items()):
            for code in sorted(codes):
                value = self._get(p, code)
                if value is not None:  # never written, or the write was not reached before the crash
                    self._send_changelog(p, code, value)
                    sent += 1
        await self.app.producer.flush()
        journal.repaired(todo)
        log.warning("after the crash: %s dossier(s) of partition(s) %s sent to the changelog again from the local "
                    "table (%s named by the journal)", sent, sorted(todo), sum(len(c) for c in todo.values()))

    async def _rebuild(self, partition: int, keys: set[str] | None = None) -> PartitionState:
        now = self.now()
        state = self._new_state(partition, now)
        if keys and state.keys is not None:  # memory store: keys written here are not in its recovery index
            state.keys |= keys
        rebuild, n = self.processor.rebuilder(now), 0
        for code, stored in self._iter_partition(partition, state):
            state.count_restored(code, rebuild, stored)
            if state.keys is not None:
                state.keys.add(code)
            n += 1
            if n % SCAN_YIELD_EVERY == 0:
                await asyncio.sleep(0)
        state.tallies.add(rebuild.tallies())
        state.dossiers = n
        log.info("partition %s rebuilt from %s dossiers, %s ended and %s open ones of them from their stored rows",
                 partition, n, getattr(rebuild, "settled", 0), getattr(rebuild, "standing", 0))
        return state

    async def _ensure_partition(self, partition: int) -> PartitionState | None:
        """The partition's state; None if we no longer own it (the new owner will process the record)."""
        state = self.partitions.get(partition)
        if state is not None:
            return state
        assignment = self.app.consumer.assignment() if self.app is not None else set()
        if not any(tp.topic == self.settings.events and tp.partition == partition for tp in assignment):
            log.warning("record of partition %s which is no longer assigned here; left to its new owner", partition)
            return None
        # Faust holds source partitions paused until recovery completes, so this is a safety net only.
        log.warning("record for partition %s before its rebuild; rebuilding now", partition)
        state = self.partitions[partition] = await self._rebuild(partition)
        return state

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
            if stored is not None:
                alerts.extend(self.processor.announce(stored, now))

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

    async def on_event(self, event: Any) -> None:
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
        try:
            if self._handle_takes_key:
                outcome = self.processor.handle(value, stored, now, key=code)
            else:
                outcome = self.processor.handle(value, stored, now)
        except Exception as exc:
            # A processor bug on one record must not stop the partition; the record is kept in the DLQ.
            log.exception("processor.handle failed at %s[%s]@%s", msg.topic, partition, msg.offset)
            outcome = RecordOutcome(dead_letter=("processor_error", f"{type(exc).__name__}: {exc}"))
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
        handle, takes_key, health = self.processor.handle, self._handle_takes_key, self.health
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
            try:
                if takes_key:
                    outcome = handle(value, slot[0], now, key=code)
                else:
                    outcome = handle(value, slot[0], now)
            except Exception as exc:
                log.exception("processor.handle failed at %s[%s]@%s", msg.topic, partition, msg.offset)
                outcome = RecordOutcome(dead_letter=("processor_error", f"{type(exc).__name__}: {exc}"))
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
            self.journal.record(key for key, _ in writes)  # before the table: see streams.journal
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
        # force=True: produce now rather than at commit time; a duplicate in the DLQ after a crash is harmless,
        # a lost one is not.
        await self.dlq_topic.send(key=key, value=value, headers=headers, force=True)

    async def _send_alerts(self, alerts: list[dict]) -> None:
        for alert in alerts:
            alert_id = str(alert.get("alert_id") or "")
            self.health.alert(alert.get("kind"))
            await self.alerts_topic.send(key=alert_id.encode() or None, value=encode_alert(alert), force=True)


#: Keys whose encoding must equal Faust's before the runtime encodes table keys itself (quotes, escapes, non-ASCII).
_KEY_PROBES = ("G.01-250101-0001", 'q"uote', "back\\slash", "ưu tiên", "tab\tnew\nline", "\x00")


def _table_key(code: str) -> bytes:
    """The dossier table's key bytes: Faust's JSON key codec (orjson when installed) of the dossier code."""
    return _orjson_dumps(code)


def _decode_key(raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw or None
    try:
        code = bytes(raw).decode("utf-8")
    except (UnicodeDecodeError, TypeError):
        return None
    return code if code.strip() else None


def _rewind_partitions_never_committed(app: faust.App, topic: str) -> None:
    """Make "seek to committed" also rewind source partitions whose committed offset is missing or 0.

    Faust drops records it fetched while the flow was stopped (rebalance, table recovery) and relies on seeking
    back to the committed offsets to read them again. aiokafka's seek_to_committed skips partitions whose
    committed offset is None or 0, so on a partition that never committed (a worker killed within its first
    commit interval, or a partition whose first record is still unprocessed) those records were silently
    skipped: we measured a restarted worker that processed nothing at all. Seeking such partitions to the
    beginning is what auto_offset_reset=earliest means anyway.
    """
    thread = app.consumer._thread
    original = thread.seek_to_committed

    async def seek_to_committed() -> Any:
        committed = await original()
        never = [tp for tp, offset in committed.items() if not offset and tp.topic == topic]
        if never:
            # A plain seek to the listed earliest offsets: seek_to_beginning would park the consumer thread
            # until the fetcher performs the reset, and recovery needs that thread meanwhile.
            for tp, offset in (await thread.earliest_offsets(*never)).items():
                if offset is not None:
                    thread.seek(tp, offset)
        return committed

    thread.seek_to_committed = seek_to_committed


#: Seconds without any changelog record received during recovery before the watchdog re-seeks.
RECOVERY_STALL_SECONDS = 6.0


def _watch_recovery(app: faust.App, interval: float = 2.0) -> None:
    """Re-seek changelog partitions whose records were fetched but never reached table recovery.

    Faust discards fetched records when the generation changes or the active set moves while a fetch is in
    flight, after the consumer position already advanced past them. For source topics a later seek to the
    committed offset repairs that; for changelogs nothing does, and recovery then waits forever for offsets it
    will never see. We saw a worker stuck this way after a second worker left the group. Recovery records the
    last offset it received per partition, so when it makes no progress for a while and the consumer sits
    further ahead, reading again from just after that offset is safe (applying changelog records is idempotent).
    """
    thread = app.consumer._thread
    watch = {"progress": None, "since": time.monotonic()}

    @app.timer(interval=interval, name="onestop.recovery-watchdog")
    async def recovery_watchdog() -> None:
        recovery = app.tables.recovery
        remaining = {tp: n for tp, n in recovery.active_remaining().items() if n > 0}
        progress = sum(v for v in recovery.active_offsets.values() if v is not None)
        now = time.monotonic()
        if not recovery.in_recovery or not remaining or progress != watch["progress"]:
            watch.update(progress=progress, since=now)
            return
        if now - watch["since"] < RECOVERY_STALL_SECONDS:
            return
        watch["since"] = now
        for tp in remaining:
            received = recovery.active_offsets.get(tp)
            resume_at = 0 if received is None or received < 0 else received + 1
            position = await thread.position(tp)
            if position is not None and position > resume_at:
                log.warning("table recovery stalled on %s[%s]: consumer at %s, recovery at %s; seeking back",
                            tp.topic, tp.partition, position, resume_at)
                thread.seek(tp, resume_at)


def build_app(settings: WorkerSettings, processor: Any, clock: Clock) -> faust.App:
    """A configured Faust app with the runtime attached as ``app.onestop_runtime``."""
    from . import metrics as metrics_mod
    from . import readapi

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.broker}",
        store=settings.store_url,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_disable_leader=True,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(0.5, min(3.0, settings.session_timeout / 4)),
        broker_rebalance_timeout=max(settings.session_timeout * 3, 30.0),
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        # web_host alone still binds 0.0.0.0; web_bind is what decides the listening interface.
        web_bind=settings.web_bind,
        # Advertised in the group metadata; must be unique per live worker (see streams.worker ghost eviction).
        web_host=settings.advertised_host,
        web_port=settings.web_port,
        # Faust's built-in pages would serve raw table values (/table/dossiers/<code>/) and internals; the only
        # per-dossier surface must be our read API, which exposes a fixed set of non-personal fields.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        autodiscover=False,
        stream_wait_empty=True,
        table_standby_replicas=settings.standby_replicas,
        # SASL/TLS for every consumer and producer Faust opens (streams.security; PLAINTEXT adds nothing).
        **faust_broker_settings(settings),
    )
    runtime = Runtime(settings, processor, clock)
    runtime.app = app
    if settings.store == "rocksdb":
        runtime.journal = WriteJournal(settings.data_dir / JOURNAL_DIR)
    app.onestop_runtime = runtime  # type: ignore[attr-defined]

    # Raw bytes both ways: value_type=bytes alone still leaves Faust's default JSON codec in place, which would
    # parse the CloudEvent before the processor sees it and re-encode what we dead-letter.
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    events = app.topic(settings.events, partitions=settings.partitions, **raw)
    runtime.dlq_topic = app.topic(settings.dlq, **raw)
    runtime.alerts_topic = app.topic(settings.alerts, **raw)
    table = app.Table(settings.table_name, key_type=str, value_type=bytes, partitions=settings.partitions,
                      options=settings.store_options)
    runtime.table = table

    if "PRODUCER_LINGER" not in os.environ:
        app.conf.producer_linger = PRODUCER_LINGER_SECONDS

    @app.agent(events, name="onestop.dossier-events")
    async def process(stream: Any) -> None:
        if BATCH_MAX <= 1:
            async for event in stream.events():
                await runtime.on_event(event)
            return
        async for batch in stream.take_events(BATCH_MAX, within=BATCH_WITHIN):
            await runtime.on_events(batch)

    @app.timer(interval=settings.clock_interval, name="onestop.deadline-clock")
    async def deadline_clock() -> None:
        await runtime.tick()

    @app.timer(interval=JOURNAL_CHECKPOINT_SECONDS, name="onestop.journal-checkpoint")
    async def journal_checkpoint() -> None:
        await runtime.checkpoint_journal()

    @app.on_partitions_revoked.connect
    async def _revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        runtime.on_revoked()

    @app.on_partitions_assigned.connect
    async def _assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        runtime.on_assigned({tp.partition for tp in assigned if tp.topic == settings.events})

    async def _recovered() -> None:
        actives = app.assignor.assigned_actives()
        await runtime.on_recovered({tp.partition for tp in actives if tp.topic == settings.events})

    table.on_recover(_recovered)

    from .reference import attach_reference

    attach_reference(app, runtime, settings, kafka_client_config(settings))  # its consumer needs SASL/TLS too
    _rewind_partitions_never_committed(app, settings.events)
    _watch_recovery(app)
    watch_stalled_source(app, settings.events, lambda: runtime.records_received, stall_seconds=settings.stall_seconds)
    guard_source_gaps(app, settings.events, applied=runtime.applied_offsets)
    install_closed_transport_repair()
    install_complete_buffer_flush()
    install_empty_fetch_pause()
    rebuild_partitions_ahead_of_changelog(app, on_restoring=runtime.on_table_restoring)
    registry = metrics_mod.new_registry(runtime)
    readapi.register(app, runtime, registry)
    return app
