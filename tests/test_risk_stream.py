"""Points at risk from the worker on the real broker equal ``onestop at-risk`` of the same events at the same instant.

One worker process (``python -m streams.worker``) with the product's processor and a file clock frozen at the
sample's last instant; the oracle is ``models.at_risk`` run in process on the same event file.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from models.at_risk import at_risk_from_replay, forecast_from_replay
from models.calendar import WorkCalendar
from models.dossier import Context
from models.figures import replay, score_document
from streams.runtime.settings import WorkerSettings
from streams.runtime.topics import ensure_topics
from streams.tools.publisher import DossierEventPublisher
from tests.builders import ROOT, SAMPLE_AT, at_risk_counts, sample_lines
from tests.procs import WorkerProcess, wait_for

pytestmark = pytest.mark.broker
NOW = datetime.fromisoformat(SAMPLE_AT)
PERIOD = "month:2026-03"
OFFICIAL = ROOT / "samples" / "reconcile" / "dvcqg-evaluation-2026-03.json"


@pytest.fixture(scope="module")
def oracle():
    ctx = Context(now=NOW, calendar=WorkCalendar.default())
    rep = replay(list(enumerate(sample_lines(), 1)), ctx)
    return {"figures": score_document(rep, PERIOD, ctx), "records": at_risk_from_replay(rep, ctx, PERIOD, NOW),
            "forecast": forecast_from_replay(rep, ctx, PERIOD, NOW)}


@pytest.fixture
def worker(kafka_bootstrap, topic_prefix, tmp_path, request):
    clock = tmp_path / "clock"
    clock.write_text(NOW.isoformat())
    settings = WorkerSettings(broker=kafka_bootstrap, topic_prefix=topic_prefix, app_id=topic_prefix + "app",
                              partitions=4)
    ensure_topics(kafka_bootstrap, settings)
    w = WorkerProcess(bootstrap=kafka_bootstrap, data_dir=tmp_path / "w1", log_path=tmp_path / "w1.log",
                      env={"ONESTOP_TOPIC_PREFIX": topic_prefix, "ONESTOP_APP_ID": topic_prefix + "app",
                           "ONESTOP_PARTITIONS": "4", "ONESTOP_CLOCK_FILE": str(clock),
                           "ONESTOP_CLOCK_INTERVAL": "0.5", "ONESTOP_LOG_LEVEL": "warn",
                           "ONESTOP_OFFICIAL_FIGURES": str(OFFICIAL)})
    publisher = DossierEventPublisher(kafka_bootstrap, settings.events, dlq_topic=settings.dlq)
    w.start()
    try:
        w.wait_ready(timeout=90)
        for line in sample_lines():
            publisher.publish_raw(line, json.loads(line)["subject"].encode())
        publisher.flush()
        yield w
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(f"--- {w.log_path.name}\n{w.log_tail()}")
        publisher.close()
        w.stop()


def at_risk_gauges(text: str) -> dict[tuple[str, str, str], float]:
    return {(s.labels["unit"], s.labels["indicator"], s.labels["horizon"]): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == "onestop_dossiers_at_risk" and s.value}


def test_worker_at_risk_equals_the_batch_oracle(worker, oracle):
    want = oracle["figures"]
    wait_for(lambda: worker.get_json(f"/figures?period={PERIOD}")["units"] == want["units"], timeout=120,
             interval=1.0, what="figures equal to the oracle")
    records = oracle["records"]
    assert records and any(r["due_within_next_working_day"] for r in records)

    # GET /api/units/<unit>/at-risk, every unit: exactly the oracle's records, in its order
    for unit in want["units"]:
        got = worker.get_json(f"/api/units/{unit}/at-risk?page_size=1000")
        mine = [r for r in records if r["unit"] == unit]
        assert got["items"] == mine, unit
        assert got["total"] == len(mine) and got["at"] == NOW.isoformat() and got["period"] == PERIOD
        assert got["sums"]["dossiers"] == len(mine)

    unit = max(want["units"], key=lambda u: sum(r["unit"] == u for r in records))
    mine = [r for r in records if r["unit"] == unit]
    page = worker.get_json(f"/api/units/{unit}/at-risk?page=2&page_size=2")
    assert page["items"] == mine[2:4] and page["total"] == len(mine)
    status, body = worker.get(f"/api/units/{unit}/at-risk.csv")
    assert status == 200 and body.startswith("\ufeff".encode())
    text = body.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("Mã hồ sơ,Mã đơn vị") and text.count("\r\n") == len(mine) + 1
    status, body = worker.get(f"/api/units/{unit}/at-risk.csv?lang=en")
    assert body.decode("utf-8-sig").startswith("Dossier code,Unit code")
    assert worker.get(f"/api/units/{unit}/at-risk?period=month:2026-13")[0] == 400

    # /figures: the forecast block equals the oracle's
    forecast = worker.get_json(f"/figures?period={PERIOD}")["forecast"]
    bare = worker.get_json(f"/figures?period={PERIOD}&forecast=0")  # the figures alone, no scan of the table
    assert "forecast" not in bare and bare["units"] == want["units"]
    status, body = worker.get(f"/figures?period={PERIOD}&forecast=maybe")
    assert status == 400 and "forecast" in json.loads(body)["error"]
    assert forecast["units"] == oracle["forecast"]["units"]
    assert forecast["provinces"] == oracle["forecast"]["provinces"]

    # /metrics: dossier counts at risk per unit, indicator and horizon equal the oracle's records
    expected = at_risk_counts(records)
    wait_for(lambda: at_risk_gauges(worker.metrics_text()) == expected, timeout=60, interval=1.0,
             what="onestop_dossiers_at_risk equal to the oracle's counts")
    families = {f.name: f for f in text_string_to_metric_families(worker.metrics_text())}
    late = {(s.labels["unit"], s.labels["indicator"], s.labels["scenario"]): s.value
            for s in families["onestop_forecast_late_dossiers"].samples}
    for u, block in oracle["forecast"]["units"].items():
        for scenario in ("due_soon_late", "current_rate"):
            removed = block[scenario]["numerator_removed"]
            assert "2.1" in removed and removed["2.1"] == pytest.approx(block[scenario]["late_added"])
            for ind, n in removed.items():
                assert late[(u, ind, scenario)] == pytest.approx(n)
    official = {(s.labels["unit"], s.labels["indicator"], s.labels["period"]): s.value
                for s in families["onestop_official_denominator"].samples}
    assert official[("T99.S02", "2.1", "month")] == 23  # the portal's, beside our 20 (never overwritten)
    assert families["onestop_official_figures_loaded_timestamp_seconds"].samples[0].value > 0
    assert families["onestop_at_risk_scan_timestamp_seconds"].samples[0].value == NOW.timestamp()  # worker's now
    assert families["onestop_at_risk_scan_duration_seconds"].samples[0].value > 0
