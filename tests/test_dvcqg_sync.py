"""The live sync paths on the real broker: national-portal bodies over ``POST /api/dvcqg/{service}`` and over the
``dvcqg-sync`` topic give ``/figures`` equal to `onestop score` of the converted bodies, before and after a
``kill -9``; refused records reach the dead-letter topic redacted, and nothing personal reaches the log."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime

from collections import Counter

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from models.calendar import WorkCalendar
from models.dossier import Context
from models.dvcqg import SERVICES, BodyError, convert_body, convert_lines
from models.events import event_to_json
from models.figures import iter_lines, replay, score_document
from streams.runtime.settings import WorkerSettings
from streams.runtime.topics import ensure_topics
from tests.procs import WorkerProcess, http, wait_for
from tests.test_dvcqg import EDGE_EXPECTED, EXPECTED, PROFILE, SAMPLES, _all_bodies, _pii_values

pytestmark = pytest.mark.broker
AT = datetime.fromisoformat(EXPECTED["at"])
PERIODS = ("month:2026-06", "quarter:2026-Q2", "year:2026")
TOKEN = "sync-test-token"
CORPUS = [raw for _n, raw in iter_lines(str(SAMPLES / "province-june-2026.jsonl"))]
EDGE = [raw for _n, raw in iter_lines(str(SAMPLES / "edge-cases.jsonl"))]
EDGE_DEAD_LETTERS = sum(1 if isinstance(w, str) else len(w[1]) for w in EDGE_EXPECTED.values())


@pytest.fixture(scope="module")
def oracle():
    """`onestop score` of every body sent, converted as `onestop import dvcqg` does (the edge cases' good records
    included), computed in process with the domain core."""
    ctx = Context(now=AT, calendar=WorkCalendar.default())
    events = [event_to_json(e) for _n, c in convert_lines(enumerate(CORPUS + EDGE, 1), PROFILE)
              if not isinstance(c, BodyError) for e in c.events]
    rep = replay(list(enumerate(events, 1)), ctx)
    assert rep.rejections == []
    return {p: score_document(rep, p, ctx) for p in PERIODS}


def service_of(raw: bytes) -> str:
    try:
        return convert_body(raw, profile=PROFILE).service
    except BodyError:
        return "DongBoHoSoMC"


def sync_counts(sent: list[tuple[bytes, str | None]]) -> Counter:
    """What the worker's sync counters must say after these (body, service asked for) were recorded, worked out
    with the converter: {("bodies", service, outcome): n, ("records", service, outcome): n}."""
    want: Counter = Counter()
    for raw, service in sent:
        try:
            conv = convert_body(raw, service=service, profile=PROFILE)
        except BodyError:
            want["bodies", service if service in SERVICES else "unknown", "refused"] += 1
            continue
        refused = len(conv.rejected)
        accepted = conv.records - refused
        want["bodies", conv.service, "refused" if conv.records and not accepted else "partial" if refused else "ok"] += 1
        want["records", conv.service, "accepted"] += accepted
        want["records", conv.service, "refused"] += refused
    return +want


def scraped_sync_counts(worker: WorkerProcess) -> Counter:
    got: Counter = Counter()
    for family in text_string_to_metric_families(worker.metrics_text()):
        if family.name in ("onestop_sync_bodies", "onestop_sync_records"):
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    got[family.name.rsplit("_", 1)[1], sample.labels["service"], sample.labels["outcome"]] += sample.value
    return got


class Sync:
    """Topics, a worker on a frozen clock with the sample sender profile and a token, and both ways in."""

    def __init__(self, bootstrap, prefix, tmp_path):
        self.bootstrap, self.tmp = bootstrap, tmp_path
        clock = tmp_path / "clock"
        clock.write_text(AT.isoformat())
        self.settings = WorkerSettings(broker=bootstrap, topic_prefix=prefix, app_id=prefix + "app", partitions=4)
        ensure_topics(bootstrap, self.settings)
        self.env = {"ONESTOP_TOPIC_PREFIX": prefix, "ONESTOP_APP_ID": prefix + "app", "ONESTOP_PARTITIONS": "4",
                    "ONESTOP_CLOCK_FILE": str(clock), "ONESTOP_CLOCK_INTERVAL": "0.5", "ONESTOP_LOG_LEVEL": "info",
                    "ONESTOP_API_TOKEN": TOKEN, "ONESTOP_DVCQG_PROFILE": str(SAMPLES / "profile-example.yaml")}
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        self.workers: list[WorkerProcess] = []
        self.worker: WorkerProcess | None = None
        self.sent: list[tuple[bytes, str | None]] = []  # (body, service asked for) handed to the current worker

    def start(self) -> WorkerProcess:
        port = self.worker.web_port if self.worker else None
        self.worker = WorkerProcess(bootstrap=self.bootstrap, data_dir=self.tmp / "w1", log_path=self.tmp / "w1.log",
                                    web_port=port, env=self.env)
        self.workers.append(self.worker)
        self.sent = []
        self.worker.start()
        self.worker.wait_ready(timeout=90)
        return self.worker

    def post(self, raw: bytes, service: str | None = None, token: str | None = TOKEN) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        service = service or service_of(raw)
        status, body = http(f"{self.worker.url}/api/dvcqg/{service}", data=raw, timeout=30, headers=headers)
        answer = json.loads(body)
        if answer["error_code"] not in ("-2", "-4"):  # refused before the body was read: never recorded
            self.sent.append((raw, service))
        return status, answer

    def forward(self, bodies: list[bytes], with_service_header: bool = True) -> None:
        for i, raw in enumerate(bodies):
            service = service_of(raw) if with_service_header and i % 2 == 0 else None
            headers = [("service", service.encode())] if service else []
            self.producer.send(self.settings.sync, key=None, value=raw, headers=headers)
            self.sent.append((raw, service))
        self.producer.flush(timeout=30)

    def get(self, path: str) -> tuple[int, bytes]:
        return http(self.worker.url + path, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"})

    def figures_match(self, oracle) -> bool:
        for p, want in oracle.items():
            status, body = self.get(f"/figures?period={p}")
            got = json.loads(body) if status == 200 else {}
            if got.get("units") != want["units"] or got.get("provinces") != want["provinces"]:
                return False
        return True

    def wait_equal(self, oracle, timeout=120) -> None:
        try:
            wait_for(lambda: self.figures_match(oracle), timeout=timeout, interval=1.0, what="figures = oracle")
        except TimeoutError:
            got = json.loads(self.get(f"/figures?period={PERIODS[0]}")[1])
            want = oracle[PERIODS[0]]
            diff = {u: (got["units"].get(u, {}).get("counts"), b["counts"]) for u, b in want["units"].items()
                    if got["units"].get(u, {}).get("counts") != b["counts"]}
            raise AssertionError(f"figures differ from the oracle: {diff}") from None

    def dead_letters(self, at_least: int, timeout: float = 60) -> list:
        consumer = KafkaConsumer(self.settings.dlq, bootstrap_servers=self.bootstrap, group_id=None,
                                 auto_offset_reset="earliest", consumer_timeout_ms=1500)
        seen = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                seen = [m for m in consumer] if not seen else seen + [m for m in consumer]
                if len(seen) >= at_least:
                    break
        finally:
            consumer.close()
        return seen

    def sync_topic_consumed(self) -> bool:
        """Whether the worker's group has committed every record of ``dvcqg-sync``: all of it was handled."""
        # A consumer that names the group but subscribes to nothing reads its commits without joining it.
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.settings.app_id,
                                 enable_auto_commit=False)
        try:
            tps = [TopicPartition(self.settings.sync, p) for p in range(4)]
            ends = consumer.end_offsets(tps)
            return all((consumer.committed(tp) or 0) >= end for tp, end in ends.items())
        finally:
            consumer.close(autocommit=False)

    def close(self) -> None:
        self.producer.close()
        for w in self.workers:
            w.stop()


@pytest.fixture
def sync(kafka_bootstrap, topic_prefix, tmp_path, request):
    s = Sync(kafka_bootstrap, topic_prefix, tmp_path)
    yield s
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        for w in s.workers:
            print(f"--- {w.log_path.name}\n{w.log_tail()}")
    s.close()


def post_all(sync: Sync, bodies: list[bytes]) -> list[dict]:
    answers = []
    for raw in bodies:
        status, answer = sync.post(raw)
        assert (status == 200) == (answer["error_code"] == "0"), (status, answer)
        answers.append(answer)
    return answers


def test_bodies_over_http_and_the_topic_give_the_oracle_figures_before_and_after_kill_9(sync, oracle):
    w = sync.start()
    assert sync.post(CORPUS[0], token=None)[1]["error_code"] == "-4"
    assert sync.post(CORPUS[0], service="LayThuTuc")[1]["error_code"] == "-2"

    # Half the corpus over HTTP, the other half (and some repeats) over the topic; the edge cases over both.
    answers = post_all(sync, CORPUS[0::2])
    assert all(a["error_code"] == "0" and a["rejected"] == [] for a in answers)
    assert sum(a["events"] for a in answers) > 0
    sync.forward(CORPUS[1::2] + CORPUS[0:6])
    edge = post_all(sync, EDGE)
    for n, (want, answer) in enumerate(zip(EDGE_EXPECTED.values(), edge), 1):
        if isinstance(want, str) or not want[0]:
            assert answer["error_code"] == "-1", (n, answer)
        else:
            assert answer["error_code"] == "0" and [(r["index"], r["reason"]) for r in answer["rejected"]] == want[1]
    sync.forward(EDGE, with_service_header=False)
    wait_for(sync.sync_topic_consumed, timeout=60, what="dvcqg-sync read to its end")
    sync.wait_equal(oracle)
    first = sync.dead_letters(2 * EDGE_DEAD_LETTERS)
    assert len(first) == 2 * EDGE_DEAD_LETTERS
    # The worker's sync counters: every body and record of both paths, by service and outcome.
    want = sync_counts(sync.sent)
    assert {k[2] for k in want if k[0] == "bodies"} == {"ok", "partial", "refused"}
    assert want["records", "DongBoHoSoMC", "refused"] and want["records", "CapNhatTienDoHoSoMC", "accepted"]
    assert scraped_sync_counts(w) == want

    # A crash with sync records in flight, a restart on the same data, everything again over both paths.
    sync.forward(CORPUS)
    w.kill9()
    sync.start()
    assert all(a["error_code"] == "0" for a in post_all(sync, CORPUS))
    post_all(sync, EDGE)
    sync.forward(CORPUS + EDGE)
    wait_for(sync.sync_topic_consumed, timeout=90, what="dvcqg-sync read to its end after the restart")
    sync.wait_equal(oracle)
    dlq = sync.dead_letters(4 * EDGE_DEAD_LETTERS)
    assert len(dlq) >= 4 * EDGE_DEAD_LETTERS  # at least once: a record read again after the crash may add copies

    reasons = {r for want in EDGE_EXPECTED.values() for r in ([want] if isinstance(want, str) else
                                                               [x[1] for x in want[1]])}
    pii = {v for body in _all_bodies() for v in _pii_values(body)}
    for m in dlq:
        headers = {k: v.decode() for k, v in m.headers}
        assert headers["x-reason"] in reasons and headers["x-redacted"] == "dvcqg-allow-list"
        assert "x-source-http" in headers or "x-source-topic" in headers
        blob = (m.value or b"").decode() + json.dumps(headers, ensure_ascii=False)
        assert not [v for v in pii if v in blob]
    by_origin = {"http": 0, "topic": 0}
    for m in first:
        by_origin["http" if any(k == "x-source-http" for k, _ in m.headers) else "topic"] += 1
    assert by_origin == {"http": EDGE_DEAD_LETTERS, "topic": EDGE_DEAD_LETTERS}
    log = "\n".join(wp.log_path.read_text(errors="replace") for wp in sync.workers[-1:])
    assert not [v for v in pii if v in log]


def test_import_publish_sends_the_events_and_dead_letters_bad_records_redacted(kafka_bootstrap, topic_prefix):
    settings = WorkerSettings(broker=kafka_bootstrap, topic_prefix=topic_prefix, app_id=topic_prefix + "app")
    ensure_topics(kafka_bootstrap, settings)
    out = subprocess.run([sys.executable, "-m", "streams.tools.cli", "import", "dvcqg", str(SAMPLES / "edge-cases.jsonl"),
                          "--publish", "--broker", kafka_bootstrap, "--topic", settings.events,
                          "--dlq-topic", settings.dlq, "--quiet"], capture_output=True, timeout=120)
    assert out.returncode == 1 and out.stdout == b"", out.stderr.decode()

    def read(topic: str, at_least: int) -> list:
        consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=None,
                                 auto_offset_reset="earliest", consumer_timeout_ms=1500)
        got: list = []
        deadline = time.monotonic() + 30
        while len(got) < at_least and time.monotonic() < deadline:
            got += list(consumer)
        consumer.close()
        return got

    good = sum(w[0] for w in EDGE_EXPECTED.values() if not isinstance(w, str))
    events = read(settings.events, good)
    assert sorted(m.key for m in events) == sorted(json.loads(m.value)["subject"].encode() for m in events)
    assert len(events) == good
    dlq = read(settings.dlq, EDGE_DEAD_LETTERS)
    assert len(dlq) == EDGE_DEAD_LETTERS
    pii = {v for body in _all_bodies() for v in _pii_values(body)}
    for m in dlq:
        headers = {k: v.decode() for k, v in m.headers}
        assert headers["x-redacted"] == "dvcqg-allow-list" and headers["x-line"]
        assert not [v for v in pii if v in m.value.decode() + json.dumps(headers, ensure_ascii=False)]
