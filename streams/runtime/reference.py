"""Reference data every worker needs whole: the work calendar and the unit registry (compacted topics).

A calendar document or a unit record is small and must reach *every* worker, so it is not consumed through the
consumer group (which would give each record to one worker only): a plain consumer thread in each worker reads both
topics from the beginning, keeps the latest valid value per key, and the worker applies a change on its next clock
tick. A new calendar version changes the deadlines this product computed (never those printed on receipt slips), so
the worker rebuilds the tallies of the partitions it owns; an invalid document is refused, counted, and the
calendar in force stays.

Records: ``work-calendar`` key ``<calendar_id>:<year>``, value = the operator document (JSON or YAML);
``unit-registry`` key = unit code, value = ``{"unit_code", "name", "level", "province_code", "parent_unit_code"}``
(JSON), optionally with ``name_vi``, ``name_en`` and the unit's ``history`` (``models.units``), which the follower
keeps as the unit's records for the names a person reads; a null value (tombstone) removes the key.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from typing import Any

import yaml

from models.calendar import CalendarDocument, CalendarError, WorkCalendar, parse_calendar_document
from models.units import UnitRecord, UnitRegistry, UnitRegistryError, from_reference_record

log = logging.getLogger(__name__)

#: Pause between reference-topic fetches that brought nothing; a change is applied within about this plus the
#: worker's 2 s apply timer.
POLL_PAUSE_SECONDS = 1.0

UNIT_LEVELS = ("ministry", "province", "agency", "district_legacy", "commune")


class ReferenceError(ValueError):
    pass


def parse_unit(key: str, raw: bytes) -> dict:
    """A unit registry record; the key must equal the record's unit code."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ReferenceError(f"unit {key!r}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("unit_code") != key:
        raise ReferenceError(f"unit {key!r}: value must be an object whose unit_code equals the key")
    level = doc.get("level")
    if level is not None and level not in UNIT_LEVELS:
        raise ReferenceError(f"unit {key!r}: level {level!r} is not one of {UNIT_LEVELS}")
    return {"province": doc.get("province_code"), "level": level, "name": doc.get("name"),
            "parent": doc.get("parent_unit_code")}


def _unit_records(key: str, raw: bytes) -> list[UnitRecord]:
    """The named records of a unit value; none for a value without a name (it still sets province and level)."""
    try:
        return from_reference_record(key, raw)
    except UnitRegistryError:
        return []


def parse_calendar(key: str, raw: bytes) -> CalendarDocument:
    try:
        obj = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ReferenceError(f"calendar {key!r}: not JSON/YAML: {exc}") from None
    if not isinstance(obj, dict):
        raise ReferenceError(f"calendar {key!r}: value must be a document")
    try:
        doc = parse_calendar_document(obj)
    except CalendarError as exc:
        raise ReferenceError(f"calendar {key!r}: {exc}") from None
    if key != f"{doc.calendar_id}:{doc.year}":
        raise ReferenceError(f"calendar {key!r}: key must be '<calendar_id>:<year>' = {doc.calendar_id}:{doc.year}")
    return doc


def build_calendar(docs: list[CalendarDocument]) -> WorkCalendar:
    """The bundled calendar with every newer operator document applied; older or invalid ones are skipped."""
    cal = WorkCalendar.default()
    for doc in sorted(docs, key=lambda d: (d.year, d.version)):
        try:
            cal = cal.with_document(doc)
        except CalendarError as exc:
            log.warning("calendar document %s:%s v%s not applied: %s", doc.calendar_id, doc.year, doc.version, exc)
    return cal


class ReferenceFollower(threading.Thread):
    """Follows both compacted topics from the beginning; ``snapshot()`` gives the latest valid data."""

    def __init__(self, bootstrap: str, calendar_topic: str, units_topic: str, client_config: dict | None = None):
        # A daemon thread: it holds nothing that needs flushing, so it simply ends with the worker process.
        super().__init__(name="onestop-reference", daemon=True)
        self.bootstrap, self.calendar_topic, self.units_topic = bootstrap, calendar_topic, units_topic
        self.client_config = client_config or {}
        self._lock = threading.Lock()
        self._calendars: dict[str, CalendarDocument] = {}
        self._units: dict[str, dict] = {}
        self._unit_records: dict[str, list[UnitRecord]] = {}  # names in both languages and their history
        self._registry: tuple[int, UnitRegistry] | None = None
        self.generation = 0
        self.rejected: Counter = Counter()
        self._stop = threading.Event()

    def snapshot(self) -> tuple[int, list[CalendarDocument], dict[str, dict]]:
        with self._lock:
            return self.generation, list(self._calendars.values()), dict(self._units)

    def unit_registry(self) -> UnitRegistry:
        """The names of the units on the topic (every record of each unit's history), rebuilt on a change only."""
        with self._lock:
            if self._registry is None or self._registry[0] != self.generation:
                records = [r for rs in self._unit_records.values() for r in rs]
                self._registry = (self.generation, UnitRegistry(records, source="unit-registry topic"))
            return self._registry[1]

    def stop(self) -> None:
        self._stop.set()

    def apply_record(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """One record of either topic (public so that it can be tested without a broker)."""
        k = key.decode("utf-8", "replace") if key else ""
        try:
            if topic == self.calendar_topic:
                doc = None if value is None else parse_calendar(k, value)
                with self._lock:
                    current = self._calendars.get(k)
                    if doc is None:
                        self._calendars.pop(k, None)
                    elif current is None or doc.version > current.version:
                        self._calendars[k] = doc
                    else:
                        return
                    self.generation += 1
            elif topic == self.units_topic:
                unit = None if value is None else parse_unit(k, value)
                records = None if value is None else _unit_records(k, value)
                with self._lock:
                    if unit is None:
                        self._units.pop(k, None)
                    else:
                        self._units[k] = unit
                    if records:
                        self._unit_records[k] = records
                    else:
                        self._unit_records.pop(k, None)
                    self.generation += 1
        except ReferenceError as exc:
            self.rejected["calendar" if topic == self.calendar_topic else "unit"] += 1
            log.warning("reference record refused, the data in force stays: %s", exc)

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        while not self._stop.is_set():
            try:
                consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                         client_id="onestop-reference", fetch_max_wait_ms=1000,
                                         isolation_level="read_committed",  # only what writers committed
                                         **self.client_config)
                parts = [TopicPartition(t, p) for t in (self.calendar_topic, self.units_topic)
                         for p in sorted(consumer.partitions_for_topic(t) or ())]
                consumer.assign(parts)
                consumer.seek_to_beginning(*parts)
                while not self._stop.is_set():
                    # Never a blocking poll: kafka-python's poll keeps re-sending fetches until its timeout, and a
                    # broker that answers an empty fetch at once (the embedded one ignores fetch_max_wait_ms)
                    # turned a 1 s poll into a busy loop costing half a core and the worker's GIL. A poll of 0
                    # returns what the last fetch brought and sends the next; the pause paces the fetches.
                    batches = consumer.poll(timeout_ms=0)
                    for tp, records in batches.items():
                        for r in records:
                            self.apply_record(tp.topic, r.key, r.value)
                    if not batches:
                        self._stop.wait(POLL_PAUSE_SECONDS)
                consumer.close()
            except Exception:  # the broker may be away; the data in force stays until it is back
                log.exception("reference topics unavailable; retrying")
                self._stop.wait(5)


def rebuild_partition(runtime: Any, partition: int) -> None:
    """Recompute one owned partition's tallies and schedule from its table, without yielding to the event loop:
    an event processed half-way through would be counted in neither or both of the old and new tallies."""
    old = runtime.partitions[partition]
    now = runtime.now()
    new = runtime._new_state(partition, now)
    if old.keys is not None:
        new.keys = set(old.keys)
    rebuild, n = runtime.processor.rebuilder(now), 0
    for code, stored in runtime._iter_partition(partition, new):
        new.count_restored(code, rebuild, stored)
        n += 1
    new.tallies.add(rebuild.tallies())
    new.dossiers = n
    runtime.partitions[partition] = new
    runtime._release(old)


def attach_reference(app: Any, runtime: Any, settings: Any, client_config: dict | None = None) -> ReferenceFollower:
    """Start the follower with the worker and apply its changes on a timer of the worker's event loop."""
    follower = ReferenceFollower(settings.broker, settings.calendar, settings.units, client_config)
    calendar_in_force = getattr(runtime.processor, "calendar", None)  # processors without a calendar ignore it
    applied = {"generation": 0, "calendar": calendar_in_force.version if calendar_in_force is not None else None}

    @app.task
    async def _start_reference() -> None:
        follower.start()

    @app.timer(interval=2.0, name="onestop.reference-data")
    async def _apply_reference() -> None:
        generation, docs, units = follower.snapshot()
        if generation == applied["generation"] or not runtime.ready:
            return
        applied["generation"] = generation
        processor = runtime.processor
        if hasattr(processor, "unit_meta"):
            for code, info in units.items():
                processor.unit_meta[code] = {"province": info["province"], "level": info["level"]}
        if not hasattr(processor, "set_calendar"):
            return
        calendar = build_calendar(docs)
        if calendar.version != applied["calendar"]:
            applied["calendar"] = calendar.version
            processor.set_calendar(calendar)
            log.info("calendar %s in force; rebuilding the tallies of partitions %s", calendar.version,
                     sorted(runtime.partitions))
            for p in list(runtime.partitions):
                rebuild_partition(runtime, p)

    runtime.reference = follower
    return follower
