"""A replay split into shares by dossier adds up to exactly the one replay of the whole file (``onestop score --jobs``):
the same document byte for byte, whatever the number of shares, the order of the lines, the bad lines and the
duplicates in it."""

import json
import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.events import MAX_EVENT_BYTES
from models.figures import replay, score_document, to_json
from models.replay_shares import merge, merged_document, replay_share, share_of
from tests.builders import SAMPLE_AT, raw, received, sample_lines
from tests.test_at_risk import dossier_kinds, mixed_lines
from tests.test_figures import ctx_at, numbered

PERIODS = ("month:2026-02", "quarter:2026-Q1")


def one_replay(lines, period, ctx):
    return to_json(score_document(replay(numbered(lines), ctx), period, ctx))


def in_shares(lines, period, ctx, shares, reverse=False):
    results = [replay_share(numbered(lines), ctx, s, shares) for s in range(shares)]
    return to_json(merged_document(merge(results[::-1] if reverse else results), period, ctx.now, ctx))


def awkward_lines() -> list[bytes]:
    """The sample with what a real file also holds: bad JSON, a non-string subject, a record over the size limit,
    an exact duplicate, a conflicting one (same id, other content), an event after the instant scored, and units
    whose dossiers state their province and level differently (the first stated wins, in dossier order)."""
    lines = sample_lines()
    dup = json.loads(lines[5])
    conflicting = dict(dup, data={**dup["data"], "channel": "postal"})
    lines = lines[:40] + [b"{oops", raw("received", "2026-01-06 08:00", {"channel": 3}),
                          json.dumps(dict(dup, subject=7)).encode(), b'{"subject":"' + b"x" * MAX_EVENT_BYTES + b'"}',
                          lines[5], json.dumps(conflicting).encode(),
                          raw("received", "2026-03-11 08:00", received("2026-03-11 08:00", due="2026-03-20 08:00"),
                              code="LATER-1")] + lines[40:]
    for n, (province, level) in enumerate([(None, None), ("T01", None), ("T02", "commune"), (None, "agency")]):
        data = received("2026-02-02 08:00", due="2026-02-20 08:00", unit="T01.MIX")
        data.pop("province_code"), data.pop("unit_level")
        data.update({k: v for k, v in (("province_code", province), ("unit_level", level)) if v})
        lines.insert(100 + 30 * n, raw("received", "2026-02-02 08:00", data, code=f"MIX-{n}"))
    return lines


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("shares", [1, 2, 3, 7])
def test_shares_add_up_to_the_one_replay(shares, period):
    lines, ctx = awkward_lines(), ctx_at()
    expected = one_replay(lines, period, ctx)
    doc = json.loads(expected)
    assert doc["input"]["rejected"] >= 4 and doc["input"]["duplicates"] >= 1 and doc["input"]["after_at"] >= 1
    assert doc["units"]["T01.MIX"]["province"] == "T01" and doc["units"]["T01.MIX"]["level"] == "commune"
    assert in_shares(lines, period, ctx, shares) == expected
    assert in_shares(lines, period, ctx, shares, reverse=True) == expected


def test_every_line_is_in_exactly_one_share():
    lines = awkward_lines()
    owners = [share_of(line, n, 3) for n, line in numbered(lines)]
    counts = [replay_share(numbered(lines), ctx_at(), s, 3).counts["lines"] for s in range(3)]
    assert sum(counts) == len(lines) and counts == [owners.count(s) for s in range(3)]
    assert min(counts) > len(lines) // 5  # the dossiers spread over the shares


def test_a_dossier_stays_in_one_share_and_unreadable_lines_go_by_line_number():
    by_subject: dict[str, set[int]] = {}
    for n, line in numbered(sample_lines()):
        by_subject.setdefault(json.loads(line)["subject"], set()).add(share_of(line, n, 4))
    assert all(len(s) == 1 for s in by_subject.values())
    assert {share_of(b"{oops", n, 4) for n in range(8)} == {0, 1, 2, 3}
    assert [share_of(b'{"subject": 7}', n, 4) for n in (5, 6)] == [1, 2]


def test_more_rejections_than_the_report_lists_are_counted_and_the_first_ones_listed():
    lines = [b"{bad %d" % i for i in range(250)] + sample_lines()[:50]
    ctx = ctx_at()
    assert in_shares(lines, "month:2026-02", ctx, 3) == one_replay(lines, "month:2026-02", ctx)
    merged = merge(replay_share(numbered(lines), ctx, s, 3) for s in range(3))
    assert merged.report["rejected"] == 250 and [r["line"] for r in merged.report["rejections"]] == list(range(1, 101))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(units=st.lists(st.lists(dossier_kinds, min_size=1, max_size=5), min_size=1, max_size=4),
       shares=st.integers(2, 5), seed=st.integers(0, 2**32 - 1))
def test_any_mix_in_any_order_adds_up(units, shares, seed):
    lines = mixed_lines(units, lambda u: f"T0{1 + u % 2}.S{u:02d}")
    lines += lines[: len(lines) // 3]  # replayed duplicates
    random.Random(seed).shuffle(lines)
    ctx = ctx_at(SAMPLE_AT)
    for period in ("month:2026-03", "quarter:2026-Q1"):
        assert in_shares(lines, period, ctx, shares) == one_replay(lines, period, ctx)


def test_score_jobs_prints_the_same_document_as_one_process(tmp_path):
    """Real forked processes through the command, on a file with bad lines and duplicates."""
    f = tmp_path / "events.jsonl"
    f.write_bytes(b"\n".join(awkward_lines()) + b"\n")
    outs = [subprocess.run([sys.executable, "-m", "streams.tools.cli", "score", str(f), "--at", SAMPLE_AT,
                            "--period", "quarter:2026-Q1", "--jobs", jobs], capture_output=True)
            for jobs in ("1", "3", "0")]
    assert [o.returncode for o in outs] == [0, 0, 0], outs[1].stderr
    assert outs[1].stdout == outs[0].stdout and outs[2].stdout == outs[0].stdout
    assert json.loads(outs[0].stdout)["input"]["rejected"] >= 4
    assert outs[1].stderr == outs[0].stderr and b"lines rejected" in outs[1].stderr


def test_score_jobs_refuses_a_negative_count():
    out = subprocess.run([sys.executable, "-m", "streams.tools.cli", "score", "samples/sample-events.jsonl",
                          "--jobs", "-1"], capture_output=True, text=True)
    assert out.returncode == 2 and "--jobs" in out.stderr


@pytest.mark.parametrize("at, ended_since", [("2026-03-10T16:00:00+07:00", None),
                                             ("2026-04-01T00:00:00+07:00", "2026-01-01T00:00:00+07:00")])
@pytest.mark.parametrize("shares", [2, 5])
def test_the_reports_late_dossiers_add_up_in_the_order_of_one_replay(shares, at, ended_since):
    from datetime import datetime

    from models.figures import views
    from models.report import late_dossiers_from_views

    lines, ctx = awkward_lines(), ctx_at(at)
    since = datetime.fromisoformat(ended_since) if ended_since else None
    expected = late_dossiers_from_views(views(replay(numbered(lines), ctx).states.values(), ctx), ctx.now,
                                        ended_since=since)
    assert len(expected) >= 5 and (since is None or any(d.state == "ended_late" for d in expected))
    merged = merge(replay_share(numbered(lines), ctx, s, shares, late=True, ended_since=since) for s in range(shares))
    assert merged.late == expected
    assert merge(replay_share(numbered(lines), ctx, s, shares) for s in range(shares)).late == []


@pytest.mark.parametrize("args", [("--format", "csv", "--table", "late"), ("--format", "csv", "--table", "units"),
                                  ("--format", "md")])
def test_report_jobs_writes_the_same_report_as_one_process(tmp_path, args):
    f = tmp_path / "events.jsonl"
    f.write_bytes(b"\n".join(awkward_lines()) + b"\n")
    outs = [subprocess.run([sys.executable, "-m", "streams.tools.cli", "report", str(f), "--period", "quarter:2026-Q1",
                            "--at", "2026-04-02T10:00:00+07:00", "--province", "T99", *args, "--out", "-", "--jobs", jobs],
                           capture_output=True) for jobs in ("1", "3")]
    assert [o.returncode for o in outs] == [0, 0], outs[1].stderr
    assert outs[1].stdout == outs[0].stdout and len(outs[0].stdout) > 500
