"""Small builders for test events: one dossier's lifecycle written as (kind, time, data) steps."""

from __future__ import annotations

import itertools
from datetime import datetime

from models.calendar import TZ
from models.events import decode_event, event_to_json, make_envelope

_ids = itertools.count(1)
UNIT = "T01.S01"


def t(s: str) -> datetime:
    """'2026-03-02 08:00' in Vietnam time."""
    return datetime.fromisoformat(s).replace(tzinfo=TZ)


def envelope(kind: str, when: str | datetime, data: dict | None = None, *, code: str = "D-1",
             source: str = "igate.test", event_id: str | None = None) -> dict:
    when = t(when) if isinstance(when, str) else when
    return make_envelope(kind, event_id=event_id or f"e{next(_ids)}", source=source, subject=code, time=when,
                         data=data or {})


def raw(kind: str, when: str | datetime, data: dict | None = None, **kw) -> bytes:
    return event_to_json(envelope(kind, when, data, **kw))


def event(kind: str, when: str | datetime, data: dict | None = None, **kw):
    return decode_event(raw(kind, when, data, **kw))


def received(when: str, *, due: str | None = None, limit: tuple[float, str] | None = None, channel: str = "direct",
             unit: str = UNIT, **extra) -> dict:
    data = {"procedure_code": "1.001612", "handling_unit_code": unit, "receiving_unit_code": unit,
            "channel": channel, "received_at": t(when).isoformat(), "province_code": "T01", "unit_level": "agency"}
    if due:
        data["due_at"] = t(due).isoformat()
    if limit:
        data["time_limit"] = {"value": limit[0], "unit": limit[1]}
    data.update(extra)
    return data


def iso(s: str) -> str:
    return t(s).isoformat()


ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
SAMPLE_FILE = ROOT / "samples" / "sample-events.jsonl"
SAMPLE_AT = "2026-03-10T16:00:00+07:00"


def sample_lines() -> list[bytes]:
    return [line for line in SAMPLE_FILE.read_bytes().splitlines() if line.strip()]


def processed_data(when: str, electronic: bool = False) -> dict:
    return {"processing_ended_at": iso(when), "results": [{"electronic": electronic}]}


def at_risk_counts(records: list[dict]) -> dict[tuple[str, str, str], int]:
    """``onestop_dossiers_at_risk`` as the at-risk records count it: per (unit, indicator, horizon)."""
    counts: dict[tuple[str, str, str], int] = {}
    for r in records:
        for ind in r["indicators"]:
            for horizon in ("all", "next_working_day"):
                if horizon == "all" or r["due_within_next_working_day"]:
                    counts[(r["unit"], ind, horizon)] = counts.get((r["unit"], ind, horizon), 0) + 1
    return counts
