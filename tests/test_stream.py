"""The worker on the real Kafka-protocol broker equals the batch oracle (`onestop score`) exactly.

Each test starts real worker processes (``python -m streams.worker``) with the product's processor, a frozen or
file-driven clock, and its own topics; events go through the public publisher client.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import defaultdict
from datetime import datetime

import pytest
from kafka import KafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from models.calendar import WorkCalendar
from models.dossier import Context
from models.figures import replay, score_document
from streams.tools.publisher import DossierEventPublisher
from streams.runtime.settings import WorkerSettings
from streams.runtime.topics import ensure_topics
from tests.builders import SAMPLE_AT, raw, received, sample_lines
from tests.procs import WorkerProcess, wait_for

pytestmark = pytest.mark.broker
NOW = datetime.fromisoformat(SAMPLE_AT)
PERIODS = ("month:2026-03", "month:2026-02", "quarter:2026-Q1", "year:2026")


@pytest.fixture(scope="module")
def oracle():
    ctx = Context(now=NOW, calendar=WorkCalendar.default())
    rep = replay(list(enumerate(sample_lines(), 1)), ctx)
    return {p: score_document(rep, p, ctx) for p in PERIODS}


class Deployment:
    """Topics, a clock file and worker processes of one test, all on loopback and all stopped at the end."""

    def __init__(self, bootstrap, prefix, tmp_path, now=NOW):
        self.bootstrap, self.prefix, self.tmp = bootstrap, prefix, tmp_path
        self.clock = tmp_path / "clock"
        self.clock.write_text(now.isoformat())
        self.settings = WorkerSettings(broker=bootstrap, topic_prefix=prefix, app_id=prefix + "app", partitions=4)
        ensure_topics(bootstrap, self.settings)
        self.workers: list[WorkerProcess] = []
        self.publisher = DossierEventPublisher(bootstrap, self.settings.events, dlq_topic=self.settings.dlq)

    def worker(self, name="w1", port=None, log_level="warn", env=None) -> WorkerProcess:
        w = WorkerProcess(bootstrap=self.bootstrap, data_dir=self.tmp / name, log_path=self.tmp / f"{name}.log",
                          web_port=port, env={"ONESTOP_TOPIC_PREFIX": self.prefix, "ONESTOP_APP_ID": self.prefix + "app",
                                              "ONESTOP_PARTITIONS": "4", "ONESTOP_CLOCK_FILE": str(self.clock),
                                              "ONESTOP_CLOCK_INTERVAL": "0.5", "ONESTOP_LOG_LEVEL": log_level,
                                              **(env or {})})
        self.workers.append(w)
        w.start()
        w.wait_ready(timeout=90)
        return w

    def publish(self, lines):
        for line in lines:
            self.publisher.publish_raw(line, _subject(line) or b"unreadable")
        self.publisher.flush()

    def close(self):
        self.publisher.close()
        for w in self.workers:
            w.stop()


def _subject(line: bytes) -> bytes | None:
    try:
        return json.loads(line)["subject"].encode()
    except (ValueError, KeyError, TypeError):
        return None


@pytest.fixture
def deployment(kafka_bootstrap, topic_prefix, tmp_path, request):
    d = Deployment(kafka_bootstrap, topic_prefix, tmp_path)
    yield d
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        for w in d.workers:
            print(f"--- {w.log_path.name}\n{w.log_tail()}")
    d.close()


def figures_match(worker, oracle, periods=PERIODS):
    """Falsy until every unit and province of every period equals the oracle; then True."""
    for p in periods:
        got = worker.get_json(f"/figures?period={p}")
        if got["units"] != oracle[p]["units"] or got["provinces"] != oracle[p]["provinces"]:
            return False
    return True


def wait_equal(worker, oracle, timeout=120):
    try:
        wait_for(lambda: figures_match(worker, oracle), timeout=timeout, interval=1.0, what="figures equal to the oracle")
    except TimeoutError:
        got = worker.get_json("/figures?period=month:2026-03")
        want = oracle["month:2026-03"]
        diff = {u: (got["units"].get(u, {}).get("counts"), want["units"][u]["counts"])
                for u in want["units"] if got["units"].get(u, {}).get("counts") != want["units"][u]["counts"]}
        raise AssertionError(f"figures differ from the oracle; first units: {dict(list(diff.items())[:3])}")


def test_published_sample_gives_exactly_the_oracle_figures(deployment, oracle):
    w = deployment.worker()
    deployment.publish(sample_lines())
    wait_equal(w, oracle)
    overdue_units = [u for u, b in oracle["month:2026-03"]["units"].items() if b["counts"]["open_overdue"]]
    if overdue_units:
        unit = overdue_units[0]
        listing = w.get_json(f"/api/units/{unit}/dossiers?state=overdue")
        assert listing["total"] == oracle["month:2026-03"]["units"][unit]["counts"]["open_overdue"]
        assert all(i["overdue_working_hours"] > 0 for i in listing["items"])
        status, csv_body = w.get(f"/api/units/{unit}/dossiers.csv?state=overdue")
        assert status == 200 and csv_body.decode("utf-8-sig").count("\r\n") == listing["total"] + 1


def test_duplicates_and_reordering_leave_the_figures_unchanged(deployment, oracle):
    lines = sample_lines()
    rng = random.Random(11)
    by_dossier = defaultdict(list)
    for line in lines:
        by_dossier[_subject(line)].append(line)
    noisy = []
    for events in by_dossier.values():  # every dossier's events reversed, 10 % of lines sent twice
        events = events[::-1]
        noisy.extend(events + [e for e in events if rng.random() < 0.1])
    w = deployment.worker()
    deployment.publish(noisy)
    wait_equal(w, oracle)
    metrics = w.metrics_text()
    dup = sum(s.value for f in text_string_to_metric_families(metrics) for s in f.samples
              if s.name == "onestop_events_duplicate_total")
    assert dup == len(noisy) - len(lines)


def test_kill_9_mid_stream_and_restart_counts_nothing_twice(deployment, oracle):
    lines = sample_lines()
    w = deployment.worker(port=None)
    port = w.web_port
    deployment.publish(lines[: len(lines) // 2])
    wait_for(lambda: w.get_json("/figures?period=year:2026")["units"], timeout=60, what="first figures")
    w.kill9()
    deployment.publish(lines[len(lines) // 2:])
    w2 = deployment.worker(name="w1", port=port)  # same data dir and address, as a supervisor would restart it
    wait_equal(w2, oracle)


def test_a_restart_counts_dossiers_from_their_stored_rows(deployment, oracle):
    """docs/reliability.md 4.15 and 4.16 end to end: every record applied, kill -9, and the restarted worker's
    rebuild counts the dossiers that ended over an hour before the clock, and the open ones whose rows still hold,
    from the rows stored with them (the others it evaluates), and shows exactly the oracle's figures."""
    w = deployment.worker(port=None)
    port = w.web_port
    deployment.publish(sample_lines())
    wait_equal(w, oracle)  # every state written, ended dossiers with their rows
    w.kill9()
    w2 = deployment.worker(name="w1", port=port, log_level="info")
    wait_equal(w2, oracle)
    rebuilt = [tuple(map(int, r)) for r in re.findall(
        r"rebuilt from (\d+) dossiers, (\d+) ended and (\d+) open ones of them from their stored rows",
        w2.log_path.read_text(errors="replace"))]
    dossiers, ended, standing = (sum(r[i] for r in rebuilt) for i in range(3))
    assert rebuilt and ended > 0 and standing > 0 and ended + standing < dossiers, rebuilt


def _indicator_terms(metrics_texts, period="month"):
    total = defaultdict(float)
    for text in metrics_texts:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name in ("onestop_indicator_numerator", "onestop_indicator_denominator") and s.labels.get("period") == period:
                    total[(s.name, s.labels["unit"], s.labels["indicator"])] += s.value
    return {k: v for k, v in total.items() if v}


def test_a_second_worker_joins_and_the_sum_of_both_equals_the_oracle(deployment, oracle):
    w1 = deployment.worker("w1")
    deployment.publish(sample_lines())
    wait_equal(w1, oracle)
    w2 = deployment.worker("w2")

    def split_and_complete():
        p1, p2 = w1.get_json("/ready")["partitions"], w2.get_json("/ready")["partitions"]
        if not p1 or not p2:
            return False
        terms = _indicator_terms([w1.metrics_text(), w2.metrics_text()])
        return {k: v for k, v in terms.items() if (k[1], k[2]) not in not_applicable}

    want, not_applicable = {}, set()
    for unit, block in oracle["month:2026-03"]["units"].items():
        for iid, ind in block["indicators"].items():
            if not ind["applicable"]:
                not_applicable.add((unit, iid))  # e.g. 4.6 for a commune: exposed raw, scored by no one
            elif ind["computable"] and ind["denominator"] is not None:
                for name, v in (("onestop_indicator_numerator", ind["numerator"]), ("onestop_indicator_denominator", ind["denominator"])):
                    if v:
                        want[(name, unit, iid)] = float(v)
    got = wait_for(lambda: (t := split_and_complete()) and t == want and t, timeout=120, interval=1.0,
                   what="both workers' metrics summing to the oracle")
    assert got == want


def test_a_deadline_passing_with_no_event_shows_overdue_and_raises_the_alert(deployment):
    code, unit = "T01.S09-20260310-00001", "T01.S09"
    deployment.clock.write_text("2026-03-10T09:00:00+07:00")
    w = deployment.worker()
    deployment.publish([raw("received", "2026-03-10 08:30", received("2026-03-10 08:30", due="2026-03-10 10:30", unit=unit),
                            code=code)])

    def open_state(state):
        for fam in text_string_to_metric_families(w.metrics_text()):
            for s in fam.samples:
                if s.name == "onestop_dossiers_open" and s.labels.get("unit") == unit and s.labels.get("state") == state:
                    return s.value
        return 0

    wait_for(lambda: open_state("due_soon") == 1, timeout=60, what="dossier due soon")
    deployment.clock.write_text("2026-03-10T10:31:00+07:00")
    wait_for(lambda: open_state("overdue") == 1, timeout=30, what="dossier overdue without any new event")
    consumer = KafkaConsumer(deployment.settings.alerts, bootstrap_servers=deployment.bootstrap, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=2000, isolation_level="read_committed")
    kinds = set()
    deadline = time.monotonic() + 30
    while "overdue" not in kinds and time.monotonic() < deadline:
        kinds |= {json.loads(m.value)["kind"] for m in consumer if json.loads(m.value)["dossier_code"] == code}
    consumer.close()
    assert {"due_soon", "overdue", "apology_missing"} <= kinds
    listing = w.get_json(f"/api/units/{unit}/dossiers?state=overdue")
    assert [i["dossier_code"] for i in listing["items"]] == [code]


class _AlertLog:
    """Everything on the alerts topic, read as it comes: kinds per dossier, in order."""

    def __init__(self, deployment):
        self.consumer = KafkaConsumer(deployment.settings.alerts, bootstrap_servers=deployment.bootstrap,
                                      group_id=None, auto_offset_reset="earliest", consumer_timeout_ms=500,
                                      isolation_level="read_committed")
        self.kinds: dict[str, list[str]] = {}

    def wait(self, code: str, done, timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while not done(self.kinds.get(code, [])) and time.monotonic() < deadline:
            for m in self.consumer:
                alert = json.loads(m.value)
                self.kinds.setdefault(alert["dossier_code"], []).append(alert["kind"])
        return self.kinds.get(code, [])

    def close(self):
        self.consumer.close()


@pytest.mark.parametrize("guarantee,times", [("exactly_once", 1), ("at_least_once", 2)])
def test_a_restarted_worker_announces_the_alerts_it_found_in_its_table_and_new_deadlines(deployment, guarantee, times):
    """Exactly once (the default): what was announced is stored with the dossier, in the transaction of the alert,
    so the restarted worker's rebuild finds the open dossier's alerts announced and announces only the new
    deadline's. At least once: a restarted worker does not know what its predecessor announced, so the rebuild
    announces the open dossier's active alerts again (ids are stable, consumers de-duplicate). Either way the
    rebuild's announcements come a chunk per clock tick after the tick's own deadlines, so a dossier crossing its
    deadline then is announced too."""
    env = {"ONESTOP_PROCESSING_GUARANTEE": guarantee}
    old, new, unit = "T01.S09-20260310-00002", "T01.S09-20260310-00003", "T01.S09"
    deployment.clock.write_text("2026-03-10T09:00:00+07:00")
    w = deployment.worker(env=env)
    deployment.publish([raw("received", "2026-03-10 08:30", received("2026-03-10 08:30", due="2026-03-10 10:30", unit=unit),
                            code=old),
                        raw("received", "2026-03-10 08:40", received("2026-03-10 08:40", due="2026-03-10 11:30", unit=unit),
                            code=new)])

    def open_dossiers():
        return sum(s.value for fam in text_string_to_metric_families(w.metrics_text()) for s in fam.samples
                   if s.name == "onestop_dossiers_open" and s.labels.get("unit") == unit)

    wait_for(lambda: open_dossiers() == 2, timeout=60, what="both dossiers received")  # before the clock moves
    deployment.clock.write_text("2026-03-10T10:31:00+07:00")
    alerts = _AlertLog(deployment)
    try:
        assert "overdue" in alerts.wait(old, lambda k: "overdue" in k and "apology_missing" in k)
        port = w.web_port
        w.stop()
        deployment.worker(name="w1", port=port, env=env)  # same data dir: tables kept, the worker's memory gone
        deployment.clock.write_text("2026-03-10T11:31:00+07:00")
        assert "overdue" in alerts.wait(new, lambda k: "overdue" in k)
        if times == 1:  # give a re-announcement every chance to show up: the rebuild's backlog goes out in the ticks
            time.sleep(3.0)
        again = alerts.wait(old, lambda k: k.count("overdue") == times and k.count("apology_missing") == times)
        assert again.count("overdue") == times and again.count("apology_missing") == times, again
        assert alerts.wait(new, lambda k: False, timeout=1).count("overdue") == 1
    finally:
        alerts.close()


def test_malformed_records_go_to_the_dead_letter_topic_and_processing_goes_on(deployment):
    w = deployment.worker()
    good = sample_lines()[:50]
    bad = [b"{not json", raw("received", "2026-01-06 08:00", {"channel": "fax"}, code="BAD-1"),
           raw("nonsense", "2026-01-06 08:00", {}, code="BAD-2").replace(b"dossier.nonsense", b"dossier.nope")]
    deployment.publish(bad[:1] + good[:25] + bad[1:] + good[25:])
    consumer = KafkaConsumer(deployment.settings.dlq, bootstrap_servers=deployment.bootstrap, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=2000, isolation_level="read_committed")
    seen = []
    deadline = time.monotonic() + 60
    while len(seen) < 3 and time.monotonic() < deadline:
        seen += [(dict(m.headers)["x-reason"].decode(), m.value) for m in consumer]
    consumer.close()
    assert sorted(r for r, _ in seen) == ["bad_json", "schema", "unknown_type"]
    assert {v for _, v in seen} == set(bad)
    ctx = Context(now=NOW, calendar=WorkCalendar.default())
    want = score_document(replay(list(enumerate(good, 1)), ctx), "year:2026", ctx)
    wait_for(lambda: w.get_json("/figures?period=year:2026")["units"] == want["units"], timeout=60,
             what="valid events around the bad ones counted")


def test_a_changelog_that_lost_acknowledged_records_is_restored_from_not_crashed_on(deployment, oracle):
    """The broker loses changelog records it had acknowledged (here: the whole changelog and the group's offsets,
    as after an unclean broker recovery). The local store is then ahead of the changelog; Faust alone would stop
    the worker with ConsistencyError at every start. The worker drops that local copy, restores from the changelog,
    processes the uncommitted source records again, and ends exactly on the oracle's figures."""
    from kafka import KafkaAdminClient

    w = deployment.worker()
    port = w.web_port
    deployment.publish(sample_lines())
    wait_equal(w, oracle)
    w.stop()
    admin = KafkaAdminClient(bootstrap_servers=deployment.bootstrap)
    try:
        admin.delete_topics([deployment.settings.changelog])
        wait_for(lambda: deployment.settings.changelog not in admin.list_topics(), timeout=30, what="changelog gone")
        admin.delete_groups([deployment.settings.app_id])
    finally:
        admin.close()
    ensure_topics(deployment.bootstrap, deployment.settings)
    w2 = deployment.worker(name="w1", port=port)  # same data dir: the local store still holds every dossier
    wait_equal(w2, oracle)
    assert w2.alive()
    log = w2.log_path.read_text(errors="replace")
    assert "the broker lost acknowledged records" in log and "ConsistencyError" not in log


def test_a_partition_kept_through_a_rebalance_is_recounted_when_its_table_is_restored(deployment, oracle):
    """The broker loses the changelog while the worker runs (as the embedded broker did across a restart). At the
    next rebalance the worker keeps some partitions, finds their local store ahead of the changelog and restores
    them from it. Their tallies must follow the table: kept with the old counts, they were moved by every later
    event from the wrong base and the figures never equalled the oracle again. The operator's remedy for lost
    records, replaying the history, must then give exactly the oracle's figures."""
    from kafka import KafkaAdminClient

    w1 = deployment.worker()
    deployment.publish(sample_lines())
    wait_equal(w1, oracle)
    admin = KafkaAdminClient(bootstrap_servers=deployment.bootstrap)
    try:
        admin.delete_topics([deployment.settings.changelog])
        wait_for(lambda: deployment.settings.changelog not in admin.list_topics(), timeout=30, what="changelog gone")
    finally:
        admin.close()
    ensure_topics(deployment.bootstrap, deployment.settings)

    def ready_partitions(w) -> list | None:
        status, body = w.get("/ready")
        return json.loads(body)["partitions"] if status == 200 else None

    w2 = deployment.worker(name="w2")  # a rebalance in which w1 keeps two of its four partitions
    wait_for(lambda: len(ready_partitions(w1) or ()) == 2 and len(ready_partitions(w2) or ()) == 2, timeout=90,
             interval=0.5, what="two partitions each")
    w2.stop()
    wait_for(lambda: ready_partitions(w1) == [0, 1, 2, 3], timeout=90, interval=0.5,
             what="w1 owning every partition again")
    deployment.publish(sample_lines())
    wait_equal(w1, oracle)
    log = w1.log_path.read_text(errors="replace")
    assert "the broker lost acknowledged records" in log


def test_a_step_published_before_its_reception_is_held_and_shown_until_the_reception_arrives(deployment):
    """A step of a dossier never received is neither refused nor counted in any figure; operators see it in
    onestop_dossiers_held, through a restart (the count is rebuilt from the table), until the reception comes."""
    from tests.builders import processed_data

    def held(w) -> float:
        return sum(s.value for f in text_string_to_metric_families(w.metrics_text()) for s in f.samples
                   if s.name == "onestop_dossiers_held")

    w = deployment.worker()
    code = "T99.HELD-20260303-00001"
    deployment.publish([raw("processed", "2026-03-03 09:00", processed_data("2026-03-03 09:00"), code=code)])
    wait_for(lambda: held(w) == 1, timeout=30, interval=0.5, what="one held dossier")
    port = w.web_port
    w.stop()
    w2 = deployment.worker(name="w1", port=port)
    assert held(w2) == 1  # rebuilt from the table
    deployment.publish([raw("received", "2026-03-02 08:00", received("2026-03-02 08:00", due="2026-03-09 08:00"),
                            code=code)])
    wait_for(lambda: held(w2) == 0, timeout=30, interval=0.5, what="no held dossier once the reception arrived")
