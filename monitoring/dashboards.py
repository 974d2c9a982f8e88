"""Grafana dashboards (model of Grafana 11, schemaVersion 39) as plain dicts, plus the provisioning files.

Plain dicts rather than a builder library: the model is stable JSON, the committed files are what Grafana loads,
and the drift check and JSON Schema test guard them; a builder would only add a dependency with its own version
trap. Every query reads the recording rules (alerts/rules.yml), so a figure on a dashboard is the figure an alert
fires on. Fixed uids keep links between dashboards (and from notifications) stable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from models.index766 import Catalogue, load_catalogue

from monitoring.config import MixinConfig
from monitoring.rules import indicators_in_force

__all__ = ["all_dashboards", "provisioning_files", "UIDS", "panel_queries"]

SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}
UIDS = {
    "province-scorecard": "onestop-province-scorecard",
    "unit-drilldown": "onestop-unit-drilldown",
    "backlog-deadlines": "onestop-backlog-deadlines",
    "pipeline-health": "onestop-pipeline-health",
}
TAGS = ["onestop", "766"]
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
    renames.update({k: v for k, v in rename.items() if not k.startswith("#")})
    transformations = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"excludeByName": {"Time": True, "__name__": True, "job": True},
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

def _datasource_var() -> dict:
    return {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1, "regex": ""}


def _query_var(name: str, label: str, query: str, *, include_all: bool = False, multi: bool = False) -> dict:
    var = {"name": name, "label": label, "type": "query", "datasource": DS, "definition": query,
           "query": {"query": query, "refId": f"{name}-variable"}, "current": {}, "hide": 0,
           "includeAll": include_all, "multi": multi, "options": [], "refresh": 2, "regex": "", "sort": 1}
    if include_all:
        var["allValue"] = ".*"
    return var


def _period_var() -> dict:
    options = [{"text": t, "value": v, "selected": v == "month"}
               for v, t in (("month", "Tháng (month)"), ("quarter", "Quý (quarter)"), ("year", "Năm (year)"))]
    return {"name": "period", "label": "Kỳ", "type": "custom", "query": "month,quarter,year",
            "current": {"text": "Tháng (month)", "value": "month"}, "hide": 0, "includeAll": False,
            "multi": False, "options": options}


def _constant_var(name: str, value: str) -> dict:
    return {"name": name, "label": name, "type": "constant", "query": value, "hide": 2,
            "current": {"text": value, "value": value}, "options": [{"text": value, "value": value,
                                                                     "selected": True}]}


def _province_var() -> dict:
    return _query_var("province", "Tỉnh", "label_values(province:onestop_index766_total:estimated, province)")


def _level_var() -> dict:
    return _query_var("level", "Cấp", 'label_values(unit:onestop_index766_total:estimated{province="$province"}, '
                                      "level)", include_all=True)


def _unit_var(include_all: bool = False) -> dict:
    return _query_var("unit", "Đơn vị", 'label_values(unit:onestop_index766_total:estimated{province="$province", '
                                        'level=~"$level"}, unit)', include_all=include_all, multi=include_all)


def _dashboard(key: str, title: str, description: str, panels: list[dict], variables: list[dict],
               config: MixinConfig, time_from: str = "now-7d", links: list | None = None) -> dict:
    return {
        "uid": UIDS[key],
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
        "links": [{"title": "onestop", "type": "dashboards", "tags": ["onestop"], "asDropdown": True,
                   "includeVars": True, "keepTime": True}, *(links or [])],
        "templating": {"list": variables},
        "panels": panels,
    }


def _band_mappings(catalogue: Catalogue) -> list[dict]:
    colors = {5: "dark-green", 4: "green", 3: "yellow", 2: "orange", 1: "red"}
    return [{"type": "value", "options": {str(b.number): {"text": b.name_vi, "color": colors.get(b.number, "blue"),
                                                          "index": i}}}
            for i, b in enumerate(catalogue.bands)]


def _band_thresholds(catalogue: Catalogue) -> dict:
    colors = {5: "dark-green", 4: "green", 3: "yellow", 2: "orange", 1: "red"}
    steps = [(None if b is catalogue.bands[-1] else b.min_total, colors.get(b.number, "blue"))
             for b in reversed(catalogue.bands)]
    return _thresholds(*steps)


def _drill_link(config: MixinConfig) -> list[dict]:
    return [{"title": "Chi tiết đơn vị ${__data.fields.unit}",
             "url": f"/d/{UIDS['unit-drilldown']}?var-province=${{province}}&var-unit=${{__data.fields.unit}}"
                    "&${__url_time_range}"},
            {"title": "Hồ sơ quá hạn (read API)",
             "url": "${api_base}/api/units/${__data.fields.unit}/dossiers?state=overdue", "targetBlank": True}]


# -------------------------------------------------------------------------------------------------- dashboards

def province_scorecard(config: MixinConfig, catalogue: Catalogue) -> dict:
    lay = _Layout()
    p = 'province="$province", period="$period"'
    panels = [lay.row("Tỉnh $province — Bộ chỉ số 766")]
    panels.append(_stat(lay, "Điểm 766 (ước tính /100)", f"province:onestop_index766_total:estimated{{{p}}}",
                        decimals=2, thresholds=_band_thresholds(catalogue), minmax=(0, 100),
                        description="Total of the indicators computable from events, rescaled to 100 over the "
                                    "points they are worth (the national-only indicators are not known here)."))
    panels.append(_stat(lay, "Xếp loại", f"province:onestop_index766_band:number{{{p}}}",
                        mappings=_band_mappings(catalogue), thresholds=_band_thresholds_number(catalogue)))
    panels.append(_stat(lay, "Điểm đã biết", f"province:onestop_index766_total:score{{{p}}}", decimals=2,
                        description="Points scored on the known indicators (out of the known maximum)."))
    panels.append(_stat(lay, "Điểm tối đa đã biết", f"province:onestop_index766_total:max_points_known{{{p}}}",
                        decimals=0))
    panels.append(_stat(lay, "Tỷ lệ đúng hạn (2.1)", f"province:onestop_on_time:ratio{{{p}}}", unit="percentunit",
                        decimals=1, thresholds=PERCENT_STEPS))
    panels.append(_stat(lay, "Hồ sơ quá hạn (hiện tại)",
                        'province:onestop_dossiers_open:sum{province="$province", state="overdue"}',
                        thresholds=_thresholds((None, "green"), (1, "red"))))

    panels.append(lay.row("Sáu nhóm chỉ số"))
    computable = {i.group for i in indicators_in_force(catalogue) if i.computable_from_events and i.scored}
    shown = [g for g in catalogue.groups if g.id in computable]
    groups = [(f'province:onestop_index766_group:score{{{p}, group="{g.id}"}}', f"{g.id}. {g.name_vi} (/{g.max_points:g})")
              for g in shown]
    overrides = [{"matcher": {"id": "byFrameRefID", "options": REF_IDS[i]},
                  "properties": [{"id": "max", "value": g.max_points}]} for i, g in enumerate(shown)]
    not_shown = "; ".join(f"{g.id}. {g.name_vi} (/{g.max_points:g})" for g in catalogue.groups if g.id not in computable)
    panels.append(_panel(lay, "bargauge", "Điểm theo nhóm (tỉnh)", 12, 8, _targets(*groups, instant=True),
                         decimals=2, minmax=(0, None), overrides=overrides,
                         options={"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                                  "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
                         description="Score of each group over its indicators computable from events. Not computable "
                                     "from dossier events (national data only): " + (not_shown or "none") + "."))
    indicators = [i for i in indicators_in_force(catalogue) if i.computable_from_events and i.scored]
    panels.append(_table(
        lay, "Chỉ số tính được từ sự kiện (tỉnh)",
        [(f"province:onestop_index766_indicator:score{{{p}}}", ""),
         (f"province:onestop_index766_indicator:ratio{{{p}}}", ""),
         (f"province:onestop_index766_indicator:max_points{{{p}}}", "")],
        {"#score": "Điểm", "#ratio": "Tỷ lệ", "#max": "Điểm tối đa", "indicator": "Chỉ số", "group": "Nhóm"},
        "Điểm", w=12, h=8,
        description="Computable indicators: " + ", ".join(f"{i.id} {i.name_vi}" for i in indicators)))

    panels.append(lay.row("Xếp hạng đơn vị"))
    u = 'province="$province", period="$period"'
    panels.append(_table(
        lay, "Xếp hạng đơn vị theo điểm 766",
        [(f"unit:onestop_index766_total:estimated{{{u}}}", ""), (f"unit:onestop_index766_band:number{{{u}}}", ""),
         (f"unit:onestop_index766_total:score{{{u}}}", ""), (f"unit:onestop_on_time:ratio{{{u}}}", ""),
         (f'unit:onestop_dossiers_population:sum{{{u}}}', ""),
         ('unit:onestop_dossiers_open:sum{province="$province", state="overdue"}', "")],
        {"#est": "Điểm 766 (ước tính)", "#band": "Xếp loại", "#score": "Điểm đã biết", "#ontime": "Đúng hạn",
         "#pop": "Hồ sơ (2.1)", "#overdue": "Quá hạn", "unit": "unit", "level": "Cấp"},
        "Điểm 766 (ước tính)", h=12,
        overrides=[
            {"matcher": {"id": "byName", "options": "Xếp loại"},
             "properties": [{"id": "mappings", "value": _band_mappings(catalogue)},
                            {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                            {"id": "thresholds", "value": _band_thresholds_number(catalogue)}]},
            {"matcher": {"id": "byName", "options": "Đúng hạn"},
             "properties": [{"id": "unit", "value": "percentunit"}, {"id": "decimals", "value": 1}]},
            {"matcher": {"id": "byName", "options": "Điểm 766 (ước tính)"},
             "properties": [{"id": "decimals", "value": 2}]},
            {"matcher": {"id": "byName", "options": "unit"},
             "properties": [{"id": "links", "value": _drill_link(config)}]},
        ]))

    panels.append(lay.row("Diễn biến trong tháng"))
    panels.append(_timeseries(
        lay, "Điểm 766 của tỉnh trong tháng",
        [('province:onestop_index766_total:estimated{province="$province", period="month"}', "ước tính /100"),
         ('province:onestop_index766_total:score{province="$province", period="month"}', "điểm đã biết")],
        decimals=2, minmax=(0, 100), thresholds=_band_thresholds(catalogue)))
    panels.append(_timeseries(
        lay, "Điểm 766 theo đơn vị trong tháng",
        [('unit:onestop_index766_total:estimated{province="$province", period="month"}', "{{unit}}")],
        decimals=2, minmax=(0, 100)))
    return _dashboard("province-scorecard", "Một cửa — Bảng điểm 766 của tỉnh",
                      "766 index per province and unit, from the dossier events (current period).", panels,
                      [_datasource_var(), _province_var(), _period_var(), _constant_var("api_base",
                                                                                        config.read_api_base_url)],
                      config, time_from="now/M")


def _band_thresholds_number(catalogue: Catalogue) -> dict:
    colors = {5: "dark-green", 4: "green", 3: "yellow", 2: "orange", 1: "red"}
    nums = sorted(b.number for b in catalogue.bands)
    return _thresholds(*[(None if n == nums[0] else n, colors.get(n, "blue")) for n in nums])


def unit_drilldown(config: MixinConfig, catalogue: Catalogue) -> dict:
    lay = _Layout()
    u = 'unit="$unit", period="$period"'
    api_links = [
        {"title": "Danh sách hồ sơ quá hạn", "url": "${api_base}/api/units/${unit}/dossiers?state=overdue",
         "targetBlank": True},
        {"title": "Tải CSV hồ sơ quá hạn", "url": "${api_base}/api/units/${unit}/dossiers.csv?state=overdue",
         "targetBlank": True},
        {"title": "Hồ sơ sắp đến hạn", "url": "${api_base}/api/units/${unit}/dossiers?state=due_soon",
         "targetBlank": True},
    ]
    panels = [lay.row("Đơn vị $unit")]
    panels.append(_stat(lay, "Điểm 766 (ước tính /100)", f"unit:onestop_index766_total:estimated{{{u}}}", decimals=2,
                        thresholds=_band_thresholds(catalogue), minmax=(0, 100)))
    panels.append(_stat(lay, "Xếp loại", f"unit:onestop_index766_band:number{{{u}}}",
                        mappings=_band_mappings(catalogue), thresholds=_band_thresholds_number(catalogue)))
    for title, name in (("Đúng hạn (2.1)", "on_time"), ("Nộp trực tuyến", "online_submission"),
                        ("Thanh toán trực tuyến", "online_payment"), ("Hài lòng", "satisfied")):
        panels.append(_stat(lay, title, f"unit:onestop_{name}:ratio{{{u}}}", unit="percentunit", decimals=1,
                            thresholds=PERCENT_STEPS))
    panels.append(_text(lay, "Hồ sơ của đơn vị (read API)",
                        "[Hồ sơ quá hạn](${api_base}/api/units/${unit}/dossiers?state=overdue) · "
                        "[CSV](${api_base}/api/units/${unit}/dossiers.csv?state=overdue) · "
                        "[Sắp đến hạn](${api_base}/api/units/${unit}/dossiers?state=due_soon) · "
                        "[CSV](${api_base}/api/units/${unit}/dossiers.csv?state=due_soon)", h=2))

    panels.append(lay.row("Tiến độ giải quyết"))
    split = [(f"unit:onestop_dossiers_{k}:sum{{{u}}}", label) for k, label in (
        ("ended_early", "Đã xong trước hạn"), ("ended_on_time", "Đã xong đúng hạn"), ("ended_late", "Đã xong trễ hạn"),
        ("open_within", "Đang xử lý trong hạn"), ("open_due_soon", "Đang xử lý sắp đến hạn"),
        ("open_overdue", "Đang xử lý quá hạn"), ("open_awaiting_supplement", "Chờ bổ sung"),
        ("open_awaiting_payment", "Chờ nghĩa vụ tài chính"))]
    panels.append(_panel(lay, "bargauge", "Phân loại hồ sơ trong kỳ (đúng hạn / trễ hạn)", 12, 9,
                         _targets(*split, instant=True), decimals=0, minmax=(0, None),
                         options={"orientation": "horizontal", "displayMode": "basic", "showUnfilled": True,
                                  "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}))
    panels.append(_panel(lay, "bargauge", "Hồ sơ đang mở (hiện tại)", 12, 9,
                         _targets(('unit:onestop_dossiers_open:sum{unit="$unit"}', "{{state}}"), instant=True),
                         decimals=0, minmax=(0, None), links=api_links,
                         options={"orientation": "horizontal", "displayMode": "basic", "showUnfilled": True,
                                  "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}))
    panels.append(_timeseries(
        lay, "Sắp đến hạn và quá hạn",
        [('unit:onestop_dossiers_open:sum{unit="$unit", state="due_soon"}', "sắp đến hạn"),
         ('unit:onestop_dossiers_open:sum{unit="$unit", state="overdue"}', "quá hạn")], decimals=0, links=api_links))
    panels.append(_timeseries(
        lay, "Tỷ lệ trong tháng và mục tiêu",
        [('unit:onestop_on_time:ratio{unit="$unit", period="month"}', "đúng hạn"),
         ('unit:onestop_on_time:target{unit="$unit"}', "mục tiêu đúng hạn"),
         ('unit:onestop_online_submission:ratio{unit="$unit", period="month"}', "nộp trực tuyến"),
         ('unit:onestop_online_payment:ratio{unit="$unit", period="month"}', "thanh toán trực tuyến"),
         ('unit:onestop_satisfied:ratio{unit="$unit", period="month"}', "hài lòng")],
        unit="percentunit", minmax=(0, 1)))

    panels.append(lay.row("Bộ chỉ số 766 của đơn vị"))
    panels.append(_table(
        lay, "Chỉ số",
        [(f"unit:onestop_index766_indicator:score{{{u}}}", ""), (f"unit:onestop_index766_indicator:ratio{{{u}}}", ""),
         (f"unit:onestop_index766_indicator:numerator{{{u}}}", ""),
         (f"unit:onestop_index766_indicator:denominator{{{u}}}", "")],
        {"#score": "Điểm", "#ratio": "Tỷ lệ", "#num": "Tử số", "#den": "Mẫu số", "indicator": "Chỉ số",
         "group": "Nhóm"}, "Điểm", w=14, h=9))
    panels.append(_timeseries(
        lay, "Tốc độ tiêu hao ngân sách trễ hạn (burn rate)",
        [('{__name__=~"unit:onestop_on_time:burnrate.*", unit="$unit"}', "{{__name__}}")], w=10, h=9,
        description="Late dossiers added per window relative to the monthly allowance, per working second "
                    "(1 = exactly on budget)."))
    return _dashboard("unit-drilldown", "Một cửa — Chi tiết đơn vị",
                      "One unit: on-time split, open dossiers by deadline state, shares, 766 indicators, and links to "
                      "the read API's dossier lists.", panels,
                      [_datasource_var(), _province_var(), _level_var(), _unit_var(), _period_var(),
                       _constant_var("api_base", config.read_api_base_url)],
                      config, links=[{"title": t["title"], "type": "link", "url": t["url"], "targetBlank": True,
                                      "icon": "external link", "includeVars": False, "keepTime": False}
                                     for t in api_links])


def backlog_deadlines(config: MixinConfig, catalogue: Catalogue) -> dict:
    lay = _Layout()
    sel = 'province="$province", level=~"$level", unit=~"$unit"'
    panels = [lay.row("Tỉnh $province")]
    for state, title, color in (("overdue", "Quá hạn", "red"), ("due_soon", "Sắp đến hạn", "orange"),
                                ("within", "Trong hạn", "green"), ("awaiting_supplement", "Chờ bổ sung", "blue")):
        panels.append(_stat(lay, title, f'province:onestop_dossiers_open:sum{{province="$province", state="{state}"}}',
                            w=6, thresholds=_thresholds((None, color))))
    panels.append(_timeseries(lay, "Hồ sơ quá hạn theo đơn vị",
                              [(f'unit:onestop_dossiers_open:sum{{{sel}, state="overdue"}}', "{{unit}}")],
                              decimals=0, w=12, h=10))
    panels.append(_timeseries(lay, "Hồ sơ sắp đến hạn theo đơn vị",
                              [(f'unit:onestop_dossiers_open:sum{{{sel}, state="due_soon"}}', "{{unit}}")],
                              decimals=0, w=12, h=10))
    panels.append(_table(
        lay, "Đơn vị theo số hồ sơ quá hạn",
        [(f'unit:onestop_dossiers_open:sum{{{sel}, state="overdue"}}', ""),
         (f'unit:onestop_dossiers_open:sum{{{sel}, state="due_soon"}}', ""),
         (f'unit:onestop_dossiers_late_without_apology:sum{{{sel}, period="month"}}', ""),
         (f'unit:onestop_dossiers_ended_late:sum{{{sel}, period="month"}}', "")],
        {"#overdue": "Quá hạn", "#due": "Sắp đến hạn", "#noapology": "Trễ không xin lỗi (tháng)",
         "#late": "Đã xong trễ hạn (tháng)", "unit": "unit", "level": "Cấp"},
        "Quá hạn", h=12,
        overrides=[{"matcher": {"id": "byName", "options": "unit"},
                    "properties": [{"id": "links", "value": _drill_link(config)}]}]))
    panels.append(_timeseries(lay, "Hồ sơ trễ hạn thêm trong tháng (tỉnh)",
                              [('province:onestop_dossiers_ended_late:sum{province="$province", period="month"}',
                                "đã xong trễ hạn"),
                               ('province:onestop_dossiers_open_overdue:sum{province="$province", period="month"}',
                                "đang quá hạn"),
                               ('province:onestop_dossiers_late_without_apology:sum{province="$province", '
                                'period="month"}', "trễ không có phiếu xin lỗi")],
                              decimals=0, w=24, h=8))
    return _dashboard("backlog-deadlines", "Một cửa — Tồn đọng và hạn xử lý",
                      "Due-soon and overdue dossiers by unit over time.", panels,
                      [_datasource_var(), _province_var(), _level_var(), _unit_var(include_all=True)], config)


def pipeline_health(config: MixinConfig, catalogue: Catalogue) -> dict:
    lay = _Layout()
    sel = config.worker_selector
    ri = "$__rate_interval"
    panels = [lay.row("Luồng sự kiện")]
    panels.append(_timeseries(lay, "Sự kiện xử lý /s theo nguồn",
                              [(f"sum by (source) (rate(onestop_events_processed_total{{{sel}}}[{ri}]))", "{{source}}")],
                              unit="ops"))
    panels.append(_timeseries(lay, "Bản ghi bị từ chối /s theo lý do (dead letters)",
                              [(f"sum by (reason) (rate(onestop_events_rejected_total{{{sel}}}[{ri}]))", "{{reason}}")],
                              unit="ops"))
    panels.append(_timeseries(lay, "Trùng lặp và đến muộn /s",
                              [(f"sum(rate(onestop_events_duplicate_total{{{sel}}}[{ri}]))", "trùng lặp"),
                               (f"sum(rate(onestop_events_late_total{{{sel}}}[{ri}]))", "đến muộn")], unit="ops"))
    panels.append(_timeseries(lay, "Độ trễ xử lý",
                              [(f"onestop_processing_lag_seconds{{{sel}}}", "{{instance}}")], unit="s"))
    panels.append(_table(
        lay, "Sự kiện cuối cùng theo nguồn",
        [("source:onestop_last_event:timestamp_seconds * 1000", ""),
         (f"scalar(max(onestop_clock_timestamp_seconds{{{sel}}})) - source:onestop_last_event:timestamp_seconds",
          "")],
        {"#ts": "Sự kiện cuối", "#age": "Cách đây", "source": "Nguồn"}, "Cách đây", w=12, h=8,
        overrides=[{"matcher": {"id": "byName", "options": "Sự kiện cuối"},
                    "properties": [{"id": "unit", "value": "dateTimeAsIso"}]},
                   {"matcher": {"id": "byName", "options": "Cách đây"},
                    "properties": [{"id": "unit", "value": "s"}]}]))
    panels.append(_timeseries(lay, "Tỷ lệ bản ghi bị từ chối",
                              [(f"job:onestop_events_rejected:ratio_rate{config.dead_letter_window}", "{{job}}")],
                              unit="percentunit", w=12, h=8))

    panels.append(lay.row("Worker"))
    panels.append(_table(
        lay, "Trạng thái worker",
        [(f"up{{{sel}}}", ""), (f"onestop_worker_ready{{{sel}}}", ""),
         (f"onestop_worker_partitions_assigned{{{sel}}}", ""), (f"onestop_dossiers_tracked{{{sel}}}", ""),
         (f"onestop_deadline_checks_pending{{{sel}}}", ""), (f"onestop_tally_rebuild_duration_seconds{{{sel}}}", "")],
        {"#up": "up", "#ready": "Sẵn sàng", "#parts": "Phân vùng", "#tracked": "Hồ sơ đang giữ",
         "#pending": "Chờ kiểm tra hạn", "#rebuild": "Dựng lại (s)", "instance": "instance"}, "Phân vùng", h=8))
    panels.append(_timeseries(lay, "Cảnh báo hồ sơ đã phát /s theo loại",
                              [(f"sum by (kind) (rate(onestop_alerts_emitted_total{{{sel}}}[{ri}]))", "{{kind}}")],
                              unit="ops", w=8))
    panels.append(_timeseries(lay, "Lỗi collector",
                              [(f"sum by (instance) (increase(onestop_collector_errors_total{{{sel}}}[{ri}]))",
                                "{{instance}}")], w=8))
    panels.append(_timeseries(lay, "Giờ làm việc (theo đồng hồ worker)",
                              [("onestop:working_time:bool", "giờ làm việc"), ("onestop:working_day:bool", "ngày làm việc")],
                              w=8, minmax=(0, 1),
                              description="1 during working time per the Vietnamese work calendar; burn-rate "
                                          "alerts are evaluated only then."))
    return _dashboard("pipeline-health", "Một cửa — Sức khỏe pipeline",
                      "Events per second, rejections, duplicates, lag, last event per source, worker status.",
                      panels, [_datasource_var()], config, time_from="now-6h")


def all_dashboards(config: MixinConfig, catalogue: Catalogue | None = None) -> dict[str, dict]:
    catalogue = catalogue or load_catalogue()
    return {
        "province-scorecard": province_scorecard(config, catalogue),
        "unit-drilldown": unit_drilldown(config, catalogue),
        "backlog-deadlines": backlog_deadlines(config, catalogue),
        "pipeline-health": pipeline_health(config, catalogue),
    }


def panel_queries(dashboard: dict) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query, rows included: what the end-to-end test runs."""
    out = []

    def walk(panels: list[dict]) -> None:
        for p in panels:
            for t in p.get("targets", []):
                out.append((p.get("title", ""), t["refId"], t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    return out


def provisioning_files(config: MixinConfig) -> dict[str, dict]:
    """Grafana file provisioning: the Prometheus data source and a read-only dashboard provider."""
    return {
        "dashboards/provisioning/datasources/onestop-prometheus.yaml": {
            "apiVersion": 1,
            "datasources": [{"name": "Prometheus (onestop)", "type": "prometheus", "uid": config.datasource_uid,
                             "access": "proxy", "url": config.datasource_url, "isDefault": True,
                             "editable": False, "jsonData": {"timeInterval": config.scrape_interval}}],
        },
        "dashboards/provisioning/dashboards/onestop.yaml": {
            "apiVersion": 1,
            "providers": [{"name": "onestop", "orgId": 1, "folder": config.dashboard_folder,
                           "folderUid": config.dashboard_folder_uid, "type": "file", "disableDeletion": True,
                           "allowUiUpdates": False, "updateIntervalSeconds": 60,
                           "options": {"path": config.dashboards_path, "foldersFromFilesStructure": False}}],
        },
    }
