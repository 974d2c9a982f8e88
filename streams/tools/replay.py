"""Replay / backfill: publish an event history to the events topic in event-time order.

Operators feed years of history this way when a province is connected. It must be safe to run twice and to stop
half-way: events are idempotent on (source, id), a checkpoint remembers how far a run got (``--resume``), and every
line that cannot be published is reported and sent to the dead-letter topic with its reason, never dropped.

Input: JSON lines of CloudEvents, or CSV with a header (see ``read_csv``) for systems that export tables.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

import msgspec

from models.events import EventError, decode_event, event_to_json

ENVELOPE_COLUMNS = ("id", "source", "type", "time", "subject", "sequence")
NUMERIC_LEAVES = frozenset({"value", "amount_vnd", "score_1_5", "collection_stage"})
TYPE_PREFIX = "vn.gov.dvc.dossier."


class _TimeOnly(msgspec.Struct):
    time: str | None = None
    subject: str | None = None


_PEEK = msgspec.json.Decoder(_TimeOnly)


@dataclass
class ReplayStats:
    total: int = 0
    sent: int = 0
    skipped: int = 0  # already sent by an earlier run (checkpoint)
    invalid: list[tuple[int, str, str]] = field(default_factory=list)


def _sort_key(line: bytes) -> float:
    """Event time as a sortable number; lines whose time cannot be read sort first and are judged by the worker."""
    try:
        t = _PEEK.decode(line).time
        return datetime.fromisoformat(t).timestamp() if t else float("-inf")
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError, UnicodeDecodeError):
        return float("-inf")


def _leaf(name: str, value: str | None):
    if value is None or value == "":
        return None
    if value in ("true", "false"):
        return value == "true"
    if name in NUMERIC_LEAVES:
        return float(value) if "." in value else int(value)
    return value


def csv_row_to_event(row: dict[str, str]) -> bytes:
    """One CSV row -> CloudEvent JSON. Columns: ``id, source, type, time, subject[, sequence]`` and ``data.*``
    (dotted names nest: ``data.time_limit.value``); ``type`` may be the short name (``received``). Values are
    strings except ``true``/``false`` and the numeric fields (value, amount_vnd, score_1_5, collection_stage); empty
    cells are left out. A ``data`` column holding a JSON object is also accepted."""
    env: dict = {"specversion": "1.0", "datacontenttype": "application/json"}
    data: dict = {}
    for col, value in row.items():
        if col is None:
            raise ValueError("row has more cells than the header")
        col = col.strip()
        if col in ENVELOPE_COLUMNS:
            if value:
                env[col] = int(value) if col == "sequence" else value
        elif col == "data" and value:  # a whole JSON object in one cell
            data.update(json.loads(value))
        elif col.startswith("data."):
            v = _leaf(col.rsplit(".", 1)[-1], value)
            if v is None:
                continue
            node = data
            *parents, leaf = col[5:].split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = v
    if "type" in env and "." not in env["type"]:
        env["type"] = TYPE_PREFIX + env["type"]
    env["data"] = data
    return event_to_json(env)


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, record) of a JSON-lines or CSV file; a CSV row that cannot be converted is yielded as-is
    (its raw text), so it is rejected and dead-lettered like any other invalid line."""
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                n = reader.line_num
                try:
                    yield n, csv_row_to_event(row)
                except (ValueError, json.JSONDecodeError) as exc:
                    buf = io.StringIO()
                    csv.writer(buf).writerow(row.values())
                    yield n, buf.getvalue().encode() + f"  # {exc}".encode()
        return
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if line:
                yield n, line


def ordered(records: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Event-time order, stable for equal times (a dossier's steps keep their file order)."""
    keys = [_sort_key(r) for _, r in records]
    if all(a <= b for a, b in zip(keys, keys[1:])):
        return records
    idx = sorted(range(len(records)), key=lambda i: (keys[i], i))
    return [records[i] for i in idx]


class Checkpoint:
    """How many records of a given file a previous run has sent (the file's size and mtime identify it)."""

    def __init__(self, source: Path, path: Path | None = None):
        st = source.stat()
        self.fingerprint = f"{source.resolve()}:{st.st_size}:{int(st.st_mtime)}"
        self.path = path or source.with_name(source.name + ".replay-checkpoint")

    def load(self) -> int:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return 0
        return int(doc.get("sent", 0)) if doc.get("file") == self.fingerprint else 0

    def save(self, sent: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"file": self.fingerprint, "sent": sent}))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def replay_file(path: Path, publisher, *, resume: bool = False, checkpoint_every: int = 10_000,
                progress: Callable[[int, int], None] | None = None) -> ReplayStats:
    """Publish the file in event-time order; returns what was sent, skipped and refused (with line numbers)."""
    records = ordered(list(read_lines(path)))
    cp = Checkpoint(path)
    start = cp.load() if resume else 0
    stats = ReplayStats(total=len(records), skipped=start)
    for i, (n, raw) in enumerate(records):
        if i < start:
            continue
        try:
            event = decode_event(raw)
        except EventError as exc:
            stats.invalid.append((n, exc.reason, exc.message))
            publisher.dead_letter(raw, exc.reason, exc.message, source_file=path.name, source_line=n)
        else:
            publisher.publish_raw(raw, event.subject.encode())
            stats.sent += 1
        if (i + 1) % checkpoint_every == 0:
            publisher.flush()
            cp.save(i + 1)
        if progress:
            progress(i + 1, len(records))
    publisher.flush()
    cp.save(len(records))
    return stats
