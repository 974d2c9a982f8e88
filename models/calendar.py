"""Working-time arithmetic behind dossier deadlines, over the Vietnamese public-sector calendar.

A deadline printed on a receipt slip (ngày hẹn trả) is counted in working time: lunch breaks, nights, weekly rest
days, public holidays, compensatory days and swapped days do not count, and swapped Saturdays do (spec §2.4, §3).
``WorkCalendar`` combines the ``holidays`` baseline with the operator documents of ``models.calendar_documents``
(re-exported here, as they are part of the calendar's public surface).

All arithmetic runs on integer microseconds of Vietnamese wall-clock time since 1970-01-01. Asia/Ho_Chi_Minh has
been a constant UTC+7 without DST since 1976, so wall time and elapsed time coincide over the supported span, and
integers keep ``working_seconds_between(s, add_working_seconds(s, x)) == x`` exact at microsecond resolution.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from calendar import monthrange
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from models.calendar_documents import (
    BASELINE_PYTHON_HOLIDAYS, DEFAULT_CALENDAR_ID, DEFAULT_REST_DAYS, DEFAULT_WORKING_PERIODS, KIND_NAMES_VI, TZ,
    WEEKDAY_NAMES_VI, CalendarDocument, CalendarError, DayEntry, UnitOverride, is_int, load_calendar_file,
    parse_calendar_document, validated_document,
)

__all__ = ["TZ", "CalendarDocument", "CalendarError", "DayEntry", "UnitOverride", "WorkCalendar", "load_calendar_file",
           "parse_calendar_document"]

FIRST_YEAR, LAST_YEAR = 1976, 2100
"""Span of the arithmetic: the zone's offset is UTC+7 throughout, which the integer wall-clock model relies on."""

_US = 1_000_000
_DAY = 86_400 * _US
_OFFSET_US = 7 * 3600 * _US
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_WALL = datetime(1970, 1, 1, tzinfo=TZ)
_EPOCH_ORD = date(1970, 1, 1).toordinal()
_YEAR_START_DN = [date(y, 1, 1).toordinal() - _EPOCH_ORD for y in range(FIRST_YEAR, LAST_YEAR + 2)]
_MIN_US = _YEAR_START_DN[0] * _DAY
_MAX_US = _YEAR_START_DN[-1] * _DAY



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
            doc = validated_document(doc)
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
        doc = validated_document(doc)
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
        state.update((e.date, (False, e.name_vi or KIND_NAMES_VI[e.kind])) for e in closures)
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
        return f"Nghỉ hằng tuần ({WEEKDAY_NAMES_VI[(table.start + i + 3) % 7]})"

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

    def _sub_us(self, end: int, amount: int) -> int | None:
        """The latest instant from which ``amount`` of working time remains until ``end`` (a position on a boundary
        maps to the later period's start, as walking back from ``end`` finds it); None before the calendar's span."""
        table, position = self._locate(end)
        target = position - amount
        while target < 0:
            if table.year == FIRST_YEAR:
                return None
            table = self._year(table.year - 1)
            target += table.total
        i = bisect_right(table.cum, target) - 1  # cum[i] <= target < cum[i+1]: a working day
        rest = target - table.cum[i]
        for s, e in table.periods[i]:
            if rest < e - s:
                return (table.start + i) * _DAY + s + rest
            rest -= e - s
        raise AssertionError("prefix sums out of step with day periods")  # pragma: no cover

    def subtract_working_seconds(self, end: datetime, seconds: float) -> datetime | None:
        """The latest instant (Vietnam time) from which ``seconds`` of working time remain until ``end``, by the
        prefix sums rather than a walk back day by day. None where this cannot say it to the microsecond as the
        walk does (``models.evaluation.subtract_working_seconds_walk``): before the calendar's span, or for an
        amount that is not a whole number of microseconds (the walk rounds what is left, not what was asked)."""
        amount = seconds * _US
        whole = round(amount)
        if whole <= 0 or abs(amount - whole) > 1e-3:
            return None
        found = self._sub_us(_to_us(end), whole)
        return None if found is None else _from_us(found)

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
        if not is_int(days):
            raise ValueError(f"days: {days!r} must be a whole number")
        _to_us(start)
        local = start.astimezone(TZ)
        return self._roll_to_working_day(local, local.date() + timedelta(days=days))

    def add_months(self, start: datetime, months: int) -> datetime:
        """Calendar months; the day is clamped to the target month's length (31 Jan + 1 month = 28/29 Feb)."""
        if not is_int(months):
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
