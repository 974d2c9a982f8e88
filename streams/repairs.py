"""Repairs for two ways a broker outage could leave a worker wrong or stuck, found by the broker-restart test.

Both are narrow patches on the client libraries' private surfaces, pinned by tests/test_repairs.py, so an
upgrade that changes those surfaces fails a test instead of bringing the failure back silently.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["install_closed_transport_repair", "install_complete_buffer_flush", "rebuild_partitions_ahead_of_changelog"]

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


def rebuild_partitions_ahead_of_changelog(app: Any) -> None:
    """Rebuild from the changelog any local table partition that is ahead of it, instead of crashing.

    The local store records the changelog offset of the last state it wrote. If the changelog now ends before
    that offset, the broker lost records it had acknowledged (the embedded broker can, when stopped while
    writes are in flight; Apache Kafka can, after an unclean leader election). Faust then stops the worker with
    ``ConsistencyError``, and a restart stops it again. The way out is the one Kafka Streams takes for a
    corrupted task: drop the local copy of that partition and restore it from the changelog, after which the
    source records not yet committed are processed again. States whose changelog records were lost *and* whose
    source offsets were already committed cannot come back; the error log says how many offsets were missing.
    """
    recovery = app.tables.recovery
    original = recovery._build_offsets
    if getattr(original, _MARK, False):
        return

    async def build_offsets(consumer: Any, tps: Any, destination: Any, title: str) -> None:
        await original(consumer, tps, destination, title)
        if title != "active":
            return
        for tp in tps:
            persisted, highwater = destination.get(tp), recovery.active_highwaters.get(tp)
            if persisted is None or highwater is None or persisted <= highwater or persisted < 0:
                continue
            table = recovery.tp_to_table.get(tp)
            if table is None:
                continue
            dropped = _drop_local_partition(table, tp.partition)
            earliest = (await consumer.earliest_offsets(tp)).get(tp)
            destination[tp] = (earliest - 1) if earliest else -1
            log.error("changelog %s[%d] ends at offset %d but the local store had written up to %d: the broker lost "
                      "acknowledged records; dropped %d local entries and restoring the partition from the changelog",
                      tp.topic, tp.partition, highwater, persisted, dropped)

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
