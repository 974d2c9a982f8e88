"""Fetch pacing (streams/compat/pacing.py) on a real broker: an idle consumer no longer spins on empty fetches, and a
record that arrives is still delivered."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.consumer.fetcher import Fetcher
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from streams.compat.pacing import install_empty_fetch_pause

pytestmark = pytest.mark.broker

PAUSE = 0.05
WINDOW = 1.5


@pytest.fixture
def topic(kafka_bootstrap, topic_prefix):
    name = topic_prefix + "paced"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        admin.close()
    return name


@pytest.fixture
def counted_fetches(monkeypatch):
    """Count fetch requests under the unpatched fetcher; the pacing (when installed) wraps the counter."""
    calls = {"n": 0}
    base = getattr(Fetcher._proc_fetch_request, "__wrapped__", Fetcher._proc_fetch_request)

    async def counting(self, assignment, node_id, request):
        calls["n"] += 1
        return await base(self, assignment, node_id, request)

    monkeypatch.setattr(Fetcher, "_proc_fetch_request", counting)
    return calls


async def _idle_consumer(bootstrap: str, topic: str, seconds: float) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=500)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.seek_to_beginning()
        await asyncio.sleep(seconds)
    finally:
        await consumer.stop()


def test_without_pacing_an_idle_consumer_fetches_as_fast_as_the_embedded_broker_answers(kafka_bootstrap, topic,
                                                                                       counted_fetches):
    """Why the pacing exists: the embedded broker answers an empty fetch at once, ignoring fetch_max_wait_ms."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        pytest.skip("an external broker may honour fetch_max_wait_ms; this shows the embedded broker's behaviour")
    asyncio.run(_idle_consumer(kafka_bootstrap, topic, WINDOW))
    assert counted_fetches["n"] > 5 * (WINDOW / PAUSE)


def test_paced_an_idle_consumer_sends_about_one_fetch_per_pause(kafka_bootstrap, topic, counted_fetches):
    install_empty_fetch_pause(PAUSE)
    install_empty_fetch_pause(PAUSE * 10)  # idempotent: the first pause stays, nothing is wrapped twice
    assert getattr(Fetcher._proc_fetch_request, "__wrapped__", None) is not None
    asyncio.run(_idle_consumer(kafka_bootstrap, topic, WINDOW))
    # One fetch in flight per node at a time, each held at least PAUSE: at most WINDOW / PAUSE (+ the first).
    assert 1 <= counted_fetches["n"] <= WINDOW / PAUSE + 2


def test_paced_a_record_produced_while_idle_is_still_delivered(kafka_bootstrap, topic, counted_fetches):
    install_empty_fetch_pause(PAUSE)

    async def scenario() -> bytes:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None, fetch_max_wait_ms=500)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await consumer.start()
        await producer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])
            await consumer.seek_to_beginning()
            await asyncio.sleep(0.5)  # idle for a while: several paced empty fetches
            await producer.send_and_wait(topic, b"late-arrival")
            record = await asyncio.wait_for(consumer.getone(), timeout=10)
            return record.value
        finally:
            await producer.stop()
            await consumer.stop()

    assert asyncio.run(scenario()) == b"late-arrival"
