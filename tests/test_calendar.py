from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone

import pytest

from models.calendar import (
    TZ,
    CalendarDocument,
    CalendarError,
    WorkCalendar,
    load_calendar_file,
    parse_calendar_document,
)

CAL = WorkCalendar.default()


def at(y, m, d, hh=0, mm=0, ss=0):
    return datetime(y, m, d, hh, mm, ss, tzinfo=TZ)


def doc(**changes):
    base = {
        "calendar_id": "vn-public-sector",
        "year": 2026,
        "version": 2,
        "timezone": "Asia/Ho_Chi_Minh",
        "weekly_rest_days": ["sat", "sun"],
        "working_periods": [["07:30", "11:30"], ["13:30", "17:00"]],
        "baseline": "python-holidays",
        "non_working_days": [
            {"date": "2026-08-31", "kind": "swap_off", "name_vi": "Nghỉ thay cho ngày 22/08/2026",
             "swap_with": "2026-08-22"},
            {"date": "2026-11-24", "kind": "holiday", "name_vi": "Ngày Văn hóa Việt Nam"},
        ],
        "extra_working_days": [
            {"date": "2026-08-22", "kind": "swap_work", "name_vi": "Làm bù cho ngày 31/08/2026",
             "swap_with": "2026-08-31"},
        ],
        "source_documents": ["Thông báo lịch nghỉ của cơ quan có thẩm quyền"],
        "approved_by": "operator",
    }
    base.update(changes)
    return base


# ---------------------------------------------------------------------------------------------------------------
# Known days

KNOWN_DAYS = [
    ("2026-02-16", False, "Tết"),
    ("2026-02-17", False, "Tết"),
    ("2026-02-18", False, "Tết"),
    ("2026-02-19", False, "Tết"),
    ("2026-02-20", False, "Tết"),
    ("2026-02-21", False, "Thứ Bảy"),
    ("2026-02-23", True, None),
    ("2026-04-26", False, "Hùng Vương"),
    ("2026-04-27", False, "bù"),
    ("2026-04-30", False, "Chiến thắng"),
    ("2026-05-01", False, "Lao động"),
    ("2026-08-22", True, None),
    ("2026-08-23", False, "Chủ nhật"),
    ("2026-08-31", False, "22/08/2026"),
    ("2026-09-01", False, "Quốc khánh"),
    ("2026-09-02", False, "Quốc khánh"),
    ("2026-11-24", False, "Văn hóa"),
    ("2025-01-27", False, "Tết"),
    ("2025-04-26", True, None),
    ("2025-05-02", False, "26/04/2025"),
    ("2026-03-03", True, None),  # an ordinary Tuesday
    ("2027-02-08", False, "Tết"),  # no document: baseline only
    ("2027-02-15", True, None),
]


@pytest.mark.parametrize("day, working, name_part", KNOWN_DAYS)
def test_known_days(day, working, name_part):
    d = date.fromisoformat(day)
    assert CAL.is_working_day(d) is working
    name = CAL.day_off_name(d)
    if working:
        assert name is None
        assert CAL.working_day_seconds(d) == 7.5 * 3600
    else:
        assert name_part in name
        assert CAL.working_day_seconds(d) == 0
        assert CAL.working_periods(d) == []


def test_working_periods_are_aware_in_tz():
    periods = CAL.working_periods(date(2026, 3, 3))
    assert periods == [(at(2026, 3, 3, 7, 30), at(2026, 3, 3, 11, 30)), (at(2026, 3, 3, 13, 30), at(2026, 3, 3, 17))]
    assert all(p.tzinfo is TZ for pair in periods for p in pair)


def test_bundled_files_agree_with_the_holidays_baseline():
    """The operator files restate the package's public-sector output; a disagreement means one of them moved."""
    only_baseline = WorkCalendar()
    only_files = WorkCalendar(CAL.documents, baseline=False)
    for year in (2025, 2026):
        day = date(year, 1, 1)
        while day.year == year:
            assert only_baseline.is_working_day(day) == only_files.is_working_day(day), day
            day += timedelta(days=1)


def test_bundled_files_load():
    docs = CAL.documents
    assert [(d.calendar_id, d.year, d.version) for d in docs] == [("vn-public-sector", 2025, 1),
                                                                  ("vn-public-sector", 2026, 1)]
    assert CAL.version == "vn-public-sector:2025v1,2026v1"
    assert WorkCalendar.default() is CAL
    assert all(d.source_documents for d in docs)
    d2026 = docs[1]
    assert d2026.working_periods == ((time(7, 30), time(11, 30)), (time(13, 30), time(17, 0)))
    assert [e.date for e in d2026.extra_working_days] == [date(2026, 8, 22)]


# ---------------------------------------------------------------------------------------------------------------
# Deadlines

DEADLINES = [
    # received, value, unit, expected due
    ("Mon 14:00 + 5 WD -> next Mon 14:00", at(2026, 3, 2, 14), 5, "working_day", at(2026, 3, 9, 14)),
    ("after hours Fri 18:00 starts Mon 07:30", at(2026, 3, 6, 18), 1, "working_day", at(2026, 3, 10, 7, 30)),
    ("after hours, 2 h", at(2026, 3, 6, 18), 2, "hour", at(2026, 3, 9, 9, 30)),
    ("lunch reception starts 13:30", at(2026, 3, 3, 12, 15), 1, "hour", at(2026, 3, 3, 14, 30)),
    ("lunch reception + 1 WD", at(2026, 3, 3, 12, 15), 1, "working_day", at(2026, 3, 4, 13, 30)),
    ("spanning Tết 2026", at(2026, 2, 12, 10), 5, "working_day", at(2026, 2, 26, 10)),
    ("spanning 30/4-1/5 2026", at(2026, 4, 24, 9), 3, "working_day", at(2026, 5, 4, 9)),
    ("swap Saturday 2026-08-22 counts", at(2026, 8, 21, 9), 1, "working_day", at(2026, 8, 22, 9)),
    ("National Day 2026", at(2026, 8, 28, 9), 1, "working_day", at(2026, 9, 3, 9)),
    ("4 h from 10:30 skips lunch", at(2026, 3, 3, 10, 30), 4, "hour", at(2026, 3, 3, 16, 30)),
    ("3 h from 10:30 -> 15:30", at(2026, 3, 3, 10, 30), 3, "hour", at(2026, 3, 3, 15, 30)),
    ("time used up at 17:00 stays 17:00", at(2026, 3, 3, 13, 30), 3.5, "hour", at(2026, 3, 3, 17)),
    ("time used up at 11:30 stays 11:30", at(2026, 3, 3, 7, 30), 4, "hour", at(2026, 3, 3, 11, 30)),
    ("half a working day = 4 h", at(2026, 3, 3, 7, 30), 0.5, "working_day", at(2026, 3, 3, 11, 30)),
    ("half a day from the afternoon", at(2026, 3, 3, 14), 0.5, "working_day", at(2026, 3, 4, 8, 30)),
    ("1.5 WD", at(2026, 3, 2, 8), 1.5, "working_day", at(2026, 3, 3, 14)),
    ("start at 11:30 carries to 13:30", at(2026, 3, 3, 11, 30), 2, "working_day", at(2026, 3, 5, 13, 30)),
    ("calendar days ending Sunday move to Monday", at(2026, 3, 3, 9), 5, "day", at(2026, 3, 9, 9)),
    ("calendar days ending on Tết", at(2026, 2, 10, 9), 7, "day", at(2026, 2, 23, 9)),
    ("calendar days ordinary", at(2026, 3, 3, 9), 2, "day", at(2026, 3, 5, 9)),
    ("calendar days after hours start next period", at(2026, 3, 6, 18), 1, "day", at(2026, 3, 10, 7, 30)),
    ("one month", at(2026, 3, 10, 9), 1, "month", at(2026, 4, 10, 9)),
    ("month clamps the day", at(2026, 1, 30, 9), 1, "month", at(2026, 3, 2, 9)),  # 28 Feb is a Saturday
    ("month ending on a holiday", at(2026, 7, 31, 9), 1, "month", at(2026, 9, 3, 9)),  # 31 Aug off, then 1-2 Sep
    ("year boundary", at(2025, 12, 31, 16), 1, "working_day", at(2026, 1, 2, 16)),
]


@pytest.mark.parametrize("received, value, unit, expected", [c[1:] for c in DEADLINES], ids=[c[0] for c in DEADLINES])
def test_due_from_limit(received, value, unit, expected):
    due = CAL.due_from_limit(received, value, unit)
    assert due == expected
    assert due.tzinfo is TZ


def test_any_offset_in_local_out():
    received = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)  # 14:00 in Hanoi
    due = CAL.add_working_days(received, 5)
    assert due == at(2026, 3, 9, 14) and due.tzinfo is TZ and due.hour == 14


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="naive"):
        CAL.due_from_limit(datetime(2026, 3, 2, 14), 1, "hour")
    with pytest.raises(ValueError, match="naive"):
        CAL.working_seconds_between(datetime(2026, 3, 2), at(2026, 3, 3))


@pytest.mark.parametrize("value, unit", [(0, "hour"), (-1, "working_day"), (1.5, "day"), (0.5, "month"),
                                         (float("nan"), "hour"), (1, "week"), (True, "hour")])
def test_due_from_limit_refuses_bad_limits(value, unit):
    with pytest.raises(ValueError):
        CAL.due_from_limit(at(2026, 3, 2, 9), value, unit)


@pytest.mark.parametrize("t, expected", [
    (at(2026, 3, 3, 7, 30), at(2026, 3, 3, 7, 30)),
    (at(2026, 3, 3, 7, 29, 59), at(2026, 3, 3, 7, 30)),
    (at(2026, 3, 3, 11, 30), at(2026, 3, 3, 13, 30)),
    (at(2026, 3, 3, 16, 59, 59), at(2026, 3, 3, 16, 59, 59)),
    (at(2026, 3, 3, 17), at(2026, 3, 4, 7, 30)),
    (at(2026, 2, 13, 17), at(2026, 2, 23, 7, 30)),
    (at(2026, 8, 21, 17), at(2026, 8, 22, 7, 30)),
])
def test_next_working_instant(t, expected):
    assert CAL.next_working_instant(t) == expected


def test_zero_working_seconds_is_next_working_instant():
    assert CAL.add_working_seconds(at(2026, 3, 3, 12), 0) == at(2026, 3, 3, 13, 30)
    assert CAL.add_working_days(at(2026, 3, 3, 12), 0) == at(2026, 3, 3, 13, 30)


def test_add_calendar_days_and_months_directly():
    assert CAL.add_calendar_days(at(2026, 3, 6, 18), 1) == at(2026, 3, 9, 18)  # Sat -> Mon, clock kept
    assert CAL.add_months(at(2026, 10, 24, 10), 1) == at(2026, 11, 25, 10)  # 24 Nov is Culture Day
    assert CAL.add_months(at(2026, 1, 31, 10), 13) == at(2027, 3, 1, 10)  # 28 Feb 2027 is a Sunday


def test_long_limits_cross_years_without_a_document():
    due = CAL.add_working_days(at(2026, 12, 1, 9), 60)
    assert CAL.is_working_day(due.date()) and due.time() == time(9)
    assert CAL.working_seconds_between(at(2026, 12, 1, 9), due) == 60 * 7.5 * 3600


WSB = [
    (at(2026, 3, 3, 7, 30), at(2026, 3, 3, 17), 7.5 * 3600),
    (at(2026, 3, 3, 10, 30), at(2026, 3, 3, 14), 1.5 * 3600),
    (at(2026, 3, 3, 12), at(2026, 3, 3, 13), 0),
    (at(2026, 3, 6, 17), at(2026, 3, 9, 7, 30), 0),
    (at(2026, 3, 2, 14), at(2026, 3, 9, 14), 5 * 7.5 * 3600),
    (at(2026, 2, 13, 9), at(2026, 2, 23, 9), 7.5 * 3600),
    (at(2026, 3, 3, 14), at(2026, 3, 3, 10, 30), -1.5 * 3600),
    (at(2026, 1, 1), at(2027, 1, 1), 249 * 7.5 * 3600),
    (at(2025, 6, 2, 8), at(2027, 6, 2, 8), None),  # checked against day-by-day summation below
]


@pytest.mark.parametrize("a, b, expected", WSB)
def test_working_seconds_between(a, b, expected):
    got = CAL.working_seconds_between(a, b)
    if expected is None:
        expected = 0.0
        day = a.date()
        while day <= b.date():
            for s, e in CAL.working_periods(day):
                lo, hi = max(s, a), min(e, b)
                if hi > lo:
                    expected += (hi - lo).total_seconds()
            day += timedelta(days=1)
    assert got == expected


# ---------------------------------------------------------------------------------------------------------------
# Unit overrides

def test_unit_override_changes_office_hours_by_longest_prefix():
    document = doc(unit_overrides=[
        {"unit_code": "000.00.12", "working_periods": [["07:00", "11:30"], ["13:30", "17:00"]]},
        {"unit_code": "000.00.12.H22", "working_periods": [["08:00", "12:00"], ["13:00", "17:00"]],
         "non_working_days": [{"date": "2026-03-04", "name_vi": "Đơn vị nghỉ"}]},
    ])
    cal = CAL.with_document(document)
    province = cal.for_unit("000.00.12.H10")
    ward = cal.for_unit("000.00.12.H22.001")
    other = cal.for_unit("000.00.99")
    assert other is cal and cal.for_unit(None) is cal
    assert province.working_day_seconds(date(2026, 3, 3)) == 8 * 3600
    assert ward.working_periods(date(2026, 3, 3))[0][0] == at(2026, 3, 3, 8)
    assert not ward.is_working_day(date(2026, 3, 4)) and ward.day_off_name(date(2026, 3, 4)) == "Đơn vị nghỉ"
    assert province.is_working_day(date(2026, 3, 4))
    assert province.add_working_seconds(at(2026, 3, 3, 6), 3600) == at(2026, 3, 3, 8)
    assert cal.add_working_seconds(at(2026, 3, 3, 6), 3600) == at(2026, 3, 3, 8, 30)
    # with 8-hour office hours, one working day equals eight working hours
    assert province.add_working_days(at(2026, 3, 3, 9), 1) == province.add_working_seconds(at(2026, 3, 3, 9), 8 * 3600)
    assert cal.add_working_days(at(2026, 3, 3, 9), 1) != cal.add_working_seconds(at(2026, 3, 3, 9), 8 * 3600)
    assert cal.for_unit("000.00.12.H10") is province  # cached
    assert province.version == "vn-public-sector:2025v1,2026v2;unit=000.00.12.H10"
    # years without a document are untouched by overrides
    assert province.working_day_seconds(date(2027, 3, 3)) == 7.5 * 3600


# ---------------------------------------------------------------------------------------------------------------
# Documents and versions

def test_parse_valid_document():
    parsed = parse_calendar_document(doc(weekly_rest_days=["sun", "sat"]))
    assert isinstance(parsed, CalendarDocument)
    assert parsed.weekly_rest_days == (5, 6)
    assert parsed.non_working_days[0].date == date(2026, 8, 31)
    assert parsed.non_working_days[0].swap_with == date(2026, 8, 22)
    assert parsed.baseline == "python-holidays"


BAD_DOCUMENTS = [
    ({"year": 2026.0}, "year: 2026.0 must be an integer"),
    ({"year": 1989}, "year: 1989 must be an integer"),
    ({"version": 0}, "version: 0 must be an integer >= 1"),
    ({"calendar_id": ""}, "calendar_id: must be a non-empty string"),
    ({"timezone": "Asia/Bangkok"}, "timezone: 'Asia/Bangkok' must be 'Asia/Ho_Chi_Minh'"),
    ({"weekly_rest_days": ["sat", "sunday"]}, "weekly_rest_days: ['sunday'] not among"),
    ({"working_periods": [["07:30", "11:30"], ["11:00", "17:00"]]}, "working_periods[1]: periods must be sorted"),
    ({"working_periods": [["13:30", "17:00"], ["07:30", "11:30"]]}, "working_periods[1]: periods must be sorted"),
    ({"working_periods": [["07:30", 810]]}, "working_periods[0][1]: 810 is not an 'HH:MM'"),
    ({"working_periods": [["17:00", "07:30"]]}, "working_periods[0]: start 17:00 is not before end 07:30"),
    ({"baseline": "other"}, "baseline: 'other' must be"),
    ({"colour": "red"}, "colour: unknown field"),
    ({"non_working_days": [{"date": "2027-01-01", "kind": "holiday"}]},
     "non_working_days[0].date: 2027-01-01 is not in year 2026"),
    ({"non_working_days": [{"date": "2026-11-24"}]}, "non_working_days[0].kind: required"),
    ({"non_working_days": [{"date": "2026-11-24", "kind": "party"}]}, "non_working_days[0].kind: 'party' is not"),
    ({"non_working_days": [{"date": "2026-13-01", "kind": "holiday"}]}, "non_working_days[0].date: '2026-13-01'"),
    ({"extra_working_days": [{"date": "2026-08-25"}]},
     "extra_working_days[0].date: 2026-08-25 is a tue, already a working weekday"),
    ({"extra_working_days": [{"date": "2026-08-22", "swap_with": "2026-08-31"},
                             {"date": "2026-11-28"}],
      "non_working_days": [{"date": "2026-08-31", "kind": "swap_off", "swap_with": "2026-08-22"},
                           {"date": "2026-11-28", "kind": "holiday"}]},
     "extra_working_days[1].date: 2026-11-28 is also listed at non_working_days[1]"),
    ({"non_working_days": [{"date": "2026-08-31", "kind": "swap_off", "swap_with": "2026-08-22"}],
      "extra_working_days": []},
     "non_working_days[0].swap_with: 2026-08-22 is not listed in extra_working_days"),
    ({"non_working_days": [{"date": "2026-08-31", "kind": "swap_off"}]},
     "extra_working_days[0].swap_with: 2026-08-31 is not listed in non_working_days with swap_with 2026-08-22"),
    ({"unit_overrides": [{"unit_code": "H22"}]}, "unit_overrides[0]: needs working_periods or non_working_days"),
    ({"unit_overrides": [{"unit_code": "H22", "working_periods": [["7:30", "25:00"]]}]},
     "unit_overrides[0].working_periods[0][1]: '25:00'"),
]


@pytest.mark.parametrize("changes, message", BAD_DOCUMENTS, ids=[m.split(":")[0] for _, m in BAD_DOCUMENTS])
def test_bad_documents_are_refused_naming_the_field(changes, message):
    with pytest.raises(CalendarError) as caught:
        parse_calendar_document(doc(**changes))
    assert any(message in p for p in caught.value.problems), caught.value.problems
    assert message in str(caught.value)


def test_every_problem_is_reported_at_once():
    bad = doc(year="2026", version=-1, timezone="UTC", colour=1)
    del bad["calendar_id"]
    with pytest.raises(CalendarError) as caught:
        parse_calendar_document(bad)
    fields = {p.split(":")[0] for p in caught.value.problems}
    assert {"calendar_id", "year", "version", "timezone", "colour"} <= fields


def test_with_document_highest_version_wins_and_old_calendar_is_unchanged():
    document = doc(non_working_days=doc()["non_working_days"] + [
        {"date": "2026-03-03", "kind": "holiday", "name_vi": "Ngày nghỉ đặc biệt"}])
    new = CAL.with_document(document)
    assert not new.is_working_day(date(2026, 3, 3))
    assert CAL.is_working_day(date(2026, 3, 3))
    assert new.version == "vn-public-sector:2025v1,2026v2"
    assert CAL.version == "vn-public-sector:2025v1,2026v1"

    for stale in (doc(version=1), doc(version=2)):
        with pytest.raises(CalendarError, match="version: .* is not higher than the version in force"):
            new.with_document(stale)
    with pytest.raises(CalendarError, match="non_working_days"):
        new.with_document(doc(version=3, non_working_days=[{"date": "2027-01-01", "kind": "holiday"}]))
    with pytest.raises(CalendarError, match="calendar_id"):
        new.with_document(doc(version=3, calendar_id="another"))
    assert not new.is_working_day(date(2026, 3, 3))  # the last good version stays in force
    assert new.version == "vn-public-sector:2025v1,2026v2"


def test_document_without_baseline_is_complete_on_its_own():
    cal = WorkCalendar().with_document(doc(baseline=None))
    assert cal.is_working_day(date(2026, 2, 17))  # Tết not listed, and no baseline asked for
    assert not cal.is_working_day(date(2026, 11, 24))
    assert not WorkCalendar().is_working_day(date(2026, 2, 17))


def test_constructor_keeps_highest_version_regardless_of_order():
    v2, v3 = parse_calendar_document(doc(version=2)), parse_calendar_document(doc(version=3))
    assert WorkCalendar([v3, v2]).version == WorkCalendar([v2, v3]).version == "vn-public-sector:2026v3"


def test_load_calendar_file_yaml_and_json(tmp_path):
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(doc()), encoding="utf-8")
    assert load_calendar_file(path).version == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("calendar_id: x\nyear: 2026\nversion: 1\ntimezone: Asia/Ho_Chi_Minh\n"
                   "working_periods: [[07:30, 11:30], [13:30, 17:00]]\n", encoding="utf-8")
    with pytest.raises(CalendarError, match=r"bad.yaml: working_periods\[1\]\[0\]: 810 is not an 'HH:MM'"):
        load_calendar_file(bad)


def test_documents_built_in_code_pass_the_same_validation():
    for bundled in CAL.documents:
        assert WorkCalendar([bundled]).documents == (bundled,)
    overlapping = CalendarDocument("vn-public-sector", 2026, 5, working_periods=((time(8), time(12)), (time(11), time(17))))
    with pytest.raises(CalendarError, match=r"working_periods\[1\]: periods must be sorted"):
        CAL.with_document(overlapping)
    fine = CalendarDocument("vn-public-sector", 2026, 5, working_periods=((time(8), time(12)), (time(13), time(17))))
    assert CAL.with_document(fine).working_day_seconds(date(2026, 3, 3)) == 8 * 3600
