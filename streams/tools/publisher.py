"""Publisher client for one-stop systems (and for our own simulator and replay).

A one-stop system calls ``publish(envelope)`` after each dossier step. The client validates the event against the
contract *before* it leaves the system, so a publisher learns of a mistake at once, in its own logs, instead of from
our dead-letter topic. Delivery: ``acks=all`` and the idempotent producer (no duplicates from retries), key = dossier
code (one dossier's events stay ordered in one partition).

    from streams.tools.publisher import DossierEventPublisher
    from models.events import make_envelope

    with DossierEventPublisher("kafka:9092") as pub:
        pub.publish(make_envelope("received", event_id=str(uuid4()), source="igate.example-province",
                                  subject="G09.20-20260609-0092637", time=now, data={...}))

A broker with SASL/TLS takes kafka-python's own options, e.g. built from the worker's settings:
``DossierEventPublisher("kafka:9093", **streams.runtime.security.kafka_client_config(WorkerSettings.from_env()))``.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaProducer

from models.events import EventError, decode_event, event_to_json

__all__ = ["DossierEventPublisher", "EventError"]

#: Largest copy of a refused line sent to the DLQ (Kafka's default record limit is 1 MiB including headers).
DLQ_MAX_VALUE_BYTES = 900 * 1024


class DossierEventPublisher:
    def __init__(self, bootstrap: str, topic: str = "dossier-events", *, dlq_topic: str = "dossier-events-dlq",
                 **producer_config: Any):
        config = {
            "bootstrap_servers": bootstrap,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
            "batch_size": 64 * 1024,
            "client_id": "onestop-publisher",
            **producer_config,
        }
        self.topic = topic
        self.dlq_topic = dlq_topic
        self._producer = KafkaProducer(**config)

    def publish(self, event: dict | bytes, *, validate: bool = True):
        """Send one CloudEvent (a dict or its JSON bytes). Raises ``EventError`` when it breaks the contract."""
        raw = event if isinstance(event, bytes) else event_to_json(event)
        if validate:
            subject = decode_event(raw).subject
        else:
            subject = event["subject"] if isinstance(event, dict) else decode_event(raw).subject
        return self._producer.send(self.topic, key=subject.encode(), value=raw)

    def publish_raw(self, raw: bytes, key: bytes | None):
        """Send bytes as they are (replay of a history: the worker, not the client, judges them)."""
        return self._producer.send(self.topic, key=key, value=raw)

    def dead_letter(self, raw: bytes, reason: str, message: str, **headers: str):
        """Record a line that could not be published with the reason, so nothing is refused silently.

        A line bigger than a Kafka record may be is cut (the header keeps its size): the producer would refuse
        the whole copy, and a replay stopped half-way by one oversized line is worse than a shortened DLQ copy.
        """
        hdrs = [("x-reason", reason.encode()), ("x-error", message.encode()[:1000])]
        hdrs += [(f"x-{k.replace('_', '-')}", str(v).encode()) for k, v in headers.items()]
        if len(raw) > DLQ_MAX_VALUE_BYTES:
            hdrs.append(("x-truncated-value-bytes", str(len(raw)).encode()))
            raw = raw[:DLQ_MAX_VALUE_BYTES]
        return self._producer.send(self.dlq_topic, key=None, value=raw, headers=hdrs)

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        self._producer.close(timeout=timeout)

    def __enter__(self) -> "DossierEventPublisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
        self.close()
