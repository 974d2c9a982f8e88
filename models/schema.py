"""JSON Schema (2020-12) of the event contract, generated from the msgspec structs in ``models.events``.

The committed copy (``models/schema/dossier-event.schema.json``) is what publishers read; a test regenerates it and
fails on any difference, so the published contract can never drift from the code that enforces it.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from . import events as ev

SCHEMA_PATH = Path(__file__).parent / "schema" / "dossier-event.schema.json"
SCHEMA_ID = "https://onestop-monitor.example/schema/dossier-event.schema.json"
_REF = "#/$defs/{name}"


def _data_def_name(kind: str) -> str:
    return ev.DATA_TYPES[kind].__name__


OFFSET_PATTERN = r"(Z|z|[+-][0-9]{2}:[0-9]{2})$"


def _require_offsets(node) -> None:
    """JSON Schema's date-time format is rarely enforced by validators; a pattern states the offset rule for all."""
    if isinstance(node, dict):
        if node.get("format") == "date-time":
            node["pattern"] = OFFSET_PATTERN
        for v in node.values():
            _require_offsets(v)
    elif isinstance(node, list):
        for v in node:
            _require_offsets(v)


def build_schema() -> dict:
    """One schema: the CloudEvents envelope, then for each ``type`` the shape of its ``data``."""
    structs = list(ev.DATA_TYPES.values())
    _, defs = msgspec.json.schema_components(structs + [ev.Envelope], ref_template=_REF)
    envelope = defs.pop("Envelope")
    envelope["properties"]["type"] = {"enum": [ev.TYPE_PREFIX + k for k in ev.EVENT_TYPES]}
    envelope["properties"]["data"] = {"type": "object"}
    envelope["description"] = (
        "CloudEvents 1.0, structured JSON mode. `subject` is the dossier code (also the Kafka key); `time` is when "
        "the step happened; `source` + `id` identify the event (duplicates are ignored).")
    branches = []
    for kind in ev.EVENT_TYPES:
        branches.append({
            "if": {"properties": {"type": {"const": ev.TYPE_PREFIX + kind}}, "required": ["type"]},
            "then": {"properties": {"data": {"$ref": _REF.format(name=_data_def_name(kind))}}},
        })
    _require_offsets(defs)
    _require_offsets(envelope)
    received = defs["Received"]
    received["anyOf"] = [{"required": ["due_at"]}, {"required": ["time_limit"]}]
    defs["Snapshot"]["anyOf"] = [{"required": ["due_at"]}, {"required": ["time_limit"]}]
    # The longest limit accepted depends on its unit (ten years of each), which a single maximum cannot say.
    defs["TimeLimit"]["allOf"] = [
        {"if": {"properties": {"unit": {"const": unit}}, "required": ["unit"]},
         "then": {"properties": {"value": {"maximum": most}}}}
        for unit, most in ev.MAX_TIME_LIMIT.items()]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "One-stop dossier event (vn.gov.dvc.dossier.*)",
        **envelope,
        "allOf": branches,
        "$defs": dict(sorted(defs.items())),
    }


def schema_json() -> str:
    return msgspec.json.format(msgspec.json.encode(build_schema()), indent=2).decode() + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_json(), encoding="utf-8")
