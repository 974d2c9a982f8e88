"""The batch commands as a user runs them: exit codes, messages, JSON on stdout."""

import json
import subprocess
import sys

import pytest

from tests.builders import SAMPLE_AT, SAMPLE_FILE, raw, sample_lines


def onestop(*args):
    return subprocess.run([sys.executable, "-m", "streams.tools.cli", *map(str, args)], capture_output=True, text=True)


def test_validate_accepts_the_sample():
    out = onestop("validate", SAMPLE_FILE)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 invalid" in out.stderr


def test_validate_lists_each_bad_line_and_exits_1(tmp_path):
    f = tmp_path / "events.jsonl"
    f.write_bytes(b"\n".join([sample_lines()[0], b"{oops", raw("received", "2026-01-06 08:00", {"channel": 3}),
                              sample_lines()[1]]) + b"\n")
    out = onestop("validate", f)
    assert out.returncode == 1
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith(f"{f}:2: bad_json")
    assert lines[1].startswith(f"{f}:3: schema") and "$.data" in lines[1]
    assert "4 events, 2 valid, 2 invalid" in out.stderr


def test_score_prints_the_document_for_a_period():
    out = onestop("score", SAMPLE_FILE, "--at", SAMPLE_AT, "--period", "quarter:2026-Q1")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["period"] == "quarter:2026-Q1" and doc["input"]["rejected"] == 0
    unit = next(iter(doc["units"].values()))
    assert set(unit["indicators"]["2.1"]) >= {"numerator", "denominator", "ratio", "score"}
    assert unit["indicators"]["1.1"]["score"] is None  # not computable from events: null, never 0
    assert doc["provinces"]["T99"]["band"]["code"] in {"xuat_sac", "tot", "kha", "trung_binh", "yeu"}


def test_score_reports_bad_lines_and_still_scores(tmp_path):
    f = tmp_path / "events.jsonl"
    f.write_bytes(b"\n".join([b"not json"] + sample_lines()) + b"\n")
    out = onestop("score", f, "--at", SAMPLE_AT)
    assert out.returncode == 0
    doc = json.loads(out.stdout)
    assert doc["input"]["rejections"][0] == {"line": 1, "reason": "bad_json", "message": doc["input"]["rejections"][0]["message"]}
    assert doc["units"]
    assert "1 of" in out.stderr


def test_score_refuses_a_bad_period():
    out = onestop("score", SAMPLE_FILE, "--period", "month:2026-13")
    assert out.returncode == 2 and "month:YYYY-MM" in out.stderr


def test_rules_file_changes_the_rules_and_is_printed(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("judge_against: rescheduled\ndue_soon_fraction: 0.3\n")
    doc = json.loads(onestop("score", SAMPLE_FILE, "--at", SAMPLE_AT, "--rules", rules).stdout)
    assert doc["rules"]["judge_against"] == "rescheduled" and doc["rules"]["due_soon_fraction"] == 0.3
    rules.write_text("judge_against: sometimes\n")
    out = onestop("score", SAMPLE_FILE, "--rules", rules)
    assert out.returncode == 2 and "judge_against" in out.stderr


def test_a_bad_operator_calendar_is_refused_with_the_field(tmp_path):
    cal = tmp_path / "cal.yaml"
    cal.write_text("calendar_id: vn-public-sector\nyear: 2026\nversion: 9\nnon_working_days:\n"
                   "  - {date: 2027-01-01, kind: holiday}\n")
    out = onestop("score", SAMPLE_FILE, "--calendar", cal)
    assert out.returncode == 2 and "non_working_days[0].date" in out.stderr


def test_schema_prints_json_schema():
    out = onestop("schema")
    assert json.loads(out.stdout)["$schema"].endswith("2020-12/schema")


def test_a_batch_command_pauses_the_cyclic_collector_and_gives_it_back_even_on_error():
    import gc

    from streams.tools.cli_common import batch_gc

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with batch_gc():
            assert not gc.isenabled()
            raise RuntimeError("a bad file")
    assert gc.isenabled()
    gc.disable()
    try:
        with batch_gc():
            pass
        assert not gc.isenabled()  # a caller that had paused it keeps it paused
    finally:
        gc.enable()
