"""``onestop notify``: forward the workers' per-dossier alerts (topic ``dossier-alerts``) to Alertmanager's v2 API.

Prometheus alerts count dossiers per unit; the people of a unit act on dossiers. The worker writes one record per
dossier alert (``streams.runtime.runtime._send_alerts``: ``alert_id``, ``kind``, ``dossier_code``, ``unit_code``,
``province_code``, ``procedure_code``, ``due_at``, ``overdue_working_hours``, ...). Each becomes an Alertmanager
alert with labels ``alertname`` (``OnestopDossierOverdue``, ...), ``unit``, ``province``, ``severity``,
``category="dossier"`` and ``dossier`` (Alertmanager tells alerts apart by their labels; the code never reaches
Prometheus), the unit's name as ``name``/``name_en`` when a registry is given, and the dossier code, procedure,
hours overdue and due date as annotations in the notification language. Alertmanager's routing groups them by
``province, unit`` with the unit's Prometheus alerts, so one notification lists a unit's late dossiers.

Resolution: a record is only ever a raise. An alert ends ``ttl`` after it was raised (``endsAt``), a dossier's
``due_soon`` alert ends when its ``overdue`` arrives, and the forwarder re-posts the alerts still active every
``resend`` seconds (Alertmanager keeps alerts in memory only).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import typer

from models.i18n import format_datetime, format_number, t
from monitoring.notifications import DOSSIER_ALERTS

__all__ = ["DOSSIER_ALERTS", "SEVERITY", "Forwarder", "alert_of", "post_alerts", "run", "notify_command"]
SEVERITY = {"overdue": "warning", "apology_missing": "warning", "repeated_supplement": "warning"}


def _iso(t_: datetime) -> str:
    return t_.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _instant(text: Any, default: datetime) -> datetime:
    try:
        t_ = datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return default
    return t_ if t_.tzinfo else t_.replace(tzinfo=timezone.utc)


def alert_of(record: Mapping[str, Any], now: datetime, *, lang: str = "vi", ttl: timedelta = timedelta(hours=12),
             names: Callable[[str, str], str | None] | None = None) -> dict | None:
    """The Alertmanager v2 alert of one ``dossier-alerts`` record, or None for a record that names no unit."""
    kind, unit, code = record.get("kind"), record.get("unit_code"), record.get("dossier_code")
    if not unit or not code or kind not in DOSSIER_ALERTS:
        return None
    raised = _instant(record.get("raised_at"), now)
    labels = {"alertname": DOSSIER_ALERTS[kind], "unit": str(unit), "province": str(record.get("province_code") or ""),
              "severity": SEVERITY.get(kind, "info"), "category": "dossier", "dossier": str(code)}
    if names is not None:
        for label, which in (("name", "vi"), ("name_en", "en")):
            if value := names(str(unit), which):
                labels[label] = value
    labels = {k: v for k, v in labels.items() if v != ""}
    procedure = str(record.get("procedure_code") or "–")
    hours = record.get("overdue_working_hours")
    unit_text = labels.get("name_en" if lang == "en" else "name") or labels.get("name") or str(unit)
    kind_text = t(f"alert.{kind}", lang)
    annotations = {
        "summary": t("mon.notify.dossier_summary", lang, dossier=code, procedure=procedure, unit=unit_text,
                     kind=kind_text),
        "dossier_code": str(code), "procedure": procedure, "kind": kind_text,
        "overdue_hours": format_number(hours, lang, 2, strip_zeros=True) if hours is not None else "–",
        "due_at": format_datetime(record.get("effective_due_at") or record.get("due_at"), lang)
        if (record.get("effective_due_at") or record.get("due_at")) else "–",
    }
    province = labels.get("province")
    if names is not None and province and (name := names(province, lang) or names(province, "vi")):
        annotations["province_name"] = name  # the notification title names the province, as the data alerts do
    return {"labels": labels, "annotations": annotations, "startsAt": _iso(raised), "endsAt": _iso(raised + ttl)}


def post_alerts(alertmanager: str, alerts: list[dict], timeout: float = 10.0) -> None:
    """POST to ``/api/v2/alerts``; raises on an HTTP error (the caller retries)."""
    if not alerts:
        return
    req = urllib.request.Request(alertmanager.rstrip("/") + "/api/v2/alerts", data=json.dumps(alerts).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (an operator-given URL)
        resp.read()


def _key(alert: dict) -> tuple[str, str, str]:
    lab = alert["labels"]
    return lab["unit"], lab["dossier"], lab["alertname"]


@dataclass
class Forwarder:
    """The alerts still active, keyed by (unit, dossier, alertname); what to post for each record and each resend."""

    lang: str = "vi"
    ttl: timedelta = timedelta(hours=12)
    names: Callable[[str, str], str | None] | None = None
    active: dict[tuple[str, str, str], dict] = field(default_factory=dict)

    def handle(self, records: Iterable[Mapping[str, Any]], now: datetime) -> list[dict]:
        out: list[dict] = []
        for record in records:
            alert = alert_of(record, now, lang=self.lang, ttl=self.ttl, names=self.names)
            if alert is None:
                continue
            unit, dossier, name = _key(alert)
            if name == DOSSIER_ALERTS["overdue"]:
                due_soon = self.active.pop((unit, dossier, DOSSIER_ALERTS["due_soon"]), None)
                if due_soon is not None:
                    out.append({**due_soon, "endsAt": _iso(now)})
            self.active[(unit, dossier, name)] = alert
            out.append(alert)
        return out

    def refresh(self, now: datetime) -> list[dict]:
        """The active alerts to post again; those past their ``endsAt`` are forgotten."""
        stamp = _iso(now)
        for key in [k for k, a in self.active.items() if a["endsAt"] <= stamp]:
            del self.active[key]
        return list(self.active.values())


def _registry_names(path: str | None) -> Callable[[str, str], str | None] | None:
    if not path:
        return None
    from models.units import UnitRegistry

    registry = UnitRegistry.load(path)

    def names(unit: str, lang: str) -> str | None:
        return registry.name_at(unit, lang=lang)

    return names


def run(alertmanager: str, broker: str, *, topic: str, group: str = "onestop-notify", lang: str = "vi",
        ttl_hours: float = 12.0, resend_seconds: float = 60.0, units_file: str | None = None,
        from_beginning: bool = False, max_seconds: float | None = None, client_config: dict | None = None,
        log: Callable[[str], None] = print) -> int:
    """Consume ``topic`` and post to Alertmanager until interrupted (or ``max_seconds``); returns alerts posted."""
    from kafka import KafkaConsumer

    fwd = Forwarder(lang=lang, ttl=timedelta(hours=ttl_hours), names=_registry_names(units_file))
    consumer = KafkaConsumer(topic, bootstrap_servers=broker, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest" if from_beginning else "latest",
                             **{"isolation_level": "read_committed", **(client_config or {})})  # committed alerts only
    posted, started, last_resend = 0, time.monotonic(), time.monotonic()
    try:
        while max_seconds is None or time.monotonic() - started < max_seconds:
            batch = consumer.poll(timeout_ms=1000)
            records = []
            for messages in batch.values():
                for m in messages:
                    try:
                        records.append(json.loads(m.value))
                    except (TypeError, ValueError):
                        log(f"skipped a record that is not JSON at offset {m.offset}")
            now = datetime.now(timezone.utc)
            alerts = fwd.handle(records, now)
            if time.monotonic() - last_resend >= resend_seconds:
                alerts = [*alerts, *(a for a in fwd.refresh(now) if a not in alerts)]
                last_resend = time.monotonic()
            if alerts:
                try:
                    post_alerts(alertmanager, alerts)
                except OSError as exc:
                    log(f"Alertmanager did not take {len(alerts)} alert(s): {exc}; retrying at the next resend")
                    continue
                posted += len(alerts)
            if records:
                consumer.commit()
    finally:
        consumer.close()
    return posted


def notify_command(
    alertmanager: str = typer.Option("http://127.0.0.1:9093", "--alertmanager", help="Địa chỉ gốc của Alertmanager / Alertmanager base URL."),
    broker: str = typer.Option(None, "--broker", envvar="ONESTOP_BROKER", help="Máy chủ Kafka (bootstrap) / Kafka bootstrap servers."),
    lang: str = typer.Option("vi", "--lang", help="Ngôn ngữ của nội dung cảnh báo: vi hoặc en / Language of the annotations: vi or en."),
    units: str = typer.Option(None, "--units", help="Danh mục đơn vị (YAML/CSV) cho tên đơn vị / Unit registry (YAML/CSV) for the units' names."),
    ttl_hours: float = typer.Option(12.0, "--ttl-hours", help="Cảnh báo kết thúc sau chừng này giờ kể từ khi phát / An alert ends this long after it was raised."),
    resend: float = typer.Option(60.0, "--resend", help="Số giây giữa hai lần gửi lại các cảnh báo đang hoạt động / Seconds between re-posts of the active alerts."),
    group: str = typer.Option("onestop-notify", "--group", help="Nhóm tiêu thụ Kafka (consumer group) / Kafka consumer group."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Đọc chủ đề từ bản ghi đầu tiên / Read the topic from its first record."),
) -> None:
    """Forward the workers' per-dossier alerts (dossier-alerts) to Alertmanager, grouped there by unit."""
    from streams.runtime.security import kafka_client_config
    from streams.runtime.settings import WorkerSettings

    if lang not in ("vi", "en"):
        raise typer.BadParameter("--lang must be vi or en")
    settings = WorkerSettings.from_env(**({"broker": broker} if broker else {}))
    posted = run(alertmanager, settings.broker, topic=settings.alerts, group=group, lang=lang, ttl_hours=ttl_hours,
                 resend_seconds=resend, units_file=units, from_beginning=from_beginning,
                 client_config=kafka_client_config(settings), log=lambda m: typer.echo(m, err=True))
    typer.echo(f"{posted} alert(s) posted", err=True)
