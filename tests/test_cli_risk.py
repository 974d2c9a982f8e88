"""``onestop at-risk`` and ``onestop reconcile`` as a user runs them: JSON on stdout, exit codes, messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from streams.tools.cli import app
from tests.builders import ROOT, SAMPLE_AT, SAMPLE_FILE, raw, received
from tests.test_at_risk import late, on_time

AT = "2026-03-10T16:00:00+07:00"
PERIOD = "month:2026-03"
SAVED_JSON = ROOT / "samples" / "reconcile" / "dvcqg-evaluation-2026-03.json"
SAVED_CSV = ROOT / "samples" / "reconcile" / "dvcqg-evaluation-2026-03.csv"

runner = CliRunner()


def run(*args) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


# ------------------------------------------------------------------------------------------------ event files


def open_(code: str, due: str = "2026-03-20 08:00", unit: str = "T01.S01", rated_unsatisfied: bool = False,
          received_on: str = "2026-03-09 08:00") -> list[bytes]:
    lines = [raw("received", received_on, received(received_on, due=due, unit=unit), code=code)]
    if rated_unsatisfied:
        lines.append(raw("rated", "2026-03-09 09:00", {"rating": {"satisfied": False}}, code=code))
    return lines


def must_show(**kw) -> list[bytes]:
    """A unit whose 2.1 counts 3 of 5 dossiers on time, one of the three still open within its due."""
    return on_time("D-1") + on_time("D-2") + open_("D-3", **kw) + late("D-4") + late("D-5")


# (name, lines, expected [(dossier, points, {indicator: points})] in the printed order)
AT_RISK_CASES = [
    ("must-show, already rated unsatisfied: exactly 20*3/5 - 20*2/5 = 4.00 points",
     must_show(rated_unsatisfied=True), [("D-3", 4.0, {"2.1": 4.0})]),
    ("must-show: 4.00 on 2.1, and 5.4 (under its 90 % threshold) loses 6*0.6/0.9 - 6*0.4/0.9",
     must_show(), [("D-3", 4.0 + 6 * 0.2 / 0.9, {"2.1": 4.0, "5.4": 6 * 0.6 / 0.9 - 6 * 0.4 / 0.9})]),
    ("an overdue open dossier is already late: nothing listed",
     on_time("D-1") + open_("D-2", due="2026-03-09 10:00"), []),
    ("sorted by points: a dossier of a small unit costs more than one of a large unit",
     sum((on_time(f"A-{i}", unit="T01.S02") for i in range(9)), []) + open_("A-9", unit="T01.S02")
     + on_time("B-1") + open_("B-2", rated_unsatisfied=True),
     [("B-2", 10.0, {"2.1": 10.0}), ("A-9", 2.0, {"2.1": 2.0, "5.4": 0.0})]),
    ("equal points: the earlier due first",
     on_time("D-1") + open_("D-2", due="2026-03-25 08:00", rated_unsatisfied=True)
     + open_("D-3", due="2026-03-12 08:00", rated_unsatisfied=True),
     [("D-3", 20 / 3, {"2.1": 20 / 3}), ("D-2", 20 / 3, {"2.1": 20 / 3})]),
]


@pytest.mark.parametrize("name,lines,expected", AT_RISK_CASES, ids=[c[0][:48] for c in AT_RISK_CASES])
def test_at_risk_prints_one_json_line_per_dossier_sorted_by_points(tmp_path, name, lines, expected):
    f = tmp_path / "events.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    code, out, err = run("at-risk", f, "--period", PERIOD, "--at", AT)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["dossier"] for r in records] == [e[0] for e in expected], name
    for r, (_d, points, indicators) in zip(records, expected):
        assert r["points"] == pytest.approx(points, abs=1e-9)
        assert r["indicators"] == pytest.approx(indicators, abs=1e-9)
        assert {"dossier", "unit", "procedure", "due_at", "working_hours_left", "points", "province_points"} <= set(r)
    assert f"{len(expected)} hồ sơ" in err


def test_the_must_show_record_says_where_and_when(tmp_path):
    f = tmp_path / "events.jsonl"
    f.write_bytes(b"\n".join(must_show(rated_unsatisfied=True)) + b"\n")
    code, out, _ = run("at-risk", f, "--period", PERIOD, "--at", AT)
    (r,) = [json.loads(line) for line in out.splitlines()]
    assert f"{r['points']:.2f}" == "4.00"
    assert r["unit"] == "T01.S01" and r["procedure"] == "1.001612" and r["province"] == "T01"
    assert r["due_at"] == "2026-03-20T08:00:00+07:00" and r["state"] == "open_within" and r["clock"] == "running"
    assert r["working_hours_left"] == 54.0  # 1 h on 10 Mar, 7 working days of 7.5 h, 0.5 h on 20 Mar
    assert r["province_points"] == pytest.approx(4.0)  # the province is this one unit


def test_forecast_prints_the_period_end_document(tmp_path):
    f = tmp_path / "events.jsonl"
    f.write_bytes(b"\n".join(must_show(rated_unsatisfied=True, due="2026-03-11 08:00")) + b"\n")
    code, out, err = run("at-risk", f, "--period", PERIOD, "--at", AT, "--forecast")
    assert code == 0, err
    doc = json.loads(out)
    unit = doc["units"]["T01.S01"]
    assert unit["on_time_all"]["score_2_1"] == pytest.approx(12.0)  # 20 * 3/5
    assert unit["due_soon_late"]["score_2_1"] == pytest.approx(8.0)  # D-3 is due soon: 20 * 2/5
    assert unit["due_soon_late"]["late_added"] == 1
    assert doc["method"]["vi"] and doc["method"]["en"] and "T01" in doc["provinces"]


def test_at_risk_of_the_sample_through_the_installed_command():
    out = subprocess.run([sys.executable, "-m", "streams.tools.cli", "at-risk", str(SAMPLE_FILE), "--period", PERIOD,
                          "--at", SAMPLE_AT], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert records and all(r["points"] >= 0 for r in records)
    keys = [(-r["points"], r["due_at"]) for r in records]
    assert [k[0] for k in keys] == sorted(k[0] for k in keys)


# (name, args, message expected on stderr)
BAD_INPUT = [
    ("a period that does not exist", ["at-risk", SAMPLE_FILE, "--period", "month:2026-13"], "month:YYYY-MM"),
    ("an instant that is not ISO 8601", ["at-risk", SAMPLE_FILE, "--at", "10/03/2026"], "ISO 8601"),
    ("official figures that are not JSON",
     ["reconcile", "--ours", SAMPLE_FILE, "--official", "BROKEN_JSON", "--period", PERIOD], "không phải JSON"),
    ("official figures of another period",
     ["reconcile", "--ours", SAMPLE_FILE, "--official", SAVED_JSON, "--period", "month:2026-02"], "month:2026-03"),
    ("a CSV without the columns",
     ["reconcile", "--ours", SAMPLE_FILE, "--official", "BAD_CSV", "--period", PERIOD], "tiêu đề"),
    ("an unknown format",
     ["reconcile", "--ours", SAMPLE_FILE, "--official", SAVED_JSON, "--period", PERIOD, "--format", "xml"], "table"),
    ("a threshold in percent",
     ["reconcile", "--ours", SAMPLE_FILE, "--official", SAVED_JSON, "--period", PERIOD, "--threshold", "12"], "0.05"),
]


@pytest.mark.parametrize("name,args,message", BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_input_is_refused_with_exit_2_and_a_clear_message(tmp_path, name, args, message):
    broken = tmp_path / "broken.json"
    broken.write_text('{"code": "OK", "data": ', encoding="utf-8")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b\n1,2\n", encoding="utf-8")
    args = [{"BROKEN_JSON": broken, "BAD_CSV": bad_csv}.get(a, a) for a in args]
    code, out, err = run(*args)
    assert code == 2, (name, out, err)
    assert message in err, (name, err)
    assert out == ""


# ------------------------------------------------------------------------------------------------ reconcile

# (unit, indicator, field, ours, official, status, flag) on the saved response of March 2026
RECONCILE_CASES = [
    ("T99.S02", "2.1", "denominator", 20, 23, "differs", "fewer_dossiers_than_portal"),
    ("T99.S02", "5.4", "numerator", 19, 21, "differs", "fewer_dossiers_than_portal"),
    ("T99.S04", "2.1", "numerator", 15, 14, "differs", "numerator_differs"),
    ("T99.X006", "2.1", "denominator", 4, 3, "differs", "more_dossiers_than_portal"),
    ("T99", "2.1", "denominator", 147, 151, "match", None),
    ("T99.S01", "3.6", "numerator", 1, 1, "match", None),
]


@pytest.fixture(scope="module")
def reconciled() -> dict:
    results = {}
    for name, official in (("json", SAVED_JSON), ("csv", SAVED_CSV)):
        code, out, err = run("reconcile", "--ours", SAMPLE_FILE, "--official", official, "--period", PERIOD,
                             "--at", SAMPLE_AT)
        assert code == 0, err
        results[name] = json.loads(out)
    return results


@pytest.mark.parametrize("source", ["json", "csv"])
@pytest.mark.parametrize("unit,indicator,field,ours,official,status,flag", RECONCILE_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in RECONCILE_CASES])
def test_reconcile_gives_the_expected_differences(reconciled, source, unit, indicator, field, ours, official,
                                                   status, flag):
    (row,) = [r for r in reconciled[source]["rows"] if r["unit"] == unit and r["indicator"] == indicator]
    assert (row["ours"][field], row["official"][field]) == (ours, official)
    diff = row["difference"][field]
    assert diff["absolute"] == ours - official
    assert diff["relative"] == pytest.approx((ours - official) / official)
    assert (flag in row["flags"]) if flag else row["flags"] == []
    if source == "json":
        assert row["status"] == status


def test_reconcile_against_a_saved_score_document(tmp_path, reconciled):
    code, out, err = run("score", SAMPLE_FILE, "--at", SAMPLE_AT, "--period", PERIOD)
    assert code == 0, err
    score = tmp_path / "score.json"
    score.write_text(out, encoding="utf-8")
    code, out, err = run("reconcile", "--ours", score, "--official", SAVED_JSON, "--period", PERIOD)
    assert code == 0, err
    assert json.loads(out)["rows"] == reconciled["json"]["rows"]


def test_reconcile_judges_our_events_when_the_portal_was_read_by_default():
    code, out, err = run("reconcile", "--ours", SAMPLE_FILE, "--official", SAVED_JSON, "--period", PERIOD)
    assert code == 0, err
    assert json.loads(out)["ours"]["at"] == "2026-03-10T16:05:15+07:00"


@pytest.mark.parametrize("lang,expected", [
    ("vi", ["Đối chiếu với số liệu Cổng DVCQG — month:2026-03", "Lệch mẫu số", "khớp", "chênh lệch",
            "-3 (-13,0 %)", "Mẫu số của hệ thống thấp hơn Cổng DVCQG 13,0 %"[:30]]),
    ("en", ["Reconciliation with the national portal — month:2026-03", "Denominator gap", "match", "differs",
            "-3 (-13.0%)", "Our denominator is 13.0 % below"]),
])
def test_reconcile_table_is_readable_in_both_languages(lang, expected):
    code, out, err = run("reconcile", "--ours", SAMPLE_FILE, "--official", SAVED_JSON, "--period", PERIOD,
                         "--at", SAMPLE_AT, "--format", "table", "--lang", lang)
    assert code == 0, err
    for text in expected:
        assert text in out, (lang, text)
    s02 = next(line for line in out.splitlines() if line.startswith("T99.S02 ") and " 2.1 " in line)
    assert "19 / 20" in s02 and "21 / 23" in s02  # numerator / denominator, ours then the portal's
