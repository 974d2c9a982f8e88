"""Alertmanager configuration: who hears about what, when, and what stays quiet because something bigger fires.

Critical alerts are delivered at any hour. Everything else waits for Vietnamese office hours: a unit's staff cannot
act on an overdue dossier at night or during Tết, and a reminder that arrives when nobody works is noise. The days
off come from the work calendar (see worktime.py), so notification hours follow the same calendar as deadlines.
"""

from __future__ import annotations

from monitoring.config import MixinConfig
from monitoring.notifications import channel_configs
from monitoring.worktime import CalendarFacts, alertmanager_time_intervals

__all__ = ["alertmanager_config", "OFFICE_HOURS", "DAYS_OFF"]

OFFICE_HOURS, DAYS_OFF = "office_hours", "vn_days_off"
QUIET = {"active_time_intervals": [OFFICE_HOURS], "mute_time_intervals": [DAYS_OFF]}


def _severity_routes(critical: str | None, normal: str) -> list[dict]:
    routes = []
    if critical:
        routes.append({"receiver": critical, "matchers": ['severity="critical"']})
    routes.append({"receiver": normal, "matchers": ['severity=~"warning|info"'], **QUIET})
    return routes


def alertmanager_config(config: MixinConfig, facts: CalendarFacts) -> dict:
    c = config
    routes = [
        # The monitor's own health: grouped per alert and job, not per unit (these alerts carry no unit).
        {"receiver": c.pipeline_receiver, "matchers": ['category="pipeline"'], "group_by": ["alertname", "job"],
         "routes": _severity_routes(c.critical_receiver, c.pipeline_receiver)},
    ]
    for pr in c.province_routes:
        routes.append({"receiver": pr.receiver, "matchers": [f'province="{pr.province}"'],
                       "routes": _severity_routes(pr.critical_receiver or pr.receiver, pr.receiver)})
    routes += _severity_routes(c.critical_receiver, c.default_receiver)
    data_alerts = ['category="data"']
    return {
        "global": {"resolve_timeout": c.resolve_timeout},
        "route": {
            "receiver": c.default_receiver,
            # One notification per unit: it lists every alert of that unit (its overdue dossiers, due-soon ones, ...).
            "group_by": ["province", "unit"],
            "group_wait": c.group_wait,
            "group_interval": c.group_interval,
            "repeat_interval": c.repeat_interval,
            "routes": routes,
        },
        "inhibit_rules": [
            {"source_matchers": ['alertname="OnestopDossiersOverdue"'],
             "target_matchers": ['alertname="OnestopDossiersDueSoon"'], "equal": ["unit"]},
            # A dossier that turned overdue is no longer "due soon" (per-dossier alerts of `onestop notify`).
            {"source_matchers": ['alertname="OnestopDossierOverdue"'],
             "target_matchers": ['alertname="OnestopDossierDueSoon"'], "equal": ["unit", "dossier"]},
            # The fast-burn page already says it; the slower ticket for the same unit adds nothing.
            {"source_matchers": ['alertname="OnestopOnTimeBudgetBurn"', 'severity="critical"'],
             "target_matchers": ['alertname="OnestopOnTimeBudgetBurn"', 'severity="warning"'], "equal": ["unit"]},
            # With a worker gone or rebuilding, unit figures are partial: their alerts would be false.
            {"source_matchers": ['alertname=~"OnestopWorkerDown|OnestopWorkersAbsent|OnestopWorkerNotReady"'],
             "target_matchers": data_alerts},
        ],
        "receivers": [{"name": name, "webhook_configs": [{"url": url, "send_resolved": True}],
                       **channel_configs(c, name)} for name, url in c.receivers.items()],
        "time_intervals": alertmanager_time_intervals(c, facts),
        # Relative to this file: alerts/templates/onestop.{vi,en}.tmpl (deploy them next to it).
        "templates": ["templates/*.tmpl"],
    }
