"""The client-library patches are where the map says, installed by the worker, and pinned to the versions they
were written for: an upgrade fails here first, so each patch is re-checked against the new internals."""

from __future__ import annotations

import importlib.metadata
import inspect

import pytest

import streams.compat as compat
from streams.runtime import app as runtime_app


@pytest.mark.parametrize("dist,version", sorted(compat.PINNED.items()))
def test_installed_versions_are_the_pinned_ones(dist, version):
    assert importlib.metadata.version(dist) == version, (
        f"{dist} is {importlib.metadata.version(dist)}, the patches in streams/compat were written for {version}: "
        "re-check each one (its upstream report and test are listed in streams.compat.PATCHES), then update PINNED")


def test_every_patch_has_its_defect_upstream_report_and_test():
    assert len({p.name for p in compat.PATCHES}) == len(compat.PATCHES)
    for patch in compat.PATCHES:
        assert callable(getattr(compat, patch.name, None)), patch.name
        assert patch.library in compat.PINNED, patch
        assert patch.defect and patch.upstream and patch.test.startswith("tests/"), patch


def test_the_worker_installs_every_listed_patch():
    installed = inspect.getsource(compat.install_patches)
    for patch in compat.PATCHES:
        assert f"{patch.name}(" in installed, f"{patch.name} is listed but install_patches does not call it"
    assert "install_patches(" in inspect.getsource(runtime_app.build_stream_app)


@pytest.mark.broker
def test_recovery_ends_at_the_last_committed_changelog_record(kafka_bootstrap, topic_prefix):
    """A partition written in transactions ends with a marker no consumer is handed: the last record recovery can
    reach is the last committed one, before it (and before an aborted transaction's records and marker). A
    partition written plainly ends at its end offset minus one, as Faust assumes; an empty one at -1."""
    import asyncio

    from aiokafka import AIOKafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    from streams.compat.transactions import last_committed_offsets

    topic = topic_prefix + "changelog"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        admin.close()

    async def scenario() -> dict:
        txn = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=topic_prefix + "probe")
        plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await txn.start()
        await plain.start()
        try:
            async with txn.transaction():
                for i in range(3):
                    await txn.send(topic, b"committed-%d" % i, partition=0)
            await txn.begin_transaction()
            await txn.send(topic, b"aborted", partition=0)
            await txn.abort_transaction()
            for i in range(2):
                await plain.send_and_wait(topic, b"plain-%d" % i, partition=1)
        finally:
            await txn.stop()
            await plain.stop()
        from aiokafka import AIOKafkaConsumer

        probe = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None)
        await probe.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(3)]
            ends = await probe.end_offsets(tps)
        finally:
            await probe.stop()
        found = await last_committed_offsets({"bootstrap_servers": kafka_bootstrap}, ends)
        return {tp.partition: (ends[tp], found[tp]) for tp in ends}

    got = asyncio.run(scenario())
    assert got[0][1] == 2 and got[0][0] > 4  # three committed (0-2), a marker, an aborted record, its marker
    assert got[1] == (2, 1)
    assert got[2] == (0, -1)


def test_read_committed_tables_makes_the_worker_consumer_read_committed():
    """The patch's two halves are in place (the end-to-end proof is tests/test_exactly_once.py, whose readers and
    recoveries would see aborted records or hang without them)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    create = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "_onestop_read_committed", False):  # installed by an app built earlier in this process
        create = create.__wrapped__

    class FakeApp:
        class tables:
            class recovery:
                @staticmethod
                async def _build_highwaters(*args):
                    return None

    compat.read_committed_tables(FakeApp, {})
    patched = AIOKafkaConsumerThread._create_worker_consumer
    assert getattr(patched, "_onestop_read_committed", False) and patched.__wrapped__ is create
    assert getattr(FakeApp.tables.recovery._build_highwaters, "_onestop_read_committed", False)
