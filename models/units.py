"""The unit registry: what each handling-unit code is called, in Vietnamese and English, on a given date.

Events carry codes only (``T99.S03``, ``T99.X065``), but every page, CSV and alert a person reads must say
"Sở Nông nghiệp và Môi trường" or "UBND xã Mường Hum". Units were merged and renamed in 2025 (the March 2025
restructuring of provincial agencies, the two-tier reform of 1 July 2025), and a report on January 2025 must use the
names of January 2025, so a code has several records over time. ``valid_from`` is inclusive and ``valid_to``
exclusive, as in the indicator catalogue, so a successor record starts on its predecessor's ``valid_to``.

Sources: YAML or CSV files edited by operators (loading is strict and names the line and field of every problem),
the ``unit-registry`` compacted topic (``to_reference_record`` / ``from_reference_record``), and
``simulated_registry`` (``models/units_sample.py``) for the simulated province of the demo and the bundled sample.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

__all__ = [
    "FIELDS",
    "UNIT_LEVELS",
    "UnitRecord",
    "UnitRegistry",
    "UnitRegistryError",
    "from_reference_record",
]

VN = ZoneInfo("Asia/Ho_Chi_Minh")

#: The same levels the reference topic reader accepts (``district_legacy`` = districts before 1 July 2025).
UNIT_LEVELS = ("ministry", "province", "agency", "district_legacy", "commune")

#: Columns of a CSV registry and keys of a YAML record, in file order.
FIELDS = ("code", "name_vi", "name_en", "level", "parent", "valid_from", "valid_to", "merged_into")
_REQUIRED = ("code", "name_vi", "level")

_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class UnitRegistryError(ValueError):
    """A registry file or record that cannot be trusted; the message lists every problem with its line and field."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("unit registry refused:\n  " + "\n  ".join(self.problems))


@dataclass(frozen=True)
class UnitRecord:
    """One name of one unit over one interval of time; a code renamed or re-parented has several records."""

    code: str
    name_vi: str
    name_en: str | None = None
    level: str = "agency"
    parent: str | None = None
    valid_from: date | None = None  # inclusive; None = since always
    valid_to: date | None = None  # exclusive; None = still in force
    merged_into: str | None = None  # for a unit that ceased to exist: the code that took its dossiers over
    line: int | None = field(default=None, compare=False, repr=False)  # where it was read, for error messages

    def __post_init__(self) -> None:
        if not self.name_en:
            object.__setattr__(self, "name_en", self.name_vi)

    def valid_on(self, d: date) -> bool:
        return (self.valid_from is None or self.valid_from <= d) and (self.valid_to is None or d < self.valid_to)

    def name(self, lang: str = "vi") -> str:
        return self.name_en if lang == "en" else self.name_vi  # type: ignore[return-value]

    @property
    def province(self) -> str:
        """The province code: the unit itself for a province, else the first segment of the code (``T99``)."""
        return self.code if self.level == "province" else self.code.split(".", 1)[0]

    def as_row(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("line")
        return d


def _as_date(when: date | datetime | str | None) -> date:
    """Vietnam's calendar date of an instant: a unit's name changes at midnight in Vietnam, not in UTC."""
    if when is None:
        return datetime.now(VN).date()
    if isinstance(when, str):
        when = datetime.fromisoformat(when) if "T" in when or " " in when else date.fromisoformat(when)
    if isinstance(when, datetime):
        return (when.astimezone(VN) if when.tzinfo else when).date()
    return when


# ------------------------------------------------------------------------------------------------ validation


def _check(raw: Mapping[str, Any], where: str, problems: list[str]) -> UnitRecord | None:
    start = len(problems)

    def fail(fld: str, msg: str) -> None:
        problems.append(f"{where}, field {fld}: {msg}")

    unknown = sorted(str(k) for k in raw if k not in FIELDS and k != "__line__")
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(FIELDS)})")
    for k in _REQUIRED:
        if raw.get(k) in (None, ""):
            fail(k, "missing or empty")

    def text(k: str) -> str | None:
        v = raw.get(k)
        if v in (None, ""):
            return None
        if not isinstance(v, str):
            fail(k, f"must be text, got {v!r} (quote it in YAML)")
            return None
        v = v.strip()
        if not v:
            fail(k, "is blank")
        return v or None

    def day(k: str) -> date | None:
        v = raw.get(k)
        if v in (None, ""):
            return None
        if isinstance(v, datetime):
            fail(k, f"must be a date YYYY-MM-DD, not a timestamp: {v!r}")
            return None
        if isinstance(v, date):
            return v
        if isinstance(v, str):
            try:
                return date.fromisoformat(v.strip())
            except ValueError:
                pass
        fail(k, f"must be a date YYYY-MM-DD or empty, got {v!r}")
        return None

    code, name_vi, name_en = text("code"), text("name_vi"), text("name_en")
    level, parent, merged_into = text("level"), text("parent"), text("merged_into")
    valid_from, valid_to = day("valid_from"), day("valid_to")
    for k, v in (("code", code), ("parent", parent), ("merged_into", merged_into)):
        if v is not None and not _CODE_RE.match(v):
            fail(k, f"{v!r} is not a unit code (letters, digits, '.', '_', '-'; at most 64)")
    if level is not None and level not in UNIT_LEVELS:
        fail("level", f"{level!r} is not one of {', '.join(UNIT_LEVELS)}")
    if valid_from and valid_to and valid_to <= valid_from:
        fail("valid_to", f"{valid_to} must be after valid_from {valid_from}")
    if parent is not None and parent == code:
        fail("parent", "a unit cannot be its own parent")
    if merged_into is not None and valid_to is None:
        fail("merged_into", "only a record that ends (valid_to) can name the unit it was merged into")
    if len(problems) > start or code is None or name_vi is None or level is None:
        return None
    return UnitRecord(code, name_vi, name_en, level, parent, valid_from, valid_to, merged_into,
                      line=raw.get("__line__"))


def _where(source: str, rec: UnitRecord) -> str:
    return f"{source} line {rec.line}" if rec.line else f"{source} record {rec.code}"


def _check_history(records: list[UnitRecord], source: str, problems: list[str]) -> None:
    by_code: dict[str, list[UnitRecord]] = {}
    for r in records:
        by_code.setdefault(r.code, []).append(r)
    for code, rs in by_code.items():
        rs.sort(key=lambda r: r.valid_from or date.min)
        for a, b in zip(rs, rs[1:]):
            a_end = a.valid_to or date.max
            if (b.valid_from or date.min) < a_end:
                problems.append(f"{_where(source, b)}, field valid_from: unit {code} already has the record of "
                                f"{_where(source, a)} in force then (records of one code must not overlap)")
    known = set(by_code)
    for r in records:
        for fld in ("parent", "merged_into"):
            v = getattr(r, fld)
            if v is not None and v not in known:
                problems.append(f"{_where(source, r)}, field {fld}: unit {v!r} is not in the registry")


# --------------------------------------------------------------------------------------------------- reading


class _LineLoader(yaml.SafeLoader):
    """Keeps the line of every mapping so that a problem in a 200-unit file names the line to fix."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    m = loader.construct_mapping(node, deep=True)
    m["__line__"] = node.start_mark.line + 1
    return m


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)
# Dates stay text until validated, so that 2025-02-30 is reported with its line and field instead of crashing.
_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def _yaml_rows(text: str, source: str) -> list[Mapping[str, Any]]:
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise UnitRegistryError([f"{source}: not valid YAML: {exc}"]) from None
    if isinstance(doc, Mapping):
        doc = doc.get("units")
    if not isinstance(doc, list):
        raise UnitRegistryError([f"{source}: expected a list of units, or a mapping with a `units:` list"])
    rows = []
    for i, item in enumerate(doc):
        if not isinstance(item, Mapping):
            raise UnitRegistryError([f"{source} item {i + 1}: expected a mapping with {', '.join(_REQUIRED)}"])
        rows.append(item)
    return rows


def _csv_rows(text: str, source: str) -> list[Mapping[str, Any]]:
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    unknown = [h for h in header if h not in FIELDS]
    missing = [h for h in _REQUIRED if h not in header]
    if unknown or missing:
        parts = []
        if missing:
            parts.append("missing column(s) " + ", ".join(missing))
        if unknown:
            parts.append("unknown column(s) " + ", ".join(unknown))
        raise UnitRegistryError([f"{source} line 1 (header): {'; '.join(parts)} (columns: {', '.join(FIELDS)})"])
    reader.fieldnames = header
    rows = []
    for row in reader:
        if None in row:
            raise UnitRegistryError([f"{source} line {reader.line_num}: more cells than header columns"])
        if not any((v or "").strip() for v in row.values()):
            continue
        rows.append({**{k: (v or "").strip() for k, v in row.items()}, "__line__": reader.line_num})
    return rows


# ------------------------------------------------------------------------------------------------ registry


class UnitRegistry:
    """Every record of every unit; look-ups by code and date. Immutable once built."""

    def __init__(self, records: Iterable[UnitRecord] = (), source: str = "registry"):
        self.source = source
        self._by_code: dict[str, tuple[UnitRecord, ...]] = {}
        grouped: dict[str, list[UnitRecord]] = {}
        for r in records:
            grouped.setdefault(r.code, []).append(r)
        for code in sorted(grouped):
            self._by_code[code] = tuple(sorted(grouped[code], key=lambda r: r.valid_from or date.min))

    # -- construction --------------------------------------------------------------------------------------

    @classmethod
    def from_records(cls, records: Iterable[UnitRecord | Mapping[str, Any]], source: str = "registry") -> "UnitRegistry":
        """Validated records (objects or mappings with the keys of ``FIELDS``); raises ``UnitRegistryError``."""
        problems: list[str] = []
        out: list[UnitRecord] = []
        for i, r in enumerate(records):
            raw = r.as_row() | {"__line__": r.line} if isinstance(r, UnitRecord) else r
            if not isinstance(raw, Mapping):
                problems.append(f"{source} record {i + 1}: expected a mapping, got {type(raw).__name__}")
                continue
            where = f"{source} line {raw['__line__']}" if raw.get("__line__") else f"{source} record {i + 1}"
            rec = _check(raw, where, problems)
            if rec is not None:
                out.append(rec)
        _check_history(out, source, problems)
        if not out and not problems:
            problems.append(f"{source}: no unit records")
        if problems:
            raise UnitRegistryError(problems)
        return cls(out, source)

    @classmethod
    def loads(cls, text: str, fmt: str, source: str = "registry") -> "UnitRegistry":
        """From the text of a ``yaml`` or ``csv`` document (a UTF-8 BOM is accepted in both)."""
        text = text.removeprefix("\ufeff")
        if fmt == "csv":
            rows = _csv_rows(text, source)
        elif fmt in ("yaml", "yml", "json"):
            rows = _yaml_rows(text, source)
        else:
            raise ValueError(f"unknown registry format {fmt!r} (yaml or csv)")
        return cls.from_records(rows, source)

    @classmethod
    def load(cls, path: str | Path) -> "UnitRegistry":
        """From a ``.yaml``/``.yml``/``.json`` or ``.csv`` file (UTF-8, optional BOM)."""
        p = Path(path)
        try:
            text = p.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise UnitRegistryError([f"{p.name}: not UTF-8 text ({exc}); save the file as UTF-8"]) from None
        fmt = "csv" if p.suffix.lower() == ".csv" else "yaml"
        return cls.loads(text, fmt, source=p.name)

    # -- look-ups ------------------------------------------------------------------------------------------

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def __len__(self) -> int:
        return len(self._by_code)

    def codes(self) -> list[str]:
        return list(self._by_code)

    def records(self, code: str | None = None) -> tuple[UnitRecord, ...]:
        """The history of one code (oldest first), or every record of the registry."""
        if code is None:
            return tuple(r for rs in self._by_code.values() for r in rs)
        return self._by_code.get(code, ())

    def record_at(self, code: str, when: date | datetime | str | None = None) -> UnitRecord | None:
        """The record in force on ``when`` (Vietnam date; default today), or None."""
        d = _as_date(when)
        return next((r for r in self._by_code.get(code, ()) if r.valid_on(d)), None)

    def nearest(self, code: str, when: date | datetime | str | None = None) -> UnitRecord | None:
        """The record in force, else the last one that ended before ``when``, else the first that starts after."""
        rs = self._by_code.get(code)
        if not rs:
            return None
        d = _as_date(when)
        exact = next((r for r in rs if r.valid_on(d)), None)
        if exact is not None:
            return exact
        before = [r for r in rs if r.valid_to is not None and r.valid_to <= d]
        return before[-1] if before else rs[0]

    def name_at(self, code: str, when: date | datetime | str | None = None, lang: str = "vi") -> str | None:
        """The unit's name in force on ``when``; None if the code is unknown or had no record then."""
        r = self.record_at(code, when)
        return r.name(lang) if r else None

    def display(self, code: str | None, lang: str = "vi", when: date | datetime | str | None = None,
                with_code: bool = False) -> str:
        """What a person reads for ``code``: its name then (or its nearest name), else the code itself."""
        if not code:
            return ""
        r = self.nearest(code, when)
        if r is None:
            return code
        return f"{r.name(lang)} ({code})" if with_code else r.name(lang)

    def level_at(self, code: str, when: date | datetime | str | None = None) -> str | None:
        r = self.nearest(code, when)
        return r.level if r else None

    def current(self, when: date | datetime | str | None = None) -> dict[str, UnitRecord]:
        """Every unit in force on ``when``, by code."""
        d = _as_date(when)
        out = {}
        for code, rs in self._by_code.items():
            r = next((x for x in rs if x.valid_on(d)), None)
            if r is not None:
                out[code] = r
        return out

    def children(self, parent: str, when: date | datetime | str | None = None) -> list[str]:
        return [c for c, r in self.current(when).items() if r.parent == parent]

    def info_rows(self, when: date | datetime | str | None = None, lang: str = "vi") -> list[dict[str, str]]:
        """Label sets for an info metric (``onestop_unit_info{unit, name, name_en, level, province, parent} 1``):
        one row per unit in force, so dashboards join names onto figures in PromQL instead of carrying them on
        every series."""
        rows = []
        for code, r in self.current(when).items():
            rows.append({"unit": code, "name": r.name(lang), "name_en": r.name_en or r.name_vi, "level": r.level,
                         "province": r.province, "parent": r.parent or ""})
        return rows

    # -- reference topic -----------------------------------------------------------------------------------

    def to_reference_record(self, code: str, when: date | datetime | str | None = None) -> dict[str, Any]:
        """The ``unit-registry`` topic value for one code (key = the code): the fields the worker already reads
        (``unit_code``, ``name``, ``level``, ``province_code``, ``parent_unit_code``, as in force on ``when``)
        plus the names in both languages and the whole ``history``, because a compacted topic keeps one value
        per key."""
        rs = self._by_code.get(code)
        if not rs:
            raise KeyError(f"unit {code!r} is not in the registry")
        r = self.nearest(code, when)
        assert r is not None
        return {
            "unit_code": code, "name": r.name_vi, "name_vi": r.name_vi, "name_en": r.name_en, "level": r.level,
            "province_code": r.province, "parent_unit_code": r.parent,
            "history": [_history_item(x) for x in rs],
        }

    def reference_records(self, when: date | datetime | str | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs to publish, one per code, values as UTF-8 JSON."""
        for code in self._by_code:
            value = json.dumps(self.to_reference_record(code, when), ensure_ascii=False, sort_keys=True)
            yield code.encode("utf-8"), value.encode("utf-8")

    @classmethod
    def from_reference(cls, values: Mapping[str, bytes | str | Mapping[str, Any]]) -> "UnitRegistry":
        """A registry from the latest value of every key of the reference topic (code -> value)."""
        records: list[UnitRecord] = []
        for key, value in values.items():
            records.extend(from_reference_record(key, value))
        return cls.from_records(records, source="unit-registry topic")

    # -- writing -------------------------------------------------------------------------------------------

    def to_yaml(self, header: str = "") -> str:
        """One flow mapping per record (one line each), grouped by code: easy to read and to diff."""
        lines = [header.rstrip("\n")] if header else []
        lines.append("units:")
        previous = None
        for r in self.records():
            row = {k: v for k, v in r.as_row().items() if v is not None}
            if row.get("name_en") == row.get("name_vi"):
                row.pop("name_en")
            if previous is not None and r.code.split(".")[-1][:1] != previous.split(".")[-1][:1]:
                lines.append("")
            previous = r.code
            flow = yaml.safe_dump(row, allow_unicode=True, sort_keys=False, default_flow_style=True, width=1000)
            lines.append("  - " + flow.strip())
        return "\n".join(lines) + "\n"

    def to_csv(self) -> bytes:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\r\n")
        w.writerow(FIELDS)
        for r in self.records():
            row = r.as_row()
            w.writerow(["" if row[k] is None else str(row[k]) for k in FIELDS])
        return ("\ufeff" + out.getvalue()).encode("utf-8")


def _history_item(r: UnitRecord) -> dict[str, Any]:
    return {"name_vi": r.name_vi, "name_en": r.name_en, "level": r.level, "parent_unit_code": r.parent,
            "valid_from": r.valid_from.isoformat() if r.valid_from else None,
            "valid_to": r.valid_to.isoformat() if r.valid_to else None, "merged_into": r.merged_into}


def from_reference_record(key: str | bytes, value: bytes | str | Mapping[str, Any]) -> list[UnitRecord]:
    """The records of one ``unit-registry`` topic value; a value without ``history`` (the older form with a
    single ``name``) gives one record valid always. Raises ``UnitRegistryError``."""
    k = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    where = f"unit-registry key {k!r}"
    if isinstance(value, (bytes, str)):
        try:
            doc = json.loads(value)
        except ValueError as exc:
            raise UnitRegistryError([f"{where}: value is not JSON: {exc}"]) from None
    else:
        doc = value
    if not isinstance(doc, Mapping) or doc.get("unit_code") != k:
        raise UnitRegistryError([f"{where}: value must be an object whose unit_code equals the key"])
    history = doc.get("history")
    if history is None:
        history = [{"name_vi": doc.get("name_vi") or doc.get("name"), "name_en": doc.get("name_en"),
                    "level": doc.get("level"), "parent_unit_code": doc.get("parent_unit_code")}]
    if not isinstance(history, list) or not history:
        raise UnitRegistryError([f"{where}: history must be a non-empty list"])
    problems: list[str] = []
    out = []
    for i, h in enumerate(history):
        if not isinstance(h, Mapping):
            problems.append(f"{where} history[{i}]: expected an object")
            continue
        raw = {"code": k, "name_vi": h.get("name_vi"), "name_en": h.get("name_en"), "level": h.get("level"),
               "parent": h.get("parent_unit_code"), "valid_from": h.get("valid_from"), "valid_to": h.get("valid_to"),
               "merged_into": h.get("merged_into")}
        rec = _check(raw, f"{where} history[{i}]", problems)
        if rec is not None:
            out.append(rec)
    if problems:
        raise UnitRegistryError(problems)
    return out
