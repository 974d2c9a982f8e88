"""Replay / backfill through `onestop replay`: event-time order, resumable, nothing refused silently."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from streams.tools.replay import Checkpoint, ordered, read_lines
from tests.builders import SAMPLE_FILE, iso, raw, received, sample_lines
from tests.test_stream import Deployment, oracle, wait_equal  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parent.parent


def onestop(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "streams.tools.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.mark.broker
def test_replay_of_a_shuffled_history_gives_the_oracle_figures(kafka_bootstrap, topic_prefix, tmp_path, oracle):
    history = tmp_path / "history.jsonl"
    lines = sample_lines()
    history.write_bytes(b"\n".join(lines[::-1]) + b"\n")  # newest first: replay must restore event-time order
    d = Deployment(kafka_bootstrap, topic_prefix, tmp_path)
    try:
        w = d.worker()
        out = onestop("replay", history, "--broker", kafka_bootstrap, "--topic", d.settings.events,
                      "--dlq-topic", d.settings.dlq, "--quiet")
        assert out.returncode == 0, out.stderr
        assert f"{len(lines)} events published, 0 skipped" in out.stderr
        wait_equal(w, oracle)
        again = onestop("replay", history, "--broker", kafka_bootstrap, "--topic", d.settings.events, "--resume", "--quiet")
        assert f"0 events published, {len(lines)} skipped" in again.stderr
    finally:
        d.close()


@pytest.mark.broker
def test_invalid_lines_are_reported_and_dead_lettered(kafka_bootstrap, topic_prefix, tmp_path):
    from kafka import KafkaConsumer

    f = tmp_path / "h.jsonl"
    f.write_bytes(b"\n".join([sample_lines()[0], b"{broken", sample_lines()[1]]) + b"\n")
    d = Deployment(kafka_bootstrap, topic_prefix, tmp_path)
    try:
        out = onestop("replay", f, "--broker", kafka_bootstrap, "--topic", d.settings.events, "--dlq-topic",
                      d.settings.dlq, "--quiet")
        assert out.returncode == 1 and f"{f}:2: bad_json" in out.stderr and "1 invalid" in out.stderr
        consumer = KafkaConsumer(d.settings.dlq, bootstrap_servers=kafka_bootstrap, group_id=None,
                                 auto_offset_reset="earliest", consumer_timeout_ms=3000,
                                 isolation_level="read_committed")
        got = [(m.value, dict(m.headers)) for m in consumer]
        consumer.close()
        assert [(v, h["x-reason"], h["x-source-line"]) for v, h in got] == [(b"{broken", b"bad_json", b"2")]
    finally:
        d.close()


def test_event_time_order_is_stable_for_equal_times():
    a = raw("received", "2026-03-02 08:00", received("2026-03-02 08:00", due="2026-03-09 08:00"), code="A")
    b = raw("processed", "2026-03-02 08:00", {"processing_ended_at": iso("2026-03-02 08:00")}, code="A")
    c = raw("received", "2026-03-01 08:00", received("2026-03-01 08:00", due="2026-03-09 08:00"), code="C")
    assert [r for _, r in ordered([(1, a), (2, b), (3, c)])] == [c, a, b]


def test_csv_rows_become_contract_events(tmp_path):
    f = tmp_path / "export.csv"
    with open(f, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "source", "type", "time", "subject", "data.procedure_code", "data.handling_unit_code",
                    "data.receiving_unit_code", "data.channel", "data.received_at", "data.due_at",
                    "data.time_limit.value", "data.time_limit.unit", "data.has_fee"])
        w.writerow(["r1", "igate.x", "received", iso("2026-03-02 08:00"), "D-1", "1.004227", "T01.S01", "T01.S01",
                    "online", iso("2026-03-02 08:00"), "", "5", "working_day", "true"])
        w.writerow(["r2", "igate.x", "received", iso("2026-03-02 08:00"), "D-2", "1.004227"])  # missing cells
    rows = list(read_lines(f))
    from models.events import EventError, decode_event

    e = decode_event(rows[0][1])
    assert e.data.procedure_code == "1.004227" and e.data.time_limit.value == 5 and e.data.has_fee is True
    assert e.data.due_at is None
    with pytest.raises(EventError):
        decode_event(rows[1][1])


def test_checkpoint_belongs_to_one_version_of_a_file(tmp_path):
    f = tmp_path / "h.jsonl"
    f.write_bytes(SAMPLE_FILE.read_bytes())
    cp = Checkpoint(f)
    cp.save(120)
    assert Checkpoint(f).load() == 120
    f.write_bytes(SAMPLE_FILE.read_bytes() + b"\n")
    assert Checkpoint(f).load() == 0
