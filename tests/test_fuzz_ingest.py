"""Hostile input: every generated hostile record is refused with its reason, and the valid records around it count.

Officials quote these figures, so the ingest path must neither crash nor let a malformed, forged or absurd record
change a number. The records are built from the bundled sample (real shapes, real dossier codes) and broken in one
way each; each knows the reasons it may be refused with. Three drivers use the same generator:

* the ingest path in process (``Runtime.on_event`` with the product processor, a dict as table, lists as topics):
  at least 10,000 records under hypothesis (derandomized, so CI is stable), plus a mixed stream whose figures must
  equal the batch oracle exactly;
* ``onestop validate`` and ``onestop score`` on generated files;
* a real worker on the real broker (a few thousand hostile records among the sample), which must stay alive,
  dead-letter each record once with its reason, keep its memory bounded and end with the oracle's figures.

Some records are accepted by design and are tested for harmlessness instead (unknown fields, events of dossiers not
yet received). Known gaps found by this suite are written down in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import random
import re
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import msgspec.inspect as mi
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from models import events as ev
from models.calendar import CalendarError, WorkCalendar, load_calendar_file
from models.dossier import Context
from models.figures import replay, score_document
from streams.runtime.runtime import DLQ_MAX_VALUE_BYTES, Runtime
from streams.runtime.partitions import PartitionState
from streams.runtime.clock import FrozenClock
from streams.runtime.processor import Processor
from streams.runtime.settings import WorkerSettings
from tests.builders import SAMPLE_AT, SAMPLE_FILE, sample_lines

NOW = datetime.fromisoformat(SAMPLE_AT)
PERIODS = ("month:2026-03", "month:2026-02", "quarter:2026-Q1", "year:2026")
PARTITIONS = 4

# ---------------------------------------------------------------------------------------------------------------
# The corpus the hostile records are cut from.

LINES = sample_lines()
DOCS = [json.loads(line) for line in LINES]
RECEIVED: dict[str, dict] = {}
for _d in DOCS:
    if _d["type"].endswith((".received", ".snapshot")):
        RECEIVED.setdefault(_d["subject"], _d)
RECEIVED_DOCS = [RECEIVED[c] for c in sorted(RECEIVED)]
CODES = sorted({d["subject"] for d in DOCS})

INJECTIONS = (
    "'; DROP TABLE dossiers; --", "<script>alert(1)</script>", "=HYPERLINK(\"http://x\")", "+cmd|' /C calc'!A0",
    "@SUM(1+1)", "-2+3", "${jndi:ldap://127.0.0.1/a}", "{{7*7}}", "unit\"} 1\nonestop_fake 9", "a b", "../../etc/passwd",
    "T99.S01\r\nX-Injected: 1", "\u202eevil", "Nguyễn Văn A", "%00", "a" * 65, "", " ", "\t", "T99.S01;", "ok$(id)",
)
WRONG_VALUES = {"str": "x", "int": 7, "float": 1.5, "bool": True, "null": None, "array": [1], "object": {"a": 1}}


def _json_kinds(t: Any) -> set[str]:
    """The JSON kinds a contract type accepts (for building a value of a kind it does not)."""
    if isinstance(t, mi.Metadata):
        return _json_kinds(t.type)
    if isinstance(t, mi.UnionType):
        return set().union(*(_json_kinds(x) for x in t.types))
    if isinstance(t, (mi.StrType, mi.DateTimeType)):
        return {"str"}
    if isinstance(t, mi.LiteralType):
        return {"str" if isinstance(v, str) else "int" for v in t.values}
    if isinstance(t, mi.BoolType):
        return {"bool"}
    if isinstance(t, mi.IntType):
        return {"int"}
    if isinstance(t, mi.FloatType):
        return {"int", "float"}
    if isinstance(t, mi.NoneType):
        return {"null"}
    if isinstance(t, mi.ListType):
        return {"array"}
    if isinstance(t, (mi.StructType, mi.DictType)):
        return {"object"}
    return set(WRONG_VALUES)  # Raw / Any: anything parses


def _fields(struct: type) -> dict[str, tuple[set[str], bool]]:
    info = mi.type_info(struct)
    return {f.encode_name: (_json_kinds(f.type), f.required) for f in info.fields}


ENVELOPE_FIELDS = _fields(ev.Envelope)
ENVELOPE_FIELDS["data"] = ({"object"}, True)  # a Raw that must hold the type's object
DATA_FIELDS = {kind: _fields(cls) for kind, cls in ev.DATA_TYPES.items()}


def _kind(doc: dict) -> str:
    return doc["type"].rsplit(".", 1)[1]


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class Hostile:
    """One hostile record: value and Kafka key as sent, and the reasons it may be refused with."""

    category: str
    value: bytes | None
    key: bytes | None
    expect: frozenset[str]
    decode_refused: bool  # decode_event alone refuses it, so `onestop validate` reports it
    needs_state: bool = False  # refused because of what its dossier already holds: sent after the dossier's events


def _timestamps(doc: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every date-time string of the contract in an event (all of them are aware in the sample)."""
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _timestamps(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _timestamps(v, path + (i,))
    elif isinstance(doc, str) and len(doc) >= 20 and doc[4] == "-" and doc[10] == "T" and doc[-6] in "+-":
        out.append(path)
    return out


def _set(doc: Any, path: tuple, value: Any) -> None:
    for p in path[:-1]:
        doc = doc[p]
    doc[path[-1]] = value


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


class Generator:
    """Builds hostile records from the sample; each category breaks one rule of the contract or of a dossier."""

    def __init__(self, rng: random.Random, text: str = "", blob: bytes = b"") -> None:
        self.rng, self.text, self.blob = rng, text, blob

    # -- helpers -------------------------------------------------------------------------------------------------
    def base(self) -> dict:
        return copy.deepcopy(self.rng.choice(DOCS))

    def received(self) -> dict:
        return copy.deepcopy(self.rng.choice(RECEIVED_DOCS))

    def make(self, category: str, doc_or_bytes: Any, expect: set[str], *, key: bytes | None = None,
             decode_refused: bool = True, needs_state: bool = False) -> Hostile:
        value = doc_or_bytes if isinstance(doc_or_bytes, bytes) else _dump(doc_or_bytes)
        if key is None and isinstance(doc_or_bytes, dict) and isinstance(doc_or_bytes.get("subject"), str):
            key = doc_or_bytes["subject"].encode("utf-8", "surrogatepass")
        return Hostile(category, value, key, frozenset(expect), decode_refused, needs_state)

    def new_id(self, doc: dict) -> dict:
        doc["id"] = f"hostile-{self.rng.getrandbits(64):016x}"
        return doc

    # -- categories refused by decode_event alone ----------------------------------------------------------------
    def invalid_utf8(self) -> Hostile:
        """Bytes that are not UTF-8: inside a value the decoder reads, or anywhere (a member name, an ignored
        member, between tokens), where msgspec would skip them unread if the contract did not check first."""
        doc = self.base()
        bad = self.rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\x80"])
        raw = _dump(doc)
        if self.rng.random() < 0.4:
            name = self.rng.choice(["id", "source", "type", "subject", "time"])
            marker = f'"{name}":"{doc[name]}'.encode()
            cut = len(f'"{name}":"'.encode()) + self.rng.randrange(0, len(str(doc[name])) + 1)
            raw = raw.replace(marker, marker[:cut] + bad + marker[cut:], 1)
        else:
            i = self.rng.randrange(1, len(raw))
            raw = raw[:i] + bad + raw[i:]
        return self.make("invalid_utf8", raw, {"bad_json", "schema"}, key=doc["subject"].encode())

    def truncated(self) -> Hostile:
        doc = self.base()
        raw = _dump(doc)
        return self.make("truncated", raw[: self.rng.randrange(1, len(raw) - 1)], {"bad_json"},
                         key=doc["subject"].encode())

    def huge(self, max_bytes: int = 300_000) -> Hostile:
        doc = self.base()
        size = self.rng.randrange(ev.MAX_EVENT_BYTES + 1, max_bytes)
        where = doc["data"] if self.rng.random() < 0.5 else doc
        where["padding"] = "x" * size
        return self.make("huge", doc, {"too_large"})

    def deep(self) -> Hostile:
        """Deep nesting as a value the contract reads (refused at the first bracket), or in a member it ignores
        (refused because msgspec stops at the interpreter's recursion limit: ~1,000 by default, ~2,000 under
        hypothesis, so the ignored member is 5,000 to 30,000 deep)."""
        doc = self.base()
        raw = _dump(doc)
        if self.rng.random() < 0.5:
            depth = self.rng.randrange(1_000, 20_000)
            opener, closer = self.rng.choice([("[", "]"), ('{"a":', "}")])
            nested = (opener * depth + ("1" if opener != "[" else "") + closer * depth).encode()
            if opener == '{"a":' or self.rng.random() < 0.5:  # a code must be a string
                raw = raw.replace(f'"subject":"{doc["subject"]}"'.encode(), b'"subject":' + nested, 1)
            else:  # data must be an object
                raw = raw.replace(b'"data":{', b'"data":' + nested + b',"x":{', 1)
        else:
            opener, closer, low, high = self.rng.choice([("[", "]", 5_000, 30_000), ('{"a":', "}", 5_000, 12_000)])
            depth = self.rng.randrange(low, high)
            nested = (opener * depth + ("1" if opener != "[" else "") + closer * depth).encode()
            target = self.rng.choice([b'"data":{', b"{"])
            raw = raw.replace(target, target + b'"nested":' + nested + b",", 1)
        return self.make("deep", raw, {"bad_json", "schema", "too_large"}, key=doc["subject"].encode())

    def wrong_type(self) -> Hostile:
        doc = self.base()
        kind = _kind(doc)
        scope, fields = (doc, ENVELOPE_FIELDS) if self.rng.random() < 0.4 or not DATA_FIELDS[kind] else \
            (doc["data"], DATA_FIELDS[kind])
        name = self.rng.choice(sorted(fields))
        allowed, _required = fields[name]
        wrong = sorted(set(WRONG_VALUES) - allowed)
        scope[name] = copy.deepcopy(WRONG_VALUES[self.rng.choice(wrong)])
        return self.make("wrong_type", doc, {"schema"}, key=str(doc.get("subject")).encode())

    def missing_field(self) -> Hostile:
        doc = self.base()
        kind = _kind(doc)
        required_data = [n for n, (_k, req) in DATA_FIELDS[kind].items() if req]
        if required_data and self.rng.random() < 0.5:
            del doc["data"][self.rng.choice(required_data)]
        elif kind == "received" and self.rng.random() < 0.3:
            doc["data"].pop("due_at", None)
            doc["data"].pop("time_limit", None)
        else:
            key = doc["subject"].encode()
            del doc[self.rng.choice([n for n, (_k, req) in ENVELOPE_FIELDS.items() if req])]
            return self.make("missing_field", doc, {"schema"}, key=key)
        return self.make("missing_field", doc, {"schema"})

    def strict_extra_field(self) -> Hostile:
        doc = self.received()
        doc["data"]["time_limit"] = {"value": 5, "unit": "working_day", self.rng.choice(["weeks", "note", "x"]): 1}
        return self.make("strict_extra_field", doc, {"schema"})

    def naive_time(self) -> Hostile:
        doc = self.base()
        path = self.rng.choice(_timestamps(doc))
        _set(doc, path, _get(doc, path)[:-6])
        return self.make("naive_time", doc, {"schema"})

    def far_envelope_time(self) -> Hostile:
        doc = self.received() if self.rng.random() < 0.5 else self.base()
        year = self.rng.choice([1, 1000, 1899, 1999, 2100, 2500, 9999])
        stamp = f"{year:04d}-06-15T10:00:00+07:00"
        if doc["type"].endswith(".received") and self.rng.random() < 0.5:
            doc["data"]["received_at"] = stamp
        else:
            doc["time"] = stamp
        return self.make("far_envelope_time", doc, {"impossible_timeline"})

    def bad_time_limit(self) -> Hostile:
        doc = self.received()
        value, unit = self.rng.choice([
            (self.rng.choice([0, -1, -0.5, -1e9, 3651, 1e12]), "working_day"),
            (5, self.rng.choice(["week", "year", "minute", "", "WORKING_DAY", "ngày"])),
            (2.5, self.rng.choice(["day", "month"])),
            ("5", "day"),
        ])
        doc["data"]["time_limit"] = {"value": value, "unit": unit}
        doc["data"].pop("due_at", None)
        return self.make("bad_time_limit", doc, {"schema"})

    def unknown_enum(self) -> Hostile:
        doc = self.received()
        field, value = self.rng.choice([
            ("channel", self.rng.choice(["fax", "email", "DIRECT", "", "zalo"])),
            ("unit_level", self.rng.choice(["village", "Commune", "nation"])),
            ("online_service_level", self.rng.choice(["level4", "FULL"])),
        ])
        doc["data"][field] = value
        if self.rng.random() < 0.3:
            doc = self.received()
            doc[self.rng.choice(["specversion", "datacontenttype"])] = self.rng.choice(["0.3", "2.0", "text/xml", ""])
        return self.make("unknown_enum", doc, {"schema"})

    def unknown_type(self) -> Hostile:
        doc = self.base()
        doc["type"] = self.rng.choice([
            ev.TYPE_PREFIX + "approved", ev.TYPE_PREFIX + "Received", "vn.gov.dvc.hoso.received", "received",
            ev.TYPE_PREFIX, ev.TYPE_PREFIX + "x" * 70, "com.example." + (self.text[:20] or "y"),
        ])
        return self.make("unknown_type", doc, {"unknown_type", "schema"})

    def injection(self) -> Hostile:
        doc = self.received()
        payload = self.rng.choice(INJECTIONS + ((self.text,) if self.text else ()))
        field = self.rng.choice(["subject", "handling_unit_code", "receiving_unit_code", "procedure_code",
                                 "province_code", "source"])
        if not _breaks_code(payload, source=field == "source"):
            payload = payload + " <x>"  # a look-alike that obeys the code rule would be a valid code, not hostile
        if field in ("subject", "source"):
            doc[field] = payload
        else:
            doc["data"][field] = payload
        # A blank subject is also a blank Kafka key, which the runtime refuses before decoding.
        return self.make("injection", doc, {"schema", "bad_json", "missing_key"})

    def non_object(self) -> Hostile:
        return self.make("non_object", self.rng.choice([b"[]", b"[1,2]", b'"received"', b"42", b"true", b"null",
                                                        b"[" + _dump(self.base()) + b"]", b"{}"]),
                         {"schema", "bad_json"}, key=self.rng.choice(CODES).encode())

    def garbage(self) -> Hostile:
        blob = self.blob or bytes(self.rng.getrandbits(8) for _ in range(self.rng.randrange(1, 64)))
        if not blob.strip() or blob.lstrip()[:1] == b"{" and blob.rstrip()[-1:] == b"}":
            blob = b"\x00" + blob
        return self.make("garbage", blob, {"bad_json", "schema"}, key=self.rng.choice(CODES).encode())

    def inverted_times(self) -> Hostile:
        doc = self.received()
        data = doc["data"]
        received_at = datetime.fromisoformat(data["received_at"])
        back = timedelta(hours=self.rng.randrange(1, 24 * 30))
        if self.rng.random() < 0.5:
            data["due_at"] = (received_at - back).isoformat()
        else:
            data["submitted_at"] = (received_at + back).isoformat()
        return self.make("inverted_times", doc, {"impossible_timeline"})

    # -- categories refused by the dossier (apply), or by the worker's clock -------------------------------------
    def future_event(self) -> Hostile:
        doc = self.new_id(self.base())
        doc["time"] = (NOW + timedelta(days=self.rng.randrange(2, 20_000))).isoformat()
        return self.make("future_event", doc, {"future_event"}, decode_refused=False)

    def impossible_sequence(self) -> Hostile:
        rec = self.received()
        received_at = datetime.fromisoformat(rec["data"]["received_at"])
        before = (received_at - timedelta(days=self.rng.randrange(1, 60), minutes=self.rng.randrange(6, 600))).isoformat()
        kind, data = self.rng.choice([
            ("processed", {"processing_ended_at": before, "results": []}),
            ("result_returned", {"returned_at": before}),
            ("supplement_requested", {"supplement": {"request_id": "H1", "requested_at": before}}),
            ("payment_completed", {"paid_online": True, "paid_at": before}),
            ("withdrawn", {"withdrawn_at": before}),
            ("stopped", {"stopped_at": before}),
        ])
        doc = {**rec, "type": ev.TYPE_PREFIX + kind, "time": before, "data": data}
        doc.pop("sequence", None)
        return self.make("impossible_sequence", self.new_id(doc), {"impossible_timeline"}, decode_refused=False,
                         needs_state=True)

    def conflicting_duplicate(self) -> Hostile:
        doc = self.base()
        t = datetime.fromisoformat(doc["time"])
        doc["time"] = (t + timedelta(seconds=self.rng.randrange(1, 3600))).isoformat()
        return self.make("conflicting_duplicate", doc, {"conflicting_duplicate"}, decode_refused=False,
                         needs_state=True)

    def _step_dated(self, rec: dict, stamp: str, request_id: str) -> dict:
        """A handling step of the received dossier ``rec`` whose own instant is ``stamp``; its envelope time stays
        the reception's, so only the date inside ``data`` is wrong."""
        kind, data = self.rng.choice([
            ("processed", {"processing_ended_at": stamp}),
            ("supplement_requested", {"supplement": {"request_id": request_id, "requested_at": stamp}}),
            ("result_returned", {"returned_at": stamp}),
        ])
        doc = {**rec, "type": ev.TYPE_PREFIX + kind, "time": rec["time"], "data": data}
        doc.pop("sequence", None)
        return doc

    def far_past_data_time(self) -> Hostile:
        """A step of a received dossier dated decades (or centuries) before the contract's first year."""
        rec = self.received()
        stamp = f"{self.rng.choice([1, 1000, 1900, 1975, 1999]):04d}-12-31T23:59:59{self.rng.choice(['+07:00', '-07:00', '+00:00'])}"
        doc = self._step_dated(rec, stamp, "H2")
        return self.make("far_past_data_time", self.new_id(doc), {"impossible_timeline"}, needs_state=True)

    def future_data_time(self) -> Hostile:
        """A step whose own instant lies years after the envelope time: after 2100 the contract refuses it, before
        that the dossier does (a processed date in 2030 would otherwise end the dossier today)."""
        rec = self.received()
        year = self.rng.choice([2030, 2099, 2101, 5000, 9999])
        stamp = f"{year:04d}-12-31T23:59:59{self.rng.choice(['+07:00', '-07:00', '+00:00'])}"
        doc = self._step_dated(rec, stamp, "H3")
        return self.make("future_data_time", self.new_id(doc), {"impossible_timeline", "future_event"},
                         decode_refused=False, needs_state=True)

    def absurd_limit(self) -> Hostile:
        """A time limit of centuries, which would end after the calendar's last year (2100): the contract bounds
        every limit to ten years (it used to pass the schema and crash the batch oracle, docs/reliability.md 4.4)."""
        doc = self.new_id(self.received())
        doc["subject"] = f"HOSTILE-LIMIT-{self.rng.getrandbits(32):08x}"
        doc["data"].pop("due_at", None)
        doc["data"]["time_limit"] = {"value": self.rng.randrange(1000, 3651), "unit": "month"}
        return self.make("absurd_limit", doc, {"schema"})

    # -- refused by the runtime before decoding (Kafka only) -----------------------------------------------------
    def key_mismatch(self) -> Hostile:
        doc = self.new_id(self.base())
        other = self.rng.choice([c for c in CODES[:50] if c != doc["subject"]])
        return self.make("key_mismatch", doc, {"key_mismatch"}, key=other.encode(), decode_refused=False)

    def missing_key(self) -> Hostile:
        doc = self.base()
        key = self.rng.choice([None, b"", b"   ", b"\xff\xfe", b"\xc3\x28"])
        return Hostile("missing_key", _dump(doc), key, frozenset({"missing_key"}), False)

    def tombstone(self) -> Hostile:
        return Hostile("tombstone", None, self.rng.choice(CODES).encode(), frozenset({"missing_value"}), False)


def _breaks_code(payload: str, *, source: bool) -> bool:
    pattern = r"^[A-Za-z0-9][A-Za-z0-9._:/\-]*$" if source else r"^[A-Za-z0-9][A-Za-z0-9._\-]*$"
    limit = 200 if source else 64
    return not payload or len(payload) > limit or re.match(pattern, payload) is None or "\n" in payload


DECODE_CATEGORIES = ("invalid_utf8", "truncated", "huge", "deep", "wrong_type", "missing_field", "strict_extra_field",
                     "naive_time", "far_envelope_time", "bad_time_limit", "unknown_enum", "unknown_type", "injection",
                     "non_object", "garbage", "inverted_times")
APPLY_CATEGORIES = ("future_event", "impossible_sequence", "conflicting_duplicate", "far_past_data_time",
                    "future_data_time", "absurd_limit")
KAFKA_CATEGORIES = ("key_mismatch", "missing_key", "tombstone")
ALL_CATEGORIES = DECODE_CATEGORIES + APPLY_CATEGORIES + KAFKA_CATEGORIES


def corpus(n: int, seed: int, categories: tuple[str, ...] = ALL_CATEGORIES, **kw: Any) -> list[Hostile]:
    """``n`` hostile records, round-robin over the categories, reproducible from ``seed``."""
    rng = random.Random(seed)
    gen = Generator(rng)
    out = []
    for i in range(n):
        category = categories[i % len(categories)]
        method = getattr(gen, category)
        out.append(method(**kw) if category == "huge" and kw else method())
    return out


def hostile_records() -> st.SearchStrategy[Hostile]:
    """Hypothesis drives the category, the generator's seed and free-form text and bytes (shrinkable)."""
    return st.builds(
        lambda category, seed, text, blob: getattr(Generator(random.Random(seed), text, blob), category)(),
        st.sampled_from(ALL_CATEGORIES), st.integers(0, 2**32 - 1), st.text(max_size=40),
        st.binary(max_size=48))


# ---------------------------------------------------------------------------------------------------------------
# The ingest path in process: the worker's Runtime with the product's processor; tables and topics in memory.


class _Table(dict):
    writes = 0

    def __setitem__(self, key: str, value: bytes) -> None:
        type(self).writes += 1
        super().__setitem__(key, value)


class _Topic:
    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None, dict]] = []

    async def send(self, *, key: Any = None, value: Any = None, headers: Any = None, force: bool = False) -> None:
        self.records.append((key, value, dict(headers or {})))


class Ingest:
    """``Runtime.on_event`` exactly as the Faust agent calls it, with in-memory stand-ins for Kafka and RocksDB."""

    def __init__(self) -> None:
        settings = WorkerSettings(partitions=PARTITIONS, store="memory")
        self.runtime = Runtime(settings, Processor(), FrozenClock(NOW))
        self.table = self.runtime.table = _Table()
        self.runtime.dlq_topic, self.runtime.alerts_topic = _Topic(), _Topic()
        for p in range(PARTITIONS):
            self.runtime.partitions[p] = PartitionState(p, NOW, track_keys=True)
        self.runtime.ready = True
        self.offset = 0
        self.loop = asyncio.new_event_loop()

    def close(self) -> None:
        self.loop.close()

    def _event(self, value: bytes | None, key: bytes | None) -> SimpleNamespace:
        partition = (sum(key) if key else 0) % PARTITIONS
        self.offset += 1
        msg = SimpleNamespace(topic="dossier-events", partition=partition, offset=self.offset)
        return SimpleNamespace(message=msg, key=key, value=value)

    def send(self, value: bytes | None, key: bytes | None) -> None:
        self.send_many([(value, key)])

    def send_many(self, records: list[tuple[bytes | None, bytes | None]]) -> None:
        """Through the entry point the agent uses: a batch when the runtime takes batches, else one by one."""
        events = [self._event(v, k) for v, k in records]
        batch = getattr(self.runtime, "on_events", None)
        if batch is not None:
            self.loop.run_until_complete(batch(events))
        else:
            for e in events:
                self.loop.run_until_complete(self.runtime.on_event(e))

    @property
    def dlq(self) -> list:
        return self.runtime.dlq_topic.records

    def figures(self, period: str) -> dict:
        return self.runtime.processor.figures(self.runtime.all_tallies(), period, NOW)


def _subject_key(line: bytes) -> bytes:
    return json.loads(line)["subject"].encode()


@pytest.fixture(scope="module")
def oracle() -> dict:
    ctx = Context(now=NOW, calendar=WorkCalendar.default())
    rep = replay(list(enumerate(LINES, 1)), ctx)
    return {p: score_document(rep, p, ctx) for p in PERIODS}


@pytest.fixture(scope="module")
def loaded() -> Ingest:
    """The sample ingested once; hostile records are then thrown at dossiers that really exist."""
    ingest = Ingest()
    for line in LINES:
        ingest.send(line, _subject_key(line))
    assert ingest.dlq == []
    yield ingest
    ingest.close()


def _same(a: dict, b: dict) -> bool:
    return a["units"] == b["units"] and a["provinces"] == b["provinces"]


# ---------------------------------------------------------------------------------------------------------------
# In process: at least 10,000 records.

BATCH = 25
EXAMPLES = 420  # 10,500 records


def test_ten_thousand_hostile_records_are_each_refused_with_their_reason(loaded: Ingest, oracle: dict, caplog) -> None:
    caplog.set_level(logging.CRITICAL, logger="streams.runtime")
    ingest, rt = loaded, loaded.runtime
    tallies_before, writes_before = rt.all_tallies(), _Table.writes
    meta_before, processed_before = copy.deepcopy(rt.processor.unit_meta), dict(rt.health.processed.values)
    by_category: Counter = Counter()
    by_reason: Counter = Counter()

    # No shrink phase: the assertion message carries the record already, and shrinking a batch of 25 can take
    # minutes, past the suite's per-test timeout.
    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(st.lists(hostile_records(), min_size=BATCH, max_size=BATCH))
    def throw(batch: list[Hostile]) -> None:
        for h in batch:
            before = len(ingest.dlq)
            ingest.send(h.value, h.key)
            assert len(ingest.dlq) == before + 1, (h.category, h.value[:300] if h.value else h.value)
            key, value, headers = ingest.dlq[-1]
            reason, error = headers["x-reason"].decode(), headers["x-error"].decode()
            assert reason in h.expect, (h.category, reason, error, h.value[:300] if h.value else None)
            assert error.strip(), h.category  # every refusal says why
            by_category[h.category] += 1
            by_reason[reason] += 1
        del ingest.dlq[:]  # keep memory flat; counts are kept above

    throw()
    total = sum(by_category.values())
    print(f"\nhostile records: {total}; by category {dict(sorted(by_category.items()))}; "
          f"by reason {dict(sorted(by_reason.items()))}")
    assert total >= 10_000
    assert set(by_category) == set(ALL_CATEGORIES)
    # Nothing of it reached a dossier, a figure, the unit registry or the processed counter.
    assert _Table.writes == writes_before
    assert rt.all_tallies() == tallies_before
    assert rt.processor.unit_meta == meta_before
    assert rt.health.processed.values == processed_before
    for period in PERIODS:
        assert _same(ingest.figures(period), oracle[period])


def test_valid_events_around_hostile_ones_are_counted_exactly(oracle: dict) -> None:
    stream = mixed_stream(LINES, corpus(3_000, seed=20260310))
    ingest = Ingest()
    try:
        for i in range(0, len(stream), 100):
            ingest.send_many([(v, k) for v, k, _h in stream[i:i + 100]])
        hostile = [h for _v, _k, h in stream if h is not None]
        assert len(ingest.dlq) == len(hostile)
        for (_key, _value, headers), h in zip(ingest.dlq, hostile):
            assert headers["x-reason"].decode() in h.expect, (h.category, headers)
        for period in PERIODS:
            assert _same(ingest.figures(period), oracle[period]), period
        assert sum(ingest.runtime.health.processed.values.values()) == len(LINES)
    finally:
        ingest.close()


def mixed_stream(lines: list[bytes], hostile: list[Hostile], seed: int = 7) -> list[tuple[bytes | None, bytes | None, Hostile | None]]:
    """Valid lines in their order with hostile records spread among them.

    A record refused because of its dossier's state goes right after that dossier's last valid event (a forged
    step published *before* the real reception is another matter: docs/reliability.md), the others anywhere.
    """
    rng = random.Random(seed)
    last: dict[bytes, int] = {}
    for i, line in enumerate(lines):
        last[_subject_key(line)] = i
    after: dict[int, list[Hostile]] = {}
    anywhere: dict[int, list[Hostile]] = {}
    for h in hostile:
        if h.needs_state:
            after.setdefault(last[h.key], []).append(h)
        else:
            anywhere.setdefault(rng.randrange(len(lines)), []).append(h)
    out: list[tuple[bytes | None, bytes | None, Hostile | None]] = []
    for i, line in enumerate(lines):
        out += [(h.value, h.key, h) for h in anywhere.get(i, [])]
        out.append((line, _subject_key(line), None))
        out += [(h.value, h.key, h) for h in after.get(i, [])]
    return out


def test_memory_stays_flat_while_hostile_records_stream_through(loaded: Ingest, caplog) -> None:
    # The catch-all logs each processor_error with its traceback; pytest would keep those records in memory.
    caplog.set_level(logging.CRITICAL, logger="streams.runtime")
    ingest = loaded
    records = corpus(3_000, seed=99)
    for h in records[:500]:  # warm caches (decoders, calendar tables, label slots)
        ingest.send(h.value, h.key)
    del ingest.dlq[:]
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(2):
            for h in records:
                ingest.send(h.value, h.key)
            del ingest.dlq[:]
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\n6,000 hostile records: traced memory {start / 1e6:.2f} MB -> {end / 1e6:.2f} MB, peak {peak / 1e6:.2f} MB")
    assert end - start < 2_000_000
    assert peak - start < 20_000_000  # one record at a time: the largest is 300 kB plus its parse
    assert len(ingest.runtime.health.rejected.values) <= len(ev.EventError.REASONS) + 4


def test_a_dlq_copy_too_big_for_a_kafka_record_is_cut_and_says_so() -> None:
    ingest = Ingest()
    try:
        doc = copy.deepcopy(RECEIVED_DOCS[0])
        doc["data"]["padding"] = "x" * 1_040_000
        value = _dump(doc)
        ingest.send(value, b"k" * 5000)
        (key, dlq_value, headers), = ingest.dlq
        assert headers["x-reason"] == b"too_large"
        assert dlq_value == value[:DLQ_MAX_VALUE_BYTES] and headers["x-truncated-value-bytes"] == str(len(value)).encode()
        assert len(key) == 1024 and headers["x-truncated-key-bytes"] == b"5000"
    finally:
        ingest.close()


def test_too_many_events_for_one_dossier_are_refused_once_the_bound_is_reached() -> None:
    ingest = Ingest()
    try:
        rec = RECEIVED_DOCS[0]
        code = rec["subject"].encode()
        ingest.send(_dump(rec), code)
        limit = ingest.runtime.processor.config.max_events_per_dossier
        for i in range(limit + 5):
            step = {**rec, "id": f"flood-{i}", "type": ev.TYPE_PREFIX + "step_changed", "data": {}}
            ingest.send(_dump(step), code)
        assert [h["x-reason"] for _k, _v, h in ingest.dlq] == [b"too_many_events"] * 6
        assert len(ingest.table[rec["subject"]]) < 64 * limit  # the state is bounded with it
    finally:
        ingest.close()


# ---------------------------------------------------------------------------------------------------------------
# Accepted by design, so proven harmless instead.

IDENTITY = {"applicant_name": "Nguyễn Thị Hostile", "phone": "0912345678", "identity_number": "001099012345",
            "email": "nguyen.hostile@example.vn", "address": "12 Phố Huế, Hà Nội"}


def test_unknown_fields_are_ignored_never_stored_and_a_resend_with_them_is_a_duplicate() -> None:
    plain, noisy = Ingest(), Ingest()
    try:
        for line in LINES[:300]:
            doc = json.loads(line)
            plain.send(line, _subject_key(line))
            noisy_doc = {**doc, "x_extension": {"deep": [1, {"a": "b"}]}, "data": {**doc["data"], **IDENTITY,
                                                                                   "applicant": dict(IDENTITY)}}
            noisy.send(_dump(noisy_doc), _subject_key(line))
            noisy.send(_dump(noisy_doc), _subject_key(line))  # the same event again: a duplicate, not a conflict
        assert noisy.dlq == [] and plain.dlq == []
        assert dict(noisy.table) == dict(plain.table)  # byte for byte: nothing of the extra fields was kept
        assert noisy.runtime.health.duplicates == 300
        assert not any(v.encode() in b"".join(noisy.table.values()) for v in IDENTITY.values())
    finally:
        plain.close()
        noisy.close()


def test_events_of_dossiers_never_received_change_no_figure(loaded: Ingest, oracle: dict) -> None:
    ingest = loaded
    rng = random.Random(5)
    tallies = ingest.runtime.all_tallies()
    orphans = 0
    for doc in rng.sample([d for d in DOCS if not d["type"].endswith((".received", ".snapshot"))], 200):
        doc = {**doc, "id": f"orphan-{orphans}", "subject": f"ORPHAN-{orphans:05d}"}
        ingest.send(_dump(doc), doc["subject"].encode())
        orphans += 1
    assert ingest.runtime.all_tallies() == tallies
    for period in PERIODS:
        assert _same(ingest.figures(period), oracle[period])


# ---------------------------------------------------------------------------------------------------------------
# The batch commands on generated hostile files.


def _onestop(*args: Any) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.tools.cli", *map(str, args)], capture_output=True, timeout=300)


def _file_safe(h: Hostile) -> bool:
    """A line of a JSON-lines file: no newline inside, not blank (blank lines are skipped by design)."""
    return h.value is not None and b"\n" not in h.value and bool(h.value.strip())


def test_onestop_validate_reports_every_hostile_line_with_its_reason(tmp_path) -> None:
    records = [h for h in corpus(3_000, seed=1234, categories=DECODE_CATEGORIES) if _file_safe(h)]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(h.value for h in records) + b"\n")
    out = _onestop("validate", path)
    assert out.returncode == 1, out.stderr[-2000:]
    reported = {}
    for line in out.stdout.decode("utf-8").splitlines():
        _file, n, reason, _msg = line.split(":", 3)
        assert _msg.strip()
        reported[int(n)] = reason.strip()
    assert sorted(reported) == list(range(1, len(records) + 1))
    for n, h in enumerate(records, 1):
        assert reported[n] in h.expect, (n, h.category, reported[n])
    assert f"{len(records)} events, 0 valid, {len(records)} invalid".encode() in out.stderr


def test_onestop_score_on_a_hostile_file_reports_them_and_scores_the_valid_lines(tmp_path, oracle: dict) -> None:
    records = [h for h in corpus(1_500, seed=77, categories=DECODE_CATEGORIES + APPLY_CATEGORIES) if _file_safe(h)]
    lines = [(h.value, h) for h in records if not h.needs_state] + [(line, None) for line in LINES] + \
        [(h.value, h) for h in records if h.needs_state]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(v for v, _h in lines) + b"\n")
    out = _onestop("score", path, "--at", SAMPLE_AT, "--period", "quarter:2026-Q1")
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    assert _same(doc, oracle["quarter:2026-Q1"])
    report = doc["input"]
    future = sum(h.category == "future_event" for h in records)
    assert report["after_at"] == future  # events dated after --at are left out of an "as of" score
    assert report["rejected"] == len(records) - future
    assert report["applied"] == len(LINES)
    by_line = {n: h for n, (_v, h) in enumerate(lines, 1)}
    for r in report["rejections"]:
        assert by_line[r["line"]] is not None and r["reason"] in by_line[r["line"]].expect, r


# ---------------------------------------------------------------------------------------------------------------
# A bad operator calendar file.

CALENDAR_2026 = yaml.safe_load((__import__("pathlib").Path(__file__).resolve().parents[1]
                                / "models/calendars/vn-public-sector-2026.yaml").read_text(encoding="utf-8"))
BAD_CALENDARS = {
    "not yaml": b"calendar_id: [unclosed\n  - {",
    "not utf-8": b"calendar_id: vn-public-sector\nyear: 2027\n\xff\xfe",
    "binary": bytes(range(256)),
    "a list": b"- 1\n- 2\n",
    "empty": b"",
    "times unquoted": None,
    "date of another year": None,
    "unknown kind": None,
    "overlapping periods": None,
    "swap without mirror": None,
    "version not raised": None,
    "another calendar": None,
    "wrong types everywhere": None,
    "deep alias bomb": b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nnon_working_days: [*c, *c, *c, *c, *c, *c]\n",
}


def _bad_calendar(name: str) -> bytes:
    raw = BAD_CALENDARS[name]
    if raw is not None:
        return raw
    doc = copy.deepcopy(CALENDAR_2026)
    doc["version"] = 7
    if name == "times unquoted":
        return yaml.safe_dump(doc).replace("'13:30'", "13:30").encode()
    if name == "date of another year":
        doc["non_working_days"].append({"date": "2027-01-01", "kind": "holiday"})
    elif name == "unknown kind":
        doc["non_working_days"][0]["kind"] = "party"
    elif name == "overlapping periods":
        doc["working_periods"] = [["07:30", "12:00"], ["11:00", "17:00"]]
    elif name == "swap without mirror":
        doc["extra_working_days"] = []
    elif name == "version not raised":
        doc["version"] = 1
    elif name == "another calendar":
        doc["calendar_id"] = "other-ministry"
    elif name == "wrong types everywhere":
        doc.update(year="2026", weekly_rest_days="sat", working_periods={"a": 1}, non_working_days=[1, "x", None],
                   unit_overrides=[{"unit_code": 5}], source_documents=[None], approved_by=3)
    return yaml.safe_dump(doc, allow_unicode=True).encode()


_SOME_DAYS = [datetime(2026, 1, 1).date() + timedelta(days=i) for i in range(0, 365, 7)]


@pytest.mark.parametrize("name", sorted(BAD_CALENDARS))
def test_a_bad_operator_calendar_is_refused_with_a_message_and_the_calendar_in_force_stays(tmp_path, name) -> None:
    in_force = WorkCalendar.default()
    before = (in_force.version, [in_force.is_working_day(d) for d in _SOME_DAYS])
    path = tmp_path / "next.yaml"
    path.write_bytes(_bad_calendar(name))
    with pytest.raises(CalendarError) as caught:
        in_force.with_document(load_calendar_file(path))
    assert all(":" in p for p in caught.value.problems)  # each problem names a field (or the file)
    assert (in_force.version, [in_force.is_working_day(d) for d in _SOME_DAYS]) == before


@settings(max_examples=300, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(sorted(CALENDAR_2026) + ["colour"]),
                       st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=12)
                                    | st.dates().map(str),
                                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                                    max_leaves=12),
                       max_size=6))
def test_any_calendar_document_is_either_valid_or_refused_with_calendar_error(changes: dict) -> None:
    """Never another exception: a TypeError in the loader would stop a worker instead of refusing the file."""
    doc = {**CALENDAR_2026, "version": 9, **changes}
    in_force = WorkCalendar.default()
    version = in_force.version
    try:
        in_force.with_document(doc)
    except CalendarError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
    assert in_force.version == version


def test_onestop_score_refuses_a_bad_calendar_file_with_exit_2_and_the_field(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(_bad_calendar("date of another year"))
    out = _onestop("score", SAMPLE_FILE, "--calendar", path)
    assert out.returncode == 2
    assert re.search(rb"non_working_days\[\d+\]\.date: 2027-01-01 is not in year 2026", out.stderr), out.stderr


# ---------------------------------------------------------------------------------------------------------------
# A real worker on the real broker.


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in KiB, from /proc."""
    out = {}
    for line in open(f"/proc/{pid}/status", encoding="ascii"):
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


@pytest.mark.broker
def test_a_real_worker_refuses_thousands_of_hostile_records_and_counts_the_rest_exactly(
        kafka_bootstrap, topic_prefix, tmp_path, oracle, request) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from tests.procs import wait_for
    from tests.test_stream import Deployment, figures_match

    hostile = corpus(3_000, seed=4242)
    near_limit = Generator(random.Random(9))
    hostile += [near_limit.huge(max_bytes=1_040_000) for _ in range(6)]  # DLQ copies must be cut to fit
    stream = mixed_stream(LINES, hostile)
    d = Deployment(kafka_bootstrap, topic_prefix, tmp_path)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5, max_request_size=2 << 20)
    try:
        w = d.worker()
        baseline = rss_kib(w.pid)
        started = time.monotonic()
        sent = [(producer.send(d.settings.events, key=k, value=v), h) for v, k, h in stream]
        producer.flush(timeout=120)
        where = {(f.get().partition, f.get().offset): h for f, h in sent if h is not None}
        wait_for(lambda: figures_match(w, oracle), timeout=180, interval=1.0, what="figures equal to the oracle")

        consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None, enable_auto_commit=False,
                                 fetch_max_bytes=64 << 20, max_partition_fetch_bytes=8 << 20,
                                 isolation_level="read_committed")
        tps = [TopicPartition(d.settings.dlq, p) for p in range(d.settings.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        dlq = []
        deadline = time.monotonic() + 120
        while len(dlq) < len(hostile) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                dlq += records
        consumer.close()
        elapsed = time.monotonic() - started
        after = rss_kib(w.pid)

        assert len(dlq) == len(hostile)  # each hostile record exactly once: none lost, none repeated
        by_reason: Counter = Counter()
        for r in dlq:
            h = dict(r.headers)
            origin = (int(h["x-source-partition"]), int(h["x-source-offset"]))
            expected = where.pop(origin)
            reason = h["x-reason"].decode()
            assert reason in expected.expect, (expected.category, reason, h["x-error"][:200])
            if expected.value is not None and len(expected.value) > DLQ_MAX_VALUE_BYTES:
                assert int(h["x-truncated-value-bytes"]) == len(expected.value)
                assert r.value == expected.value[:DLQ_MAX_VALUE_BYTES]
            else:
                assert r.value == expected.value  # the publisher's original bytes, to diagnose and re-send
            by_reason[reason] += 1
        assert where == {}

        metrics = w.metrics_text()
        rejected = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                       if line.startswith("onestop_events_rejected_total{"))
        processed = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                        if line.startswith("onestop_events_processed_total{"))
        assert (rejected, processed) == (len(hostile), len(LINES))
        assert w.alive()
        log = w.log_path.read_text(errors="replace")
        assert "Crashed reason" not in log and "Agent crashed" not in log
        growth_mib = (after["VmRSS"] - baseline["VmRSS"]) / 1024
        print(f"\nworker: {len(LINES)} valid + {len(hostile)} hostile records in {elapsed:.1f} s; reasons "
              f"{dict(sorted(by_reason.items()))}; RSS {baseline['VmRSS'] / 1024:.0f} -> {after['VmRSS'] / 1024:.0f} MiB, "
              f"peak {after['VmHWM'] / 1024:.0f} MiB")
        assert growth_mib < 150 and after["VmHWM"] / 1024 < 600
    finally:
        producer.close()
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed:
            for w in d.workers:
                print(f"--- {w.log_path.name}\n{w.log_tail()}")
        d.close()


@pytest.mark.broker
def test_onestop_replay_dead_letters_a_line_bigger_than_a_kafka_record_and_goes_on(kafka_bootstrap, topic_prefix,
                                                                                   tmp_path) -> None:
    from kafka import KafkaConsumer

    from streams.tools.publisher import DLQ_MAX_VALUE_BYTES as PUBLISHER_DLQ_MAX
    from streams.tools.publisher import DossierEventPublisher
    from streams.tools.replay import replay_file
    from streams.runtime.topics import ensure_topics

    settings = WorkerSettings(topic_prefix=topic_prefix, app_id=topic_prefix + "app")
    ensure_topics(kafka_bootstrap, settings)
    doc = copy.deepcopy(RECEIVED_DOCS[0])
    doc["data"]["padding"] = "x" * 2_000_000  # twice what a Kafka record may hold
    path = tmp_path / "history.jsonl"
    path.write_bytes(LINES[0] + b"\n" + _dump(doc) + b"\n" + LINES[1] + b"\n")
    with DossierEventPublisher(kafka_bootstrap, settings.events, dlq_topic=settings.dlq) as pub:
        stats = replay_file(path, pub)
    assert stats.sent == 2 and [(n, reason) for n, reason, _m in stats.invalid] == [(2, "too_large")]
    consumer = KafkaConsumer(settings.dlq, bootstrap_servers=kafka_bootstrap, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000, fetch_max_bytes=8 << 20,
                             max_partition_fetch_bytes=8 << 20, isolation_level="read_committed")
    records = list(consumer)
    consumer.close()
    (record,) = records
    headers = dict(record.headers)
    assert headers["x-reason"] == b"too_large" and headers["x-source-line"] == b"2"
    assert int(headers["x-truncated-value-bytes"]) > 2_000_000 and len(record.value) == PUBLISHER_DLQ_MAX
