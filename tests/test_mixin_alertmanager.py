"""The committed Alertmanager configuration: ``amtool`` checks, routing, and a real Alertmanager for inhibition and
time intervals (Alertmanager's clock cannot be moved, so interval *data* is checked against the calendar in Python
and interval *behaviour* with intervals built around the current instant)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import time
import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from tests.loopback import AlertWebhook
import yaml

from models.calendar import TZ
from streams.tools.broker import free_port
from monitoring.alertmanager import alertmanager_config
from monitoring.config import DEFAULT_CONFIG, replace
from monitoring.generate import committed_years
from monitoring.worktime import calendar_facts, in_intervals, load_work_calendar

REPO = Path(__file__).resolve().parents[1]
AM_FILE = REPO / "alerts" / "alertmanager.yml"
AMTOOL = shutil.which("amtool")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

needs_amtool = pytest.mark.skipif(AMTOOL is None, reason="amtool missing: apt-get install prometheus-alertmanager")


def _committed() -> dict:
    return yaml.safe_load(AM_FILE.read_text(encoding="utf-8"))


@needs_amtool
def test_amtool_check_config() -> None:
    out = subprocess.run([AMTOOL, "check-config", str(AM_FILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@needs_amtool
@pytest.mark.parametrize("labels, receiver", [
    ("alertname=OnestopDossiersOverdue severity=warning category=data province=T99 unit=T99.S01", "province-T99"),
    ("alertname=OnestopOnTimeBudgetBurn severity=critical category=data province=T99 unit=T99.S01",
     "onestop-oncall"),
    ("alertname=OnestopDossiersOverdue severity=warning category=data province=T01 unit=T01.X1", "onestop-default"),
    ("alertname=OnestopOnTimeBudgetBurn severity=critical category=data province=T01 unit=T01.X1",
     "onestop-oncall"),
    ("alertname=OnestopWorkerDown severity=critical category=pipeline job=onestop instance=w1", "onestop-oncall"),
    ("alertname=OnestopSourceSilent severity=warning category=pipeline source=kiosk", "onestop-ops"),
])
def test_amtool_routes(labels: str, receiver: str) -> None:
    out = subprocess.run([AMTOOL, "config", "routes", "test", f"--config.file={AM_FILE}",
                          f"--verify.receivers={receiver}", *labels.split()],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def _routes(route: dict):
    for r in route.get("routes", []):
        yield r
        yield from _routes(r)


def test_non_critical_routes_are_limited_to_office_hours_and_muted_on_days_off() -> None:
    doc = _committed()
    assert doc["route"]["group_by"] == ["province", "unit"]
    for r in _routes(doc["route"]):
        matchers = " ".join(r.get("matchers", []))
        if "severity=~" in matchers:
            assert r["active_time_intervals"] == ["office_hours"] and r["mute_time_intervals"] == ["vn_days_off"]
        if 'severity="critical"' in matchers:
            assert "active_time_intervals" not in r and "mute_time_intervals" not in r
    inhibits = doc["inhibit_rules"]
    assert {"source_matchers": ['alertname="OnestopDossiersOverdue"'],
            "target_matchers": ['alertname="OnestopDossiersDueSoon"'], "equal": ["unit"]} in inhibits
    down = [i for i in inhibits if i["target_matchers"] == ['category="data"']]
    assert down and "OnestopWorkerDown" in down[0]["source_matchers"][0]


def test_office_hours_follow_the_work_calendar_every_day_of_the_covered_years() -> None:
    """Alertmanager's interval semantics, replayed on the committed data, agree with WorkCalendar everywhere."""
    years = committed_years(REPO)
    assert years, "alerts/alertmanager.yml has no calendar-years header"
    intervals = {ti["name"]: ti["time_intervals"] for ti in _committed()["time_intervals"]}
    for ti in (t for ts in intervals.values() for t in ts):
        assert ti["location"] == "Asia/Ho_Chi_Minh"
    cal = load_work_calendar(DEFAULT_CONFIG)
    d = date(years[0], 1, 1)
    checked = 0
    while d.year <= years[-1]:
        for hh, mm in ((7, 29), (7, 30), (12, 0), (16, 59), (17, 0), (20, 0)):
            t = datetime(d.year, d.month, d.day, hh, mm, tzinfo=TZ)
            deliver = in_intervals(intervals["office_hours"], t) and not in_intervals(intervals["vn_days_off"], t)
            expected = cal.is_working_day(d) and (7, 30) <= (hh, mm) < (17, 0)
            assert deliver == expected, (t.isoformat(), deliver, cal.day_off_name(d))
            checked += 1
        d += timedelta(days=1)
    assert checked > 700 * 6 - 1


def test_calendar_years_of_the_committed_files_cover_today() -> None:
    """The operational reminder behind OnestopCalendarNotCovered: regenerate before the year runs out."""
    years = committed_years(REPO)
    assert years and datetime.now(TZ).year in years, f"committed for {years}; run `onestop mixin generate`"


# ------------------------------------------------------------------------------------ a real Alertmanager

class _Alertmanager:
    def __init__(self, config: dict, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(workdir / "alertmanager.log", "wb")
        self.proc = subprocess.Popen(
            [ALERTMANAGER, f"--config.file={path}", f"--storage.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError("alertmanager not ready: " + (workdir / "alertmanager.log").read_text()[-2000:])

    def post(self, *alerts: dict) -> None:
        now = datetime.now(TZ)
        body = [{"labels": a, "annotations": {"summary": "test"}, "startsAt": now.isoformat(),
                 "endsAt": (now + timedelta(minutes=10)).isoformat()} for a in alerts]
        req = urllib.request.Request(self.url + "/api/v2/alerts", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def _test_copy(webhook: AlertWebhook, time_intervals: list[dict] | None = None) -> dict:
    """The generated routing with every receiver pointed at the test webhook (path = receiver name) and short waits."""
    doc = copy.deepcopy(alertmanager_config(DEFAULT_CONFIG, calendar_facts(DEFAULT_CONFIG, committed_years(REPO))))
    for r in doc["receivers"]:
        r["webhook_configs"] = [{"url": f"{webhook.url}/{r['name']}", "send_resolved": False}]
    doc["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    if time_intervals is not None:
        doc["time_intervals"] = time_intervals
    return doc


def _always(name: str) -> dict:
    return {"name": name, "time_intervals": [{"location": "Asia/Ho_Chi_Minh"}]}


def _wait(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _data(alertname: str, unit: str, severity: str = "warning", province: str = "T99") -> dict:
    return {"alertname": alertname, "unit": unit, "province": province, "level": "commune",
            "severity": severity, "category": "data"}


needs_alertmanager = pytest.mark.skipif(ALERTMANAGER is None, reason="apt-get install prometheus-alertmanager")


@needs_alertmanager
def test_real_alertmanager_routes_and_inhibits(tmp_path: Path) -> None:
    """Overdue inhibits due-soon of the same unit only; a worker down inhibits every data alert."""
    hook = AlertWebhook()
    # Office hours always open and no day off: this test is about routing and inhibition, not the clock.
    am = _Alertmanager(_test_copy(hook, [_always("office_hours"), {"name": "vn_days_off", "time_intervals": [
        {"years": ["1999"], "location": "Asia/Ho_Chi_Minh"}]}]), tmp_path / "am")
    try:
        am.post(_data("OnestopDossiersOverdue", "T99.X1"), _data("OnestopDossiersDueSoon", "T99.X1"),
                _data("OnestopDossiersDueSoon", "T99.X2"),
                {"alertname": "OnestopSourceSilent", "source": "kiosk", "severity": "warning",
                 "category": "pipeline"})
        assert _wait(lambda: len(hook.received) >= 3), hook.received
        time.sleep(1.5)
        got = {(path, labels["alertname"], labels.get("unit") or labels.get("source")) for path, labels, _ in
               hook.received}
        assert got == {("/province-T99", "OnestopDossiersOverdue", "T99.X1"),
                       ("/province-T99", "OnestopDossiersDueSoon", "T99.X2"),
                       ("/onestop-ops", "OnestopSourceSilent", "kiosk")}

        hook.received.clear()
        am.post({"alertname": "OnestopWorkerDown", "job": "onestop", "instance": "w1", "severity": "critical",
                 "category": "pipeline"})
        assert _wait(lambda: any(lab["alertname"] == "OnestopWorkerDown" for _, lab, _ in hook.received))
        am.post(_data("OnestopDossiersOverdue", "T99.X3"), _data("OnestopOnTimeBudgetBurn", "T01.X9", "critical",
                                                                 province="T01"))
        time.sleep(3)
        names = [(path, lab["alertname"]) for path, lab, _ in hook.received]
        assert names == [("/onestop-oncall", "OnestopWorkerDown")], names
    finally:
        am.stop()
        hook.close()


@needs_alertmanager
def test_real_alertmanager_mutes_non_critical_on_a_day_off(tmp_path: Path) -> None:
    """Alertmanager 0.25 applies a Vietnam-time day-off interval (built for today) to warnings, not to pages."""
    today = datetime.now(TZ)
    months = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
              "november", "december"]
    day_off = {"name": "vn_days_off", "time_intervals": [
        {"years": [str(today.year)], "months": [months[today.month - 1]], "days_of_month": [str(today.day)],
         "location": "Asia/Ho_Chi_Minh"}]}
    hook = AlertWebhook()
    am = _Alertmanager(_test_copy(hook, [_always("office_hours"), day_off]), tmp_path / "am")
    try:
        am.post(_data("OnestopDossiersOverdue", "T99.X1"),
                _data("OnestopOnTimeBudgetBurn", "T99.X2", "critical"))
        assert _wait(lambda: hook.received)
        time.sleep(2.5)
        assert [(p, lab["alertname"]) for p, lab, _ in hook.received] == [("/onestop-oncall",
                                                                           "OnestopOnTimeBudgetBurn")]
    finally:
        am.stop()
        hook.close()


def test_config_overrides_change_routing(tmp_path: Path) -> None:
    cfg = replace(DEFAULT_CONFIG, receivers={**DEFAULT_CONFIG.receivers, "province-T01": "http://127.0.0.1:1/x"},
                  province_routes=[*DEFAULT_CONFIG.province_routes,
                                   {"province": "T01", "receiver": "province-T01"}])
    doc = alertmanager_config(cfg, calendar_facts(cfg, (2026,)))
    provinces = [r["matchers"][0] for r in doc["route"]["routes"] if r["matchers"][0].startswith("province=")]
    assert provinces == ['province="T99"', 'province="T01"']
