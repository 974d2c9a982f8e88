"""Properties of the working-time arithmetic that every deadline and every timeliness figure relies on."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from models.calendar import TZ, WorkCalendar

CAL = WorkCalendar.default()
# A unit with three uneven periods and 8.25-hour days, so that nothing depends on the default office hours.
ODD = CAL.with_document({
    "calendar_id": "vn-public-sector", "year": 2026, "version": 2, "timezone": "Asia/Ho_Chi_Minh",
    "extra_working_days": [{"date": "2026-08-22", "swap_with": "2026-08-31"}],
    "non_working_days": [{"date": "2026-08-31", "kind": "swap_off", "swap_with": "2026-08-22"},
                         {"date": "2026-11-24", "kind": "holiday"}],
    "unit_overrides": [{"unit_code": "H22", "working_periods": [["07:00", "11:30"], ["13:00", "16:45"], ["18:00", "18:30"]],
                        "non_working_days": [{"date": "2026-06-15"}]}],
}).for_unit("H22.01")

calendars = st.sampled_from([CAL, ODD])
zones = st.sampled_from([TZ, timezone.utc, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9, minutes=30))])
instants = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31, 23, 59, 59), timezones=zones)
seconds = st.one_of(st.integers(0, 300 * 3600), st.floats(0, 300 * 3600, allow_nan=False))
day_counts = st.one_of(st.integers(0, 60), st.integers(0, 120).map(lambda k: k / 2), st.floats(0, 60, allow_nan=False))
PROPS = settings(max_examples=300, deadline=None)


def in_working_time(cal: WorkCalendar, t: datetime) -> bool:
    assert t.tzinfo is TZ
    return any(s <= t <= e for s, e in cal.working_periods(t.date()))


def slow_working_seconds(cal: WorkCalendar, a: datetime, b: datetime) -> float:
    total = 0.0
    day = a.astimezone(TZ).date()
    while day <= b.astimezone(TZ).date():
        for s, e in cal.working_periods(day):
            lo, hi = max(s, a), min(e, b)
            if hi > lo:
                total += (hi - lo).total_seconds()
        day += timedelta(days=1)
    return total


@PROPS
@given(calendars, instants, seconds, day_counts)
def test_deadlines_land_in_working_time(cal, start, s, days):
    assert in_working_time(cal, cal.add_working_seconds(start, s))
    assert in_working_time(cal, cal.add_working_days(start, days))
    assert in_working_time(cal, cal.next_working_instant(start))
    if s / 3600 > 0:
        assert in_working_time(cal, cal.due_from_limit(start, s / 3600, "hour"))
    if days > 0:
        assert in_working_time(cal, cal.due_from_limit(start, days, "working_day"))


@PROPS
@given(calendars, instants, seconds, seconds)
def test_more_working_seconds_never_earlier(cal, start, s1, s2):
    lo, hi = sorted((s1, s2))
    assert cal.add_working_seconds(start, lo) <= cal.add_working_seconds(start, hi)


@PROPS
@given(calendars, instants, day_counts, day_counts)
def test_more_working_days_never_earlier(cal, start, d1, d2):
    lo, hi = sorted((d1, d2))
    assert cal.add_working_days(start, lo) <= cal.add_working_days(start, hi)


@PROPS
@given(calendars, instants, instants, seconds, day_counts)
def test_later_start_never_earlier(cal, a, b, s, days):
    a, b = sorted((a, b))
    assert cal.add_working_seconds(a, s) <= cal.add_working_seconds(b, s)
    assert cal.add_working_days(a, days) <= cal.add_working_days(b, days)
    assert cal.next_working_instant(a) <= cal.next_working_instant(b)


@PROPS
@given(calendars, instants, seconds)
def test_working_seconds_between_inverts_add(cal, start, s):
    if s > 0:
        assert abs(cal.working_seconds_between(start, cal.add_working_seconds(start, s)) - s) <= 1e-6


@PROPS
@given(instants, st.integers(0, 60))
def test_whole_working_days_are_whole_office_days(start, n):
    # With equal office hours every day, day-stepping moves exactly n days of office time.
    assert CAL.working_seconds_between(start, CAL.add_working_days(start, n)) == n * 7.5 * 3600


@PROPS
@given(calendars, instants, instants)
def test_working_seconds_between_is_antisymmetric(cal, a, b):
    assert cal.working_seconds_between(a, b) == -cal.working_seconds_between(b, a)
    assert cal.working_seconds_between(a, a) == 0


@PROPS
@given(calendars, instants, instants, instants)
def test_working_seconds_between_is_additive(cal, a, b, c):
    total = cal.working_seconds_between(a, b) + cal.working_seconds_between(b, c)
    assert abs(total - cal.working_seconds_between(a, c)) <= 1e-6


@settings(max_examples=100, deadline=None)
@given(calendars, instants, st.integers(0, 90 * 86_400 * 10**6))
def test_working_seconds_between_matches_day_by_day_sum(cal, a, span_us):
    b = a + timedelta(microseconds=span_us)
    assert abs(cal.working_seconds_between(a, b) - slow_working_seconds(cal, a, b)) <= 1e-6


# Counting back from a deadline (when "due soon" starts, the apology notice): the prefix-sum answer the stream
# uses must be the reference walk's to the microsecond, boundaries included (a whole period's or day's worth
# lands on the later period's start).
boundary_seconds = st.integers(0, 40).map(lambda k: k * 3.5 * 3600) | st.integers(0, 40).map(lambda k: k * 4 * 3600)


@PROPS
@given(cal=calendars, end=instants, amount=seconds | boundary_seconds)
def test_subtracting_working_time_by_prefix_sums_equals_the_walk(cal, end, amount):
    from models.evaluation import subtract_working_seconds, subtract_working_seconds_walk

    fast, walk = subtract_working_seconds(cal, end, amount), subtract_working_seconds_walk(cal, end, amount)
    assert fast == walk and fast.utcoffset() == walk.utcoffset()
    if amount > 0:  # and it is what the name says: that much working time remains from there to the end
        assert fast <= end and abs(cal.working_seconds_between(fast, end) - amount) <= 1e-6
