"""Batch figures: the oracle. Tallies equal the sum of per-dossier contributions; bad lines are reported, not fatal."""

import json
import subprocess
import sys

import pytest

from models.calendar import WorkCalendar
from models.dossier import Context
from models.figures import replay, score_document, tallies_of
from models.tally import parse_period, periods_between
from tests.builders import SAMPLE_AT, SAMPLE_FILE, envelope, processed_data, raw, received, sample_lines, t

CAL = WorkCalendar.default()


def ctx_at(when=SAMPLE_AT):
    from datetime import datetime
    return Context(now=datetime.fromisoformat(when), calendar=CAL)


def numbered(lines):
    return list(enumerate(lines, 1))


def test_sample_covers_agencies_communes_and_tet():
    rep = replay(numbered(sample_lines()), ctx_at())
    assert rep.rejections == [] and 300 <= len(rep.states) <= 600
    levels = {s.reception.unit_level for s in rep.states.values()}
    assert levels == {"agency", "commune"}
    assert any(s.reception.received_at < t("2026-02-16 00:00") < s.reception.due_at for s in rep.states.values())


def test_sample_file_is_regenerated_identically():
    out = subprocess.run([sys.executable, "-m", "streams.tools.cli", "simulate", "--sample", "--out", "/dev/stdout"],
                         capture_output=True, check=True)
    assert out.stdout == SAMPLE_FILE.read_bytes(), "samples/sample-events.jsonl is stale: regenerate it"


def test_unit_figures_add_up_to_the_province():
    doc = score_document(replay(numbered(sample_lines()), ctx_at()), "month:2026-02", ctx_at())
    prov = doc["provinces"]["T99"]
    for key in ("received", "population", "on_time", "open_overdue", "ended_late"):
        assert prov["counts"][key] == sum(u["counts"][key] for u in doc["units"].values())
    assert prov["indicators"]["2.1"]["denominator"] == prov["counts"]["population"]
    assert prov["shares"]["on_time_ratio"] == pytest.approx(prov["counts"]["on_time"] / prov["counts"]["population"])


def test_identity_population_is_on_time_plus_not_on_time_buckets():
    doc = score_document(replay(numbered(sample_lines()), ctx_at()), "quarter:2026-Q1", ctx_at())
    for u in doc["units"].values():
        c = u["counts"]
        buckets = sum(c[k] for k in ("ended_early", "ended_on_time", "ended_late", "open_within", "open_due_soon",
                                     "open_overdue", "open_awaiting_supplement", "open_awaiting_payment"))
        assert buckets == c["population"]
        assert c["late_with_apology"] + c["late_without_apology"] == c["ended_late"]


def test_a_dossier_open_across_months_is_carried_over():
    ctx = ctx_at("2026-04-10T10:00:00+07:00")
    rep = replay(numbered([raw("received", "2026-01-20 09:00", received("2026-01-20 09:00", due="2026-02-10 09:00")),
                           raw("processed", "2026-03-05 09:00", processed_data("2026-03-05 09:00"))]), ctx)
    tallies = tallies_of(rep.states.values(), ctx)
    for month in ("2026-01", "2026-02", "2026-03"):
        assert tallies[("T01.S01", f"month:{month}", "population")] == 1
        assert tallies[("T01.S01", f"month:{month}", "ended_late")] == 1
    assert ("T01.S01", "month:2026-04", "population") not in tallies
    assert tallies[("T01.S01", "month:2026-01", "received")] == 1
    assert ("T01.S01", "month:2026-02", "received") not in tallies


def test_bad_lines_are_reported_and_the_rest_is_scored():
    good = sample_lines()[:200]
    bad = [b"{truncated", raw("received", "2026-01-06 08:00", {"channel": "fax"}),
           json.dumps({**envelope("received", "2026-01-06 08:00", received("2026-01-06 08:00", due="2026-01-09 08:00")),
                       "type": "vn.gov.dvc.dossier.nope"}).encode(),
           raw("received", "2026-01-06 08:00", received("2026-01-06 08:00", due="2026-01-05 08:00"), code="X-9")]
    lines = bad[:2] + good[:100] + bad[2:] + good[100:]
    rep = replay(numbered(lines), ctx_at())
    reasons = [(r.line, r.reason) for r in rep.rejections]
    assert reasons == [(1, "bad_json"), (2, "schema"), (103, "unknown_type"), (104, "impossible_timeline")]
    assert len(rep.states) == len(replay(numbered(good), ctx_at()).states)


def test_events_after_the_evaluation_instant_are_left_out():
    rep = replay(numbered(sample_lines()), ctx_at("2026-02-01T00:00:00+07:00"))
    assert rep.after_at > 0
    assert all(s.last_event_time < t("2026-02-01 00:00") for s in rep.states.values())


@pytest.mark.parametrize("key,start,end", [
    ("month:2026-12", "2026-12-01", "2027-01-01"), ("quarter:2026-Q4", "2026-10-01", "2027-01-01"),
    ("quarter:2026-Q1", "2026-01-01", "2026-04-01"), ("year:2026", "2026-01-01", "2027-01-01")])
def test_periods(key, start, end):
    s, e = parse_period(key)
    assert (s, e) == (t(start + " 00:00"), t(end + " 00:00"))


@pytest.mark.parametrize("bad", ["month:2026-13", "week:2026-01", "quarter:2026-Q5", "2026", "year:abc"])
def test_bad_periods_are_refused(bad):
    with pytest.raises(ValueError):
        parse_period(bad)


def test_periods_between_spans_year_ends():
    assert periods_between("month", t("2025-11-20 00:00"), t("2026-02-01 00:00")) == [
        "month:2025-11", "month:2025-12", "month:2026-01", "month:2026-02"]


def test_a_time_limit_running_past_the_calendar_is_refused_not_a_crash():
    # Received in December 2099 with 400 working days: the deadline falls in 2101, past the last year (2100)
    # any calendar covers. The oracle must report the line and go on, as the worker dead-letters it.
    late = raw("received", "2099-12-01 08:00", received("2099-12-01 08:00", limit=(400, "working_day")), code="Y-1")
    early = raw("received", "2099-12-01 08:00", received("2099-12-01 08:00", limit=(5, "working_day")), code="Y-2")
    rep = replay(numbered([late, early]), ctx_at("2099-12-31T12:00:00+07:00"))
    assert [(r.line, r.reason) for r in rep.rejections] == [(1, "impossible_timeline")]
    assert "no working calendar" in rep.rejections[0].message
    assert set(rep.states) == {"Y-2"}


def test_an_unexpected_error_on_one_line_is_reported_like_the_worker_dead_letters_it(monkeypatch):
    import models.figures as figures_mod

    real_apply = figures_mod.apply

    def apply(state, event, ctx):
        if event.subject == "BOOM":
            raise ArithmeticError("a defect in the domain core")
        return real_apply(state, event, ctx)

    monkeypatch.setattr(figures_mod, "apply", apply)
    boom = raw("received", "2026-01-06 08:00", received("2026-01-06 08:00", due="2026-01-09 08:00"), code="BOOM")
    good = sample_lines()[:50]
    rep = replay(numbered(good[:10] + [boom] + good[10:]), ctx_at())
    assert [(r.line, r.reason) for r in rep.rejections] == [(11, "processor_error")]
    assert "ArithmeticError: a defect" in rep.rejections[0].message
    assert len(rep.states) == len(replay(numbered(good), ctx_at()).states)
