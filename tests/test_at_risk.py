"""Points at risk and period-end forecasts (models/at_risk.py): what ending an open dossier late would cost."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.at_risk import (at_risk_from_replay, at_risk_lines, forecast, points_at_risk, points_in_play,
                            risk_records, risk_sums)
from models.calendar import WorkCalendar
from models.dossier import Context
from models.evaluation import evaluate
from models.figures import replay, tallies_of, unit_meta_of
from models.tally import unit_period_tallies
from tests.builders import SAMPLE_AT, SAMPLE_FILE, processed_data, raw, received, sample_lines

CAL = WorkCalendar.default()
AT = datetime.fromisoformat("2026-03-10T16:00:00+07:00")
PERIOD = "month:2026-03"


def ctx_at(at: datetime = AT) -> Context:
    return Context(now=at, calendar=CAL)


def on_time(code: str, unit: str = "T01.S01") -> list[bytes]:
    return [raw("received", "2026-03-02 08:00", received("2026-03-02 08:00", due="2026-03-05 08:00", unit=unit),
                code=code),
            raw("processed", "2026-03-04 10:00", processed_data("2026-03-04 10:00"), code=code)]


def late(code: str, unit: str = "T01.S01") -> list[bytes]:
    return [raw("received", "2026-03-02 08:00", received("2026-03-02 08:00", due="2026-03-05 08:00", unit=unit),
                code=code),
            raw("processed", "2026-03-06 10:00", processed_data("2026-03-06 10:00"), code=code)]


def open_(code: str, due: str = "2026-03-20 08:00", unit: str = "T01.S01", extra: list | None = None) -> list[bytes]:
    lines = [raw("received", "2026-03-09 08:00", received("2026-03-09 08:00", due=due, unit=unit), code=code)]
    for kind, when, data in extra or []:
        lines.append(raw(kind, when, data, code=code))
    return lines


def rated_unsatisfied(when: str = "2026-03-09 09:00"):
    return ("rated", when, {"rating": {"satisfied": False}})


def supplement(rid: str, when: str):
    return ("supplement_requested", when, {"supplement": {"request_id": rid, "requested_at": datetime.fromisoformat(
        when).replace(tzinfo=AT.tzinfo).isoformat()}})


def run(lines: list[bytes], at: datetime = AT):
    ctx = ctx_at(at)
    rep = replay(list(enumerate(lines, 1)), ctx)
    assert rep.rejections == []
    return rep, ctx


def must_show(extra: list | None = None, due: str = "2026-03-20 08:00") -> list[bytes]:
    """3 of 5 on time for 2.1, one of the three still open within its due."""
    return on_time("D-1") + on_time("D-2") + open_("D-3", due=due, extra=extra) + late("D-4") + late("D-5")


# ------------------------------------------------------------------------------------------------ points at risk

CASES = [
    # (name, lines, expected {dossier: {indicator: points}})
    ("must-show: 20*3/5 - 20*2/5 = 4.00 on 2.1; 5.4 (threshold 90 %) also loses 6*(3/5)/0.9 - 6*(2/5)/0.9",
     must_show(), {"D-3": {"2.1": 4.0, "5.4": 6 * 0.6 / 0.9 - 6 * 0.4 / 0.9}}),
    ("must-show, the open dossier already rated unsatisfied: 5.4 cannot move, exactly 4.00",
     must_show(extra=[rated_unsatisfied()]), {"D-3": {"2.1": 4.0}}),
    ("above the 5.4 threshold one dossier costs nothing there: 10/10 -> 9/10 is still 6 points",
     sum((on_time(f"D-{i}") for i in range(9)), []) + open_("D-9"), {"D-9": {"2.1": 2.0, "5.4": 0.0}}),
    ("an overdue open dossier is already counted late: nothing at risk",
     on_time("D-1") + open_("D-2", due="2026-03-09 15:00"), {}),
    ("an on-time dossier awaiting its only supplement is at risk (its clock restarts on the answer)",
     on_time("D-1") + open_("D-2", extra=[supplement("s1", "2026-03-09 10:00")]), {"D-2": {"2.1": 10.0, "5.4": 6 - 6 * 0.5 / 0.9}}),
    ("a second supplement request makes it late already: nothing at risk",
     on_time("D-1") + open_("D-2", extra=[supplement("s1", "2026-03-09 10:00"),
                                          ("supplement_received", "2026-03-09 14:00",
                                           {"supplement": {"request_id": "s1",
                                                           "completed_at": "2026-03-09T14:00:00+07:00"}}),
                                          supplement("s2", "2026-03-10 09:00")]), {}),
    ("ended dossiers are never at risk", on_time("D-1") + late("D-2"), {}),
]


@pytest.mark.parametrize("name,lines,expected", CASES, ids=[c[0][:40] for c in CASES])
def test_points_at_risk(name, lines, expected):
    rep, ctx = run(lines)
    records = points_at_risk(rep.states.values(), ctx, PERIOD, AT)
    got = {r["dossier"]: r["indicators"] for r in records}
    assert got.keys() == expected.keys(), name
    for code, indicators in expected.items():
        assert got[code].keys() == indicators.keys(), name
        for ind, points in indicators.items():
            assert got[code][ind] == pytest.approx(points, abs=1e-9), (name, ind)
    for r in records:
        assert r["points"] == pytest.approx(sum(r["indicators"].values()))


def test_must_show_costs_exactly_four_points_and_the_record_says_where_and_when():
    rep, ctx = run(must_show(extra=[rated_unsatisfied()]))
    (r,) = at_risk_from_replay(rep, ctx, PERIOD, AT)
    assert round(r["indicators"]["2.1"], 2) == 4.00 and r["points"] == pytest.approx(4.0)
    assert r["dossier"] == "D-3" and r["unit"] == "T01.S01" and r["procedure"] == "1.001612"
    assert r["state"] == "open_within" and r["clock"] == "running"
    assert r["due_at"] == "2026-03-20T08:00:00+07:00"
    # Tue 10 Mar 16:00 -> Fri 20 Mar 08:00: 1 h on the 10th, 7.5 h on each of the 7 working days between, and 0.5 h
    assert r["working_hours_left"] == pytest.approx(1 + 7 * 7.5 + 0.5)
    assert r["province"] == "T01" and r["province_points"] == pytest.approx(4.0)  # the province is this unit alone


def test_province_points_use_the_province_sums():
    lines = must_show() + sum((on_time(f"E-{i}", unit="T01.S02") for i in range(5)), [])
    rep, ctx = run(lines)
    (r,) = points_at_risk(rep.states.values(), ctx, PERIOD, AT)
    assert r["indicators"]["2.1"] == pytest.approx(4.0)
    # province: 8 of 10 on time -> 7 of 10
    assert r["province_indicators"]["2.1"] == pytest.approx(20 * 8 / 10 - 20 * 7 / 10)


def test_sorted_by_points_then_due_and_views_give_the_same_records():
    lines = (on_time("A-1") + open_("A-2", due="2026-03-25 08:00") + open_("A-3", due="2026-03-18 08:00")
             + sum((on_time(f"B-{i}", unit="T01.S02") for i in range(8)), []) + open_("B-9", unit="T01.S02"))
    rep, ctx = run(lines)
    records = points_at_risk(rep.states.values(), ctx, PERIOD, AT)
    assert [r["dossier"] for r in records] == ["A-3", "A-2", "B-9"]
    assert records[0]["points"] == records[1]["points"] > records[2]["points"]
    views = [evaluate(s, ctx) for s in rep.states.values()]
    assert points_at_risk(views, ctx, PERIOD, AT) == records
    lines_out = list(at_risk_lines(records))
    assert [json.loads(x)["dossier"] for x in lines_out] == ["A-3", "A-2", "B-9"]


def test_risk_records_from_running_tallies_equal_the_batch():
    rep, ctx = run(must_show() + open_("D-6", due="2026-03-11 10:00"))
    states = rep.states.values()
    tallies = unit_period_tallies(tallies_of(states, ctx), PERIOD)
    meta = {u: (m["level"], m["province"]) for u, m in unit_meta_of(states).items()}
    open_views = [v for s in states if (v := evaluate(s, ctx)).is_open]
    assert risk_records(open_views, tallies, meta, PERIOD, AT) == points_at_risk(states, ctx, PERIOD, AT)


def test_sums_per_unit_and_for_the_next_working_day():
    rep, ctx = run(must_show() + open_("D-6", due="2026-03-11 10:00"))
    records = points_at_risk(rep.states.values(), ctx, PERIOD, AT)
    soon = {r["dossier"]: r["due_within_next_working_day"] for r in records}
    assert soon == {"D-3": False, "D-6": True}  # Wed 11 Mar 10:00 is before Wed 11 Mar 16:00
    sums = risk_sums(records)
    u = sums["units"]["T01.S01"]
    assert u["dossiers"] == 2 and u["dossiers_next_working_day"] == 1
    assert u["points"] == pytest.approx(sum(r["points"] for r in records))
    assert u["points_next_working_day"] == pytest.approx(next(r["points"] for r in records if r["dossier"] == "D-6"))
    assert sums["provinces"]["T01"]["dossiers"] == 2


def test_sample_file_records_are_well_formed():
    ctx = ctx_at(datetime.fromisoformat(SAMPLE_AT))
    rep = replay(list(enumerate(sample_lines(), 1)), ctx)
    records = at_risk_from_replay(rep, ctx, PERIOD)
    assert records, f"{SAMPLE_FILE} has open dossiers within their due"
    keys = [(-r["points"], r["due_at"]) for r in records]
    assert [k[0] for k in keys] == sorted(k[0] for k in keys)
    assert all(r["points"] > 0 and r["working_hours_left"] >= 0 and "2.1" in r["indicators"] for r in records)


# ------------------------------------------------------------------------------------------------ forecast


def test_forecast_scenarios_on_the_must_show_unit():
    # the open dossier is due soon (Wed 11 Mar 10:00 is within a working day of Tue 10 Mar 16:00)
    rep, ctx = run(must_show(due="2026-03-11 10:00"))
    f = forecast(rep.states.values(), ctx, PERIOD, AT)
    u = f["units"]["T01.S01"]
    assert u["dossiers_at_risk"] == 1
    assert u["on_time_all"]["score_2_1"] == pytest.approx(12.0)  # 3/5: today's figure
    assert u["due_soon_late"]["score_2_1"] == pytest.approx(8.0) and u["due_soon_late"]["late_added"] == 1
    # the procedure's lateness rate: 2 of 4 ended dossiers ended late -> 0.5 expected late
    assert f["lateness_rates"]["T01"]["1.001612"] == {"ended": 4, "late": 2, "rate": 0.5}
    assert u["current_rate"]["score_2_1"] == pytest.approx(20 * 2.5 / 5) and u["current_rate"]["late_added"] == 0.5
    for block in ("on_time_all", "due_soon_late", "current_rate"):
        b = u[block]
        assert set(b) >= {"total", "total_estimated", "band", "score_2_1"}
        assert b["band"]["name_vi"] and b["band"]["name_en"] and b["band"]["basis"] == "estimate"
    assert u["on_time_all"]["total"] >= u["current_rate"]["total"] >= u["due_soon_late"]["total"]
    assert u["method"]["vi"] and u["method"]["en"]
    assert f["provinces"]["T01"]["due_soon_late"]["score_2_1"] == pytest.approx(8.0)


def test_forecast_counts_the_worker_exports_rebuild_every_moved_indicator():
    """What Prometheus does with ``numerator_removed`` (monitoring/risk.py: each moved indicator's score from
    today's numerator less the removed dossiers, then the total with those scores replaced) gives the document's
    estimate: 2.1 and 5.4 both move, not 2.1 alone."""
    from models.index766 import load_catalogue

    rep, ctx = run(must_show(due="2026-03-11 10:00"))
    u = forecast(rep.states.values(), ctx, PERIOD, AT)["units"]["T01.S01"]
    assert u["due_soon_late"]["numerator_removed"] == {"2.1": 1.0, "5.4": 1.0}
    assert u["current_rate"]["numerator_removed"] == {"2.1": 0.5, "5.4": 0.5}
    assert u["on_time_all"]["numerator_removed"] == {"2.1": 0.0, "5.4": 0.0}
    inds = {i.id: i for i in load_catalogue().indicators}
    today = u["on_time_all"]
    nums = {"2.1": 3, "5.4": 3}  # 3 of 5 on time; 2 late or dissatisfied of 5
    for scenario in ("due_soon_late", "current_rate"):
        b = u[scenario]
        rebuilt = {i: min(inds[i].max_points, inds[i].max_points * (nums[i] - n) / 5 / inds[i].threshold)
                   for i, n in b["numerator_removed"].items()}
        assert rebuilt == pytest.approx(b["indicators"])
        moved = sum(rebuilt[i] - today["indicators"][i] for i in rebuilt)
        known = today["total"] * 100 / today["total_estimated"]
        assert (today["total"] + moved) * 100 / known == pytest.approx(b["total_estimated"])


def test_alike_open_dossiers_are_forecast_each():
    """Three open dossiers alike (one unit, procedure and due: counted as one key of three) at a lateness rate of
    0.5: 1.5 expected late, 3 due soon, as if taken one by one."""
    lines = on_time("D-1") + on_time("D-2") + late("D-4") + late("D-5")
    lines += sum((open_(f"D-3{i}", due="2026-03-11 10:00") for i in range(3)), [])
    rep, ctx = run(lines)
    u = forecast(rep.states.values(), ctx, PERIOD, AT)["units"]["T01.S01"]
    assert u["dossiers_at_risk"] == 3
    assert u["due_soon_late"]["late_added"] == 3 and u["due_soon_late"]["numerator_removed"]["2.1"] == 3.0
    assert u["current_rate"]["late_added"] == 1.5 and u["current_rate"]["numerator_removed"]["2.1"] == 1.5
    assert u["current_rate"]["score_2_1"] == pytest.approx(20 * (5 - 1.5) / 7)


def test_forecast_with_nothing_ended_uses_rate_zero():
    rep, ctx = run(open_("D-1") + open_("D-2"))
    u = forecast(rep.states.values(), ctx, PERIOD, AT)["units"]["T01.S01"]
    assert u["current_rate"]["score_2_1"] == u["on_time_all"]["score_2_1"] == pytest.approx(20.0)
    assert u["current_rate"]["late_added"] == 0


# ------------------------------------------------------------------------------------------------ the bound

def mixed_lines(units: list[list[str]], unit_of) -> list[bytes]:
    """Events of the dossiers ``units`` lists by kind (one list per unit, named by ``unit_of(index)``)."""
    lines: list[bytes] = []
    for u, kinds in enumerate(units):
        unit = unit_of(u)
        for n, kind in enumerate(kinds):
            code = f"{unit}-{n}"
            if kind == "on_time":
                lines += on_time(code, unit)
            elif kind == "on_time_unsatisfied":
                lines += on_time(code, unit) + [raw("rated", "2026-03-05 09:00", {"rating": {"satisfied": False}},
                                                    code=code)]
            elif kind == "late":
                lines += late(code, unit)
            elif kind == "open":
                lines += open_(code, due=f"2026-03-{12 + n % 10:02d} 09:00", unit=unit)
            elif kind == "open_unsatisfied":
                lines += open_(code, unit=unit, extra=[rated_unsatisfied()])
            elif kind == "overdue":
                lines += open_(code, due="2026-03-09 15:00", unit=unit)
            elif kind == "due_tomorrow":
                lines += open_(code, due="2026-03-11 10:00", unit=unit)
            else:
                assert kind == "supplement", kind
                lines += open_(code, unit=unit, extra=[supplement("s1", "2026-03-09 10:00")])
    return lines


dossier_kinds = st.sampled_from(["on_time", "late", "open", "open_unsatisfied", "overdue", "supplement",
                                 "on_time_unsatisfied"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(units=st.lists(st.lists(dossier_kinds, min_size=1, max_size=12), min_size=1, max_size=3))
def test_points_at_risk_never_exceed_the_points_in_play(units):
    """Per unit and province and per indicator, the summed points at risk of the dossiers <= score now - score if
    all of them ended late ("points in play": what is not yet won for good); equal for the linear 2.1."""
    lines = mixed_lines(units, lambda u: f"T01.S{u + 1:02d}")
    rep, ctx = run(lines)
    records = points_at_risk(rep.states.values(), ctx, PERIOD, AT)
    bound = points_in_play(rep.states.values(), ctx, PERIOD, AT)
    for scope, key, ind_key in (("units", "unit", "indicators"), ("provinces", "province", "province_indicators")):
        summed: dict[str, dict[str, float]] = {}
        for r in records:
            assert r["points"] >= 0
            for ind, p in r[ind_key].items():
                assert p >= 0
                summed.setdefault(r[key], {}).setdefault(ind, 0.0)
                summed[r[key]][ind] += p
        assert summed.keys() == bound[scope].keys()
        for owner, per in summed.items():
            in_play = bound[scope][owner]["indicators"]
            for ind, total in per.items():
                assert total <= in_play[ind] + 1e-9, (scope, owner, ind)
            assert per["2.1"] == pytest.approx(in_play["2.1"])
