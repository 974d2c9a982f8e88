"""Operator calendar documents: one versioned document per calendar and year (spec §3.3), parsed and validated.

The ``holidays`` package gives the baseline, but the public-sector schedule is announced each year and package
releases lag the notices, so the documents' entries (holidays, compensatory days, swapped Saturdays, office hours,
unit closures) override it. Validation names the field of every problem, so an operator can fix a file at once.
The working-time arithmetic over these documents lives in ``models.calendar``.
"""


from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from zoneinfo import ZoneInfo

TIMEZONE_NAME = "Asia/Ho_Chi_Minh"
TZ = ZoneInfo(TIMEZONE_NAME)
DEFAULT_CALENDAR_ID = "vn-public-sector"
BASELINE_PYTHON_HOLIDAYS = "python-holidays"
DEFAULT_WORKING_PERIODS: tuple[tuple[time, time], ...] = ((time(7, 30), time(11, 30)), (time(13, 30), time(17, 0)))
DEFAULT_REST_DAYS: tuple[int, ...] = (5, 6)
MIN_DOCUMENT_YEAR, MAX_DOCUMENT_YEAR = 1990, 2100

NON_WORKING_KINDS = ("holiday", "compensatory", "swap_off", "unit_closure")
EXTRA_WORKING_KINDS = ("swap_work",)
WEEKDAY_CODES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_NAMES_VI = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật")
KIND_NAMES_VI = {"holiday": "Ngày lễ", "compensatory": "Nghỉ bù", "swap_off": "Nghỉ hoán đổi",
            "unit_closure": "Đơn vị nghỉ"}

_HHMM = re.compile(r"(\d{1,2}):(\d{2})")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TOP_LEVEL_KEYS = ("calendar_id", "year", "version", "timezone", "weekly_rest_days", "working_periods", "baseline",
                   "non_working_days", "extra_working_days", "unit_overrides", "source_documents", "approved_by")
_REQUIRED_KEYS = ("calendar_id", "year", "version", "timezone")


class CalendarError(ValueError):
    """A calendar document or request was refused; ``problems`` lists every rule broken, each naming its field."""

    def __init__(self, problems: str | Iterable[str]):
        self.problems = (problems,) if isinstance(problems, str) else tuple(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems: " + "; ".join(self.problems)
        super().__init__(message)


@dataclass(frozen=True)
class DayEntry:
    date: date
    kind: str
    name_vi: str | None = None
    swap_with: date | None = None


@dataclass(frozen=True)
class UnitOverride:
    """Office hours and closures of the units whose code starts with ``unit_code`` (provinces set their own hours)."""

    unit_code: str
    working_periods: tuple[tuple[time, time], ...] | None = None
    non_working_days: tuple[DayEntry, ...] = ()


@dataclass(frozen=True)
class CalendarDocument:
    calendar_id: str
    year: int
    version: int
    timezone: str = TIMEZONE_NAME
    weekly_rest_days: tuple[int, ...] = DEFAULT_REST_DAYS
    working_periods: tuple[tuple[time, time], ...] = DEFAULT_WORKING_PERIODS
    baseline: str | None = BASELINE_PYTHON_HOLIDAYS
    non_working_days: tuple[DayEntry, ...] = ()
    extra_working_days: tuple[DayEntry, ...] = ()
    unit_overrides: tuple[UnitOverride, ...] = ()
    source_documents: tuple[str, ...] = ()
    approved_by: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# Document validation. Every problem is collected, so an operator fixes a document in one round trip.

def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_hhmm(value: Any, path: str, problems: list[str]) -> time | None:
    match = _HHMM.fullmatch(value) if isinstance(value, str) else None
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        # YAML 1.1 reads an unquoted 13:30 as the sexagesimal integer 810, hence the hint.
        problems.append(f"{path}: {value!r} is not an 'HH:MM' time string (quote times in YAML)")
        return None
    return time(int(match[1]), int(match[2]))


def _parse_periods(value: Any, path: str, problems: list[str]) -> tuple[tuple[time, time], ...] | None:
    if not isinstance(value, (list, tuple)) or not value:
        problems.append(f"{path}: must be a non-empty list of [\"HH:MM\", \"HH:MM\"] pairs")
        return None
    periods: list[tuple[time, time]] = []
    valid = True
    for i, pair in enumerate(value):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            problems.append(f"{path}[{i}]: must be a [start, end] pair")
            valid = False
            continue
        start = _parse_hhmm(pair[0], f"{path}[{i}][0]", problems)
        end = _parse_hhmm(pair[1], f"{path}[{i}][1]", problems)
        if start is None or end is None:
            valid = False
        elif start >= end:
            problems.append(f"{path}[{i}]: start {pair[0]} is not before end {pair[1]}")
            valid = False
        else:
            periods.append((start, end))
    if not valid:
        return None
    for i in range(1, len(periods)):
        if periods[i][0] < periods[i - 1][1]:
            problems.append(f"{path}[{i}]: periods must be sorted and non-overlapping ({periods[i][0]:%H:%M} "
                            f"starts before the previous period ends at {periods[i - 1][1]:%H:%M})")
            return None
    return tuple(periods)


def _parse_date(value: Any, path: str, problems: list[str]) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    problems.append(f"{path}: {value!r} is not a date YYYY-MM-DD")
    return None


def _parse_entries(value: Any, path: str, problems: list[str], *, kinds: tuple[str, ...],
                   default_kind: str | None, year: int | None) -> list[tuple[int, DayEntry]]:
    """Entries keep their list index so that cross-list problems can name the exact field."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        problems.append(f"{path}: must be a list of {{date, kind, name_vi, swap_with}} entries")
        return []
    entries: list[tuple[int, DayEntry]] = []
    first_index: dict[date, int] = {}
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be a mapping with date, kind, name_vi, swap_with")
            continue
        before = len(problems)
        for key in sorted(set(item) - {"date", "kind", "name_vi", "swap_with"}, key=str):
            problems.append(f"{where}.{key}: unknown field (allowed: date, kind, name_vi, swap_with)")
        day = None
        if "date" not in item:
            problems.append(f"{where}.date: required")
        else:
            day = _parse_date(item["date"], f"{where}.date", problems)
        kind = item.get("kind", default_kind)
        if kind is None:
            problems.append(f"{where}.kind: required (one of {', '.join(kinds)})")
        elif kind not in kinds:
            problems.append(f"{where}.kind: {kind!r} is not one of {', '.join(kinds)}")
        name = item.get("name_vi")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            problems.append(f"{where}.name_vi: must be a non-empty string")
        swap = item.get("swap_with")
        if swap is not None:
            swap = _parse_date(swap, f"{where}.swap_with", problems)
            if swap is not None and swap == day:
                problems.append(f"{where}.swap_with: a day cannot be swapped with itself")
        if day is not None:
            if year is not None and day.year != year:
                problems.append(f"{where}.date: {day} is not in year {year}")
            if day in first_index:
                problems.append(f"{where}.date: {day} is already listed at {path}[{first_index[day]}]")
            else:
                first_index[day] = i
        if len(problems) == before:
            entries.append((i, DayEntry(day, kind, name, swap)))
    return entries


def _parse_unit_overrides(value: Any, problems: list[str], year: int | None) -> tuple[UnitOverride, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        problems.append("unit_overrides: must be a list of {unit_code, working_periods, non_working_days}")
        return ()
    overrides: list[UnitOverride] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        where = f"unit_overrides[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be a mapping")
            continue
        before = len(problems)
        for key in sorted(set(item) - {"unit_code", "working_periods", "non_working_days"}, key=str):
            problems.append(f"{where}.{key}: unknown field (allowed: unit_code, working_periods, non_working_days)")
        code = item.get("unit_code")
        if not isinstance(code, str) or not code.strip():
            problems.append(f"{where}.unit_code: must be a non-empty string")
        elif code in seen:
            problems.append(f"{where}.unit_code: {code!r} is already listed at unit_overrides[{seen[code]}]")
        else:
            seen[code] = i
        periods = None
        if item.get("working_periods") is not None:
            periods = _parse_periods(item["working_periods"], f"{where}.working_periods", problems)
        closures = _parse_entries(item.get("non_working_days"), f"{where}.non_working_days", problems,
                                  kinds=NON_WORKING_KINDS, default_kind="unit_closure", year=year)
        if item.get("working_periods") is None and not item.get("non_working_days"):
            problems.append(f"{where}: needs working_periods or non_working_days, otherwise it changes nothing")
        if len(problems) == before:
            overrides.append(UnitOverride(code, periods, tuple(e for _, e in closures)))
    return tuple(overrides)


def parse_calendar_document(obj: Mapping) -> CalendarDocument:
    """Validate an operator document (spec §3.3). A refused document must never half-apply, hence one error for all."""
    if not isinstance(obj, Mapping):
        raise CalendarError(f"document: must be a mapping, not {type(obj).__name__}")
    problems: list[str] = []
    for key in sorted(set(obj) - set(_TOP_LEVEL_KEYS), key=str):
        problems.append(f"{key}: unknown field (allowed: {', '.join(_TOP_LEVEL_KEYS)})")
    for key in _REQUIRED_KEYS:
        if key not in obj:
            problems.append(f"{key}: required")

    calendar_id = obj.get("calendar_id")
    if "calendar_id" in obj and (not isinstance(calendar_id, str) or not calendar_id.strip()):
        problems.append("calendar_id: must be a non-empty string")
    year = obj.get("year")
    if "year" in obj and (not is_int(year) or not MIN_DOCUMENT_YEAR <= year <= MAX_DOCUMENT_YEAR):
        problems.append(f"year: {year!r} must be an integer in {MIN_DOCUMENT_YEAR}..{MAX_DOCUMENT_YEAR}")
        year = None
    version = obj.get("version")
    if "version" in obj and (not is_int(version) or version < 1):
        problems.append(f"version: {version!r} must be an integer >= 1")
    tz_name = obj.get("timezone")
    if "timezone" in obj and tz_name != TIMEZONE_NAME:
        problems.append(f"timezone: {tz_name!r} must be {TIMEZONE_NAME!r}")

    rest_days: tuple[int, ...] | None = DEFAULT_REST_DAYS
    raw_rest = obj.get("weekly_rest_days", list(WEEKDAY_CODES[d] for d in DEFAULT_REST_DAYS))
    if not isinstance(raw_rest, (list, tuple)):
        problems.append("weekly_rest_days: must be a list of mon..sun")
        rest_days = None
    else:
        bad = [d for d in raw_rest if not isinstance(d, str) or d.lower() not in WEEKDAY_CODES]
        if bad:
            problems.append(f"weekly_rest_days: {bad!r} not among {', '.join(WEEKDAY_CODES)}")
            rest_days = None
        else:
            numbers = [WEEKDAY_CODES.index(d.lower()) for d in raw_rest]
            if len(set(numbers)) != len(numbers):
                problems.append("weekly_rest_days: a weekday is listed twice")
            if len(set(numbers)) == 7:
                problems.append("weekly_rest_days: all seven days leave no working weekday")
            rest_days = tuple(sorted(set(numbers)))

    periods = DEFAULT_WORKING_PERIODS
    if obj.get("working_periods") is not None:
        periods = _parse_periods(obj["working_periods"], "working_periods", problems) or DEFAULT_WORKING_PERIODS

    # Absent means "generate the baseline": forgetting the key must not silently drop Tết. Opt out with null.
    baseline = obj.get("baseline", BASELINE_PYTHON_HOLIDAYS)
    if baseline is not None and baseline != BASELINE_PYTHON_HOLIDAYS:
        problems.append(f"baseline: {baseline!r} must be {BASELINE_PYTHON_HOLIDAYS!r} or null")

    off = _parse_entries(obj.get("non_working_days"), "non_working_days", problems,
                         kinds=NON_WORKING_KINDS, default_kind=None, year=year)
    extra = _parse_entries(obj.get("extra_working_days"), "extra_working_days", problems,
                           kinds=EXTRA_WORKING_KINDS, default_kind="swap_work", year=year)
    off_at = {e.date: (i, e) for i, e in off}
    extra_at = {e.date: (i, e) for i, e in extra}
    for j, entry in extra:
        if entry.date in off_at:
            problems.append(f"extra_working_days[{j}].date: {entry.date} is also listed at "
                            f"non_working_days[{off_at[entry.date][0]}]; a day is either off or worked")
        elif rest_days is not None and entry.date.weekday() not in rest_days:
            problems.append(f"extra_working_days[{j}].date: {entry.date} is a {WEEKDAY_CODES[entry.date.weekday()]}, "
                            f"already a working weekday (weekly rest days: "
                            f"{', '.join(WEEKDAY_CODES[d] for d in rest_days)})")
    # A swap whose other half lies in another year cannot be checked here; that document carries its mirror.
    for path, entries, other_path, other_at in (("non_working_days", off, "extra_working_days", extra_at),
                                                ("extra_working_days", extra, "non_working_days", off_at)):
        for i, entry in entries:
            if entry.swap_with is None or year is None or entry.swap_with.year != year:
                continue
            mirror = other_at.get(entry.swap_with)
            if mirror is None or mirror[1].swap_with != entry.date:
                problems.append(f"{path}[{i}].swap_with: {entry.swap_with} is not listed in {other_path} "
                                f"with swap_with {entry.date}")

    overrides = _parse_unit_overrides(obj.get("unit_overrides"), problems, year)

    sources = obj.get("source_documents", [])
    if not isinstance(sources, (list, tuple)) or not all(isinstance(s, str) and s.strip() for s in sources):
        problems.append("source_documents: must be a list of non-empty strings")
        sources = []
    approved_by = obj.get("approved_by")
    if approved_by is not None and not isinstance(approved_by, str):
        problems.append("approved_by: must be a string or null")

    if problems:
        raise CalendarError(problems)
    return CalendarDocument(
        calendar_id=calendar_id, year=year, version=version, timezone=tz_name,
        weekly_rest_days=rest_days, working_periods=periods, baseline=baseline,
        non_working_days=tuple(e for _, e in sorted(off, key=lambda p: p[1].date)),
        extra_working_days=tuple(e for _, e in sorted(extra, key=lambda p: p[1].date)),
        unit_overrides=overrides, source_documents=tuple(sources), approved_by=approved_by)


def _as_mapping(doc: CalendarDocument) -> dict[str, Any]:
    """The file form of a document, so that documents built in code pass the same validation as files."""
    def hhmm(t: Any) -> Any:
        return f"{t:%H:%M}" if isinstance(t, time) and not (t.second or t.microsecond or t.tzinfo) else t

    def periods(value: Any) -> Any:
        return [[hhmm(s), hhmm(e)] for s, e in value] if isinstance(value, tuple) else value

    def entries(value: Iterable[DayEntry]) -> list[dict[str, Any]]:
        return [{k: v for k, v in vars(e).items() if v is not None} for e in value]

    return {
        "calendar_id": doc.calendar_id, "year": doc.year, "version": doc.version, "timezone": doc.timezone,
        "weekly_rest_days": [WEEKDAY_CODES[d] if d in range(7) else d for d in doc.weekly_rest_days],
        "working_periods": periods(doc.working_periods), "baseline": doc.baseline,
        "non_working_days": entries(doc.non_working_days), "extra_working_days": entries(doc.extra_working_days),
        "unit_overrides": [{"unit_code": o.unit_code, "working_periods": periods(o.working_periods),
                            "non_working_days": entries(o.non_working_days)} for o in doc.unit_overrides],
        "source_documents": list(doc.source_documents), "approved_by": doc.approved_by,
    }


def validated_document(doc: CalendarDocument | Mapping) -> CalendarDocument:
    if isinstance(doc, CalendarDocument):
        return parse_calendar_document(_as_mapping(doc))
    if isinstance(doc, Mapping):
        return parse_calendar_document(doc)
    raise TypeError(f"expected a CalendarDocument or mapping, got {type(doc).__name__}")


def load_calendar_file(path: str | Path) -> CalendarDocument:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise CalendarError(f"{path}: cannot read calendar document: {exc}") from None
    try:
        return parse_calendar_document(raw)
    except CalendarError as exc:
        raise CalendarError(f"{path}: {p}" for p in exc.problems) from None
