"""The product's work calendar compiled into what Prometheus and Alertmanager can evaluate.

Neither tool knows Vietnamese working days: Tết, nghỉ bù and the Saturdays worked in exchange (làm bù) are
decided year by year. So the days that deviate from the plain weekly pattern are read from the same
``WorkCalendar`` that computes deadlines, and written out as (a) a PromQL recording rule giving 1 during working
time and (b) Alertmanager ``time_intervals``. Regenerating after a calendar change keeps the three in agreement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from models.calendar import TZ, WorkCalendar, load_calendar_file

from monitoring.config import WEEKDAYS, MixinConfig

__all__ = ["CalendarFacts", "DayRange", "calendar_facts", "covered_years", "working_time_rules",
           "alertmanager_time_intervals", "load_work_calendar"]

TIMEZONE = "Asia/Ho_Chi_Minh"
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")


@dataclass(frozen=True)
class DayRange:
    """Consecutive days inside one month (Alertmanager's ``days_of_month`` cannot cross a month)."""

    year: int
    month: int
    first: int
    last: int
    name: str

    def days(self) -> list[date]:
        return [date(self.year, self.month, d) for d in range(self.first, self.last + 1)]


@dataclass(frozen=True)
class CalendarFacts:
    years: tuple[int, ...]
    utc_offset_seconds: int
    #: Working periods of a working day, in minutes after local midnight.
    periods: tuple[tuple[int, int], ...]
    #: Days off that fall on a normal working weekday (holidays, nghỉ bù, swapped days off).
    weekday_days_off: tuple[DayRange, ...]
    #: Days worked although they fall on a weekly rest day (làm bù).
    rest_day_workdays: tuple[DayRange, ...]
    working_seconds_per_month: float
    calendar_version: str


def load_work_calendar(config: MixinConfig) -> WorkCalendar:
    cal = WorkCalendar.default()
    for f in config.calendar_files:
        cal = cal.with_document(load_calendar_file(f))
    return cal


def covered_years(config: MixinConfig, today: date | None = None) -> tuple[int, ...]:
    if config.calendar_years:
        return tuple(sorted(set(config.calendar_years)))
    year = (today or datetime.now(TZ).date()).year
    return (year, year + 1)


def _ranges(days: Iterable[date], name_of) -> tuple[DayRange, ...]:
    out: list[DayRange] = []
    for d in sorted(days):
        prev = out[-1] if out else None
        name = name_of(d)
        if prev and prev.year == d.year and prev.month == d.month and prev.last + 1 == d.day:
            names = prev.name.split(" / ")
            joined = prev.name if name in names else f"{prev.name} / {name}"
            out[-1] = DayRange(prev.year, prev.month, prev.first, d.day, joined)
        else:
            out.append(DayRange(d.year, d.month, d.day, d.day, name))
    return tuple(out)


def calendar_facts(config: MixinConfig, years: Sequence[int], calendar: WorkCalendar | None = None) -> CalendarFacts:
    """Everything the generators need from the calendar, checked for what the PromQL form can express."""
    cal = calendar or load_work_calendar(config)
    weekdays = {WEEKDAYS.index(d) for d in config.office_weekdays}
    offsets, patterns = set(), set()
    days_off, workdays = [], []
    working_seconds = 0.0
    for year in years:
        d = date(year, 1, 1)
        while d.year == year:
            for hour in (0, 12):
                offsets.add(int(datetime(d.year, d.month, d.day, hour, tzinfo=TZ).utcoffset().total_seconds()))
            working = cal.is_working_day(d)
            if working:
                periods = []
                for start, end in cal.working_periods(d):
                    local = start.astimezone(TZ)
                    first = local.hour * 60 + local.minute
                    periods.append((first, first + int((end - start).total_seconds() // 60)))
                patterns.add(tuple(periods))
                working_seconds += cal.working_day_seconds(d)
            if d.weekday() in weekdays and not working:
                days_off.append(d)
            elif d.weekday() not in weekdays and working:
                workdays.append(d)
            d += timedelta(days=1)
    if len(offsets) != 1:
        raise ValueError(f"{TIMEZONE} changes its UTC offset within {years}; the PromQL clock assumes one offset")
    if len(patterns) != 1:
        raise ValueError(f"working periods differ between days of {years} ({sorted(patterns)}); "
                         "the working-time rule supports one daily pattern")
    names = {}
    for doc in cal.documents:
        for entry in (*doc.non_working_days, *doc.extra_working_days):
            names[entry.date] = entry.name_vi
    return CalendarFacts(
        years=tuple(years),
        utc_offset_seconds=offsets.pop(),
        periods=patterns.pop(),
        weekday_days_off=_ranges(days_off, lambda d: names.get(d) or cal.day_off_name(d) or ""),
        rest_day_workdays=_ranges(workdays, lambda d: names.get(d) or "Ngày làm bù"),
        working_seconds_per_month=working_seconds / (12 * len(years)),
        calendar_version=cal.version,
    )


# ----------------------------------------------------------------------------------------------------- PromQL

CLOCK = "onestop:clock_local:seconds"
DAYS = "onestop:clock_local:days"
WORKING_DAY = "onestop:working_day:bool"
WORKING_TIME = "onestop:working_time:bool"
CALENDAR_COVERED = "onestop:calendar_covered:bool"


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def day_number(d: date) -> int:
    """Days since 1970-01-01, as ``floor(local seconds / 86400)`` counts them."""
    return d.toordinal() - _EPOCH_ORDINAL


def _day_term(r: DayRange) -> str:
    # Comparing one precomputed day number is several times cheaper than year()/month()/day_of_month() per term.
    first, last = day_number(date(r.year, r.month, r.first)), day_number(date(r.year, r.month, r.last))
    if first == last:
        return f"({DAYS} == bool {first})"
    return f"({DAYS} >= bool {first}) * ({DAYS} <= bool {last})"


def _comment(r: DayRange) -> str:
    return f"{r.year}-{r.month:02d}-{r.first:02d}" + (f"..{r.last:02d}" if r.last != r.first else "")


def working_time_rules(config: MixinConfig, facts: CalendarFacts) -> list[dict]:
    """Recording rules: the workers' clock in local time, then working day, working time and calendar coverage.

    The clock is the workers' own (``onestop_clock_timestamp_seconds``) so that gating agrees with the deadlines
    the tallies were judged with, also under a simulated clock; wall time stands in when no worker answers.
    """
    sel = config.worker_selector
    weekdays = sorted(WEEKDAYS.index(d) for d in config.office_weekdays)
    # PromQL's day_of_week is 0 for Sunday; Python's weekday() is 0 for Monday.
    prom_days = sorted((d + 1) % 7 for d in weekdays)
    if prom_days == list(range(prom_days[0], prom_days[-1] + 1)):
        day = f"(day_of_week({CLOCK}) >= bool {prom_days[0]}) * (day_of_week({CLOCK}) <= bool {prom_days[-1]})"
    else:
        day = "(" + " + ".join(f"(day_of_week({CLOCK}) == bool {d})" for d in prom_days) + ")"
    if facts.weekday_days_off:
        day += "\n- (\n    " + "\n  + ".join(f"{_day_term(r)}  # {_comment(r)} {r.name}"
                                              for r in facts.weekday_days_off) + "\n  )"
    if facts.rest_day_workdays:
        day += "\n+ (\n    " + "\n  + ".join(f"{_day_term(r)}  # {_comment(r)} {r.name}"
                                              for r in facts.rest_day_workdays) + "\n  )"
    second = f"({CLOCK} % 86400)"
    periods = "\n  + ".join(f"({second} >= bool {a * 60}) * ({second} < bool {b * 60})" for a, b in facts.periods)
    first, last = day_number(date(min(facts.years), 1, 1)), day_number(date(max(facts.years), 12, 31))
    return [
        {"record": CLOCK,
         "expr": f"(max(onestop_clock_timestamp_seconds{{{sel}}}) or vector(time())) + {facts.utc_offset_seconds}"},
        {"record": DAYS, "expr": f"floor({CLOCK} / 86400)"},
        {"record": WORKING_DAY, "expr": day},
        {"record": WORKING_TIME, "expr": f"{WORKING_DAY}\n* (\n    {periods}\n  )"},
        {"record": CALENDAR_COVERED, "expr": f"({DAYS} >= bool {first}) * ({DAYS} <= bool {last})"},
    ]


def working_seconds_record(window: str) -> str:
    return f"onestop:working_seconds:sum{window}"


def working_seconds_rule(config: MixinConfig, window: str) -> dict:
    """Working seconds in the last ``window``: one sample of the 0/1 rule per evaluation interval."""
    return {"record": working_seconds_record(window),
            "expr": f"sum_over_time({WORKING_TIME}[{window}]) * {config.interval_seconds}"}


# ----------------------------------------------------------------------------------------------- Alertmanager

def _am_range(r: DayRange) -> dict:
    days = str(r.first) if r.first == r.last else f"{r.first}:{r.last}"
    return {"years": [str(r.year)], "months": [MONTHS[r.month - 1]], "days_of_month": [days], "location": TIMEZONE}


def alertmanager_time_intervals(config: MixinConfig, facts: CalendarFacts) -> list[dict]:
    """``office_hours`` (weekdays plus làm bù Saturdays) and ``vn_days_off`` (weekday holidays) for routes."""
    times = [{"start_time": config.office_hours_start, "end_time": config.office_hours_end}]
    order = [d for d in WEEKDAYS if d in config.office_weekdays]
    office = [{"weekdays": _weekday_ranges(order), "times": times, "location": TIMEZONE}]
    office += [{**_am_range(r), "times": times} for r in facts.rest_day_workdays]
    days_off = [_am_range(r) for r in facts.weekday_days_off]
    return [
        {"name": "office_hours", "time_intervals": office},
        {"name": "vn_days_off", "time_intervals": days_off},
    ]


def _weekday_ranges(days: list[str]) -> list[str]:
    idx = sorted(WEEKDAYS.index(d) for d in days)
    out, start = [], idx[0]
    for a, b in zip(idx, idx[1:] + [None]):
        if b != a + 1:
            out.append(WEEKDAYS[start] if start == a else f"{WEEKDAYS[start]}:{WEEKDAYS[a]}")
            start = b
    return out


def in_intervals(intervals: list[dict], instant: datetime) -> bool:
    """Alertmanager's matching of one named interval list, reimplemented to check the generated data in tests."""
    for ti in intervals:
        local = instant.astimezone(ZoneInfo(ti.get("location", "UTC")))
        if "weekdays" in ti and not any(_in_range(s, (local.weekday() + 0), WEEKDAYS) for s in ti["weekdays"]):
            continue
        if "years" in ti and not any(_in_num(s, local.year) for s in ti["years"]):
            continue
        if "months" in ti and not any(_in_range(s, local.month - 1, MONTHS) for s in ti["months"]):
            continue
        if "days_of_month" in ti and not any(_in_num(s, local.day) for s in ti["days_of_month"]):
            continue
        if "times" in ti:
            minute = local.hour * 60 + local.minute
            if not any(_hhmm(t["start_time"]) <= minute < _hhmm(t["end_time"]) for t in ti["times"]):
                continue
        return True
    return False


def _hhmm(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def _in_num(spec: str, value: int) -> bool:
    lo, _, hi = spec.partition(":")
    return int(lo) <= value <= int(hi or lo)


def _in_range(spec: str, value: int, names: Sequence[str]) -> bool:
    lo, _, hi = spec.partition(":")
    return names.index(lo) <= value <= names.index(hi or lo)


# ------------------------------------------------------------------------------------------ promtool test

def working_time_test(config: MixinConfig, facts: CalendarFacts, calendar: WorkCalendar | None = None) -> dict:
    """A promtool test asking the compiled rule about every deviating day and the edges of the working periods.

    The expected values are read from ``WorkCalendar`` itself (not from the day ranges the rule was built from),
    so a mistake in compiling the calendar to PromQL fails here, in the real PromQL engine.
    """
    cal = calendar or load_work_calendar(config)
    instants: list[datetime] = []

    def local(d: date, hhmm: str) -> datetime:
        h, m = (int(x) for x in hhmm.split(":"))
        return datetime(d.year, d.month, d.day, h, m, tzinfo=TZ)

    for r in (*facts.weekday_days_off, *facts.rest_day_workdays):
        for d in r.days():
            instants += [local(d, "09:00"), local(d, "14:00")]
    for year in facts.years:
        d = date(year, 3, 1)
        while not (cal.is_working_day(d) and d.weekday() == 1):  # an ordinary Tuesday
            d += timedelta(days=1)
        edges = sorted({m for a, b in facts.periods for m in (a - 1, a, b - 1, b)})
        instants += [local(d, f"{m // 60:02d}:{m % 60:02d}") for m in edges]
        instants += [local(d + timedelta(days=4), "09:00"), local(d + timedelta(days=5), "09:00")]  # Sat, Sun
    instants.append(local(date(max(facts.years) + 1, 3, 2), "09:00"))  # outside the covered years

    def working(t: datetime) -> int:
        return int(any(a <= t < b for a, b in cal.working_periods(t.date())))

    values = " ".join(str(int(t.timestamp())) for t in instants)
    tests = []
    for i, t in enumerate(instants):
        covered = int(t.year in facts.years)
        tests.append({"expr": WORKING_TIME, "eval_time": f"{i}m",
                      "exp_samples": [{"labels": WORKING_TIME, "value": working(t) if covered else
                                       int(t.weekday() < 5 and any(
                                           a <= (t.hour * 60 + t.minute) < b for a, b in facts.periods))}]})
        if t.hour == 9:
            tests.append({"expr": WORKING_DAY, "eval_time": f"{i}m",
                          "exp_samples": [{"labels": WORKING_DAY,
                                           "value": int(cal.is_working_day(t.date())) if covered
                                           else int(t.weekday() < 5)}]})
        tests.append({"expr": CALENDAR_COVERED, "eval_time": f"{i}m",
                      "exp_samples": [{"labels": CALENDAR_COVERED, "value": covered}]})
    return {
        "rule_files": ["../rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": f"onestop_clock_timestamp_seconds{{{config.worker_selector}, "
                                        'instance="w1"}', "values": values}],
            "promql_expr_test": tests,
        }],
    }
