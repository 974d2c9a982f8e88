"""A failed transaction's alerts and dead letters read back on a real broker (``Transactions.outputs_committed``).

When the worker sees a transaction fail while the broker committed its offset, the records are read again unless
the transaction committed: for one without changelog records that is decided by looking for its outputs, byte for
byte, with a read_committed reader. Here the broker really commits (or really aborts) and only the client is told
the commit failed, which is the case the look decides.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from streams.runtime.transactions import Output, Transactions

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

ALERTS = [(b"alert-1", b'{"kind": "overdue"}'), (None, b'{"kind": "due_soon"}')]
# Two dead letters of the same bytes from two source offsets: only their headers tell them apart.
DEAD = [(b"D1", b"{not json", [("x-reason", b"invalid_json"), ("x-source-offset", str(n).encode())]) for n in (3, 4)]


class Unsure(Exception):
    """The commit's answer lost on the way back (the broker away at that moment, say)."""


@pytest.fixture
def txn(kafka_bootstrap, topic_prefix):
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic_prefix + "alerts", 1, 1), NewTopic(topic_prefix + "dlq", 2, 1),
                             NewTopic(topic_prefix + "changelog", 1, 1)])
    finally:
        admin.close()
    settings = SimpleNamespace(app_id=topic_prefix + "app", broker=kafka_bootstrap, events=topic_prefix + "events",
                               alerts=topic_prefix + "alerts", dlq=topic_prefix + "dlq")
    return Transactions(settings, {}, topic_prefix + "changelog")


def failed_commit(txn: Transactions, *, commits: bool) -> tuple[tuple[Output, ...], bool]:
    """A transaction of ``ALERTS`` and ``DEAD`` whose commit the client sees fail; on the broker it commits or
    stays open. Then the partition's producer starts again (which aborts what is open), as the restoration does.
    Returns what the worker remembered of the outputs, and whether ``outputs_committed`` then finds them."""

    async def run() -> tuple[tuple[Output, ...], bool]:
        await txn.own({0})
        producer = txn.producers[0]
        real_commit = producer.commit_transaction

        async def commit_then_fail():
            if commits:
                await real_commit()
            raise Unsure("no answer to EndTxn")

        producer.commit_transaction = commit_then_fail
        with pytest.raises(Unsure):
            await txn.commit(0, [], ALERTS, DEAD, None)
        assert 0 not in txn.producers  # closed on failure
        outputs = txn.acknowledged[0]
        await txn.own({0})
        found = await txn.outputs_committed(outputs)
        await txn.close()
        return outputs, found

    return asyncio.run(run())


def test_the_outputs_of_a_transaction_that_committed_are_found_though_the_client_saw_it_fail(txn) -> None:
    outputs, found = failed_commit(txn, commits=True)
    assert found is True
    assert [(o.topic, o.key, o.value, o.headers) for o in outputs] == (
        [(txn.settings.alerts, k, v, ()) for k, v in ALERTS]
        + [(txn.settings.dlq, k, v, tuple(h)) for k, v, h in DEAD])


def test_the_outputs_of_a_transaction_that_did_not_commit_are_not_found(txn) -> None:
    outputs, found = failed_commit(txn, commits=False)
    assert len(outputs) == 4 and found is False


def test_a_record_that_differs_or_is_not_there_is_not_taken_for_an_output(txn) -> None:
    outputs, found = failed_commit(txn, commits=True)
    assert found is True
    dead = outputs[2]

    async def look(*candidates: Output) -> bool:
        return await txn.outputs_committed(candidates)

    assert asyncio.run(look(dead._replace(headers=outputs[3].headers))) is False  # the other dead letter's origin
    assert asyncio.run(look(dead._replace(value=b"{other"))) is False
    assert asyncio.run(look(dead._replace(offset=dead.offset + 1000))) is False  # beyond the end: lost
    assert asyncio.run(look(dead, outputs[0])) is True
    assert asyncio.run(look()) is True
