"""Repairs for ways a broker outage or a restart under load could leave a worker wrong or stuck, found by the
broker-restart and churn tests.

Both are narrow patches on the client libraries' private surfaces, pinned by tests/test_repairs.py, so an
upgrade that changes those surfaces fails a test instead of bringing the failure back silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["install_closed_transport_repair", "install_complete_buffer_flush", "rebuild_partitions_ahead_of_changelog",
           "watch_stalled_source", "guard_source_gaps"]

_MARK = "_onestop_closed_transport_repair"


def install_closed_transport_repair() -> None:
    """Make aiokafka treat a write on a connection the broker already closed as a broken connection.

    Under uvloop (the worker's default loop) writing to a closed transport raises ``RuntimeError``, where
    asyncio's own loop raises ``OSError`` or nothing. aiokafka only catches ``OSError`` there, so when the broker
    went away at the wrong moment the error escaped from the client's metadata task and killed it; every later
    metadata refresh then waited for a task that no longer existed, the consumer never found its group
    coordinator again and the worker sat idle forever after the broker came back. Raising aiokafka's own
    ``KafkaConnectionError`` instead sends it down the path it already retries. Idempotent.
    """
    from aiokafka import conn as aioconn
    from aiokafka import errors as aioerrors

    original = aioconn.AIOKafkaConnection.send
    if getattr(original, _MARK, False):
        return

    def send(self: Any, request: Any, expect_response: bool = True) -> Any:
        try:
            return original(self, request, expect_response)
        except RuntimeError as err:
            writer = getattr(self, "_writer", None)
            transport = getattr(writer, "transport", None)
            if transport is None or not transport.is_closing():
                raise
            self.close(reason=aioconn.CloseReason.CONNECTION_BROKEN)
            raise aioerrors.KafkaConnectionError(
                f"Connection at {self._host}:{self._port} broken: {err}") from err

    setattr(send, _MARK, True)
    send.__wrapped__ = original  # type: ignore[attr-defined]
    aioconn.AIOKafkaConnection.send = send


#: Seconds between warnings while a flush waits on a producer buffer that does not drain.
FLUSH_WARN_SECONDS = 30.0


def install_complete_buffer_flush() -> None:
    """Make Faust's producer-buffer flush wait until every buffered record was handed to the client.

    Faust flushes the producer before committing source offsets, so that the changelog holds every state the
    committed records produced. But ``ProducerBuffer.flush`` gives up as soon as one record takes longer than
    0.1 s to hand over (a busy loop, a broker slow to answer), and even when it waits, "empty" means only that the
    last record left the queue, not that it reached the client's batches that the client's own flush waits for.
    The commit then goes ahead with changelog records still on their way, and a ``kill -9`` at that moment loses
    those states for good: the restarted worker rebuilds from the changelog and never sees the committed records
    again (seen as one missing rating after a kill -9 in tests/test_worker_smoke.py). Counting the records in
    hand-over and waiting for the queue and that count to reach zero keeps "committed implies in the changelog".
    While the broker is away the commit waits, which is what at-least-once needs. Must run before the producer
    starts (its sending task binds the hand-over method when it starts). Idempotent.
    """
    import asyncio
    import time

    from faust.transport.producer import ProducerBuffer

    original_flush, original_send = ProducerBuffer.flush, ProducerBuffer._send_pending
    if getattr(original_flush, _MARK, False):
        return

    async def send_pending(self: Any, fut: Any) -> None:
        self._onestop_in_flight = getattr(self, "_onestop_in_flight", 0) + 1
        try:
            await original_send(self, fut)
        finally:
            self._onestop_in_flight -= 1

    async def flush(self: Any) -> None:
        warned_at = started = time.monotonic()
        while self.size or getattr(self, "_onestop_in_flight", 0):
            if self.size:
                await self.flush_atmost(None)  # raises if the buffer stopped with records left, as before
            else:
                self.message_sent.clear()
                try:
                    await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)
                except asyncio.TimeoutError:
                    pass
            if time.monotonic() - warned_at >= FLUSH_WARN_SECONDS:
                warned_at = time.monotonic()
                log.warning("producer buffer still holds %d records after %.0f s; offsets wait for them",
                            self.size + getattr(self, "_onestop_in_flight", 0), warned_at - started)

    for fn, orig in ((flush, original_flush), (send_pending, original_send)):
        setattr(fn, _MARK, True)
        fn.__wrapped__ = orig  # type: ignore[attr-defined]
    ProducerBuffer._send_pending = send_pending
    ProducerBuffer.flush = flush


def rebuild_partitions_ahead_of_changelog(app: Any, on_restoring: Callable[[set[int]], None] | None = None) -> None:
    """Rebuild from the changelog any local table partition that is ahead of it, instead of crashing.

    The local store records the changelog offset of the last state it wrote. If the changelog now ends before
    that offset, the broker lost records it had acknowledged (the embedded broker can, when stopped while
    writes are in flight; Apache Kafka can, after an unclean leader election). Faust then stops the worker with
    ``ConsistencyError``, and a restart stops it again. The way out is the one Kafka Streams takes for a
    corrupted task: drop the local copy of that partition and restore it from the changelog, after which the
    source records not yet committed are processed again. States whose changelog records were lost *and* whose
    source offsets were already committed cannot come back; the error log says how many offsets were missing.

    ``on_restoring`` is told which partitions' tables are about to receive changelog records they do not hold:
    anything derived from those tables (the tallies) must be rebuilt after recovery, even when the partition
    stayed with this worker through the rebalance. A partition restored after such a drop was kept with its old
    tallies while its table went back to the changelog's older states; every later event then moved the tallies
    by the difference from the wrong base, and the figures never equalled the oracle again (the broker-restart
    scenario, after the embedded broker lost changelog records: every dossier right in the changelog at the end,
    the figures wrong). Another member writing the changelog while this one was out of the group does the same.
    """
    recovery = app.tables.recovery
    original = recovery._build_offsets
    if getattr(original, _MARK, False):
        return

    async def build_offsets(consumer: Any, tps: Any, destination: Any, title: str) -> None:
        await original(consumer, tps, destination, title)
        if title != "active":
            return
        restoring: set[int] = set()
        for tp in tps:
            persisted, highwater = destination.get(tp), recovery.active_highwaters.get(tp)
            if highwater is None:
                continue
            table = recovery.tp_to_table.get(tp)
            if persisted is not None and persisted > highwater and persisted >= 0 and table is not None:
                dropped = _drop_local_partition(table, tp.partition)
                earliest = (await consumer.earliest_offsets(tp)).get(tp)
                destination[tp] = (earliest - 1) if earliest else -1
                restoring.add(tp.partition)
                log.error("changelog %s[%d] ends at offset %d but the local store had written up to %d: the broker "
                          "lost acknowledged records; dropped %d local entries and restoring the partition from the "
                          "changelog", tp.topic, tp.partition, highwater, persisted, dropped)
            elif highwater >= 0 and (persisted is None or persisted < highwater):
                restoring.add(tp.partition)  # records the table does not hold yet
        if on_restoring is not None and restoring:
            on_restoring(restoring)

    setattr(build_offsets, _MARK, True)
    recovery._build_offsets = build_offsets


def _drop_local_partition(table: Any, partition: int) -> int:
    """Delete every key of one partition of a table's local store (its persisted offset included)."""
    store = table.data
    dbs = getattr(store, "_dbs", None)
    if dbs is None:  # the memory store keeps no offset and starts empty: nothing to drop
        return 0
    db = store._db_for_partition(partition)
    keys = list(store._visible_keys(db))
    for key in keys:
        db.delete(key)
    db.delete(store.offset_key)
    index = getattr(store, "_key_index", None)
    if index is not None:
        index.clear()
    return len(keys)


def watch_stalled_source(app: Any, topic: str, received: Callable[[], int], *, interval: float = 2.0,
                         stall_seconds: float = 20.0) -> None:
    """Unstick a worker whose agent stops receiving records while its source partitions still hold some.

    A worker restarted after ``kill -9`` on a loaded machine finished recovery, said it was ready, and then
    received nothing for minutes although its partitions had thousands of unread records; nothing would have
    changed that until the next rebalance. When the agent has received nothing for ``stall_seconds``, no
    recovery or rebalance is under way, and the broker's end of an owned partition lies beyond the last record
    handed to the streams, this logs what the consumer looked like (for the record), resumes the partitions and
    the flow, and seeks to the committed offsets. Re-reading records is harmless: every event is idempotent.
    """
    consumer = app.consumer
    thread = consumer._thread
    watch = {"received": received(), "since": time.monotonic()}

    @app.timer(interval=interval, name="onestop.stall-watchdog")
    async def stall_watchdog() -> None:
        now, seen = time.monotonic(), received()
        if seen != watch["received"]:
            watch.update(received=seen, since=now)
            return
        if now - watch["since"] < stall_seconds:
            return
        watch["since"] = now
        busy = {"rebalancing": bool(app.rebalancing), "in recovery": bool(getattr(app, "in_recovery", False)),
                "recovery not completed": not app.tables.recovery.completed.is_set()}
        if any(busy.values()):  # a long table recovery legitimately holds the agent; say so once in a while
            log.info("the agent received nothing for %.0f s: %s", stall_seconds,
                     ", ".join(k for k, v in busy.items() if v))
            return
        owned = [tp for tp in consumer.assignment() if tp.topic == topic]
        if not owned:
            return
        ends = await thread.highwaters(*owned)
        read = {tp: consumer._read_offset.get(tp) for tp in owned}
        stalled = {tp for tp in owned
                   if ends.get(tp) is not None and ends[tp] > (read[tp] + 1 if read[tp] is not None else 0)}
        if not stalled:
            return
        positions = {tp.partition: await thread.position(tp) for tp in sorted(owned)}
        active = consumer._get_active_partitions()
        log.warning(
            "the agent received nothing for %.0f s while %d owned partition(s) hold unread records; partition: "
            "last read/end/fetch position %s; flow active %s, flow control %s, paused %s, buffered %s, inactive %s; "
            "resuming and seeking to the committed offsets",
            stall_seconds, len(stalled),
            {tp.partition: f"{read[tp]}/{ends.get(tp)}/{positions[tp.partition]}" for tp in sorted(owned)},
            consumer.flow_active, app.flow_control.is_active(),
            sorted(tp.partition for tp in consumer._paused_partitions if tp.topic == topic),
            sorted(tp.partition for tp in consumer._buffered_partitions if tp.topic == topic),
            sorted(tp.partition for tp in owned if tp not in active))
        consumer.resume_partitions(stalled)
        consumer._buffered_partitions.difference_update(stalled)
        app.flow_control.resume()
        consumer.resume_flow()
        await consumer.perform_seek()


#: Times in a row one partition may be sent back to the same offset before the jump is accepted (records that
#: retention deleted cannot be read again; an endless rewind would stall the partition instead).
MAX_REWINDS = 3
#: Seconds a partition's commits may stay held at a record the runtime never applied while it applied later ones,
#: before the partition is read again from that record. Records are applied in offset order within a partition,
#: so that state means the record was skipped on the way (seen after a broker lost records and a rewind, in a run
#: where the stream had skipped it during a rebalance, and in 1 of 8 kill -9 restarts, where the restarted worker
#: skipped the record at its committed offset and applied every later one); reading again is idempotent. Until
#: then the figures miss that record, hence a short wait (commits, and so this check, come every ~3 s).
SKIPPED_RECORD_SECONDS = 3.0


def guard_source_gaps(app: Any, topic: str, applied: Callable[[int], set[int]] | None = None,
                      commit_source: bool = True) -> None:
    """Never let the consumer jump over source records: send it back to the first record it skipped.

    Under load, a worker that had just been assigned a partition received its first record thousands of offsets
    past the committed one, processed it and committed past the whole stretch: those events were in neither the
    table nor the changelog, and the figures stayed short for good (the churn scenario, 5 of 12 runs three at a
    time on a loaded machine; docs/reliability.md 4.10). Faust treats such a jump as a "gap" it may commit over,
    which suits compacted or transactional topics, not an event log where every offset holds a record.

    The guard keeps its own next expected offset per source partition: the position a seek put the consumer at,
    then one past each record handed on. Faust's read offset cannot serve: after a seek it names the next record
    to read, after a record the last one read, so a skip of exactly one record right after a seek (a restart, a
    rebalance, the stall watchdog) looked like no skip at all. A record beyond the expected offset is held back
    and the partition sought to that offset, so the records come again in order; records the consumer had
    already read are applied again, which idempotent events make harmless.

    The same rule holds on the commit side, where Faust let a record be committed without being applied: it
    commits the end of a run of acked offsets, and (1) a message the stream skipped because a rebalance had begun
    is acked too, (2) once a revocation has cleared the committed offset any run counts, so a commit before the
    seek to the committed offsets moved the offset past skipped records and the seek then went there, and (3) a
    run may start one past the committed offset, i.e. over exactly one record never acked (the committed offset
    is the next record to read, not the last one read). For the source topic the guard therefore commits nothing
    between a revocation and that seek, and afterwards commits exactly up to the first offset, from the committed
    one on, that the runtime has not fully handled: ``applied(partition)`` holds the offsets whose records it
    applied or dead-lettered (alerts and dead letters sent) in the current generation and has not seen
    committed. Without ``applied``, a run must at least begin at the committed offset.

    The churn scenario lost exactly one event this way: processing of a partition stopped at offset 2995 before
    a rebalance, the worker that kept it went on at 2997, and 2996 was committed and never applied (worker logs
    without a jump warning, changelog and events topic read back from the broker's snapshot).

    ``commit_source=False``: Faust commits nothing of the source topic (the runtime commits its offsets in its
    own transactions, streams.runtime.transactions); the read side is the same.
    """
    from faust.transport.consumer import Consumer

    # Per app: the class-level wrappers below look both up on the consumer's app.
    app._onestop_source_topic, app._onestop_applied = topic, applied
    app._onestop_commit_source = commit_source
    original = Consumer.getmany
    if getattr(original, _MARK, False):
        return
    original_seek, original_perform_seek = Consumer.seek, Consumer.perform_seek
    original_new_offset = Consumer._new_offset
    original_revoked = Consumer.on_partitions_revoked
    rewinds: dict[Any, tuple[int, int]] = {}

    def expected_of(consumer: Any) -> dict:
        return vars(consumer).setdefault("_onestop_next_offset", {})

    def sought_of(consumer: Any) -> set:
        return vars(consumer).setdefault("_onestop_sought", set())

    def applied_of(consumer: Any) -> Callable[[int], set[int]] | None:
        return getattr(consumer.app, "_onestop_applied", None)

    def topic_of(consumer: Any) -> str | None:
        return getattr(consumer.app, "_onestop_source_topic", None)

    async def seek(self: Any, partition: Any, offset: int) -> None:
        await original_seek(self, partition, offset)
        if getattr(partition, "topic", None) == topic_of(self):
            expected_of(self)[partition] = offset

    async def perform_seek(self: Any) -> None:
        await original_perform_seek(self)
        expected, sought, topic = expected_of(self), sought_of(self), topic_of(self)
        expected.clear()  # partitions no longer owned are forgotten; a reassigned one starts from its commit
        for tp, offset in self._read_offset.items():  # here: the committed offset, i.e. the next record to read
            if tp.topic == topic and offset is not None:
                expected[tp] = offset
        # Acks gathered before this point stay: a record applied while the seek was under way is not read again.
        sought.clear()
        sought.update(tp for tp in self.assignment() if tp.topic == topic)

    async def on_partitions_revoked(self: Any, revoked: Any) -> None:
        sought_of(self).difference_update(revoked)
        applied = applied_of(self)
        if applied is not None:
            for tp in revoked:
                if tp.topic == topic_of(self):
                    applied(tp.partition).clear()
        await original_revoked(self, revoked)

    def new_offset(self: Any, tp: Any) -> int | None:
        if tp.topic != topic_of(self):
            return original_new_offset(self, tp)
        if not getattr(self.app, "_onestop_commit_source", True):
            original_new_offset(self, tp)  # keeps Faust's ack and gap bookkeeping moving; nothing to commit
            return None
        if tp not in sought_of(self):
            return None  # between a revocation and the seek to the committed offsets: nothing to commit yet
        committed, applied = self._committed_offset.get(tp), applied_of(self)
        if committed is None:  # never committed: Faust's own rule (the partition was read from its start)
            return original_new_offset(self, tp)
        if applied is None:
            acked = self._acked.get(tp)
            if acked:
                head = min(acked)
                gaps = self._gap.get(tp)
                if gaps:  # records the consumer was allowed to pass (deleted by retention, see MAX_REWINDS)
                    head = min(head, min(interval.begin for interval in gaps))
                if head > committed:
                    return None  # the record at the committed offset is not acked yet
            return original_new_offset(self, tp)
        gaps = self._gap.get(tp)  # records passed after MAX_REWINDS: nobody can apply them
        passed = sorted((interval.begin, interval.end) for interval in gaps) if gaps else []
        original_new_offset(self, tp)  # keeps Faust's ack and gap bookkeeping moving; its answer is not ours
        done = applied(tp.partition)
        end = committed
        while True:
            if end in done:
                end += 1
                continue
            over = [stop for start, stop in passed if start <= end < stop]
            if not over:
                break
            end = max(over)
        blocked = vars(self).setdefault("_onestop_blocked_since", {})
        if end <= committed:
            if any(o > committed for o in done):  # later records handled, this one not: it was skipped somewhere
                now = time.monotonic()
                since = blocked.setdefault(tp, now)
                if now - since >= SKIPPED_RECORD_SECONDS:
                    blocked.pop(tp, None)
                    log.warning("partition %s of %s: offset %s was never applied although later records were; "
                                "reading again from it", tp.partition, tp.topic, committed)
                    asyncio.ensure_future(self.seek(tp, committed))
            return None
        blocked.pop(tp, None)
        done.difference_update([o for o in done if o < end])
        return end

    async def getmany(self: Any, timeout: float) -> Any:
        expected, topic = expected_of(self), topic_of(self)
        held: set = set()
        async for tp, message in original(self, timeout):
            if tp.topic == topic:
                if tp in held:
                    continue
                offset, want = message.offset, expected.get(tp)
                if want is not None and offset > want:
                    target, times = rewinds.get(tp, (None, 0))
                    times = times + 1 if target == want else 1
                    if times <= MAX_REWINDS:
                        rewinds[tp] = (want, times)
                        log.warning("partition %s of %s: the consumer jumped to offset %s, expected %s; reading the "
                                    "skipped records again", tp.partition, tp.topic, offset, want)
                        self._thread.seek(tp, want)
                        held.add(tp)
                        continue
                    log.error("partition %s of %s: offsets %s..%s cannot be read again after %s tries (deleted by "
                              "retention?); going on from %s", tp.partition, tp.topic, want, offset - 1,
                              MAX_REWINDS, offset)
                if want is None or offset >= want:  # an older record is a re-read: Faust drops it
                    expected[tp] = offset + 1
                    rewinds.pop(tp, None)
            yield tp, message

    for name, fn, orig in (("getmany", getmany, original), ("seek", seek, original_seek),
                           ("perform_seek", perform_seek, original_perform_seek),
                           ("on_partitions_revoked", on_partitions_revoked, original_revoked),
                           ("_new_offset", new_offset, original_new_offset)):
        setattr(fn, _MARK, True)
        fn.__wrapped__ = orig  # type: ignore[attr-defined]
        setattr(Consumer, name, fn)
