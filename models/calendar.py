"""The Vietnamese public-sector working calendar and the working-time arithmetic behind dossier deadlines.

A deadline printed on a receipt slip (ngày hẹn trả) is counted in working time: lunch breaks, nights, weekly rest
days, public holidays, compensatory days and swapped days do not count, and swapped Saturdays do (spec §2.4, §3).
The ``holidays`` package generates a good baseline, but the public-sector schedule is announced each year and
package releases lag the notices, so operators publish one versioned document per calendar and year (spec §3.3)
whose entries override the baseline.

All arithmetic runs on integer microseconds of Vietnamese wall-clock time since 1970-01-01. Asia/Ho_Chi_Minh has
been a constant UTC+7 without DST since 1976, so wall time and elapsed time coincide over the supported span, and
integers keep ``working_seconds_between(s, add_working_seconds(s, x)) == x`` exact at microsecond resolution.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_left, bisect_right
from calendar import monthrange
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
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
FIRST_YEAR, LAST_YEAR = 1976, 2100
"""Span of the arithmetic: the zone's offset is UTC+7 throughout, which the integer wall-clock model relies on."""

NON_WORKING_KINDS = ("holiday", "compensatory", "swap_off", "unit_closure")
EXTRA_WORKING_KINDS = ("swap_work",)
WEEKDAY_CODES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_VI = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật")
_KIND_VI = {"holiday": "Ngày lễ", "compensatory": "Nghỉ bù", "swap_off": "Nghỉ hoán đổi",
            "unit_closure": "Đơn vị nghỉ"}

_US = 1_000_000
_DAY = 86_400 * _US
_OFFSET_US = 7 * 3600 * _US
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_WALL = datetime(1970, 1, 1, tzinfo=TZ)
_EPOCH_ORD = date(1970, 1, 1).toordinal()
_YEAR_START_DN = [date(y, 1, 1).toordinal() - _EPOCH_ORD for y in range(FIRST_YEAR, LAST_YEAR + 2)]
_MIN_US = _YEAR_START_DN[0] * _DAY
_MAX_US = _YEAR_START_DN[-1] * _DAY
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

def _is_int(value: Any) -> bool:
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
    if "year" in obj and (not _is_int(year) or not MIN_DOCUMENT_YEAR <= year <= MAX_DOCUMENT_YEAR):
        problems.append(f"year: {year!r} must be an integer in {MIN_DOCUMENT_YEAR}..{MAX_DOCUMENT_YEAR}")
        year = None
    version = obj.get("version")
    if "version" in obj and (not _is_int(version) or version < 1):
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


def _validated(doc: CalendarDocument | Mapping) -> CalendarDocument:
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


# ---------------------------------------------------------------------------------------------------------------
# Baseline and per-year day tables.

@lru_cache(maxsize=None)
def _baseline_year(year: int) -> tuple[dict[date, str], frozenset[date]]:
    """Shared by every calendar: generating a year with ``holidays`` costs far more than any lookup."""
    import holidays  # deferred: loading the package's data is slow and only needed on first use

    generated = holidays.country_holidays("VN", years=year, language="vi", observed=True)
    names = {d: n for d, n in generated.items() if d.year == year}
    # Swapped working Saturdays (làm bù) of the public sector, as hard-coded by the package.
    worked = frozenset(d for d in getattr(generated, "weekend_workdays", ()) if d.year == year)
    return names, worked


def _time_us(t: time) -> int:
    return (t.hour * 3600 + t.minute * 60 + t.second) * _US + t.microsecond


class _Year:
    """Working periods of every day of one year plus prefix sums, so spans of any length cost O(years)."""

    __slots__ = ("year", "start", "n", "periods", "cum", "nxt", "wdays", "names")

    def __init__(self, year: int, day_state: dict[date, tuple[bool, str | None]],
                 rest_days: tuple[int, ...], periods: tuple[tuple[time, time], ...]):
        first = date(year, 1, 1)
        self.year = year
        self.start = first.toordinal() - _EPOCH_ORD
        self.n = 366 if monthrange(year, 2)[1] == 29 else 365
        day_periods = tuple((_time_us(s), _time_us(e)) for s, e in periods)
        day_total = sum(e - s for s, e in day_periods)
        self.periods: list[tuple[tuple[int, int], ...]] = []
        self.cum = [0] * (self.n + 1)
        self.names: dict[int, str] = {}
        weekday = first.weekday()
        for i in range(self.n):
            state = day_state.get(first + timedelta(days=i)) if day_state else None
            working = (weekday not in rest_days) if state is None else state[0]
            if state is not None and state[1]:
                self.names[i] = state[1]
            self.periods.append(day_periods if working else ())
            self.cum[i + 1] = self.cum[i] + (day_total if working else 0)
            weekday = (weekday + 1) % 7
        self.nxt = [self.n] * (self.n + 1)
        for i in range(self.n - 1, -1, -1):
            self.nxt[i] = i if self.periods[i] else self.nxt[i + 1]
        self.wdays = [i for i in range(self.n) if self.periods[i]]

    @property
    def total(self) -> int:
        return self.cum[self.n]


def _elapsed(periods: tuple[tuple[int, int], ...], offset: int) -> int:
    done = 0
    for s, e in periods:
        if offset >= e:
            done += e - s
        else:
            if offset > s:
                done += offset - s
            break
    return done


def _at_position(periods: tuple[tuple[int, int], ...], position: int) -> int:
    """Same-moment landing: a position on a period boundary maps to the next period's start, not the previous end."""
    for s, e in periods:
        if position < e - s:
            return s + position
        position -= e - s
    return periods[-1][1]


def _to_us(t: datetime) -> int:
    if not isinstance(t, datetime):
        raise TypeError(f"expected a datetime, got {type(t).__name__}")
    if t.tzinfo is TZ:  # the common case; reading wall-clock fields avoids two zone lookups
        us = ((t.toordinal() - _EPOCH_ORD) * 86_400 + t.hour * 3600 + t.minute * 60 + t.second) * _US + t.microsecond
    else:
        if t.tzinfo is None or t.utcoffset() is None:
            raise ValueError(f"naive datetime {t.isoformat()}: an offset is required, the calendar will not guess one")
        delta = t - _EPOCH_UTC
        us = (delta.days * 86_400 + delta.seconds) * _US + delta.microseconds + _OFFSET_US
    if not _MIN_US <= us < _MAX_US:
        raise ValueError(f"{t.isoformat()} is outside the calendar's span {FIRST_YEAR}..{LAST_YEAR}")
    return us


def _from_us(us: int) -> datetime:
    return _EPOCH_WALL + timedelta(microseconds=us)


def _check_year(year: int) -> None:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise CalendarError(f"year: {year} is outside the calendar's span {FIRST_YEAR}..{LAST_YEAR}")


# ---------------------------------------------------------------------------------------------------------------

class WorkCalendar:
    """One calendar (one ``calendar_id``): baseline plus at most one document per year, optionally for one unit.

    Instances are immutable: a new document yields a new calendar, so a refused document leaves the calendar in
    force untouched and concurrent readers never see half an update. Day tables are built lazily per year.
    """

    def __init__(self, documents: Iterable[CalendarDocument | Mapping] = (), *, baseline: bool = True,
                 hours_per_working_day: float = 8.0):
        if not (isinstance(hours_per_working_day, (int, float)) and math.isfinite(hours_per_working_day)
                and 0 < hours_per_working_day <= 24):
            raise CalendarError(f"hours_per_working_day: {hours_per_working_day!r} must be in (0, 24]")
        docs: dict[int, CalendarDocument] = {}
        calendar_id = None
        for doc in documents:
            doc = _validated(doc)
            if calendar_id is not None and doc.calendar_id != calendar_id:
                raise CalendarError(f"calendar_id: {doc.calendar_id!r} differs from {calendar_id!r}; "
                                    "one WorkCalendar holds one calendar")
            calendar_id = doc.calendar_id
            # Highest version wins regardless of order, as when replaying a compacted topic.
            current = docs.get(doc.year)
            if current is None or doc.version > current.version:
                docs[doc.year] = doc
            elif doc.version == current.version and doc != current:
                raise CalendarError(f"version: two different documents claim {doc.calendar_id} "
                                    f"{doc.year} version {doc.version}")
        self._init(docs, calendar_id or DEFAULT_CALENDAR_ID, bool(baseline), float(hours_per_working_day))

    def _init(self, docs: dict[int, CalendarDocument], calendar_id: str, baseline: bool, hours: float,
              unit_code: str | None = None, overrides: dict[int, UnitOverride] | None = None,
              base: WorkCalendar | None = None) -> None:
        self._docs = docs
        self._calendar_id = calendar_id
        self._baseline = baseline
        self._hours = hours
        self._unit_code = unit_code
        self._overrides = overrides or {}
        self._base = base or self
        self._tables: list[_Year | None] = [None] * (LAST_YEAR - FIRST_YEAR + 1)
        self._unit_cache: dict[str, WorkCalendar] = {}
        parts = ",".join(f"{y}v{d.version}" for y, d in sorted(docs.items())) or "baseline"
        self._version = f"{calendar_id}:{parts}" + ("" if baseline else ";no-baseline") + \
            (f";unit={unit_code}" if unit_code else "")

    @classmethod
    def _make(cls, *args: Any, **kwargs: Any) -> WorkCalendar:
        cal = cls.__new__(cls)
        cal._init(*args, **kwargs)
        return cal

    @classmethod
    def default(cls) -> WorkCalendar:
        return _default_calendar()

    def __repr__(self) -> str:
        return f"WorkCalendar({self._version!r})"

    @property
    def version(self) -> str:
        """Printed in reports, so a figure can be traced to the exact calendar documents that produced it."""
        return self._version

    @property
    def calendar_id(self) -> str:
        return self._calendar_id

    @property
    def documents(self) -> tuple[CalendarDocument, ...]:
        return tuple(d for _, d in sorted(self._docs.items()))

    def with_document(self, doc: CalendarDocument | Mapping) -> WorkCalendar:
        """Refusing a stale or invalid version (instead of ignoring it) lets the caller alert while the last good
        version stays in force in this unchanged object."""
        doc = _validated(doc)
        base = self._base
        if base._docs and doc.calendar_id != base._calendar_id:
            raise CalendarError(f"calendar_id: {doc.calendar_id!r} does not match this calendar "
                                f"({base._calendar_id!r})")
        current = base._docs.get(doc.year)
        if current is not None and doc.version <= current.version:
            raise CalendarError(f"version: {doc.version} for {doc.calendar_id} {doc.year} is not higher than the "
                                f"version in force ({current.version}); version {current.version} stays in force")
        docs = dict(base._docs)
        docs[doc.year] = doc
        new = WorkCalendar._make(docs, doc.calendar_id, base._baseline, base._hours)
        new._tables = [t if t is None or t.year != doc.year else None for t in base._tables]
        return new.for_unit(self._unit_code) if self._unit_code else new

    def for_unit(self, unit_code: str | None) -> WorkCalendar:
        """Longest prefix wins so that a ward can refine its province's hours; plain string prefix, per year."""
        base = self._base
        if unit_code is None:
            return base
        if not isinstance(unit_code, str):
            raise TypeError(f"unit_code must be a string, got {type(unit_code).__name__}")
        cached = base._unit_cache.get(unit_code)
        if cached is not None:
            return cached
        chosen: dict[int, UnitOverride] = {}
        for year, doc in base._docs.items():
            matches = [o for o in doc.unit_overrides if unit_code.startswith(o.unit_code)]
            if matches:
                chosen[year] = max(matches, key=lambda o: len(o.unit_code))
        cal = base
        if chosen:
            cal = WorkCalendar._make(base._docs, base._calendar_id, base._baseline, base._hours,
                                     unit_code, chosen, base)
            # Years without an override are identical to the base; share what it has already built.
            cal._tables = [None if t is None or t.year in chosen else t for t in base._tables]
        base._unit_cache[unit_code] = cal
        return cal

    # -- day tables ---------------------------------------------------------------------------------------------

    def _year(self, year: int) -> _Year:
        _check_year(year)
        table = self._tables[year - FIRST_YEAR]
        if table is None:
            table = self._tables[year - FIRST_YEAR] = self._build_year(year)
        return table

    def _build_year(self, year: int) -> _Year:
        doc = self._docs.get(year)
        override = self._overrides.get(year)
        # Layers, later wins: baseline holidays, baseline swapped Saturdays, document, unit closures.
        state: dict[date, tuple[bool, str | None]] = {}
        if self._baseline and (doc is None or doc.baseline == BASELINE_PYTHON_HOLIDAYS):
            names, worked = _baseline_year(year)
            state.update((d, (False, n)) for d, n in names.items())
            state.update((d, (True, None)) for d in worked)
        closures: tuple[DayEntry, ...] = ()
        if doc is not None:
            closures = doc.non_working_days
            state.update((e.date, (True, None)) for e in doc.extra_working_days)
        if override is not None:
            closures = closures + override.non_working_days
        state.update((e.date, (False, e.name_vi or _KIND_VI[e.kind])) for e in closures)
        periods = doc.working_periods if doc is not None else DEFAULT_WORKING_PERIODS
        if override is not None and override.working_periods:
            periods = override.working_periods
        rest = doc.weekly_rest_days if doc is not None else DEFAULT_REST_DAYS
        return _Year(year, state, rest, periods)

    def _table_for_day(self, dn: int) -> _Year:
        index = bisect_right(_YEAR_START_DN, dn) - 1
        if 0 <= index < len(self._tables):
            table = self._tables[index]
            return table if table is not None else self._year(FIRST_YEAR + index)
        raise CalendarError(f"date: {date.fromordinal(dn + _EPOCH_ORD)} is outside the calendar's span "
                            f"{FIRST_YEAR}..{LAST_YEAR}")

    def _date_table(self, d: date) -> tuple[_Year, int]:
        if isinstance(d, datetime):
            dn = _to_us(d) // _DAY
        elif isinstance(d, date):
            dn = d.toordinal() - _EPOCH_ORD
        else:
            raise TypeError(f"expected a date, got {type(d).__name__}")
        table = self._table_for_day(dn)
        return table, dn - table.start

    def _next_working_day(self, table: _Year, i: int) -> tuple[_Year, int]:
        while True:
            j = table.nxt[i]
            if j < table.n:
                return table, j
            table, i = self._year(table.year + 1), 0

    # -- days ---------------------------------------------------------------------------------------------------

    def is_working_day(self, d: date) -> bool:
        table, i = self._date_table(d)
        return bool(table.periods[i])

    def day_off_name(self, d: date) -> str | None:
        """Why a day is off, for alerts and slips; a plain weekly rest day is named by its weekday."""
        table, i = self._date_table(d)
        if table.periods[i]:
            return None
        if i in table.names:
            return table.names[i]
        return f"Nghỉ hằng tuần ({_WEEKDAY_VI[(table.start + i + 3) % 7]})"

    def working_periods(self, d: date) -> list[tuple[datetime, datetime]]:
        table, i = self._date_table(d)
        midnight = (table.start + i) * _DAY
        return [(_from_us(midnight + s), _from_us(midnight + e)) for s, e in table.periods[i]]

    def working_day_seconds(self, d: date) -> float:
        table, i = self._date_table(d)
        return (table.cum[i + 1] - table.cum[i]) / _US

    # -- working-time arithmetic (integer microseconds) ---------------------------------------------------------

    def _next_instant_us(self, us: int) -> int:
        dn = us // _DAY
        table = self._table_for_day(dn)
        i = dn - table.start
        offset = us - dn * _DAY
        for s, e in table.periods[i]:
            if offset < e:
                return us if offset >= s else dn * _DAY + s
        table, j = self._next_working_day(table, i + 1)
        return (table.start + j) * _DAY + table.periods[j][0][0]

    def _locate(self, us: int) -> tuple[_Year, int]:
        """The instant's year table and its working time elapsed since the start of that year."""
        dn = us // _DAY
        table = self._table_for_day(dn)
        i = dn - table.start
        return table, table.cum[i] + _elapsed(table.periods[i], us - dn * _DAY)

    def _add_us(self, us: int, amount: int) -> int:
        us = self._next_instant_us(us)
        if amount <= 0:
            return us
        table, position = self._locate(us)
        target = position + amount
        while target > table.total:
            target -= table.total
            table = self._year(table.year + 1)
        i = bisect_left(table.cum, target) - 1  # cum[i] < target <= cum[i+1]: a period end counts as reached
        rest = target - table.cum[i]
        for s, e in table.periods[i]:
            if rest <= e - s:
                return (table.start + i) * _DAY + s + rest
            rest -= e - s
        raise AssertionError("prefix sums out of step with day periods")  # pragma: no cover

    def _between_us(self, a: int, b: int) -> int:
        if b < a:
            return -self._between_us(b, a)
        table_a, pos_a = self._locate(a)
        table_b, pos_b = self._locate(b)
        if table_a is table_b:
            return pos_b - pos_a
        total = table_a.total - pos_a + pos_b
        for year in range(table_a.year + 1, table_b.year):
            total += self._year(year).total
        return total

    def _land(self, dn: int, days: int, position: int) -> int:
        table = self._table_for_day(dn)
        k = bisect_left(table.wdays, dn - table.start) + days
        while k >= len(table.wdays):
            k -= len(table.wdays)
            table = self._year(table.year + 1)
        i = table.wdays[k]
        return (table.start + i) * _DAY + _at_position(table.periods[i], position)

    def next_working_instant(self, t: datetime) -> datetime:
        """Reception outside office hours starts the clock at the next working period (spec §2.4.3); a period's
        start belongs to it and its end does not, so 11:30 moves on to 13:30."""
        return _from_us(self._next_instant_us(_to_us(t)))

    def add_working_seconds(self, start: datetime, seconds: float) -> datetime:
        """Running out exactly at a period's end gives that end (e.g. 17:00): the deadline is the moment the time
        is used up, not the next morning. Zero gives the next working instant."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds: {seconds!r} must be a finite number >= 0")
        return _from_us(self._add_us(_to_us(start), round(seconds * _US)))

    def add_working_days(self, start: datetime, days: float) -> datetime:
        """Day-stepping, because that is what receipt slips print: Mon 14:00 + 5 WD is the next Mon 14:00.

        The working time already used on the start's day is carried to the N-th next working day (clamped to that
        day's end if it is shorter). So with the default 7.5-hour office hours "1 WD" means "the same moment of the
        next working day", which equals 8 working hours only where office hours total 8 hours. A fractional part
        adds ``fraction * hours_per_working_day`` working hours (half a day = 4 h), capped at the next whole day
        so that a longer limit never yields an earlier deadline.
        """
        if not math.isfinite(days) or days < 0:
            raise ValueError(f"days: {days!r} must be a finite number >= 0")
        us = self._next_instant_us(_to_us(start))
        whole = math.floor(days)
        fraction = days - whole
        dn = us // _DAY
        table = self._table_for_day(dn)
        position = _elapsed(table.periods[dn - table.start], us - dn * _DAY)
        landed = self._land(dn, whole, position)
        if fraction > 0:
            extra = round(fraction * self._hours * 3600 * _US)
            landed = min(self._add_us(landed, extra), self._land(dn, whole + 1, position))
        return _from_us(landed)

    def _roll_to_working_day(self, local: datetime, day: date) -> datetime:
        """A period ending on a day off ends on the next working day, same clock time (spec §2.4.6)."""
        table, i = self._date_table(day)
        table, j = self._next_working_day(table, i)
        target = date.fromordinal(table.start + j + _EPOCH_ORD)
        return local.replace(year=target.year, month=target.month, day=target.day)

    def add_calendar_days(self, start: datetime, days: int) -> datetime:
        """Keeps the clock time, as source systems print it; the Civil Code's end-of-day reading is not applied."""
        if not _is_int(days):
            raise ValueError(f"days: {days!r} must be a whole number")
        _to_us(start)
        local = start.astimezone(TZ)
        return self._roll_to_working_day(local, local.date() + timedelta(days=days))

    def add_months(self, start: datetime, months: int) -> datetime:
        """Calendar months; the day is clamped to the target month's length (31 Jan + 1 month = 28/29 Feb)."""
        if not _is_int(months):
            raise ValueError(f"months: {months!r} must be a whole number")
        _to_us(start)
        local = start.astimezone(TZ)
        year, month0 = divmod(local.year * 12 + local.month - 1 + months, 12)
        _check_year(year)
        day = min(local.day, monthrange(year, month0 + 1)[1])
        return self._roll_to_working_day(local, date(year, month0 + 1, day))

    def due_from_limit(self, received_at: datetime, value: float, unit: str) -> datetime:
        """The clock starts at the next working instant for every unit (spec §2.4.3), so a calendar-day or month
        limit received after hours counts from the next working period, like the hour-precise units."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise CalendarError(f"value: {value!r} must be a positive number")
        if unit == "hour":
            return self.add_working_seconds(received_at, value * 3600)
        if unit == "working_day":
            return self.add_working_days(received_at, value)
        if unit in ("day", "month"):
            if value != int(value):
                raise CalendarError(f"value: {value!r} must be a whole number of {unit}s")
            start = self.next_working_instant(received_at)
            if unit == "day":
                return self.add_calendar_days(start, int(value))
            return self.add_months(start, int(value))
        raise CalendarError(f"unit: {unit!r} is not one of hour, working_day, day, month")

    def working_seconds_between(self, a: datetime, b: datetime) -> float:
        """Working time in [a, b); signed, so callers can measure time left and time overdue with one call."""
        return self._between_us(_to_us(a), _to_us(b)) / _US


BUNDLED_CALENDAR_DIR = Path(__file__).with_name("calendars")


@lru_cache(maxsize=1)
def _default_calendar() -> WorkCalendar:
    documents = [load_calendar_file(p) for p in sorted(BUNDLED_CALENDAR_DIR.glob("*.yaml"))]
    return WorkCalendar(documents)
