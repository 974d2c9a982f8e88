"""Topic layout and its creation before any client subscribes.

Brokers that auto-create topics do so with one partition, and Faust then refuses to start
(``PartitionsMismatch``) or, worse, a keyed stream silently loses its per-dossier ordering. So every topic the
worker touches is created up front with its partition count and configs, and an existing topic with another
count is an operator error that must stop the worker with a clear message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError, for_code

from streams.runtime.security import kafka_client_config
from streams.runtime.settings import WorkerSettings

__all__ = ["TopicSpec", "TopicMismatchError", "topic_specs", "ensure_topics", "describe_partitions"]

log = logging.getLogger(__name__)

COMPACT = {"cleanup.policy": "compact"}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


class TopicMismatchError(RuntimeError):
    """An existing topic does not have the partition count the worker relies on."""


def topic_specs(settings: WorkerSettings) -> list[TopicSpec]:
    """All topics of one deployment.

    The changelog shares the events topic's partition count: Faust writes a dossier's state to the changelog
    partition of the record that changed it, so the two must line up one to one.
    Alerts are keyed by a stable alert id, so compaction keeps the latest version of each alert.
    Reference data (units, calendar) is small, read whole by every worker, and compacted.
    Sync bodies (``dvcqg-sync``) are read by the group like events, so they are spread over as many partitions.
    """
    n = settings.partitions
    ref = settings.reference_partitions
    return [
        TopicSpec(settings.events, n),
        TopicSpec(settings.dlq, n),
        TopicSpec(settings.sync, n),
        TopicSpec(settings.alerts, n, dict(COMPACT)),
        TopicSpec(settings.units, ref, dict(COMPACT)),
        TopicSpec(settings.calendar, ref, dict(COMPACT)),
        TopicSpec(settings.changelog, n, dict(COMPACT)),
    ]


def describe_partitions(admin: KafkaAdminClient, names: Iterable[str]) -> dict[str, int]:
    """Partition counts of the topics that exist (missing ones are left out).

    The metadata request sent here never auto-creates topics (kafka-python sets allow_auto_topic_creation=False).
    """
    wanted = list(names)
    counts: dict[str, int] = {}
    for topic in admin.describe_topics(wanted):
        if topic.get("error_code", 0) == 0 and topic.get("partitions"):
            # kafka-python 3 keys topics by "name" (2.x used "topic").
            counts[topic["name"]] = len(topic["partitions"])
    return counts


def ensure_topics(
    bootstrap: str,
    settings: WorkerSettings,
    *,
    specs: list[TopicSpec] | None = None,
    timeout: float = 30.0,
) -> dict[str, str]:
    """Create missing topics, verify existing ones; returns ``{topic: "created" | "exists"}``.

    Idempotent, and safe when several workers start at once: a concurrent creation shows up as
    TopicAlreadyExists and is then verified like any existing topic.
    """
    specs = specs if specs is not None else topic_specs(settings)
    timeout_ms = int(timeout * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id=f"{settings.app_id}-topics",
        request_timeout_ms=timeout_ms,
        **kafka_client_config(settings),
    )
    try:
        existing = describe_partitions(admin, [s.name for s in specs])
        missing = [s for s in specs if s.name not in existing]
        result = {s.name: "exists" for s in specs if s.name in existing}
        if missing:
            response = admin.create_topics(
                {
                    s.name: {
                        "num_partitions": s.partitions,
                        "replication_factor": settings.replication_factor,
                        "configs": s.configs,
                    }
                    for s in missing
                },
                timeout_ms=timeout_ms,
                raise_errors=False,
            )
            for topic in response["topics"]:
                error = for_code(topic["error_code"])
                if topic["error_code"] == 0:
                    result[topic["name"]] = "created"
                elif error is TopicAlreadyExistsError:
                    result[topic["name"]] = "exists"
                else:
                    raise RuntimeError(
                        f"cannot create topic {topic['name']!r}: {error.__name__}: {topic.get('error_message')}"
                    )
            admin.wait_for_topics([s.name for s in missing], timeout_ms=timeout_ms)
        _verify(specs, describe_partitions(admin, [s.name for s in specs]))
        for name, what in result.items():
            log.info("topic %s: %s", name, what)
        return result
    finally:
        admin.close()


def _verify(specs: list[TopicSpec], counts: dict[str, int]) -> None:
    problems = []
    for spec in specs:
        have = counts.get(spec.name)
        if have is None:
            problems.append(f"{spec.name!r} is missing after creation")
        elif have != spec.partitions:
            problems.append(f"{spec.name!r} has {have} partitions, expected {spec.partitions}")
    if problems:
        raise TopicMismatchError(
            "topic layout does not match the settings: "
            + "; ".join(problems)
            + ". Partition counts cannot shrink and growing them re-keys dossiers, so fix the settings "
            "(ONESTOP_PARTITIONS / ONESTOP_TOPIC_PREFIX) or migrate the topics deliberately."
        )
