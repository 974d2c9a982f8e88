"""Monitoring as code: Prometheus rules, alerts, Alertmanager routing, runbook and Grafana dashboards, generated
from one configuration (``config.py``), the 766 catalogue and the work calendar, committed and drift-checked."""
