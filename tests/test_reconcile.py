"""Reconciliation with the national portal's published figures (models/reconcile.py)."""

from __future__ import annotations

import json

import copy
from datetime import datetime

import pytest

from models.calendar import WorkCalendar
from models.dossier import Context
from models.reconcile import (OfficialRecord, ReconcileError, load_official, official_fetched_at, ours_document,
                              parse_official_csv, parse_portal_json, reconcile)
from models.reconcile_sources import _parse_number
from tests.builders import ROOT, SAMPLE_AT, SAMPLE_FILE

SAVED_JSON = ROOT / "samples" / "reconcile" / "dvcqg-evaluation-2026-03.json"
SAVED_CSV = ROOT / "samples" / "reconcile" / "dvcqg-evaluation-2026-03.csv"
PERIOD = "month:2026-03"


@pytest.fixture(scope="module")
def ours() -> dict:
    ctx = Context(now=datetime.fromisoformat(SAMPLE_AT), calendar=WorkCalendar.default())
    return ours_document(SAMPLE_FILE, PERIOD, ctx)


def row(result: dict, unit: str, indicator: str) -> dict:
    (r,) = [r for r in result["rows"] if r["unit"] == unit and r["indicator"] == indicator]
    return r


# (unit, indicator, field, ours, official, status, flag) on the saved response of March 2026
EXPECTED = [
    # a sync is missing: 3 of the unit's dossiers never reached us (-13 %)
    ("T99.S02", "2.1", "denominator", 20, 23, "differs", "fewer_dossiers_than_portal"),
    ("T99.S02", "3.3", "denominator", 12, 14, "differs", "fewer_dossiers_than_portal"),
    ("T99.S02", "5.4", "numerator", 19, 21, "differs", "fewer_dossiers_than_portal"),
    # same population, one dossier judged otherwise: a counting rule differs (+7.1 %)
    ("T99.S04", "2.1", "numerator", 15, 14, "differs", "numerator_differs"),
    # one dossier of ours never reached the portal (+33 %)
    ("T99.X006", "2.1", "denominator", 4, 3, "differs", "more_dossiers_than_portal"),
    # within the 5 % threshold
    ("T99", "2.1", "denominator", 147, 151, "match", None),
    ("T99.S01", "2.1", "denominator", 16, 16, "match", None),
    ("T99.S01", "3.6", "numerator", 1, 1, "match", None),
    ("T99.X005", "4.1", "numerator", 1, 1, "match", None),
]


@pytest.mark.parametrize("unit,indicator,field,ours_v,official_v,status,flag", EXPECTED,
                         ids=[f"{e[0]}-{e[1]}-{e[2]}" for e in EXPECTED])
def test_saved_response_gives_the_expected_differences(ours, unit, indicator, field, ours_v, official_v, status, flag):
    result = reconcile(ours, load_official(SAVED_JSON), 0.05)
    r = row(result, unit, indicator)
    assert r["ours"][field] == ours_v and r["official"][field] == official_v
    diff = r["difference"][field]
    assert diff["absolute"] == ours_v - official_v
    assert diff["relative"] == pytest.approx((ours_v - official_v) / official_v)
    assert r["status"] == status
    assert (flag in r["flags"]) if flag else r["flags"] == []


def test_relative_difference_of_the_sync_gap(ours):
    r = row(reconcile(ours, load_official(SAVED_JSON), 0.05), "T99.S02", "2.1")
    assert r["difference"]["denominator"]["relative"] == pytest.approx(-3 / 23)  # -13 %
    flags = [f for f in reconcile(ours, load_official(SAVED_JSON))["flags"]
             if f["unit"] == "T99.S02" and f["indicator"] == "2.1"]
    assert flags[0]["message_vi"] and flags[0]["message_en"].startswith("Our denominator is 13.0 % below")


def test_units_known_on_one_side_only(ours):
    result = reconcile(ours, load_official(SAVED_JSON), 0.05)
    x9 = [r for r in result["rows"] if r["unit"] == "T99.X009"]
    assert x9 and all(r["status"] == "official_only" and r["ours"] is None for r in x9)
    assert sum(f["code"] == "unit_not_in_ours" for f in result["flags"]) == 1


def test_ids_without_a_code_are_matched_through_the_tree_responses(ours):
    # handling-satisfaction names units by departmentId only; the progress tree gives their codes
    r = row(reconcile(ours, load_official(SAVED_JSON)), "T99.S02", "5.4")
    assert r["official"]["source"].startswith("dvcqg-evaluation-2026-03.json#responses[4]")
    assert r["official"]["max_points"] == 6


def test_statuses_for_what_events_cannot_compute(ours):
    result = reconcile(ours, load_official(SAVED_JSON))
    assert row(result, "T99.S02", "3.1")["status"] == "not_computable_here"  # needs the procedure catalogue
    assert row(result, "T99.X001", "4.6")["status"] == "not_applicable_here"  # not computed for communes
    assert row(result, "T99.S02", "CLGQ")["status"] == "partial_here"  # we know 3.3 of the group only


@pytest.mark.parametrize("threshold,flagged", [(0.05, False), (0.02, True)])
def test_threshold_decides_the_flags(ours, threshold, flagged):
    r = row(reconcile(ours, load_official(SAVED_JSON), threshold), "T99", "2.1")  # -2.6 %
    assert bool(r["flags"]) is flagged


def test_official_figures_never_overwrite_ours(ours):
    before = copy.deepcopy(ours)
    result = reconcile(ours, load_official(SAVED_JSON))
    assert ours == before
    r = row(result, "T99.S02", "2.1")
    assert r["ours"]["score"] == ours["units"]["T99.S02"]["indicators"]["2.1"]["score"]
    assert r["official"]["score"] == 18.26


def test_csv_variant_gives_the_same_differences(ours):
    json_result = reconcile(ours, load_official(SAVED_JSON))
    csv_result = reconcile(ours, load_official(SAVED_CSV))
    for unit, ind in [("T99.S02", "2.1"), ("T99.S04", "2.1"), ("T99.X006", "3.3"), ("T99.S02", "5.4")]:
        a, b = row(json_result, unit, ind), row(csv_result, unit, ind)
        assert a["difference"]["numerator"] == b["difference"]["numerator"]
        assert a["difference"]["denominator"] == b["difference"]["denominator"]
        assert a["flags"][:1] == b["flags"][:1]


CSV_CASES = [
    ("Vietnamese headers, ';' and decimal comma",
     "Mã đơn vị;Tên đơn vị;Chỉ số;Tử số;Mẫu số;Tỷ lệ (%);Điểm\nT99.S01;Sở Tư pháp;2.1;1.234;1.300;94,92;18,98\n",
     {"unit": "T99.S01", "indicator": "2.1", "numerator": 1234, "denominator": 1300, "score": 18.98,
      "ratio": pytest.approx(0.9492)}),
    ("English headers, ',' and an API code",
     "unit_code,indicator,numerator,denominator,score\nT99.X005,DOSSIER_RECEIVING_SATISFACTION,3,3,6\n",
     {"unit": "T99.X005", "indicator": "5.4", "numerator": 3, "denominator": 3, "score": 6}),
    ("the portal's export: the name column 'Đơn vị' before the code column",
     "Đơn vị;Mã đơn vị;Chỉ số;Tử số;Mẫu số\nSở Tài chính;T99.S04;2.1;15;16\n",
     {"unit": "T99.S04", "unit_name": "Sở Tài chính", "indicator": "2.1", "numerator": 15, "denominator": 16}),
    ("a bare 'Đơn vị' is the code when no code column exists",
     "Đơn vị,Chỉ số,Tử số\nT99.S04,2.1,15\n", {"unit": "T99.S04", "unit_name": None, "numerator": 15}),
    ("a group code and the total, no counts",
     "Mã cơ quan\tMã chỉ số\tĐiểm\nT99\tTDGQ\t17.88\nT99\tTổng\t61,5\n",
     {"unit": "T99", "indicator": "TDGQ", "numerator": None, "score": 17.88}),
]


@pytest.mark.parametrize("name,text,expected", CSV_CASES, ids=[c[0] for c in CSV_CASES])
def test_csv_columns(name, text, expected):
    rec = parse_official_csv(text, "ops.csv")[0]
    for k, v in expected.items():
        assert getattr(rec, k) == v, (name, k)


def test_csv_total_row():
    recs = parse_official_csv("Mã cơ quan\tMã chỉ số\tĐiểm\nT99\tTổng\t61,5\n")
    assert recs[0].indicator == "total" and recs[0].score == 61.5


@pytest.mark.parametrize("text,count,value", [
    ("1234", True, 1234), ("1.234", True, 1234), ("184,513", True, 184513), ("1.234,5", False, 1234.5),
    ("1,234.5", False, 1234.5), ("93,45", False, 93.45), ("93.45 %", False, 93.45), ("", False, None),
    ("-", True, None), ("1,234,567", False, 1234567),
])
def test_numbers_as_spreadsheets_write_them(text, count, value):
    assert _parse_number(text, count) == value


def test_bad_inputs_are_refused_with_both_languages():
    with pytest.raises(ReconcileError, match="không"):
        parse_portal_json({"code": "ERROR", "data": None, "message": "rate limited"})
    with pytest.raises(ReconcileError, match="tiêu đề"):
        parse_official_csv("a,b\n1,2\n")
    with pytest.raises(ReconcileError, match="không phải là số"):
        parse_official_csv("unit,indicator,numerator\nT99,2.1,abc\n")


def test_unreadable_files_are_refused_with_the_reason(tmp_path):
    latin = tmp_path / "cp1258.csv"
    latin.write_bytes("Mã đơn vị;Chỉ số;Tử số\nT99;2.1;3\n".encode("cp1258", errors="replace"))  # a Windows export
    with pytest.raises(ReconcileError, match="UTF-8"):
        load_official(latin)
    for bad in ("10/03/2026 16:05", 20260310):
        rec = OfficialRecord(unit="T99", indicator="2.1", numerator=1, denominator=2, fetched_at=bad, source="s.json")
        with pytest.raises(ReconcileError, match="fetched_at"):
            official_fetched_at([rec])
    naive = OfficialRecord(unit="T99", indicator="2.1", fetched_at="2026-03-10T16:05:00")
    aware = OfficialRecord(unit="T99", indicator="2.1", fetched_at="2026-03-10T09:06:00+00:00")
    assert official_fetched_at([naive, aware]) == datetime.fromisoformat("2026-03-10T16:06:00+07:00")


def test_period_mismatch_is_refused(ours):
    other = [OfficialRecord(unit="T99", indicator="2.1", numerator=1, denominator=2, period="month:2026-02")]
    with pytest.raises(ReconcileError, match="month:2026-02"):
        reconcile(ours, other)


def test_saved_file_period_and_fetch_time():
    records = load_official(SAVED_JSON)
    assert {r.period for r in records} == {PERIOD}  # timeType/month and fromDate/toDate both read as March
    assert official_fetched_at(records) == datetime.fromisoformat("2026-03-10T16:05:15+07:00")
    assert all(0 <= r.ratio <= 1 for r in records if r.ratio is not None)  # published percent, read as a fraction


def test_plain_records_are_accepted(ours):
    result = reconcile(ours, [{"unit": "T99.S01", "indicator": "2.1", "numerator": 15, "denominator": 16}])
    r = row(result, "T99.S01", "2.1")
    assert r["status"] == "match" and r["difference"]["numerator"] == {"absolute": 0, "relative": 0.0}
    # every other unit we have is missing on the official side
    assert result["summary"]["by_flag"]["unit_not_on_portal"] == len(ours["units"]) + len(ours["provinces"]) - 1


def test_a_zero_on_the_portal_is_an_infinite_gap(ours):
    result = reconcile(ours, [OfficialRecord(unit="T99.S01", indicator="2.1", numerator=0, denominator=0)])
    r = row(result, "T99.S01", "2.1")
    assert r["difference"]["denominator"]["relative"] is None
    assert r["flags"] == ["more_dossiers_than_portal"]


def test_a_code_of_a_province_and_of_a_unit_is_compared_as_the_province(ours):
    # The portal publishes a province's index under its code; a unit coded like its province (the province's own
    # dossiers) must not be compared with it, or a whole province looks like it has far fewer dossiers.
    doc = json.loads(json.dumps(ours))
    province = doc["provinces"]["T99"]["indicators"]["2.1"]
    doc["units"]["T99"] = doc["units"]["T99.S01"]
    assert doc["units"]["T99"]["indicators"]["2.1"]["denominator"] != province["denominator"]
    result = reconcile(doc, [{"unit": "T99", "indicator": "2.1", "numerator": province["numerator"],
                              "denominator": province["denominator"]}])
    r = row(result, "T99", "2.1")
    assert r["status"] == "match" and not r["flags"]
