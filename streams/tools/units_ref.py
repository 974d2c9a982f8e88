"""Unit registry files to ``unit-registry`` topic records: what ``onestop reference units`` and the demo publish.

Two file forms are read:

- the registry of ``models.units`` (YAML ``units:`` list or CSV with the columns ``code, name_vi, name_en, level,
  parent, valid_from, valid_to, merged_into``; history and both languages), loaded strictly by
  ``UnitRegistry.load``; each code becomes one record holding its names and whole history;
- the older flat YAML/JSON list of ``unit_code, name, level, province_code, parent_unit_code``, published as it is.

Every record is checked by the worker's own reader (``streams.runtime.reference.parse_unit``) before anything is
sent, so a file the workers would refuse is refused here, with the line or item to fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import yaml

from models.units import UnitRegistry, UnitRegistryError

from streams.runtime.reference import ReferenceError, parse_unit

__all__ = ["UnitFileError", "publish_unit_records", "registry_records", "unit_file_records"]


class UnitFileError(ValueError):
    pass


def _is_flat_list(doc: object) -> bool:
    return isinstance(doc, list) and bool(doc) and all(isinstance(u, dict) and "unit_code" in u for u in doc)


def registry_records(registry: UnitRegistry, when=None) -> list[tuple[bytes, bytes]]:
    """One (key, value) per code of ``registry``, names as in force on ``when`` (default today), checked."""
    records = list(registry.reference_records(when))
    for key, value in records:
        try:
            parse_unit(key.decode(), value)
        except ReferenceError as exc:
            raise UnitFileError(str(exc)) from None
    return records


def unit_file_records(path: str | Path) -> list[tuple[bytes, bytes]]:
    """The records to publish for a unit file of either form; ``UnitFileError`` names every problem."""
    p = Path(path)
    if p.suffix.lower() != ".csv":
        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8-sig"))
        except (yaml.YAMLError, UnicodeDecodeError):
            doc = None  # the registry loader reports it with the line
        if _is_flat_list(doc):
            records = []
            for i, u in enumerate(doc):
                raw = json.dumps(u, ensure_ascii=False).encode()
                try:
                    parse_unit(str(u.get("unit_code")), raw)
                except ReferenceError as exc:
                    raise UnitFileError(f"[{i}] {exc}") from None
                records.append((str(u["unit_code"]).encode(), raw))
            return records
    try:
        registry = UnitRegistry.load(p)
    except UnitRegistryError as exc:
        raise UnitFileError(str(exc)) from None
    return registry_records(registry)


def publish_unit_records(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]],
                         **client_config) -> int:
    """Send every record (acks=all) and wait for them; returns how many were sent."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **client_config)
    n = 0
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
            n += 1
        producer.flush()
    finally:
        producer.close()
    return n
