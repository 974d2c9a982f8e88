"""Owned partitions: the dossier table's access paths outside stream iteration, and what a rebalance does.

Split from the runtime's event handling so each reads on its own: this half decides which partitions the worker
holds and rebuilds their derived state (tallies, deadline schedules) from the recovered table; ``Runtime``
applies events and the deadline clock on top of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from faust.streams import _current_event, current_event

try:
    from orjson import dumps as _orjson_dumps
except ImportError:  # pragma: no cover - without orjson the key probe fails and Faust's table does the encoding
    def _orjson_dumps(obj: Any) -> bytes:
        return json.dumps(obj).encode()

from streams.runtime.clock import DeadlineSchedule
from streams.runtime.tallies import TallyBook
from streams.runtime.stored_schedule import StoredSchedule, schedule_path


__all__ = ["OwnedPartitions", "PartitionState"]

log = logging.getLogger(__name__)

#: Yield to the event loop every so many dossiers while scanning a partition, so heartbeats and web requests
#: keep flowing during a rebuild of millions of dossiers.
SCAN_YIELD_EVERY = 2000
#: Where the partitions' deadline schedules live in the data directory (streams.runtime.stored_schedule): scratch
#: databases, rebuilt from the table with the partition, never read back after a restart.
SCHEDULE_DIR = "schedules"

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



class OwnedPartitions:
    """The table and the owned partitions' derived state; ``Runtime`` sets the attributes in its constructor."""

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
        staged = self._staged.get(partition)
        if staged:
            value = staged.get(code)
            if value is not None:
                return value
        store = self._partition_db()
        if store is not None:
            return store._db_for_partition(partition).get(_table_key(code))
        with self._in_partition(partition):
            return self.table.get(code)

    def _put(self, partition: int, state: PartitionState, code: str, value: bytes, existed: bool,
             journaled: bool = False) -> None:
        if self.txn is not None:  # exactly once: into the open transaction; the table follows its commit
            self._stage(partition, code, value)
            if not existed:
                state.dossiers += 1
            return
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
        if self.txn is None:  # in transactions the table is never ahead of the changelog: nothing to repair
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
            self.heap.settled()  # the loaded state lives on: out of the collector's full passes (streams.runtime.heap)
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

