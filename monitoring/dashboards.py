"""Grafana dashboards (model of Grafana 11, schemaVersion 39) as plain dicts, in Vietnamese and English, plus the
provisioning files.

Plain dicts rather than a builder library: the model is stable JSON, the committed files are what Grafana loads,
and the drift check and JSON Schema test guard them; a builder would only add a dependency with its own version
trap. Every query reads the recording rules (alerts/rules.yml), so a figure on a dashboard is the figure an alert
fires on. Fixed uids keep links between dashboards (and from notifications) stable. Every title, legend, column and
description is a message-catalogue key (``mon.dash.*``): one source, generated once per language
(``dashboards/*.json`` in Vietnamese, ``dashboards/en/*.json`` in English, uids suffixed ``-en``). Units are shown
by name through a join with ``unit:onestop_unit_info:max``, never a name label on the figures themselves.
"""

from __future__ import annotations

from collections.abc import Callable

from models import dvcqg
from models.evaluation import ALERT_KINDS, OPEN_STATES
from models.events import EventError
from models.index766 import Catalogue, load_catalogue

from monitoring import texts
from monitoring.config import MixinConfig
from monitoring.panels import (DS, PERCENT_STEPS, REF_IDS, UIDS, _band_mappings, _band_thresholds,  # noqa: F401
                               _constant_var, _dashboard, _datasource_var, _drill_link, _Layout, _level_var,
                               _panel, _period_var, _province_var, _stat, _table, _targets, _text, _thresholds,
                               _timeseries, _unit_var, uid)
from monitoring.risk import UNIT_INFO


def _display_names(names: dict[str, str]) -> list[dict]:
    """Grafana overrides that show a series named by a label value (a legend ``{{kind}}``) under a text instead."""
    return [{"matcher": {"id": "byName", "options": value}, "properties": [{"id": "displayName", "value": text}]}
            for value, text in names.items()]
from monitoring.rules import indicators_in_force

__all__ = ["all_dashboards", "provisioning_files", "UIDS", "panel_queries", "named", "DASHBOARD_LANGS"]

DASHBOARD_LANGS = ("vi", "en")
#: Every ``reason`` of ``onestop_events_rejected_total``: the event contract's, the national-portal sync's and the
#: runtime's own (a record without key or value, a processor that raised, a failed deadline re-evaluation). The
#: dashboards show each under its name (tests/test_mixin_dashboards.py holds the list to the code).
RUNTIME_REASONS = ("missing_value", "processor_error", "reevaluate_error")
REJECTION_REASONS = EventError.REASONS + dvcqg.REASONS + RUNTIME_REASONS
BAR_OPTIONS = {"orientation": "horizontal", "showUnfilled": True,
               "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}


def _T(lang: str) -> Callable[..., str]:
    return lambda key, **kw: texts.tr(f"dash.{key}", lang, **kw)


def named(expr: str) -> str:
    """``expr`` (per unit) with the unit's ``name``/``name_en`` joined for legends and table columns."""
    return f"{expr} * on (unit) group_left (name, name_en) {UNIT_INFO}"


def unit_legend(lang: str) -> str:
    return "{{unit}} {{name_en}}" if lang == "en" else "{{unit}} {{name}}"


def _name_columns(lang: str, T: Callable[..., str]) -> dict[str, str]:
    """Rename of the joined name column, and the other language's column to hide (``!`` prefix)."""
    return {"name_en" if lang == "en" else "name": T("col.unit_name"), "!": "name" if lang == "en" else "name_en"}


def _band_thresholds_number(catalogue: Catalogue) -> dict:
    colors = {5: "dark-green", 4: "green", 3: "yellow", 2: "orange", 1: "red"}
    nums = sorted(b.number for b in catalogue.bands)
    return _thresholds(*[(None if n == nums[0] else n, colors.get(n, "blue")) for n in nums])


# -------------------------------------------------------------------------------------------------- dashboards

def province_scorecard(config: MixinConfig, catalogue: Catalogue, lang: str = "vi") -> dict:
    T = _T(lang)
    lay = _Layout()
    p = 'province="$province", period="$period"'
    panels = [lay.row(T("sc.row.province"))]
    panels.append(_stat(lay, T("sc.estimated"), f"province:onestop_index766_total:estimated{{{p}}}",
                        decimals=2, thresholds=_band_thresholds(catalogue), minmax=(0, 100),
                        description=T("sc.estimated.desc")))
    panels.append(_stat(lay, T("sc.band"), f"province:onestop_index766_band:number{{{p}}}",
                        mappings=_band_mappings(catalogue, lang), thresholds=_band_thresholds_number(catalogue)))
    panels.append(_stat(lay, T("sc.known"), f"province:onestop_index766_total:score{{{p}}}", decimals=2,
                        description=T("sc.known.desc")))
    panels.append(_stat(lay, T("sc.known_max"), f"province:onestop_index766_total:max_points_known{{{p}}}",
                        decimals=0))
    panels.append(_stat(lay, T("sc.on_time"), f"province:onestop_on_time:ratio{{{p}}}", unit="percentunit",
                        decimals=1, thresholds=PERCENT_STEPS))
    panels.append(_stat(lay, T("sc.overdue_now"),
                        'province:onestop_dossiers_open:sum{province="$province", state="overdue"}',
                        thresholds=_thresholds((None, "green"), (1, "red"))))

    panels.append(lay.row(T("sc.row.groups")))
    computable = {i.group for i in indicators_in_force(catalogue) if i.computable_from_events and i.scored}
    shown = [g for g in catalogue.groups if g.id in computable]
    groups = [(f'province:onestop_index766_group:score{{{p}, group="{g.id}"}}',
               f"{g.id}. {texts.name(g, lang)} (/{g.max_points:g})") for g in shown]
    overrides = [{"matcher": {"id": "byFrameRefID", "options": REF_IDS[i]},
                  "properties": [{"id": "max", "value": g.max_points}]} for i, g in enumerate(shown)]
    not_shown = "; ".join(f"{g.id}. {texts.name(g, lang)} (/{g.max_points:g})"
                          for g in catalogue.groups if g.id not in computable)
    panels.append(_panel(lay, "bargauge", T("sc.groups"), 12, 8, _targets(*groups, instant=True),
                         decimals=2, minmax=(0, None), overrides=overrides,
                         options={**BAR_OPTIONS, "displayMode": "gradient"},
                         description=T("sc.groups.desc", groups=not_shown or T("none"))))
    indicators = [i for i in indicators_in_force(catalogue) if i.computable_from_events and i.scored]
    panels.append(_table(
        lay, T("sc.indicators"),
        [(f"province:onestop_index766_indicator:score{{{p}}}", ""),
         (f"province:onestop_index766_indicator:ratio{{{p}}}", ""),
         (f"province:onestop_index766_indicator:max_points{{{p}}}", "")],
        {"#score": T("col.score"), "#ratio": T("col.ratio"), "#max": T("col.max"), "indicator": T("col.indicator"),
         "group": T("col.group")},
        T("col.score"), w=12, h=8,
        description=T("sc.indicators.desc", indicators=", ".join(f"{i.id} {texts.name(i, lang)}" for i in indicators))))

    panels.append(lay.row(T("sc.row.ranking")))
    u = 'province="$province", period="$period"'
    panels.append(_table(
        lay, T("sc.ranking"),
        [(named(f"unit:onestop_index766_total:estimated{{{u}}}"), ""),
         (named(f"unit:onestop_index766_band:number{{{u}}}"), ""),
         (named(f"unit:onestop_index766_total:score{{{u}}}"), ""), (named(f"unit:onestop_on_time:ratio{{{u}}}"), ""),
         (named(f'unit:onestop_dossiers_population:sum{{{u}}}'), ""),
         (named('unit:onestop_dossiers_open:sum{province="$province", state="overdue"}'), "")],
        {"#est": T("col.estimated"), "#band": T("sc.band"), "#score": T("sc.known"), "#ontime": T("col.on_time"),
         "#pop": T("col.population"), "#overdue": T("col.overdue"), "unit": "unit", "level": T("col.level"),
         **_name_columns(lang, T)},
        T("col.estimated"), h=12,
        overrides=[
            {"matcher": {"id": "byName", "options": T("sc.band")},
             "properties": [{"id": "mappings", "value": _band_mappings(catalogue, lang)},
                            {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                            {"id": "thresholds", "value": _band_thresholds_number(catalogue)}]},
            {"matcher": {"id": "byName", "options": T("col.on_time")},
             "properties": [{"id": "unit", "value": "percentunit"}, {"id": "decimals", "value": 1}]},
            {"matcher": {"id": "byName", "options": T("col.estimated")},
             "properties": [{"id": "decimals", "value": 2}]},
            {"matcher": {"id": "byName", "options": "unit"},
             "properties": [{"id": "links", "value": _drill_link(config, lang)}]},
        ]))

    panels.append(lay.row(T("sc.row.risk")))
    pr = 'province="$province"'
    panels.append(_panel(
        lay, "bargauge", T("sc.risk"), 12, 9,
        _targets((named(f'unit:onestop_index766_points_at_risk:sum{{{pr}, horizon="next_working_day"}}'),
                  T("legend.next_working_day", unit=unit_legend(lang))),
                 (named(f'unit:onestop_index766_points_at_risk:sum{{{pr}, horizon="all"}}'),
                  T("legend.all_open", unit=unit_legend(lang))), instant=True),
        decimals=2, minmax=(0, None), options={**BAR_OPTIONS, "displayMode": "basic"},
        thresholds=_thresholds((None, "green"), (config.at_risk_points_threshold, "orange")),
        description=T("sc.risk.desc", threshold=texts.num(config.at_risk_points_threshold, lang))))
    panels.append(_stat(lay, T("sc.risk_province"),
                        f'province:onestop_index766_points_at_risk:sum{{{pr}, horizon="next_working_day"}}',
                        w=6, h=9, decimals=2, legend=T("legend.province_next"),
                        thresholds=_thresholds((None, "green"), (config.at_risk_points_threshold, "orange"))))
    panels.append(_stat(lay, T("sc.risk_province_all"), f'province:onestop_index766_points_at_risk:sum{{{pr}, '
                                                        'horizon="all"}', w=6, h=9, decimals=2,
                        thresholds=_thresholds((None, "blue"))))
    panels.append(_panel(
        lay, "bargauge", T("sc.forecast"), 12, 9,
        _targets(*[(f'province:onestop_index766_forecast_total:estimated{{{pr}, scenario="{s}"}}', T(f"scenario.{s}"))
                   for s in ("on_time_all", "due_soon_late", "current_rate")], instant=True),
        decimals=2, minmax=(0, 100), thresholds=_band_thresholds(catalogue),
        options={**BAR_OPTIONS, "displayMode": "gradient"}, description=T("sc.forecast.desc")))
    panels.append(_table(
        lay, T("sc.forecast_units"),
        [(named(f'unit:onestop_index766_forecast_total:estimated{{{pr}, scenario="{s}"}}'), "")
         for s in ("on_time_all", "due_soon_late", "current_rate")],
        {"#a": T("scenario.on_time_all"), "#b": T("scenario.due_soon_late"), "#c": T("scenario.current_rate"),
         "unit": "unit", "level": T("col.level"), "scenario": T("col.scenario"), **_name_columns(lang, T)},
        T("scenario.current_rate"), w=12, h=9, decimals=2,
        description=T("sc.forecast.desc")))

    panels.append(lay.row(T("sc.row.quality")))
    panels.append(_table(
        lay, T("sc.reconcile"),
        [(named(f'unit:onestop_official_difference:ratio{{{pr}}}'), "")],
        {"#diff": T("col.difference"), "unit": "unit", "indicator": T("col.indicator"), "term": T("col.term"),
         "level": T("col.level"), **_name_columns(lang, T)},
        T("col.difference"), h=9,
        overrides=[{"matcher": {"id": "byName", "options": T("col.difference")},
                    "properties": [{"id": "unit", "value": "percentunit"}, {"id": "decimals", "value": 1}]}],
        thresholds=_thresholds((None, "green"), (config.reconciliation_threshold, "red")),
        description=T("sc.reconcile.desc", threshold=texts.pct(config.reconciliation_threshold, lang))))

    panels.append(lay.row(T("sc.row.trend")))
    panels.append(_timeseries(
        lay, T("sc.trend_province"),
        [('province:onestop_index766_total:estimated{province="$province", period="month"}', T("legend.estimated")),
         ('province:onestop_index766_total:score{province="$province", period="month"}', T("legend.known"))],
        decimals=2, minmax=(0, 100), thresholds=_band_thresholds(catalogue)))
    panels.append(_timeseries(
        lay, T("sc.trend_units"),
        [(named('unit:onestop_index766_total:estimated{province="$province", period="month"}'), unit_legend(lang))],
        decimals=2, minmax=(0, 100)))
    return _dashboard("province-scorecard", T("sc.title"), T("sc.desc"), panels,
                      [_datasource_var(lang), _province_var(lang), _period_var(lang),
                       _constant_var("api_base", config.read_api_base_url)],
                      config, lang, time_from="now/M")


def unit_drilldown(config: MixinConfig, catalogue: Catalogue, lang: str = "vi") -> dict:
    T = _T(lang)
    lay = _Layout()
    u = 'unit="$unit", period="$period"'
    api_links = [
        {"title": T("ud.link.overdue"), "url": "${api_base}/api/units/${unit}/dossiers?state=overdue",
         "targetBlank": True},
        {"title": T("ud.link.overdue_csv"), "url": "${api_base}/api/units/${unit}/dossiers.csv?state=overdue",
         "targetBlank": True},
        {"title": T("ud.link.due_soon"), "url": "${api_base}/api/units/${unit}/dossiers?state=due_soon",
         "targetBlank": True},
        {"title": T("ud.link.at_risk"), "url": "${api_base}/api/units/${unit}/at-risk", "targetBlank": True},
    ]
    panels = [lay.row(T("ud.row.unit"))]
    panels.append(_stat(lay, T("sc.estimated"), f"unit:onestop_index766_total:estimated{{{u}}}", decimals=2,
                        thresholds=_band_thresholds(catalogue), minmax=(0, 100)))
    panels.append(_stat(lay, T("sc.band"), f"unit:onestop_index766_band:number{{{u}}}",
                        mappings=_band_mappings(catalogue, lang), thresholds=_band_thresholds_number(catalogue)))
    for key, name in (("ud.on_time", "on_time"), ("ud.online_submission", "online_submission"),
                      ("ud.online_payment", "online_payment"), ("ud.satisfied", "satisfied")):
        panels.append(_stat(lay, T(key), f"unit:onestop_{name}:ratio{{{u}}}", unit="percentunit", decimals=1,
                            thresholds=PERCENT_STEPS))
    panels.append(_text(lay, T("ud.api"), T("ud.api.md"), h=2))

    panels.append(lay.row(T("ud.row.progress")))
    split = [(f"unit:onestop_dossiers_{k}:sum{{{u}}}", T(f"ud.split.{k}")) for k in (
        "ended_early", "ended_on_time", "ended_late", "open_within", "open_due_soon", "open_overdue",
        "open_awaiting_supplement", "open_awaiting_payment")]
    panels.append(_panel(lay, "bargauge", T("ud.split"), 12, 9, _targets(*split, instant=True), decimals=0,
                         minmax=(0, None), options={**BAR_OPTIONS, "displayMode": "basic"}))
    panels.append(_panel(lay, "bargauge", T("ud.open_now"), 12, 9,
                         _targets(*((f'unit:onestop_dossiers_open:sum{{unit="$unit", state="{state}"}}',
                                     T(f"ud.split.open_{state}")) for state in OPEN_STATES), instant=True),
                         decimals=0, minmax=(0, None), links=api_links, options={**BAR_OPTIONS, "displayMode": "basic"}))
    panels.append(_timeseries(
        lay, T("ud.due_overdue"),
        [('unit:onestop_dossiers_open:sum{unit="$unit", state="due_soon"}', T("legend.due_soon")),
         ('unit:onestop_dossiers_open:sum{unit="$unit", state="overdue"}', T("legend.overdue"))], decimals=0,
        links=api_links))
    panels.append(_timeseries(
        lay, T("ud.ratios"),
        [('unit:onestop_on_time:ratio{unit="$unit", period="month"}', T("legend.on_time")),
         ('unit:onestop_on_time:target{unit="$unit"}', T("legend.on_time_target")),
         ('unit:onestop_online_submission:ratio{unit="$unit", period="month"}', T("legend.online_submission")),
         ('unit:onestop_online_payment:ratio{unit="$unit", period="month"}', T("legend.online_payment")),
         ('unit:onestop_satisfied:ratio{unit="$unit", period="month"}', T("legend.satisfied"))],
        unit="percentunit", minmax=(0, 1)))

    panels.append(lay.row(T("ud.row.indicators")))
    panels.append(_table(
        lay, T("ud.indicators"),
        [(f"unit:onestop_index766_indicator:score{{{u}}}", ""), (f"unit:onestop_index766_indicator:ratio{{{u}}}", ""),
         (f"unit:onestop_index766_indicator:numerator{{{u}}}", ""),
         (f"unit:onestop_index766_indicator:denominator{{{u}}}", "")],
        {"#score": T("col.score"), "#ratio": T("col.ratio"), "#num": T("col.numerator"), "#den": T("col.denominator"),
         "indicator": T("col.indicator"), "group": T("col.group")}, T("col.score"), w=14, h=9))
    panels.append(_timeseries(
        lay, T("ud.burn"),
        [('{__name__=~"unit:onestop_on_time:burnrate.*", unit="$unit"}', "{{__name__}}")], w=10, h=9,
        description=T("ud.burn.desc")))
    panels.append(_timeseries(
        lay, T("ud.risk"),
        [('unit:onestop_index766_points_at_risk:sum{unit="$unit", horizon="next_working_day"}',
          T("legend.risk_next")),
         ('unit:onestop_index766_points_at_risk:sum{unit="$unit", horizon="all"}', T("legend.risk_all"))],
        decimals=2, links=api_links, description=T("sc.risk.desc",
                                                   threshold=texts.num(config.at_risk_points_threshold, lang))))
    panels.append(_timeseries(
        lay, T("ud.forecast"),
        [(f'unit:onestop_index766_forecast_total:estimated{{unit="$unit", scenario="{s}"}}', T(f"scenario.{s}"))
         for s in ("on_time_all", "due_soon_late", "current_rate")],
        decimals=2, minmax=(0, 100), description=T("sc.forecast.desc")))
    return _dashboard("unit-drilldown", T("ud.title"), T("ud.desc"), panels,
                      [_datasource_var(lang), _province_var(lang), _level_var(lang), _unit_var(lang),
                       _period_var(lang), _constant_var("api_base", config.read_api_base_url)],
                      config, lang, links=[{"title": t["title"], "type": "link", "url": t["url"], "targetBlank": True,
                                            "icon": "external link", "includeVars": False, "keepTime": False}
                                           for t in api_links])


def backlog_deadlines(config: MixinConfig, catalogue: Catalogue, lang: str = "vi") -> dict:
    T = _T(lang)
    lay = _Layout()
    sel = 'province="$province", level=~"$level", unit=~"$unit"'
    panels = [lay.row(T("bl.row.province"))]
    for state, color in (("overdue", "red"), ("due_soon", "orange"), ("within", "green"),
                         ("awaiting_supplement", "blue")):
        panels.append(_stat(lay, T(f"bl.state.{state}"),
                            f'province:onestop_dossiers_open:sum{{province="$province", state="{state}"}}',
                            w=6, thresholds=_thresholds((None, color))))
    panels.append(_timeseries(lay, T("bl.overdue_by_unit"),
                              [(named(f'unit:onestop_dossiers_open:sum{{{sel}, state="overdue"}}'), unit_legend(lang))],
                              decimals=0, w=12, h=10))
    panels.append(_timeseries(lay, T("bl.due_soon_by_unit"),
                              [(named(f'unit:onestop_dossiers_open:sum{{{sel}, state="due_soon"}}'), unit_legend(lang))],
                              decimals=0, w=12, h=10))
    panels.append(_table(
        lay, T("bl.ranking"),
        [(named(f'unit:onestop_dossiers_open:sum{{{sel}, state="overdue"}}'), ""),
         (named(f'unit:onestop_dossiers_open:sum{{{sel}, state="due_soon"}}'), ""),
         (named(f'unit:onestop_dossiers_late_without_apology:sum{{{sel}, period="month"}}'), ""),
         (named(f'unit:onestop_dossiers_ended_late:sum{{{sel}, period="month"}}'), "")],
        {"#overdue": T("col.overdue"), "#due": T("col.due_soon"), "#noapology": T("col.no_apology"),
         "#late": T("col.ended_late"), "unit": "unit", "level": T("col.level"), **_name_columns(lang, T)},
        T("col.overdue"), h=12,
        overrides=[{"matcher": {"id": "byName", "options": "unit"},
                    "properties": [{"id": "links", "value": _drill_link(config, lang)}]}]))
    panels.append(_timeseries(lay, T("bl.late_province"),
                              [('province:onestop_dossiers_ended_late:sum{province="$province", period="month"}',
                                T("legend.ended_late")),
                               ('province:onestop_dossiers_open_overdue:sum{province="$province", period="month"}',
                                T("legend.open_overdue")),
                               ('province:onestop_dossiers_late_without_apology:sum{province="$province", '
                                'period="month"}', T("legend.no_apology"))],
                              decimals=0, w=24, h=8))
    return _dashboard("backlog-deadlines", T("bl.title"), T("bl.desc"), panels,
                      [_datasource_var(lang), _province_var(lang), _level_var(lang),
                       _unit_var(lang, include_all=True)], config, lang)


def pipeline_health(config: MixinConfig, catalogue: Catalogue, lang: str = "vi") -> dict:
    T = _T(lang)
    lay = _Layout()
    sel = config.worker_selector
    ri = "$__rate_interval"
    panels = [lay.row(T("ph.row.events"))]
    panels.append(_timeseries(lay, T("ph.events"),
                              [(f"sum by (source) (rate(onestop_events_processed_total{{{sel}}}[{ri}]))", "{{source}}")],
                              unit="ops"))
    panels.append(_timeseries(lay, T("ph.rejected"),
                              [(f"sum by (reason) (rate(onestop_events_rejected_total{{{sel}}}[{ri}]))", "{{reason}}")],
                              unit="ops", overrides=_display_names(
                                  {reason: T(f"reason.{reason}") for reason in REJECTION_REASONS})))
    panels.append(_timeseries(lay, T("ph.duplicates"),
                              [(f"sum(rate(onestop_events_duplicate_total{{{sel}}}[{ri}]))", T("legend.duplicate")),
                               (f"sum(rate(onestop_events_late_total{{{sel}}}[{ri}]))", T("legend.late_arrival"))],
                              unit="ops"))
    panels.append(_timeseries(lay, T("ph.lag"), [(f"onestop_processing_lag_seconds{{{sel}}}", "{{instance}}")],
                              unit="s"))
    panels.append(_table(
        lay, T("ph.last_event"),
        [("source:onestop_last_event:timestamp_seconds * 1000", ""),
         (f"scalar(max(onestop_clock_timestamp_seconds{{{sel}}})) - source:onestop_last_event:timestamp_seconds",
          "")],
        {"#ts": T("col.last_event"), "#age": T("col.age"), "source": T("col.source")}, T("col.age"), w=12, h=8,
        overrides=[{"matcher": {"id": "byName", "options": T("col.last_event")},
                    "properties": [{"id": "unit", "value": "dateTimeAsIso"}]},
                   {"matcher": {"id": "byName", "options": T("col.age")},
                    "properties": [{"id": "unit", "value": "s"}]}]))
    panels.append(_timeseries(lay, T("ph.rejected_ratio"),
                              [(f"job:onestop_events_rejected:ratio_rate{config.dead_letter_window}", "{{job}}")],
                              unit="percentunit", w=12, h=8))

    panels.append(lay.row(T("ph.row.sync")))
    panels.append(_timeseries(lay, T("ph.sync_records"),
                              [(f'sum by (service) (rate(onestop_sync_records_total{{{sel}, outcome="{o}"}}[{ri}]))',
                                "{{service}}: " + T(f"legend.sync_{o}")) for o in ("accepted", "refused")],
                              unit="ops", description=T("ph.sync_records.desc")))
    panels.append(_timeseries(lay, T("ph.sync_bodies"),
                              [(f'sum(rate(onestop_sync_bodies_total{{{sel}, outcome="{o}"}}[{ri}]))',
                                T(f"legend.sync_{o}")) for o in ("ok", "partial", "refused")],
                              unit="ops", description=T("ph.sync_bodies.desc")))

    panels.append(lay.row(T("ph.row.workers")))
    panels.append(_table(
        lay, T("ph.workers"),
        [(f"up{{{sel}}}", ""), (f"onestop_worker_ready{{{sel}}}", ""),
         (f"onestop_worker_partitions_assigned{{{sel}}}", ""), (f"onestop_dossiers_tracked{{{sel}}}", ""),
         (f"onestop_deadline_checks_pending{{{sel}}}", ""), (f"onestop_tally_rebuild_duration_seconds{{{sel}}}", "")],
        {"#up": "up", "#ready": T("col.ready"), "#parts": T("col.partitions"), "#tracked": T("col.tracked"),
         "#pending": T("col.pending"), "#rebuild": T("col.rebuild"), "instance": "instance"}, T("col.partitions"),
        h=8))
    panels.append(_timeseries(lay, T("ph.alerts"),
                              [(f"sum by (kind) (rate(onestop_alerts_emitted_total{{{sel}}}[{ri}]))", "{{kind}}")],
                              unit="ops", w=8, overrides=_display_names(
                                  {kind: texts.word(f"alert.{kind}", lang) for kind in ALERT_KINDS})))
    panels.append(_timeseries(lay, T("ph.collector"),
                              [(f"sum by (instance) (increase(onestop_collector_errors_total{{{sel}}}[{ri}]))",
                                "{{instance}}")], w=8))
    panels.append(_timeseries(lay, T("ph.working_time"),
                              [("onestop:working_time:bool", T("legend.working_time")),
                               ("onestop:working_day:bool", T("legend.working_day"))],
                              w=8, minmax=(0, 1), description=T("ph.working_time.desc")))
    return _dashboard("pipeline-health", T("ph.title"), T("ph.desc"), panels, [_datasource_var(lang)], config, lang,
                      time_from="now-6h")


BOARDS = {"province-scorecard": province_scorecard, "unit-drilldown": unit_drilldown,
          "backlog-deadlines": backlog_deadlines, "pipeline-health": pipeline_health}


def all_dashboards(config: MixinConfig, catalogue: Catalogue | None = None, lang: str = "vi") -> dict[str, dict]:
    catalogue = catalogue or load_catalogue()
    return {name: build(config, catalogue, lang) for name, build in BOARDS.items()}


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
