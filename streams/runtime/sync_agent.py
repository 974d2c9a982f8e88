"""National-portal sync bodies (``DongBoHoSoMC``, ``CapNhatTienDoHoSoMC``) into the events topic, for both entry
points: ``POST /api/dvcqg/{service}`` (``streams.serve.sync``) and the ``dvcqg-sync`` topic (the agent here).

One helper, ``SyncIngest.ingest``, converts a body with ``models.dvcqg`` and produces its events (key = dossier
code) to the events topic and every refused record or body to the dead-letter topic, so that the HTTP path and the
topic path cannot drift apart. Delivery is at least once: the events are acknowledged by the broker before the HTTP
answer is sent or the sync record's offset can be committed, and a body handled twice gives the same event ids,
which the dossier state takes as duplicates.

Dead letters carry the body through ``redact_body`` (only the fields the converter reads; never names, numbers or
file names), the reason in ``x-reason`` and the converter's message, which names fields and never values, in
``x-error``.

Records of ``dvcqg-sync``: value = the request body as posted to DVCQG (envelope or bare array); optional headers
``service`` (``DongBoHoSoMC`` / ``CapNhatTienDoHoSoMC``) and ``query`` (``MaDinhDanhDV=...&isUpdating=True``);
the key is not read.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

from models.dvcqg import (DEFAULT_PROFILE, SERVICES, BodyError, Conversion, SenderProfile, body_records, convert_body,
                          load_profile, redact_body)
from models.dvcqg_fields import safe_code
from models.events import event_to_json
from streams.runtime.runtime import DLQ_MAX_VALUE_BYTES, MAX_HEADER_CHARS
from streams.runtime.settings import WorkerSettings

__all__ = ["SYNC_AGENT_NAME", "SyncIngest", "SyncOutcome", "attach_sync", "record_headers"]

log = logging.getLogger(__name__)

SYNC_AGENT_NAME = "onestop.dvcqg-sync"
PROCESSOR_ERROR = "processor_error"
"""Reason of a body the converter failed on unexpectedly (a defect on our side, not the sender's)."""


@dataclass
class SyncOutcome:
    """What one body gave, for the HTTP answer and the logs: counts and refusals, never the body's values."""

    service: str | None
    records: int = 0
    events: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    unknown_codes: dict[str, int] = field(default_factory=dict)
    warnings: int = 0
    body_error: tuple[str, str] | None = None
    """(reason, message) when nothing of the body could be converted."""

    @property
    def accepted(self) -> int:
        return self.records - len(self.rejected)

    @property
    def recorded_nothing(self) -> bool:
        """Nothing of the body was recorded: a body error, or every record refused (the HTTP answer's ``-1``)."""
        return self.body_error is not None or bool(self.records and not self.accepted)


def _parse(body: bytes | None) -> Any:
    """The body as JSON for redaction and record lookup, or None when it is not (then it is never kept)."""
    if not body:
        return None
    try:
        return json.loads(bytes(body).decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return None


def _redacted_json(obj: Any) -> bytes | None:
    redacted = redact_body(obj)
    return None if redacted is None else json.dumps(redacted, ensure_ascii=False, separators=(",", ":")).encode()


class SyncIngest:
    """Converts sync bodies with one sender profile and produces the events and dead letters of each."""

    def __init__(self, runtime: Any, events_topic: Any, profile: SenderProfile = DEFAULT_PROFILE) -> None:
        self.runtime = runtime
        self.events_topic = events_topic
        self.profile = profile

    def _count(self, service: str | None, outcome: SyncOutcome) -> None:
        """The body's outcome in the worker's counters: ``refused`` when nothing of it was recorded,
        ``partial`` when some records were refused. The service is the converter's, else the one asked for when it
        is known, else ``unknown``."""
        name = outcome.service or service
        name = name if name in SERVICES else "unknown"
        refused = len(outcome.rejected)
        kind = "refused" if outcome.recorded_nothing else "partial" if refused else "ok"
        self.runtime.health.sync(name, kind, outcome.accepted, refused)

    async def ingest(self, body: bytes | None, *, service: str | None = None, query: str | None = None,
                     origin: Mapping[str, str] | None = None) -> SyncOutcome:
        """Convert ``body`` and produce everything it gave; returns once the broker has acknowledged it all.

        ``origin`` becomes dead-letter headers saying where the body came from (``x-source-topic``... or
        ``x-source-http``). A failure to produce raises: the caller answers "try again" or lets the record be read
        again, and a repeat is harmless."""
        origin = dict(origin or {})
        obj = _parse(body)
        try:
            payload = obj if obj is not None and not isinstance(obj, str) else (body or b"")
            conv = convert_body(payload, service=service, query=query, profile=self.profile)
        except BodyError as exc:
            outcome = SyncOutcome(service=service, body_error=(exc.reason, exc.message))
            await self._dead_letter(None, _redacted_json(obj), exc.reason, exc.message, origin, service)
            self._count(service, outcome)
            log.warning("dvcqg body refused (%s): %s: %s", _where(origin), exc.reason, exc.message)
            return outcome
        except Exception as exc:  # a defect of ours must not lose the body nor stop the path
            log.exception("dvcqg converter failed (%s)", _where(origin))
            message = f"converter error {type(exc).__name__}"
            await self._dead_letter(None, _redacted_json(obj), PROCESSOR_ERROR, message, origin, service)
            outcome = SyncOutcome(service=service, body_error=(PROCESSOR_ERROR, message))
            self._count(service, outcome)
            return outcome
        await self._produce(conv, obj, origin)
        outcome = SyncOutcome(service=conv.service, records=conv.records, events=len(conv.events),
                              rejected=list(conv.rejected), unknown_codes=dict(conv.unknown_codes),
                              warnings=len(conv.warnings))
        self._count(service, outcome)
        if conv.rejected:
            log.info("dvcqg %s (%s): %d record(s), %d event(s), %d refused", conv.service, _where(origin),
                     conv.records, len(conv.events), len(conv.rejected))
        return outcome

    async def _produce(self, conv: Conversion, obj: Any, origin: dict[str, str]) -> None:
        sends = [_acknowledged(self.events_topic.send(key=e["subject"].encode(), value=event_to_json(e), force=True))
                 for e in conv.events]
        records = body_records(obj)
        for index, reason, message in conv.rejected:
            record = records[index] if index < len(records) else None
            key = safe_code(record.get("MaHoSo")) if isinstance(record, dict) else None
            sends.append(self._dead_letter(key, _redacted_json(record), reason, message,
                                           {**origin, "x-record-index": str(index)}, conv.service))
        # Concurrently: each send waits for its acknowledgement, and one body's records share the producer's batch.
        await asyncio.gather(*sends)

    async def _dead_letter(self, key: str | None, value: bytes | None, reason: str, message: str,
                           origin: Mapping[str, str], service: str | None) -> None:
        self.runtime.health.reject(reason)
        headers = {"x-reason": reason.encode(), "x-error": str(message)[:MAX_HEADER_CHARS].encode(),
                   "x-redacted": b"dvcqg-allow-list"}
        if service:
            headers["x-dvcqg-service"] = str(service)[:64].encode()
        headers.update({k: str(v)[:MAX_HEADER_CHARS].encode() for k, v in origin.items()})
        if value is None:  # empty rather than null: a record needs a key or a value, and a body has no key
            headers["x-value-dropped"] = b"not JSON: dropped unread, it may hold personal data"
            value = b""
        elif len(value) > DLQ_MAX_VALUE_BYTES:
            headers["x-truncated-value-bytes"] = str(len(value)).encode()
            value = value[:DLQ_MAX_VALUE_BYTES]
        await _acknowledged(self.runtime.dlq_topic.send(key=key.encode() if key else None, value=value,
                                                        headers=headers, force=True))


async def _acknowledged(send: Awaitable[Any]) -> None:
    """Wait for the broker: Faust's ``send`` hands the record to the producer and returns the future of its
    acknowledgement, so a sender told "0" must not be answered before that future resolves (or fails into "-5")."""
    pending = await send
    if inspect.isawaitable(pending):
        await pending


def _where(origin: Mapping[str, str]) -> str:
    if "x-source-http" in origin:
        return origin["x-source-http"]
    return f"{origin.get('x-source-topic')}[{origin.get('x-source-partition')}]@{origin.get('x-source-offset')}"


def record_headers(headers: Any) -> dict[str, str]:
    """A Kafka record's headers as lower-case names -> text (Faust hands a list of pairs or a mapping)."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    out = {}
    for name, value in items:
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", errors="replace")
        out[str(name).lower()] = "" if value is None else str(value)
    return out


def attach_sync(app: Any, runtime: Any, settings: WorkerSettings, events_topic: Any) -> SyncIngest:
    """Subscribe the worker to ``dvcqg-sync`` and keep the shared helper as ``runtime.sync`` for the HTTP path.

    The sender profile is read here, at start-up, so a broken profile stops the worker instead of converting
    with the wrong status table."""
    profile = load_profile(settings.dvcqg_profile) if settings.dvcqg_profile else DEFAULT_PROFILE
    ingest = SyncIngest(runtime, events_topic, profile)
    runtime.sync = ingest
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    topic = app.topic(settings.sync, partitions=settings.partitions, **raw)

    @app.agent(topic, name=SYNC_AGENT_NAME)
    async def forward_sync(stream: Any) -> None:
        # One record at a time, each produced and acknowledged before the next: the offset Faust commits is then
        # never ahead of what reached the events topic.
        async for event in stream.events():
            msg = event.message
            hdrs = record_headers(msg.headers)
            await ingest.ingest(msg.value, service=hdrs.get("service") or None, query=hdrs.get("query") or None,
                                origin={"x-source-topic": str(msg.topic), "x-source-partition": str(msg.partition),
                                        "x-source-offset": str(msg.offset)})

    log.info("dvcqg sync: topic %s, profile %s (source %s)", settings.sync,
             settings.dvcqg_profile or "default", profile.source)
    return ingest
