"""Grafana building blocks: panels on the 24-column grid, targets, thresholds, variables and the dashboard frame.

Plain dicts (Grafana 11 model, schemaVersion 39). Texts are passed in by monitoring/dashboards.py, which takes
them from the message catalogue in the language being generated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from models.index766 import Catalogue

from monitoring import texts
from monitoring.config import MixinConfig

SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}
UIDS = {
    "province-scorecard": "onestop-province-scorecard",
    "unit-drilldown": "onestop-unit-drilldown",
    "backlog-deadlines": "onestop-backlog-deadlines",
    "pipeline-health": "onestop-pipeline-health",
}
TAGS = ["onestop", "766"]


def uid(key: str, lang: str) -> str:
    """The Vietnamese set keeps the historical uids; the English set is the same with ``-en`` (both may coexist)."""
    return UIDS[key] if lang == "vi" else f"{UIDS[key]}-en"
REF_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# ------------------------------------------------------------------------------------------------ building blocks

def _target(expr: str, legend: str = "__auto", ref: str = "A", instant: bool = False, table: bool = False) -> dict:
    return {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend, "range": not instant,
            "instant": instant, "format": "table" if table else "time_series", "editorMode": "code"}


def _targets(*items: tuple[str, str], instant: bool = False, table: bool = False) -> list[dict]:
    return [_target(e, legend, REF_IDS[i], instant, table) for i, (e, legend) in enumerate(items)]


def _thresholds(*steps: tuple[float | None, str]) -> dict:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


PERCENT_STEPS = _thresholds((None, "red"), (0.8, "orange"), (0.95, "green"))


class _Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping to a new row when full."""

    def __init__(self) -> None:
        self.x = self.y = self.row_h = 0
        self.next_id = 1

    def place(self, w: int, h: int) -> dict:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title: str) -> dict:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel = {"id": self.id(), "type": "row", "title": title, "collapsed": False, "panels": [],
                 "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}}
        self.y += 1
        return panel

    def id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _panel(lay: _Layout, kind: str, title: str, w: int, h: int, targets: list[dict], *, unit: str | None = None,
           description: str = "", decimals: int | None = None, thresholds: dict | None = None,
           mappings: list | None = None, minmax: tuple[float | None, float | None] = (None, None),
           options: dict | None = None, overrides: list | None = None, links: list | None = None,
           transformations: list | None = None, custom: dict | None = None) -> dict:
    defaults: dict[str, Any] = {"color": {"mode": "thresholds" if thresholds else "palette-classic"}}
    if unit:
        defaults["unit"] = unit
    if decimals is not None:
        defaults["decimals"] = decimals
    defaults["thresholds"] = thresholds or _thresholds((None, "green"))
    if mappings:
        defaults["mappings"] = mappings
    if minmax[0] is not None:
        defaults["min"] = minmax[0]
    if minmax[1] is not None:
        defaults["max"] = minmax[1]
    if custom:
        defaults["custom"] = custom
    panel = {"id": lay.id(), "type": kind, "title": title, "description": description, "datasource": DS,
             "gridPos": lay.place(w, h), "targets": targets,
             "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
             "options": options or {}}
    if links:
        panel["links"] = links
    if transformations:
        panel["transformations"] = transformations
    return panel


def _stat(lay: _Layout, title: str, expr: str, **kw: Any) -> dict:
    kw.setdefault("options", {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                              "colorMode": "background", "graphMode": "none", "textMode": "value_and_name"
                              if kw.pop("named", False) else "value", "justifyMode": "center",
                              "orientation": "auto"})
    return _panel(lay, "stat", title, kw.pop("w", 4), kw.pop("h", 4), [_target(expr, kw.pop("legend", "__auto"),
                                                                                instant=True)], **kw)


def _timeseries(lay: _Layout, title: str, items: Iterable[tuple[str, str]], w: int = 12, h: int = 8,
                **kw: Any) -> dict:
    kw.setdefault("options", {"legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                                         "calcs": ["lastNotNull"]},
                              "tooltip": {"mode": "multi", "sort": "desc"}})
    kw.setdefault("custom", {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "showPoints": "never",
                             "spanNulls": True})
    return _panel(lay, "timeseries", title, w, h, _targets(*items), **kw)


def _table(lay: _Layout, title: str, items: list[tuple[str, str]], rename: dict[str, str], sort_by: str,
           w: int = 24, h: int = 10, **kw: Any) -> dict:
    """An instant table joining one query per column on their labels (Grafana's merge transformation)."""
    columns = [name for key, name in rename.items() if key.startswith("#")]
    if len(columns) != len(items):
        raise ValueError(f"table {title!r}: {len(items)} queries but {len(columns)} column names")
    renames = {f"Value #{REF_IDS[i]}": name for i, name in enumerate(columns)}
    renames.update({k: v for k, v in rename.items() if not k.startswith(("#", "!"))})
    hidden = {"Time": True, "__name__": True, "job": True}
    if "!" in rename:  # the joined name column of the other language
        hidden[rename["!"]] = True
    transformations = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"excludeByName": hidden,
                                       "renameByName": renames}},
        {"id": "sortBy", "options": {"fields": {}, "sort": [{"field": sort_by, "desc": True}]}},
    ]
    kw.setdefault("options", {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}})
    return _panel(lay, "table", title, w, h, _targets(*items, instant=True, table=True),
                  transformations=transformations, **kw)


def _text(lay: _Layout, title: str, markdown: str, w: int = 24, h: int = 3) -> dict:
    return {"id": lay.id(), "type": "text", "title": title, "gridPos": lay.place(w, h),
            "options": {"mode": "markdown", "content": markdown}}


# --------------------------------------------------------------------------------------------------- variables

def _datasource_var(lang: str) -> dict:
    return {"name": "datasource", "label": texts.tr("dash.var.datasource", lang), "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1, "regex": ""}


def _query_var(name: str, label: str, query: str, *, include_all: bool = False, multi: bool = False) -> dict:
    var = {"name": name, "label": label, "type": "query", "datasource": DS, "definition": query,
           "query": {"query": query, "refId": f"{name}-variable"}, "current": {}, "hide": 0,
           "includeAll": include_all, "multi": multi, "options": [], "refresh": 2, "regex": "", "sort": 1}
    if include_all:
        var["allValue"] = ".*"
    return var


def _period_var(lang: str) -> dict:
    options = [{"text": texts.tr(f"dash.var.period.{v}", lang), "value": v, "selected": v == "month"}
               for v in ("month", "quarter", "year")]
    return {"name": "period", "label": texts.tr("dash.var.period", lang), "type": "custom",
            "query": "month,quarter,year",
            "current": {"text": texts.tr("dash.var.period.month", lang), "value": "month"}, "hide": 0, "includeAll": False,
            "multi": False, "options": options}


def _constant_var(name: str, value: str) -> dict:
    return {"name": name, "label": name, "type": "constant", "query": value, "hide": 2,
            "current": {"text": value, "value": value}, "options": [{"text": value, "value": value,
                                                                     "selected": True}]}


def _province_var(lang: str) -> dict:
    return _query_var("province", texts.tr("dash.var.province", lang), "label_values(province:onestop_index766_total:estimated, province)")


def _level_var(lang: str) -> dict:
    return _query_var("level", texts.tr("dash.var.level", lang), 'label_values(unit:onestop_index766_total:estimated{province="$province"}, '
                                      "level)", include_all=True)


def _unit_var(lang: str, include_all: bool = False) -> dict:
    return _query_var("unit", texts.tr("dash.var.unit", lang), 'label_values(unit:onestop_index766_total:estimated{province="$province", '
                                        'level=~"$level"}, unit)', include_all=include_all, multi=include_all)


def _dashboard(key: str, title: str, description: str, panels: list[dict], variables: list[dict],
               config: MixinConfig, lang: str, time_from: str = "now-7d", links: list | None = None) -> dict:
    return {
        "uid": uid(key, lang),
        "title": title,
        "description": description,
        "tags": TAGS,
        "timezone": "Asia/Ho_Chi_Minh",
        "editable": False,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "weekStart": "monday",
        "liveNow": False,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": config.dashboard_refresh,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [{"title": texts.tr("dash.links", lang), "type": "dashboards", "tags": ["onestop"], "asDropdown": True,
                   "includeVars": True, "keepTime": True}, *(links or [])],
        "templating": {"list": variables},
        "panels": panels,
    }


def _band_mappings(catalogue: Catalogue, lang: str) -> list[dict]:
    colors = {5: "dark-green", 4: "green", 3: "yellow", 2: "orange", 1: "red"}
    return [{"type": "value", "options": {str(b.number): {"text": texts.word(f"band.{b.code}", lang), "color": colors.get(b.number, "blue"),
                                                          "index": i}}}
            for i, b in enumerate(catalogue.bands)]


def _band_thresholds(catalogue: Catalogue) -> dict:
    colors = {5: "dark-green", 4: "green", 3: "yellow", 2: "orange", 1: "red"}
    steps = [(None if b is catalogue.bands[-1] else b.min_total, colors.get(b.number, "blue"))
             for b in reversed(catalogue.bands)]
    return _thresholds(*steps)


def _drill_link(config: MixinConfig, lang: str) -> list[dict]:
    return [{"title": texts.tr("dash.link.drill", lang, unit="${__data.fields.unit}"),
             "url": f"/d/{uid('unit-drilldown', lang)}?var-province=${{province}}&var-unit=${{__data.fields.unit}}"
                    "&${__url_time_range}"},
            {"title": texts.tr("dash.link.overdue_api", lang),
             "url": "${api_base}/api/units/${__data.fields.unit}/dossiers?state=overdue", "targetBlank": True}]


