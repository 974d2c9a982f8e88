"""End to end on the real thing: broker -> the product's stream worker -> real Prometheus with the generated rules
-> real Alertmanager -> a loopback webhook.

The worker runs the product's processor on the bundled sample province (2,131 events) with a frozen clock, then the
test moves its clock one working day on. Expected values come from the batch path (``models`` alone: replay,
tallies, ``score_unit``) at the same instant, so every recording rule is compared with the Python figures,
including each 766 indicator score. Rules and Alertmanager run from test copies generated with a test
configuration (1 s evaluation, 8 s/4 s burn windows, no ``for`` delays, short silence windows, no notification
hours, because neither Prometheus' nor Alertmanager's clock can be frozen); dashboards are the committed files.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer

from models.calendar import WorkCalendar
from models.config import DEFAULT_CONFIG as DOMAIN_CONFIG
from models.dossier import Context
from models.figures import SHARES, iter_lines, replay, tallies_of, unit_meta_of
from models.index766 import load_catalogue, score_unit, sum_tallies
from models.tally import LIVE, parse_period, period_key
from streams.tools.broker import free_port
from monitoring.alertmanager import alertmanager_config
from monitoring.config import DEFAULT_CONFIG, replace
from monitoring.dashboards import all_dashboards, panel_queries
from monitoring.generate import REPO, committed_years, dump_yaml
from monitoring.alerts import alert_groups
from monitoring.rules import recording_groups, tally_keys
from monitoring.worktime import calendar_facts
from tests.loopback import AlertWebhook, LoopbackServer, QuietHandler
from tests.procs import WorkerProcess, http, wait_for

pytestmark = pytest.mark.broker

SAMPLE = REPO / "samples" / "sample-events.jsonl"
T0 = "2026-03-10T16:00:00+07:00"  # a Tuesday, in working time
T1 = "2026-03-11T16:00:00+07:00"  # one working day later: some dossiers fall overdue
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

#: Recorded unit-level series per unit (alerts/README.md, "Cardinality budget").
RULE_SERIES_PER_UNIT_BUDGET = 340

#: Families of the metric contract (docs/metrics.md) whose rules need them; a worker that does not export one yet
#: is completed by a loopback target serving it for the same units, so every rule and panel still has to show data.
CONTRACT_FAMILIES = ("onestop_unit_info", "onestop_dossiers_at_risk", "onestop_forecast_late_dossiers",
                     "onestop_official_numerator", "onestop_official_denominator")


class _ContractStandIn(LoopbackServer):
    """Serves, in the text format, the contract families the worker lacks for its units (empty until ``fill``)."""

    def __init__(self) -> None:
        page = self.page = [b""]

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = page[0]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)

    def fill(self, worker_metrics: str) -> list[str]:
        """Serve what ``worker_metrics`` (the worker's exposition) lacks; returns the families served."""
        missing = [f for f in CONTRACT_FAMILIES if not re.search(rf"^{f}{{", worker_metrics, re.M)]
        units: dict[str, tuple[str, str]] = {}
        for m in re.finditer(r"^onestop_dossiers_population\{([^}]*)\}", worker_metrics, re.M):
            lab = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            units[lab["unit"]] = (lab.get("province", ""), lab.get("level", ""))
        lines = []
        for family in missing:
            lines.append(f"# TYPE {family} gauge")
            for unit, (province, level) in sorted(units.items()):
                where = f'unit="{unit}",province="{province}",level="{level}"'
                if family == "onestop_unit_info":
                    lines.append(f'{family}{{{where},name="Đơn vị {unit}",name_en="Unit {unit}",parent="{province}"}} 1')
                elif family == "onestop_dossiers_at_risk":
                    lines += [f'{family}{{{where},indicator="{i}",horizon="{h}"}} 1'
                              for i in ("2.1", "5.4") for h in ("all", "next_working_day")]
                elif family == "onestop_forecast_late_dossiers":
                    lines += [f'{family}{{{where},indicator="{i}",scenario="{sc}"}} 1'
                              for i in ("2.1", "5.4") for sc in ("due_soon_late", "current_rate")]
                else:
                    lines.append(f'{family}{{unit="{unit}",indicator="2.1",period="month"}} 1')
        self.page[0] = ("\n".join(lines) + "\n").encode()
        return missing



TEST_CONFIG = replace(
    DEFAULT_CONFIG, evaluation_interval="1s", overdue_for="0s", due_soon_for="0s", on_time_for="0s",
    share_for="0s", worker_down_for="0s", due_soon_threshold=1, late_without_apology_window="5s",
    burn_windows=[{"long": "8s", "short": "4s", "factor": 6, "severity": "critical", "for": "0s"}],
    source_silence_working_hours=0.001, silence_windows=["5s", "10s"],
)


# ------------------------------------------------------------------------------------------------ processes

class _Server:
    """A Debian Prometheus or Alertmanager binary on loopback, stopped by PID."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for(self._ready, timeout=30, interval=0.1, what=f"{argv[0]} ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.proc.args[0]} exited:\n{self.log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def get(self, path: str, **params: str) -> dict:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self._log.close()


def _query(prom: _Server, expr: str) -> list[dict]:
    doc = prom.get("/api/v1/query", query=expr)
    assert doc["status"] == "success", (expr, doc)
    return doc["data"]["result"]


def _strip_time_intervals(route: dict) -> None:
    route.pop("active_time_intervals", None)
    route.pop("mute_time_intervals", None)
    for child in route.get("routes", []):
        _strip_time_intervals(child)


# ------------------------------------------------------------------------------------------------ expectations

def _expected(at: datetime) -> dict[tuple[str, tuple[tuple[str, str], ...]], float | None]:
    """(record, sorted labels) -> value from the batch path; None means "must have no sample"."""
    ctx = Context(now=at, calendar=WorkCalendar.default(), config=DOMAIN_CONFIG)
    replayed = replay(iter_lines(str(SAMPLE)), ctx)
    tallies = tallies_of(replayed.states.values(), ctx)
    meta = unit_meta_of(replayed.states.values())
    catalogue = load_catalogue()
    keys = tally_keys(catalogue)
    exp: dict[tuple[str, tuple], float | None] = {}

    def put(record: str, labels: dict[str, str], value: float | None) -> None:
        exp[(record, tuple(sorted((k, v) for k, v in labels.items() if v != "")))] = value

    def block(level: str, labels: dict[str, str], t: dict[str, float], catalogue_level: str | None) -> None:
        for key in keys:
            put(f"{level}:onestop_dossiers_{key}:sum", labels, t.get(key, 0))
        for name, (num, den) in SHARES.items():
            short = name.removesuffix("_share").removesuffix("_ratio")
            put(f"{level}:onestop_{short}:ratio", labels, t.get(num, 0) / t[den] if t.get(den) else None)
        doc = score_unit(t, catalogue_level, catalogue, parse_period(labels_period[labels["period"]])[0].date())
        for ind_id, ind in doc["indicators"].items():
            if not ind["computable"]:
                continue
            lab = {**labels, "indicator": ind_id, "group": str(ind["group"])}
            for op in ("numerator", "denominator", "ratio", "score"):
                put(f"{level}:onestop_index766_indicator:{op}", lab, ind[op] if ind["applicable"] else None)
            put(f"{level}:onestop_index766_indicator:max_points", lab,
                ind["max_points"] if ind["score"] is not None else None)
        for gid, g in doc["groups"].items():
            put(f"{level}:onestop_index766_group:score", {**labels, "group": gid}, g["score"])
            put(f"{level}:onestop_index766_group:max_points_known", {**labels, "group": gid},
                g["max_points_known"] if g["score"] is not None else None)
        put(f"{level}:onestop_index766_total:score", labels, doc["total"])
        put(f"{level}:onestop_index766_total:max_points_known", labels, doc["max_points_known"] or None)
        put(f"{level}:onestop_index766_total:estimated", labels, doc["total_estimated"])
        put(f"{level}:onestop_index766_band:number", labels, doc["band"]["number"] if doc["band"] else None)

    labels_period = {g: period_key(g, at) for g in ("month", "quarter", "year")}
    for granularity, pk in labels_period.items():
        per_unit: dict[str, dict[str, float]] = defaultdict(dict)
        for (unit, p, metric), n in tallies.items():
            if p == pk:
                per_unit[unit][metric] = n
        by_province: dict[str, list] = defaultdict(list)
        for unit, t in per_unit.items():
            m = meta.get(unit, {})
            block("unit", {"unit": unit, "province": m.get("province") or "", "level": m.get("level") or "",
                           "period": granularity}, t, m.get("level"))
            if m.get("province"):
                by_province[m["province"]].append(t)
        for province, items in by_province.items():
            block("province", {"province": province, "period": granularity}, sum_tallies(items), "province")
        block("nation", {"period": granularity}, sum_tallies(per_unit.values()), None)
    live: dict[str, dict[str, float]] = defaultdict(dict)
    for (unit, p, metric), n in tallies.items():
        if p == LIVE:
            live[unit][metric] = n
    for unit, t in live.items():
        m = meta.get(unit, {})
        for state in ("within", "due_soon", "overdue", "awaiting_supplement", "awaiting_payment"):
            put("unit:onestop_dossiers_open:sum", {"unit": unit, "province": m.get("province") or "",
                                                   "level": m.get("level") or "", "state": state},
                t.get(f"open_{state}", 0))
            put("unit:onestop_on_time:target", {"unit": unit, "province": m.get("province") or "",
                                                "level": m.get("level") or ""}, DEFAULT_CONFIG.on_time_target)
    local = at.timestamp() + 7 * 3600
    put("onestop:clock_local:seconds", {}, local)
    put("onestop:clock_local:days", {}, math.floor(local / 86400))
    put("onestop:working_day:bool", {}, 1)
    put("onestop:working_time:bool", {}, 1)
    put("onestop:calendar_covered:bool", {}, 1)
    exp["__overdue_units__"] = sorted(u for u, t in live.items() if t.get("open_overdue"))  # type: ignore[index]
    return exp


def _mismatches(prom: _Server, expected: dict) -> list[str]:
    got: dict[tuple[str, tuple], float] = {}
    for s in _query(prom, '{__name__=~"(unit|province|nation|onestop):.+"}'):
        labels = dict(s["metric"])
        name = labels.pop("__name__")
        got[(name, tuple(sorted(labels.items())))] = float(s["value"][1])
    problems = []
    for key, value in expected.items():
        if key == "__overdue_units__":
            continue
        have = got.get(key)
        if value is None:
            if have is not None:
                problems.append(f"{key}: expected no sample, got {have}")
        elif have is None or not math.isclose(have, value, rel_tol=1e-9, abs_tol=1e-9):
            problems.append(f"{key}: expected {value}, got {have}")
    return problems


# ------------------------------------------------------------------------------------------------ the test

@pytest.mark.skipif(PROMETHEUS is None or ALERTMANAGER is None,
                    reason="apt-get install prometheus prometheus-alertmanager")
def test_worker_prometheus_alertmanager_end_to_end(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    years = committed_years(REPO)
    facts = calendar_facts(TEST_CONFIG, years)
    (tmp_path / "rules.yml").write_text(dump_yaml({"groups": recording_groups(TEST_CONFIG, facts)}))
    (tmp_path / "alerts.yml").write_text(dump_yaml({"groups": alert_groups(TEST_CONFIG, facts)}))
    hook = AlertWebhook()
    am_doc = alertmanager_config(TEST_CONFIG, facts)
    for r in am_doc["receivers"]:
        r["webhook_configs"] = [{"url": f"{hook.url}/{r['name']}", "send_resolved": False}]
    am_doc["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    _strip_time_intervals(am_doc["route"])
    (tmp_path / "alertmanager.yml").write_text(dump_yaml(am_doc))

    started: list = [hook]
    worker = None
    try:
        am_port = free_port()
        am = _Server([ALERTMANAGER, f"--config.file={tmp_path / 'alertmanager.yml'}",
                      f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                      "--cluster.listen-address="], am_port, tmp_path / "alertmanager.log")
        started.append(am)

        worker = WorkerProcess(bootstrap=kafka_bootstrap, data_dir=tmp_path / "worker", log_path=tmp_path / "w.log",
                               env={"ONESTOP_TOPIC_PREFIX": topic_prefix, "ONESTOP_APP_ID": f"{topic_prefix}app",
                                    "ONESTOP_STORE": "memory", "ONESTOP_FAKE_NOW": T0, "ONESTOP_TEST_MODE": "1"})
        worker.start()
        worker.wait_ready(timeout=90)

        # The contract families the worker does not export (yet), served for its units once they are known.
        stand_in = _ContractStandIn()
        started.append(stand_in)

        prom_port = free_port()
        (tmp_path / "prometheus.yml").write_text(dump_yaml({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yml"), str(tmp_path / "alerts.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{"job_name": "onestop", "static_configs": [
                {"targets": [f"127.0.0.1:{worker.web_port}", stand_in.url.removeprefix("http://")]}]}],
        }))
        prom = _Server([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                        f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
                        "--web.enable-lifecycle", "--rules.alert.resend-delay=1s"], prom_port,
                       tmp_path / "prometheus.log")
        started.append(prom)

        # The sample province, plus what the pipeline panels need to show: duplicates and dead letters. One good
        # and one bad record go first, so that Prometheus sees both counters before they move (rate() needs that).
        lines = [raw for _, raw in iter_lines(str(SAMPLE))]
        topic = f"{topic_prefix}dossier-events"

        def publish(records: list[tuple[bytes, bytes]]) -> None:
            producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
            try:
                for key, value in records:
                    producer.send(topic, key=key, value=value)
                producer.flush(timeout=60)
            finally:
                producer.close()

        def good(raw: bytes) -> tuple[bytes, bytes]:
            return json.loads(raw)["subject"].encode(), raw

        publish([good(lines[0]), (b"BAD-0", b"{not json")])
        wait_for(lambda: len(_query(prom, 'onestop_events_rejected_total{job="onestop"} '
                                          'and on () onestop_events_processed_total{job="onestop"}')) > 0,
                 timeout=60, what="first records scraped")
        publish([*(good(raw) for raw in lines[1:]), *(good(raw) for raw in lines[:2]),
                 (b"BAD-1", b"{not json"), (b"BAD-2", b"[")])

        wait_for(lambda: (_query(prom, 'sum(onestop_events_processed_total{job="onestop"})') or [{}])[0]
                 .get("value", [0, "0"])[1] == str(len(lines) + 2), timeout=90, what="every event processed")
        assert _query(prom, 'sum(onestop_events_rejected_total{job="onestop"})')[0]["value"][1] == "3"

        # National-portal sync bodies for the sync panels and rules, none of them changing a figure: progress steps 2
        # (a record accepted, no event) and steps without their time (refused). One body of both goes first, so that
        # Prometheus sees both record counters before they move; then an all-accepted, a partial and a bad body.
        def step(n: int, **fields) -> dict:
            return {"MaHoSo": f"T99.X001-20260310-{n:04d}", "TrangThai": "2", **fields}

        progress = f"{worker.url}/api/dvcqg/CapNhatTienDoHoSoMC"
        at = {"ThoiDiemXuLy": "20260310090000"}

        def post(body: bytes) -> int:
            return http(progress, data=body, timeout=30)[0]

        def sync_counts(family: str) -> set:
            return {(s["metric"].get("service"), s["metric"]["outcome"], s["value"][1])
                    for s in _query(prom, f'sum by (service, outcome) ({family}{{job="onestop"}})')}

        assert post(json.dumps([step(1, **at), step(2)]).encode()) == 200
        wait_for(lambda: len(sync_counts("onestop_sync_records_total")) == 2, timeout=30,
                 what="both sync record counters scraped")
        for body, status in ((json.dumps([step(3, **at)]).encode(), 200),
                             (json.dumps([step(4, **at), step(5)]).encode(), 200), (b"{not json", 400)):
            assert post(body) == status
        wait_for(lambda: sync_counts("onestop_sync_bodies_total") == {
                     ("CapNhatTienDoHoSoMC", "ok", "1"), ("CapNhatTienDoHoSoMC", "partial", "2"),
                     ("CapNhatTienDoHoSoMC", "refused", "1")}, timeout=30, what="sync bodies scraped")
        assert sync_counts("onestop_sync_records_total") == {("CapNhatTienDoHoSoMC", "accepted", "3"),
                                                             ("CapNhatTienDoHoSoMC", "refused", "2")}
        # 2 refused records and a bad body more in the dead-letter topic; too few for OnestopSyncRecordsRefused
        assert _query(prom, 'sum(onestop_events_rejected_total{job="onestop"})')[0]["value"][1] == "6"

        stand_in.fill(worker.get("/metrics")[1].decode())
        # One working day later: dossiers cross their deadlines without any event; alerts go to the alerts topic.
        worker.post_json("/test/clock", {"now": T1})
        at = datetime.fromisoformat(T1)
        expected = _expected(at)
        wait_for(lambda: not _mismatches(prom, expected), timeout=60, interval=1,
                 what="recording rules equal to the batch figures")
        problems = _mismatches(prom, expected)
        assert not problems, "\n".join(problems[:40])

        # The exported per-indicator terms (processor) and the catalogue-generated PromQL terms agree.
        exported = {(s["metric"]["unit"], s["metric"]["period"], s["metric"]["indicator"]): float(s["value"][1])
                    for s in _query(prom, 'sum by (unit, period, indicator) (onestop_indicator_numerator)')}
        recorded = {(s["metric"]["unit"], s["metric"]["period"], s["metric"]["indicator"]): float(s["value"][1])
                    for s in _query(prom, "unit:onestop_index766_indicator:numerator")}
        assert recorded and all(math.isclose(recorded[k], exported[k]) for k in recorded)

        # Every recording rule has data once its longest window has history (8 s here).
        names = {r["record"] for g in recording_groups(TEST_CONFIG, facts) for r in g["rules"]}

        def empty() -> list[str]:
            return sorted(n for n in names if not _query(prom, f'{{__name__="{n}"}}'))

        try:
            wait_for(lambda: not empty(), timeout=30, interval=1, what="data for every recording rule")
        except TimeoutError:
            pass
        assert not empty(), f"recording rules without data: {empty()}"
        burn = _query(prom, "unit:onestop_on_time:burnrate8s")
        assert burn and all(float(s["value"][1]) >= 0 for s in burn)
        # Cardinality budget of the recorded unit-level series (alerts/README.md).
        units_seen = len(_query(prom, 'count by (unit) ({__name__=~"unit:.+"})'))
        recorded_unit_series = float(_query(prom, 'count({__name__=~"unit:.+"})')[0]["value"][1])
        assert recorded_unit_series / units_seen <= RULE_SERIES_PER_UNIT_BUDGET, recorded_unit_series / units_seen

        # Every panel query of the committed dashboards parses, and returns data for the sample province and at
        # least one of its units (a unit without ratings has no satisfaction ratio: no data, never a fake 0).
        units = sorted({s["metric"]["unit"] for s in _query(prom, "unit:onestop_index766_total:estimated")})
        for board_name, board in all_dashboards(TEST_CONFIG).items():
            committed = json.loads((REPO / "dashboards" / f"{board_name}.json").read_text(encoding="utf-8"))
            assert committed == board, f"{board_name}: the test configuration must not change dashboards"

            def concrete(expr: str, unit: str) -> str:
                subs = {"province": "T99", "unit": unit, "level": ".*", "period": "month", "__rate_interval": "1m",
                        "__interval": "15s", "api_base": DEFAULT_CONFIG.read_api_base_url}
                return re.sub(r"\$\{?(\w+)\}?", lambda mm: subs[mm.group(1)], expr)

            for var in committed["templating"]["list"]:
                if var["type"] == "query":
                    m = re.match(r"label_values\((.*), (\w+)\)$", var["query"]["query"])
                    values = {s["metric"].get(m.group(2)) for s in _query(prom, concrete(m.group(1), units[0]))}
                    assert values - {None}, (board_name, var["name"])
            for title, ref, expr in panel_queries(committed):
                results = [_query(prom, concrete(expr, u)) for u in (units if "$unit" in expr else units[:1])]
                assert any(results), f"{board_name} / {title} / {ref}: no data for {concrete(expr, units[0])}"

        # An overdue unit fires its alert and the province's receiver gets the notification.
        overdue = set(expected["__overdue_units__"])  # type: ignore[arg-type]
        assert overdue

        def notified() -> set[str]:
            return {lab["unit"] for path, lab, status in hook.received
                    if lab["alertname"] == "OnestopDossiersOverdue" and status == "firing"
                    and path == "/province-T99" and lab.get("province") == "T99"}

        wait_for(lambda: notified() >= overdue, timeout=30, what="overdue notifications for every overdue unit")
        firing = {s["metric"]["unit"] for s in _query(prom, 'ALERTS{alertname="OnestopDossiersOverdue", '
                                                             'alertstate="firing"}')}
        assert firing == overdue
    finally:
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if worker is not None:
            worker.stop()
            if failed:
                print(f"\n----- worker log -----\n{worker.log_tail(80)}")
        for s in reversed(started):
            if failed and isinstance(s, _Server):
                print(f"\n----- {s.log_path.name} -----\n{s.log_path.read_text()[-3000:]}")
            if isinstance(s, _Server):
                s.stop()
            else:
                s.close()
