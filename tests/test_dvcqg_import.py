"""`onestop import dvcqg` as an integrator runs it: events on stdout that `validate` accepts and `score` turns into
the hand-computed figures, bad lines by number on stderr, nothing personal anywhere; and the shared produce /
dead-letter helper of the live paths, with the broker replaced by a recorder."""

import asyncio
import json
import subprocess
import sys

import pytest
from types import SimpleNamespace

from models.dvcqg import load_profile
from models.figures import iter_lines
from streams.runtime.sync_agent import SyncIngest, record_headers
from streams.runtime.tallies import PipelineHealth
from tests.test_dvcqg import (EDGE_EXPECTED, EXPECTED, PROFILE, SAMPLES, _all_bodies, _pii_values,
                              assert_hand_worked_figures)

CORPUS = SAMPLES / "province-june-2026.jsonl"
EDGE = SAMPLES / "edge-cases.jsonl"
PROFILE_FILE = SAMPLES / "profile-example.yaml"


def onestop(*args, stdout=subprocess.PIPE):
    return subprocess.run([sys.executable, "-m", "streams.tools.cli", *map(str, args)], stdout=stdout,
                          stderr=subprocess.PIPE)


def personal_data() -> set[str]:
    return {v for body in _all_bodies() for v in _pii_values(body)}


def test_import_then_validate_then_score_gives_the_hand_computed_figures(tmp_path):
    events = tmp_path / "events.jsonl"
    with open(events, "wb") as fh:
        out = onestop("import", "dvcqg", CORPUS, "--profile", PROFILE_FILE, stdout=fh)
    assert out.returncode == 0, out.stderr.decode()
    assert onestop("validate", events).returncode == 0
    scored = onestop("score", events, "--period", EXPECTED["period"], "--at", EXPECTED["at"])
    assert scored.returncode == 0, scored.stderr.decode()
    doc = json.loads(scored.stdout)
    assert doc["input"]["rejections"] == [] and doc["input"]["after_at"] == 0
    assert_hand_worked_figures(doc)
    text = events.read_text(encoding="utf-8") + out.stderr.decode()
    assert not [v for v in personal_data() if v in text]


def test_bad_lines_are_reported_by_number_and_the_rest_goes_on():
    out = onestop("import", "dvcqg", EDGE)
    assert out.returncode == 1
    err = out.stderr.decode()
    reported = {int(line.split(":")[1]) for line in err.splitlines() if line.startswith(f"{EDGE}:")}
    bad = {n for n, want in EDGE_EXPECTED.items() if isinstance(want, str) or want[1]}
    assert reported == bad
    assert f"{EDGE}:5: dvcqg_bad_body: " in err and f"{EDGE}:1: dvcqg_bad_date: record 2: " in err
    good = sum(want[0] for want in EDGE_EXPECTED.values() if not isinstance(want, str))
    assert len(out.stdout.splitlines()) == good  # the lines around the bad ones still convert
    assert not [v for v in personal_data() if v in err or v in out.stdout.decode()]


def test_a_bad_profile_is_refused_before_anything_is_read(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("sourse: x\n", encoding="utf-8")
    out = onestop("import", "dvcqg", CORPUS, "--profile", bad)
    assert out.returncode == 2 and out.stdout == b""


# ---------------------------------------------------------------------------------------------------------------
# the shared helper (streams.runtime.sync_agent), broker replaced by a recorder

class Recorder:
    """Records what is sent; like Faust's topic, ``send`` returns the future of the broker's acknowledgement."""

    def __init__(self, refuse: bool = False):
        self.sent = []
        self.refuse = refuse
        self.acked = 0

    async def send(self, *, key, value, headers=None, force=False):
        assert force
        self.sent.append((key, value, headers or {}))
        ack = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(self._resolve, ack)
        return ack

    def _resolve(self, ack):
        if self.refuse:
            ack.set_exception(RuntimeError("broker refused"))
        else:
            self.acked += 1
            ack.set_result(None)


def ingest_all(lines, health=None, **kw):
    events, dlq, health = Recorder(), Recorder(), health or PipelineHealth()
    helper = SyncIngest(SimpleNamespace(dlq_topic=dlq, health=health), events, PROFILE)
    outcomes = [asyncio.run(helper.ingest(raw, origin={"x-source-http": "test"}, **kw)) for raw in lines]
    rejected = [reason for reason, n in health.rejected.values.items() for _ in range(int(n))]
    return outcomes, events.sent, dlq.sent, rejected


def test_the_helper_produces_keyed_events_and_redacted_dead_letters():
    lines = [raw for _n, raw in iter_lines(str(EDGE))]
    outcomes, events, dlq, rejected = ingest_all(lines)
    assert [k for k, _v, _h in events] == [json.loads(v)["subject"].encode() for _k, v, _h in events]
    want = sum(1 if isinstance(w, str) else len(w[1]) for w in EDGE_EXPECTED.values())
    assert len(dlq) == want == len(rejected)
    assert sorted(h["x-reason"].decode() for _k, _v, h in dlq) == sorted(rejected)
    pii = personal_data()
    for key, value, headers in dlq:
        assert headers["x-redacted"] == b"dvcqg-allow-list" and headers["x-source-http"] == b"test"
        blob = (value or b"").decode() + json.dumps({k: v.decode() for k, v in headers.items()}, ensure_ascii=False)
        assert not [v for v in pii if v in blob]
        assert (value == b"") == ("x-value-dropped" in headers)
    assert [o.body_error[0] for o in outcomes if o.body_error] == ["dvcqg_bad_body"] * 3
    assert {h["x-record-index"] for _k, _v, h in dlq if "x-record-index" in h} == {b"0", b"1", b"2"}


def test_the_helper_returns_only_once_the_broker_acknowledged_every_record():
    lines = [raw for _n, raw in iter_lines(str(EDGE))]
    events, dlq = Recorder(), Recorder()
    runtime = SimpleNamespace(dlq_topic=dlq, health=PipelineHealth())
    helper = SyncIngest(runtime, events, PROFILE)

    async def run_all():
        for raw in lines:
            await helper.ingest(raw, origin={"x-source-http": "test"})
            assert events.acked == len(events.sent) and dlq.acked == len(dlq.sent)  # before the answer

    asyncio.run(run_all())
    assert events.sent and dlq.sent
    # A broker that refuses: the failure reaches the caller (the HTTP path answers "-5": send again).
    refusing = SyncIngest(SimpleNamespace(dlq_topic=Recorder(refuse=True), health=runtime.health),
                          Recorder(refuse=True), PROFILE)
    good = next(raw for raw in lines if helper_events(raw))
    counted = dict(runtime.health.sync_bodies)
    with pytest.raises(RuntimeError, match="broker refused"):
        asyncio.run(refusing.ingest(good, origin={"x-source-http": "test"}))
    assert runtime.health.sync_bodies == counted  # not recorded, so not counted: the sender sends it again


def test_the_helper_counts_bodies_and_records_by_service_and_outcome_with_the_service_bounded():
    health = PipelineHealth()
    lines = [raw for _n, raw in iter_lines(str(EDGE))]
    outcomes, _events, _dlq, rejected = ingest_all(lines, health)
    bodies = {}
    for o in outcomes:
        kind = "refused" if o.body_error or (o.records and not o.accepted) else "partial" if o.rejected else "ok"
        key = (o.service or "unknown", kind)
        bodies[key] = bodies.get(key, 0) + 1
    assert health.sync_bodies == bodies and {k for _s, k in bodies} == {"ok", "partial", "refused"}
    assert sum(health.sync_records.get((s, "refused"), 0) for s in ("DongBoHoSoMC", "CapNhatTienDoHoSoMC")) \
        == sum(len(o.rejected) for o in outcomes) == len(rejected) - sum(1 for o in outcomes if o.body_error)
    assert sum(n for (_s, k), n in health.sync_records.items() if k == "accepted") == sum(o.accepted for o in outcomes)
    # a service nobody knows (a topic record's header) is counted as unknown, never as a label of its own
    good = next(raw for raw in lines if helper_events(raw))
    health = PipelineHealth()
    ingest_all([good, good], health, service="LayThuTuc")
    assert health.sync_bodies == {("unknown", "refused"): 2} and health.sync_records == {}


def helper_events(raw: bytes) -> int:
    _outcomes, events, _dlq, _rej = ingest_all([raw])
    return len(events)


def test_record_headers_take_pairs_or_mappings():
    assert record_headers([("Service", b"DongBoHoSoMC"), ("query", b"isUpdating=True")]) == {
        "service": "DongBoHoSoMC", "query": "isUpdating=True"}
    assert record_headers({"service": "CapNhatTienDoHoSoMC"}) == {"service": "CapNhatTienDoHoSoMC"}
    assert record_headers(None) == {}


def test_the_profile_file_is_the_one_the_figures_were_computed_with():
    assert load_profile(PROFILE_FILE) == PROFILE
