"""Faust's worker consumer and table recovery for changelogs written in transactions by the runtime itself.

Faust reads with ``isolation_level="read_committed"`` only under its own ``processing_guarantee="exactly_once"``
(``AIOKafkaConsumerThread._create_worker_consumer``), which is not sound for this runtime (docs/reliability.md 5.2),
and its recovery takes a changelog partition's end offset minus one as the offset of its last record. A changelog
written in transactions ends with a commit (or abort) marker, which no consumer is ever handed, so recovery would
wait for a record that never comes (Faust's own workaround, under its exactly_once only, waits for two 5 s
timeouts first). The upstream issues and pinned versions are listed in ``streams.compat``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["last_committed_offsets", "read_committed_tables"]

log = logging.getLogger(__name__)

_MARK = "_onestop_read_committed"
#: Offsets before a partition's end read first when looking for its last committed record; widened until found.
FIRST_WINDOW = 32
READ_SECONDS = 10.0


async def last_committed_offsets(config: dict[str, Any], ends: dict[Any, int]) -> dict[Any, int]:
    """The offset of the last record a read_committed consumer is handed in each partition whose end offset
    (``ends``, the next offset to be written, i.e. after any marker) is given; -1 for a partition holding none."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    out: dict[Any, int] = {}
    todo = {TopicPartition(tp.topic, tp.partition): end for tp, end in ends.items() if end and end > 0}
    for tp, end in ends.items():
        if not end or end <= 0:
            out[tp] = -1
    if not todo:
        return out
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, isolation_level="read_committed",
                                client_id="onestop-changelog-probe", **config)
    await consumer.start()
    try:
        consumer.assign(list(todo))
        earliest = await consumer.beginning_offsets(list(todo))
        window = {tp: FIRST_WINDOW for tp in todo}
        while todo:
            for tp, end in todo.items():
                consumer.seek(tp, max(earliest.get(tp) or 0, end - window[tp]))
            last: dict[Any, int] = {}
            deadline = time.monotonic() + READ_SECONDS
            pending = set(todo)
            while pending and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=200)
                for tp, records in batches.items():
                    if records:
                        last[tp] = max(last.get(tp, -1), records[-1].offset)
                for tp in list(pending):
                    if await consumer.position(tp) >= todo[tp]:
                        pending.discard(tp)
            if pending:
                raise TimeoutError(f"changelog partitions {sorted(str(t) for t in pending)} not read to their end")
            for tp in list(todo):
                start = max(earliest.get(tp) or 0, todo[tp] - window[tp])
                if tp in last or start <= (earliest.get(tp) or 0):
                    out[tp] = last.get(tp, -1)
                    del todo[tp]
                else:
                    window[tp] *= 16
    finally:
        await consumer.stop()
    return out


def read_committed_tables(app: Any, config: dict[str, Any],
                          before_recovery: Callable[[set[int]], Awaitable[None]] | None = None) -> None:
    """Read every topic with ``isolation_level="read_committed"`` (the events topic and table recovery), and let
    recovery end at a changelog partition's last committed record instead of its end offset minus one.

    ``before_recovery`` is awaited with the partitions of the active changelog partitions before recovery reads
    their highwaters: the runtime starts its transactional producers there, so a previous owner is fenced and its
    open transaction aborted before this worker reads what it committed. ``config`` holds the keyword arguments
    of an aiokafka client (``bootstrap_servers`` and security) for the probe of the last committed records.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original_create = AIOKafkaConsumerThread._create_worker_consumer
    if not getattr(original_create, _MARK, False):
        def create_worker_consumer(self: Any, transport: Any) -> Any:
            consumer = original_create(self, transport)
            consumer._isolation_level = "read_committed"  # read by start(), which creates the fetcher
            return consumer

        setattr(create_worker_consumer, _MARK, True)
        create_worker_consumer.__wrapped__ = original_create  # type: ignore[attr-defined]
        AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer

    recovery = app.tables.recovery
    original = recovery._build_highwaters
    if getattr(original, _MARK, False):
        return

    async def build_highwaters(consumer: Any, tps: Any, destination: Any, title: str) -> None:
        if title == "active" and before_recovery is not None and tps:
            await before_recovery({tp.partition for tp in tps})
        await original(consumer, tps, destination, title)
        ends = {tp: destination[tp] + 1 for tp in tps if destination.get(tp) is not None and destination[tp] >= 0}
        if not ends:
            return
        last = await last_committed_offsets(config, ends)
        moved = {}
        for tp in ends:
            found = last.get(tp)
            if found is None:
                continue
            if destination[tp] != found:
                moved[tp.partition] = (destination[tp], found)
                destination[tp] = found
        if moved:
            log.info("%s changelog partitions: recovery ends at the last committed record (was end - 1): %s",
                     title, moved)

    setattr(build_highwaters, _MARK, True)
    recovery._build_highwaters = build_highwaters
