"""The demo's live terminal view: the province and its weakest units, the newest alerts, and where to look.

Vietnamese by default (``--lang en`` or ``ONESTOP_LANG=en`` for English): headings, status words and band names
come from the message catalogue (``models.i18n``), units are shown by their names in the registry the demo
publishes, and numbers are written as the reader writes them (``93,45 %``). It is laid out for a terminal of 200
columns; ``render_view`` is a pure function of what it shows, so it can be rendered to text and checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models.i18n import DEFAULT_LANG, format_datetime, format_number, format_percent, has, t
from models.units import UnitRegistry

__all__ = ["ViewInput", "render_view", "UNIT_ROWS", "ALERT_ROWS"]

UNIT_ROWS = 14  # the weakest units shown under the province
ALERT_ROWS = 8
NAME_WIDTH = 46  # the longest simulated name ("Chi nhánh Văn phòng Đăng ký đất đai khu vực 12") fits


@dataclass
class ViewInput:
    """What the view shows (a snapshot of the demo's state)."""

    sim_now: datetime | None
    speed: float
    published: int
    history_total: int
    worker_url: str
    prometheus_url: str | None = None
    figures: Mapping[str, Any] | None = None
    alerts: Iterable[Mapping[str, Any]] = ()
    registry: UnitRegistry = field(default_factory=UnitRegistry)
    error: str | None = None


def _level(level: str | None, lang: str) -> str:
    return t(f"level.{level}", lang) if level and has(f"level.{level}") else (level or "")


def _band(band: Mapping[str, Any] | None, lang: str) -> str:
    code = (band or {}).get("code")
    return t(f"band.{code}", lang) if code and has(f"band.{code}") else t("band.none", lang)


def _alert_kind(kind: str | None, lang: str) -> str:
    return t(f"alert.{kind}", lang) if kind and has(f"alert.{kind}") else (kind or "")


def _count(n: Any, lang: str) -> str:
    return format_number(n or 0, lang, 0)


def _name(registry: UnitRegistry, code: str, lang: str, when: datetime | None) -> str:
    return registry.display(code, lang, when) if code else ""


def render_view(v: ViewInput, lang: str = DEFAULT_LANG):
    """The whole screen as a rich renderable."""
    from rich.console import Group
    from rich.table import Table

    head = Table.grid(padding=(0, 3))
    now = format_datetime(v.sim_now, lang) if v.sim_now else "–"
    head.add_row(f"[b]{t('live.title', lang)}[/b]",
                 t("live.simulated_time", lang, time=now, speed=format_number(v.speed, lang, 2, strip_zeros=True)),
                 t("live.events_published", lang, published=_count(v.published, lang),
                   history=_count(min(v.published, v.history_total), lang), total=_count(v.history_total, lang)))
    head.add_row(f"{t('live.metrics', lang)}: {v.worker_url}/metrics", f"{t('live.figures', lang)}: {v.worker_url}/figures",
                 f"{t('live.prometheus', lang)}: {v.prometheus_url or t('live.prometheus_missing', lang)}")
    head.add_row(f"{t('live.late_list', lang)}: {v.worker_url}/api/units/<unit>/dossiers?state=overdue", "", "")

    units = Table(title=t("live.units_title", lang), expand=True, title_style="bold")
    units.add_column(t("live.col.unit", lang), no_wrap=True, overflow="ellipsis", max_width=NAME_WIDTH)
    units.add_column(t("common.code", lang), no_wrap=True)
    units.add_column(t("live.col.level", lang), no_wrap=True)
    for key in ("on_time", "online", "paid_online", "satisfied", "index766"):
        units.add_column(t(f"live.col.{key}", lang), justify="right", no_wrap=True)
    units.add_column(t("live.col.band", lang), no_wrap=True)
    for key in ("within", "due_soon", "overdue"):
        units.add_column(t(f"live.col.{key}", lang), justify="right", no_wrap=True)
    fig = v.figures or {}
    weakest = sorted(fig.get("units", {}).items(),
                     key=lambda kv: (kv[1].get("total_estimated") is None, kv[1].get("total_estimated") or 0, kv[0]))
    rows = list(fig.get("provinces", {}).items()) + weakest[:UNIT_ROWS]
    for i, (code, u) in enumerate(rows):
        sh, c = u.get("shares") or {}, u.get("counts") or {}
        style = "bold" if i < len(fig.get("provinces", {})) else None
        units.add_row(_name(v.registry, code, lang, v.sim_now), code, _level(u.get("level"), lang),
                      format_percent(sh.get("on_time_ratio"), lang), format_percent(sh.get("online_submission_share"), lang),
                      format_percent(sh.get("online_payment_share"), lang), format_percent(sh.get("satisfied_share"), lang),
                      format_number(u.get("total_estimated"), lang, 2), _band(u.get("band"), lang),
                      _count(c.get("open_within"), lang), _count(c.get("open_due_soon"), lang),
                      _count(c.get("open_overdue"), lang), style=style)

    alerts = Table(title=t("live.alerts_title", lang), expand=True, title_style="bold")
    alerts.add_column(t("live.col.kind", lang), no_wrap=True, overflow="ellipsis", max_width=50)
    alerts.add_column(t("live.col.unit", lang), no_wrap=True, overflow="ellipsis", max_width=NAME_WIDTH)
    for key in ("dossier", "due"):
        alerts.add_column(t(f"live.col.{key}", lang), no_wrap=True)
    alerts.add_column(t("live.col.overdue_hours", lang), justify="right", no_wrap=True)
    for a in list(v.alerts)[:ALERT_ROWS]:
        hours = a.get("overdue_working_hours")
        alerts.add_row(_alert_kind(a.get("kind"), lang), _name(v.registry, a.get("unit_code") or "", lang, v.sim_now),
                       a.get("dossier_code") or "", format_datetime(a.get("due_at"), lang) if a.get("due_at") else "–",
                       format_number(hours, lang, 2) if isinstance(hours, (int, float)) else "–")
    parts: list[Any] = [head, units, alerts]
    if v.error:
        parts.append(f"[red]{v.error}[/red]")
    return Group(*parts)
