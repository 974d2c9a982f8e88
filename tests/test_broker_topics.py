"""Topic creation against the real embedded broker: partition counts, compaction, idempotence, mismatch."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from streams.tools.broker import BrokerStartError, EmbeddedBroker
from streams.runtime.settings import WorkerSettings
from streams.runtime.topics import TopicMismatchError, describe_partitions, ensure_topics, topic_specs

pytestmark = pytest.mark.broker


def settings_for(bootstrap: str, prefix: str, **kw) -> WorkerSettings:
    return WorkerSettings(broker=bootstrap, topic_prefix=prefix, app_id=f"{prefix}app", **kw)


def test_creates_every_topic_with_its_partition_count(kafka_bootstrap: str, topic_prefix: str) -> None:
    settings = settings_for(kafka_bootstrap, topic_prefix, partitions=3)
    result = ensure_topics(kafka_bootstrap, settings)

    specs = topic_specs(settings)
    assert result == {s.name: "created" for s in specs}
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        counts = describe_partitions(admin, [s.name for s in specs])
        assert counts == {
            settings.events: 3, settings.dlq: 3, settings.sync: 3, settings.alerts: 3, settings.changelog: 3,
            settings.units: 1, settings.calendar: 1,
        }
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in (settings.units, settings.alerts)]
        )
        for name in (settings.units, settings.alerts):
            assert configs["topic"][name]["cleanup.policy"]["value"] == "compact"
    finally:
        admin.close()


def test_is_idempotent(kafka_bootstrap: str, topic_prefix: str) -> None:
    settings = settings_for(kafka_bootstrap, topic_prefix)
    first = ensure_topics(kafka_bootstrap, settings)
    second = ensure_topics(kafka_bootstrap, settings)
    assert set(first.values()) == {"created"}
    assert second == {name: "exists" for name in first}


def test_partition_mismatch_is_a_clear_error(kafka_bootstrap: str, topic_prefix: str) -> None:
    ensure_topics(kafka_bootstrap, settings_for(kafka_bootstrap, topic_prefix, partitions=4))
    with pytest.raises(TopicMismatchError) as info:
        ensure_topics(kafka_bootstrap, settings_for(kafka_bootstrap, topic_prefix, partitions=2))
    message = str(info.value)
    assert f"{topic_prefix}dossier-events' has 4 partitions, expected 2" in message
    assert "ONESTOP_PARTITIONS" in message


def test_embedded_broker_listens_on_loopback_and_stops_by_pid(tmp_path) -> None:
    with EmbeddedBroker(tmp_path / "b") as broker:
        assert broker.bootstrap.startswith("127.0.0.1:")
        pid = broker.pid
        assert pid is not None
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.close()
    assert broker.pid is None
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)


def test_embedded_broker_refuses_a_busy_port(tmp_path) -> None:
    with EmbeddedBroker(tmp_path / "b") as first:
        clash = EmbeddedBroker(tmp_path / "c", port=first.port, start_timeout=5)
        with pytest.raises(BrokerStartError, match="already in use"):
            clash.start()
        assert clash.pid is None
