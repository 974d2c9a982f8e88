"""The client-library repairs of streams/compat/repairs.py: each shows the failure it exists for, then that it is gone.

The broker-restart fault test (tests/test_faults.py) is the end-to-end proof; these pin the mechanisms, so a
library upgrade that changes the patched surfaces fails here with a clear name.
"""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from aiokafka.conn import AIOKafkaConnection
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from streams.compat.repairs import install_closed_transport_repair, install_complete_buffer_flush


async def _connection_whose_broker_went_away() -> tuple[AIOKafkaConnection, asyncio.Future, asyncio.AbstractServer]:
    """An aiokafka connection with one request in flight, whose transport has just been closed."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = AIOKafkaConnection("127.0.0.1", port)
    conn._reader, conn._writer = reader, writer
    conn._read_task = asyncio.ensure_future(asyncio.sleep(3600))
    conn._versions = {MetadataRequest.API_KEY: (0, 1)}
    in_flight = asyncio.ensure_future(conn.send(MetadataRequest([])))
    await asyncio.sleep(0)
    writer.transport.close()
    await asyncio.sleep(0.05)
    return conn, in_flight, server


def test_under_uvloop_a_write_on_a_closed_transport_escapes_aiokafka_unrepaired() -> None:
    """Why the repair exists: aiokafka catches OSError only, uvloop raises RuntimeError."""
    original = getattr(AIOKafkaConnection.send, "__wrapped__", AIOKafkaConnection.send)

    async def scenario() -> None:
        conn, in_flight, server = await _connection_whose_broker_went_away()
        try:
            with pytest.raises(RuntimeError):
                original(conn, MetadataRequest([]))
        finally:
            in_flight.cancel()
            conn._read_task.cancel()
            server.close()

    uvloop.run(scenario())


def test_repaired_the_write_is_a_connection_error_and_fails_what_was_in_flight() -> None:
    install_closed_transport_repair()
    install_closed_transport_repair()  # idempotent: one wrapper, not two
    assert not hasattr(AIOKafkaConnection.send.__wrapped__, "__wrapped__")

    async def scenario() -> tuple[BaseException | None, bool]:
        conn, in_flight, server = await _connection_whose_broker_went_away()
        try:
            with pytest.raises(KafkaConnectionError, match="broken"):
                conn.send(MetadataRequest([]))
            await asyncio.wait([in_flight], timeout=5)
            return in_flight.exception(), conn.connected()
        finally:
            server.close()

    pending_error, connected = uvloop.run(scenario())
    # aiokafka's callers retry on KafkaConnectionError: the metadata task survives and the request is re-sent.
    assert isinstance(pending_error, KafkaConnectionError)
    assert connected is False


def test_a_runtime_error_on_an_open_transport_is_not_disguised() -> None:
    install_closed_transport_repair()

    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = AIOKafkaConnection("127.0.0.1", port)
        conn._reader, conn._writer = reader, writer
        conn._versions = {MetadataRequest.API_KEY: (0, 1)}

        def write(data: bytes) -> None:
            raise RuntimeError("a bug elsewhere")

        writer.write = write  # the transport itself stays open
        conn._read_task = asyncio.ensure_future(asyncio.sleep(3600))
        try:
            with pytest.raises(RuntimeError, match="a bug elsewhere"):
                conn.send(MetadataRequest([]))
        finally:
            conn.close()
            server.close()

    uvloop.run(scenario())


def _slow_buffer(seconds_per_record: float):
    """Faust's real ProducerBuffer, running, whose records take a while each to reach the client."""
    from types import SimpleNamespace

    from faust.transport.producer import ProducerBuffer

    sent: list = []

    class SlowChannel:
        async def publish_message(self, fut, wait: bool = False) -> None:
            await asyncio.sleep(seconds_per_record)
            sent.append(fut)

    buffer = ProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    channel = SlowChannel()
    records = [SimpleNamespace(message=SimpleNamespace(channel=channel)) for _ in range(3)]
    return buffer, records, sent


def test_unrepaired_faust_flush_returns_before_every_record_reached_the_client() -> None:
    """Why the repair exists: a commit after this flush would cover changelog records still on their way."""
    from faust.transport.producer import ProducerBuffer

    original = getattr(ProducerBuffer.flush, "__wrapped__", ProducerBuffer.flush)

    async def scenario() -> int:
        buffer, records, sent = _slow_buffer(0.3)
        await buffer.start()
        for r in records:
            buffer.put(r)
        await original(buffer)
        reached = len(sent)
        await asyncio.sleep(1.5)  # let it drain: stopping a buffer with records left raises
        await buffer.stop()
        return reached

    assert asyncio.run(scenario()) < 3


def test_repaired_flush_returns_only_when_every_record_reached_the_client() -> None:
    install_complete_buffer_flush()
    install_complete_buffer_flush()  # idempotent

    async def scenario() -> tuple[int, int]:
        buffer, records, sent = _slow_buffer(0.3)
        await buffer.start()
        try:
            for r in records:
                buffer.put(r)
            await buffer.flush()
            return buffer.size, len(sent)
        finally:
            await buffer.stop()

    assert asyncio.run(scenario()) == (0, 3)


# -- the source-offset guard, commit side (streams.compat.repairs.guard_source_gaps) ------------------------------------


def _guarded_app(name, applied):
    import faust

    from streams.compat.repairs import guard_source_gaps

    app = faust.App(name, broker="kafka://127.0.0.1:1", store="memory://")
    guard_source_gaps(app, "events", applied=None if applied is None else (lambda p: applied.setdefault(p, set())))
    app.topics._acking_topics.add("events")  # what subscribing an agent to the topic does
    return app.consumer  # never started: no broker is contacted


@pytest.fixture(scope="module")
def applied_sets():
    return {}


@pytest.fixture(scope="module")
def guarded_consumer(applied_sets):
    """A consumer of an app whose runtime reports the source offsets it handled (as the worker's does)."""
    return _guarded_app("t-repairs-commit-guard", applied_sets)


def _state(consumer, tp, acked, committed, sought=True, gap=None):
    from intervaltree import IntervalTree

    consumer._acked[tp] = list(acked)
    consumer._acked_index[tp] = set(acked)
    consumer._gap[tp] = IntervalTree.from_tuples([gap]) if gap else IntervalTree()
    consumer._committed_offset[tp] = committed
    sought_tps = vars(consumer).setdefault("_onestop_sought", set())
    (sought_tps.add if sought else sought_tps.discard)(tp)


@pytest.mark.parametrize("acked, applied, faust_commits, guarded_commits", [
    ([10, 11, 12], {10, 11, 12}, 13, 13),  # everything from the committed offset on handled: same answer
    ([11, 12], {11, 12}, 13, None),  # record 10 never handled: Faust commits over it (committed = *next* offset)
    ([10, 11, 12, 13], {10, 11, 12}, 14, 13),  # 13 acked by a stream that skipped it in a rebalance: not handled
    ([], {10, 11, 12, 13, 14}, None, 15),  # handled with no ack pending (its acks counted already): still committed
    ([12, 13], {12, 13}, None, None),
])
def test_a_commit_goes_exactly_as_far_as_the_records_the_runtime_handled(guarded_consumer, applied_sets, acked,
                                                                          applied, faust_commits,
                                                                          guarded_commits) -> None:
    from faust.transport.consumer import Consumer
    from faust.types import TP

    tp = TP("events", 0)
    _state(guarded_consumer, tp, acked, 10)
    assert Consumer._new_offset.__wrapped__(guarded_consumer, tp) == faust_commits
    _state(guarded_consumer, tp, acked, 10)
    applied_sets[0] = set(applied)
    assert guarded_consumer._new_offset(tp) == guarded_commits
    if guarded_commits is not None:  # what is committed is forgotten, the rest kept
        assert applied_sets[0] == {o for o in applied if o >= guarded_commits}


def test_records_passed_after_the_rewinds_give_up_do_not_hold_commits_back(guarded_consumer, applied_sets) -> None:
    from faust.types import TP

    tp = TP("events", 1)
    _state(guarded_consumer, tp, [15, 16], 10, gap=(10, 15))  # 10..14 deleted by retention, see MAX_REWINDS
    applied_sets[1] = {15, 16}
    assert guarded_consumer._new_offset(tp) == 17


def test_nothing_is_committed_between_a_revocation_and_the_seek_to_the_committed_offsets(guarded_consumer,
                                                                                        applied_sets) -> None:
    from faust.types import TP

    tp = TP("events", 2)
    applied_sets[2] = {10, 11}
    _state(guarded_consumer, tp, [10, 11], 10, sought=False)
    assert guarded_consumer._new_offset(tp) is None
    _state(guarded_consumer, tp, [10, 11], 10, sought=True)
    assert guarded_consumer._new_offset(tp) == 12
    other = TP("elsewhere", 0)  # other topics (changelogs, reference topics) keep Faust's rule
    _state(guarded_consumer, other, [11, 12], 10, sought=False)
    assert guarded_consumer._new_offset(other) == 13


@pytest.mark.parametrize("acked, commits", [([10, 11, 12], 13), ([11, 12], None), ([12, 13], None)])
def test_without_the_runtimes_record_a_commit_still_starts_at_the_committed_offset(acked, commits) -> None:
    from faust.types import TP

    consumer = _guarded_app("t-repairs-commit-guard-bare", None)
    tp = TP("events", 0)
    _state(consumer, tp, acked, 10)
    assert consumer._new_offset(tp) == commits


def test_a_record_skipped_while_later_ones_were_applied_is_read_again(guarded_consumer, applied_sets,
                                                                      monkeypatch) -> None:
    """Commits held at a record never applied would hold the partition's lag up for good; after a while the
    partition is read again from that record (idempotent), which lets the commits go on."""
    import streams.compat.repairs as repairs
    from faust.types import TP

    tp = TP("events", 3)
    sought: list = []

    async def seek(partition, offset):  # stands in for the consumer thread's seek
        sought.append((partition, offset))

    monkeypatch.setattr(guarded_consumer, "seek", seek, raising=False)

    async def scenario() -> list:
        _state(guarded_consumer, tp, [11, 12], 10)
        applied_sets[3] = {11, 12}
        assert guarded_consumer._new_offset(tp) is None  # held at 10, not yet long enough
        await asyncio.sleep(0)
        assert sought == []
        monkeypatch.setattr(repairs, "SKIPPED_RECORD_SECONDS", 0.0)
        assert guarded_consumer._new_offset(tp) is None
        await asyncio.sleep(0)
        return list(sought)

    assert asyncio.run(scenario()) == [(tp, 10)]
    applied_sets[3] = {10, 11, 12}  # read again and applied: the commit goes on
    _state(guarded_consumer, tp, [10], 10)
    assert guarded_consumer._new_offset(tp) == 13
