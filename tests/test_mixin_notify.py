"""Notifications people read: the generated templates rendered by a real Alertmanager 0.25 to a loopback Telegram
API, in Vietnamese, listing a unit's late dossiers (code, procedure, hours overdue) as ``onestop notify`` forwards
them; the email and Telegram receivers as the configuration enables them; the forwarder's alert mapping."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from monitoring.alertmanager import alertmanager_config
from monitoring.config import DEFAULT_CONFIG, MixinConfigError, replace
from monitoring.generate import committed_years
from monitoring.worktime import calendar_facts
from streams.tools.notify import Forwarder, alert_of, post_alerts
from tests.loopback import AlertWebhook, LoopbackServer, QuietHandler
from tests.test_mixin_alertmanager import ALERTMANAGER, AMTOOL, _Alertmanager, _always, _wait

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 3, 11, 9, 0, tzinfo=timezone(timedelta(hours=7)))


def _record(code: str, kind: str = "overdue", hours: float = 12.5, unit: str = "T99.X065",
            procedure: str = "1.004227") -> dict:
    """A record as streams.runtime.processor writes it to dossier-alerts."""
    return {"alert_id": f"{code}:{kind}", "kind": kind, "dossier_code": code, "unit_code": unit,
            "province_code": "T99", "unit_level": "commune", "procedure_code": procedure,
            "due_at": "2026-03-10T10:00:00+07:00", "effective_due_at": "2026-03-10T10:00:00+07:00",
            "raised_at": "2026-03-11T08:55:00+07:00", "overdue_working_hours": hours}


def _names(unit: str, lang: str) -> str | None:
    return {"vi": "UBND xã Mường Hum", "en": "Muong Hum Commune People's Committee"}[lang] if unit == "T99.X065" else None


def test_a_record_becomes_an_alert_with_the_dossier_in_annotations_and_labels_alertmanager_needs() -> None:
    a = alert_of(_record("000.00.65.H99-260310-0001"), NOW, names=_names)
    assert a["labels"] == {"alertname": "OnestopDossierOverdue", "unit": "T99.X065", "province": "T99",
                           "severity": "warning", "category": "dossier", "dossier": "000.00.65.H99-260310-0001",
                           "name": "UBND xã Mường Hum", "name_en": "Muong Hum Commune People's Committee"}
    ann = a["annotations"]
    assert ann["dossier_code"] == "000.00.65.H99-260310-0001" and ann["procedure"] == "1.004227"
    assert ann["overdue_hours"] == "12,5" and ann["due_at"] == "10/03/2026 10:00"
    assert ann["kind"] == "Hồ sơ quá hạn" and "UBND xã Mường Hum" in ann["summary"]
    assert a["startsAt"] == "2026-03-11T01:55:00Z" and a["endsAt"] == "2026-03-11T13:55:00Z"
    en = alert_of(_record("X-1"), NOW, lang="en")
    assert en["annotations"]["overdue_hours"] == "12.5" and en["annotations"]["kind"] == "Dossier overdue"
    assert alert_of({"kind": "overdue", "dossier_code": "X"}, NOW) is None


def test_the_forwarder_resolves_due_soon_when_overdue_arrives_and_forgets_expired_alerts() -> None:
    fwd = Forwarder(ttl=timedelta(hours=1))
    first = fwd.handle([_record("D1", "due_soon")], NOW)
    assert [a["labels"]["alertname"] for a in first] == ["OnestopDossierDueSoon"]
    out = fwd.handle([_record("D1", "overdue")], NOW)
    assert [(a["labels"]["alertname"], a["endsAt"]) for a in out][0] == ("OnestopDossierDueSoon",
                                                                        "2026-03-11T02:00:00Z")
    assert len(fwd.refresh(NOW)) == 1
    assert fwd.refresh(NOW + timedelta(hours=3)) == []


def test_email_and_telegram_receivers_are_written_only_when_configured_and_never_hold_secrets() -> None:
    facts = calendar_facts(DEFAULT_CONFIG, committed_years(REPO))
    default = alertmanager_config(DEFAULT_CONFIG, facts)
    assert all(set(r) == {"name", "webhook_configs"} for r in default["receivers"])
    assert default["templates"] == ["templates/*.tmpl"]
    cfg = replace(DEFAULT_CONFIG, email_to={"province-T99": "vanphong@example.gov.vn"},
                  email_from="canhbao@example.gov.vn", email_smarthost="smtp.example.gov.vn:587",
                  email_auth_username="canhbao", email_auth_password_file="/etc/alertmanager/smtp_password",
                  telegram_chat_ids={"province-T99": -1001234567890},
                  telegram_bot_token_file="/etc/alertmanager/telegram_token")
    doc = alertmanager_config(cfg, facts)
    (r,) = [r for r in doc["receivers"] if r["name"] == "province-T99"]
    assert r["email_configs"][0]["auth_password_file"] == "/etc/alertmanager/smtp_password"
    assert r["email_configs"][0]["headers"]["Subject"] == '{{ template "onestop.vi.email.subject" . }}'
    assert r["telegram_configs"][0]["bot_token_file"] == "/etc/alertmanager/telegram_token"
    assert "bot_token" not in r["telegram_configs"][0] and "auth_password" not in r["email_configs"][0]
    with pytest.raises(MixinConfigError, match="telegram_bot_token_file"):
        replace(DEFAULT_CONFIG, telegram_chat_ids={"province-T99": 1})
    with pytest.raises(MixinConfigError, match="email_from"):
        replace(DEFAULT_CONFIG, email_to={"province-T99": "a@example.gov.vn"})


class _TelegramApi(LoopbackServer):
    """Answers the Bot API as Telegram would and keeps every sendMessage body."""

    def __init__(self) -> None:
        sent = self.sent = []

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.endswith("/sendMessage"):
                    try:
                        sent.append(json.loads(raw))
                    except ValueError:
                        from urllib.parse import parse_qs
                        sent.append({k: v[0] for k, v in parse_qs(raw.decode()).items()})
                    result = {"message_id": len(sent), "date": 0, "chat": {"id": -1001234567890, "type": "group"},
                              "text": "ok"}
                else:  # getMe
                    result = {"id": 1, "is_bot": True, "first_name": "onestop", "username": "onestop_bot"}
                body = json.dumps({"ok": True, "result": result}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST  # noqa: N815

        super().__init__(Handler)


def _telegram_copy(tmp: Path, telegram: _TelegramApi, hook: AlertWebhook) -> dict:
    """The generated configuration with Telegram enabled for T99, pointed at the loopback API.

    Alertmanager 0.25 has no ``bot_token_file`` (0.26 has): the test copy carries a fake token inline instead."""
    cfg = replace(DEFAULT_CONFIG, telegram_chat_ids={"province-T99": -1001234567890},
                  telegram_bot_token_file="/nonexistent", telegram_api_url=telegram.url)
    doc = copy.deepcopy(alertmanager_config(cfg, calendar_facts(cfg, committed_years(REPO))))
    for r in doc["receivers"]:
        r["webhook_configs"] = [{"url": f"{hook.url}/{r['name']}", "send_resolved": False}]
        for tc in r.get("telegram_configs", []):
            tc.pop("bot_token_file")
            tc["bot_token"] = "123456:TEST"
    doc["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    doc["time_intervals"] = [_always("office_hours"), {"name": "vn_days_off", "time_intervals": [
        {"years": ["1999"], "location": "Asia/Ho_Chi_Minh"}]}]
    shutil.copytree(REPO / "alerts" / "templates", tmp / "templates")
    return doc


@pytest.mark.skipif(AMTOOL is None, reason="apt-get install prometheus-alertmanager")
def test_amtool_accepts_the_configuration_with_the_templates_and_a_telegram_receiver(tmp_path: Path) -> None:
    telegram, hook = _TelegramApi(), AlertWebhook()
    try:
        doc = _telegram_copy(tmp_path, telegram, hook)
    finally:
        telegram.close()
        hook.close()
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    out = subprocess.run([AMTOOL, "check-config", str(tmp_path / "alertmanager.yml")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


@pytest.mark.skipif(ALERTMANAGER is None, reason="apt-get install prometheus-alertmanager")
def test_real_alertmanager_sends_one_vietnamese_message_listing_the_units_late_dossiers(tmp_path: Path) -> None:
    telegram, hook = _TelegramApi(), AlertWebhook()
    work = tmp_path / "am"
    work.mkdir()
    am = _Alertmanager(_telegram_copy(work, telegram, hook), work)
    try:
        now = datetime.now(timezone.utc)
        fwd = Forwarder(names=_province_names)
        alerts = fwd.handle([_record("000.00.65.H99-260310-0001", hours=12.5),
                             _record("000.00.65.H99-260309-0042", hours=3, procedure="2.000815"),
                             _record("000.00.65.H99-260311-0007", kind="due_soon", procedure="1.001612")], now)
        for a in alerts:  # raised now, so that Alertmanager takes them as firing
            a["startsAt"], a["endsAt"] = now.isoformat(), (now + timedelta(hours=1)).isoformat()
        # The unit's Prometheus alert, as alerts.yml renders it, joins the same group (province, unit).
        alerts.append({"labels": {"alertname": "OnestopDossiersOverdue", "unit": "T99.X065", "province": "T99",
                                  "level": "commune", "severity": "warning", "category": "data",
                                  "name": "UBND xã Mường Hum"},
                       "annotations": {"summary": "2 hồ sơ quá hạn tại UBND xã Mường Hum (T99.X065)",
                                       "runbook_url": "https://example.org/runbook.md#onestopdossiersoverdue"},
                       "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat()})
        post_alerts(am.url, alerts)
        assert _wait(lambda: telegram.sent, timeout=20), (work / "alertmanager.log").read_text()[-2000:]
        time.sleep(1.5)
        assert len(telegram.sent) == 1, telegram.sent
        message = telegram.sent[0]
        text = message["text"]
        assert str(message["chat_id"]) == "-1001234567890"
        assert text.startswith("Cảnh báo: UBND xã Mường Hum (T99.X065) — Tỉnh Sơn Nguyên"), text
        assert "• 2 hồ sơ quá hạn tại UBND xã Mường Hum (T99.X065)" in text
        assert "Hồ sơ cần xử lý:" in text
        assert ("• 000.00.65.H99-260310-0001 — thủ tục 1.004227 — Hồ sơ quá hạn: quá hạn 12,5 giờ làm việc"
                in text), text
        assert "• 000.00.65.H99-260309-0042 — thủ tục 2.000815 — Hồ sơ quá hạn: quá hạn 3 giờ làm việc" in text
        assert "• 000.00.65.H99-260311-0007 — thủ tục 1.001612 — Hồ sơ sắp đến hạn: hạn 10/03/2026 10:00" in text
        assert "Hướng dẫn xử lý: https://example.org/runbook.md#onestopdossiersoverdue" in text
        # The webhook of the same receiver (Zalo OA relay or a province's system) got the same alerts as JSON.
        assert {lab.get("dossier") for path, lab, _ in hook.received if path == "/province-T99"} >= {
            "000.00.65.H99-260310-0001", "000.00.65.H99-260309-0042", "000.00.65.H99-260311-0007"}
    finally:
        am.stop()
        telegram.close()
        hook.close()


def _province_names(unit: str, lang: str) -> str | None:
    return {"vi": "Tỉnh Sơn Nguyên", "en": "Son Nguyen Province"}[lang] if unit == "T99" else _names(unit, lang)


@pytest.mark.parametrize("lang, name", [("vi", "Tỉnh Sơn Nguyên"), ("en", "Son Nguyen Province")])
def test_a_forwarded_alert_names_its_province_when_the_registry_does(lang: str, name: str) -> None:
    assert alert_of(_record("D-1"), NOW, lang=lang, names=_province_names)["annotations"]["province_name"] == name
    assert "province_name" not in alert_of(_record("D-1"), NOW, lang=lang, names=_names)["annotations"]
    assert "province_name" not in alert_of(_record("D-1"), NOW, lang=lang)["annotations"]


@pytest.mark.skipif(AMTOOL is None, reason="apt-get install prometheus-alertmanager")
@pytest.mark.parametrize("lang, province_name, title", [
    ("vi", "Tỉnh Sơn Nguyên", "Cảnh báo: UBND xã Mường Hum (T99.X065) — Tỉnh Sơn Nguyên"),
    ("vi", None, "Cảnh báo: UBND xã Mường Hum (T99.X065) — tỉnh T99"),
    ("en", "Son Nguyen Province", "Alert: Muong Hum Commune People's Committee (T99.X065) — Son Nguyen Province"),
    ("en", None, "Alert: Muong Hum Commune People's Committee (T99.X065) — province T99"),
])
def test_the_notification_title_names_the_province_rendered_by_amtool(tmp_path: Path, lang: str,
                                                                      province_name: str | None, title: str) -> None:
    """The title reads the province's name from any alert of the group that carries it (a data alert's annotation
    from Prometheus, or a forwarded dossier alert's from the registry), and its code when none does."""
    labels = {"alertname": "OnestopDossiersOverdue", "unit": "T99.X065", "province": "T99",
              "name": "UBND xã Mường Hum", "name_en": "Muong Hum Commune People's Committee"}
    first = {"status": "firing", "labels": labels, "annotations": {"summary": "2"}, "startsAt": "2026-03-11T02:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z"}
    second = copy.deepcopy(first)
    second["labels"]["alertname"] = "OnestopDossiersDueSoon"
    if province_name:
        second["annotations"]["province_name"] = province_name
    data = {"receiver": "province-T99", "status": "firing", "alerts": [first, second],
            "groupLabels": {"province": "T99", "unit": "T99.X065"}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://127.0.0.1:9093"}
    (tmp_path / "data.json").write_text(json.dumps(data), encoding="utf-8")
    out = subprocess.run([AMTOOL, "template", "render", f"--template.glob={REPO}/alerts/templates/onestop.{lang}.tmpl",
                          f'--template.text={{{{ template "onestop.{lang}.title" . }}}}',
                          f"--template.data={tmp_path / 'data.json'}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == title
