"""Rules of what no index tool shows: points at risk, the month-end forecast, the gap to the official figure, and
the unit-name join every data alert and dashboard uses.

The workers export counts only (docs/metrics.md): ``onestop_dossiers_at_risk{unit, province, level, indicator,
horizon}`` (open dossiers within due, counted in ``indicator``'s numerator this month, that would leave it by ending
late), ``onestop_forecast_late_dossiers{unit, province, level, scenario}`` (additional late dossiers by the month
end) and the portal's published ``onestop_official_{numerator,denominator}{unit, indicator, period}``. The points are
computed here with the score formula of the 766 rules (``min(M, max(0, M * ratio / T))`` of the catalogue row), so a
dossier that ends late costs ``score(numerator) - score(numerator - 1)``: ``20 / population`` for the linear 2.1
until the score clamps.
"""

from __future__ import annotations

from models.index766 import Catalogue, Indicator, load_catalogue

from monitoring import texts
from monitoring.config import MixinConfig
from monitoring.rules import PROVINCE, UNIT, Level, fmt, indicators_in_force

__all__ = ["UNIT_INFO", "AT_RISK_INDICATORS", "SCENARIOS", "names_group", "risk_group",
           "risk_alerts", "points_at_risk", "forecast_total", "official_difference"]

UNIT_INFO = "unit:onestop_unit_info:max"
#: Indicators whose numerator a dossier ending late leaves (2.1 on time; 5.4 on time and not dissatisfied).
AT_RISK_INDICATORS = ("2.1", "5.4")
#: ``on_time_all`` is today's figure (every open dossier ends by its due); the others come from the workers.
SCENARIOS = ("on_time_all", "due_soon_late", "current_rate")
MONTH = 'period="month"'


def points_at_risk(level: Level) -> str:
    return f"{level.prefix}:onestop_index766_points_at_risk:sum"


def forecast_total(level: Level) -> str:
    return f"{level.prefix}:onestop_index766_forecast_total:estimated"


def official_difference() -> str:
    return "unit:onestop_official_difference:ratio"


def names_group(config: MixinConfig) -> dict:
    """One series per unit carrying its name; units the workers name in no ``onestop_unit_info`` keep their code."""
    sel = config.worker_selector
    expr = (f"topk by (unit) (1, max by (unit, name, name_en) (onestop_unit_info{{{sel}}}))\n"
            f"or on (unit) group by (unit) (onestop_dossiers_population{{{sel}}})\n"
            f"or on (unit) group by (unit) (onestop_dossiers_open{{{sel}}})")
    return {"name": "onestop.names", "interval": config.evaluation_interval,
            "rules": [{"record": UNIT_INFO, "expr": expr}]}


def _indicators(catalogue: Catalogue, ids: tuple[str, ...]) -> list[Indicator]:
    rows = {i.id: i for i in indicators_in_force(catalogue) if i.computable_from_events and i.scored}
    return [rows[i] for i in ids if i in rows]


def _score_of(ind: Indicator, level: Level, numerator: str, join: str = "") -> str:
    """The indicator's score for a numerator expression, over this month's denominator; ``join`` matches the two
    when the numerator carries labels the denominator does not (a scenario)."""
    m, t = fmt(ind.max_points), fmt(ind.threshold)
    den = f'{level.prefix}:onestop_index766_indicator:denominator{{{MONTH}, indicator="{ind.id}"}}'
    return f"clamp_max(clamp_min({m} * ({numerator}) / {join}({den} > 0) / {t}, 0), {m})"


def _at_risk_rules(config: MixinConfig, level: Level, catalogue: Catalogue) -> list[dict]:
    p = level.prefix
    by = ", ".join(b for b in level.by if b != "period")
    counts = f"{p}:onestop_dossiers_at_risk:sum"
    if level is UNIT:
        rules = [{"record": counts, "expr": f"sum by ({by}, indicator, horizon) "
                                            f"(onestop_dossiers_at_risk{{{config.worker_selector}}})"}]
    else:
        rules = [{"record": counts,
                  "expr": f'sum by ({by}, indicator, horizon) (unit:onestop_dossiers_at_risk:sum{{province!=""}})'}]
    per = f"{p}:onestop_index766_indicator:points_per_late_dossier"
    for ind in _indicators(catalogue, AT_RISK_INDICATORS):
        sel = f'{{{MONTH}, indicator="{ind.id}"}}'
        num = f"{p}:onestop_index766_indicator:numerator{sel}"
        rules.append({"record": per, "labels": {"indicator": ind.id, "group": str(ind.group)},
                      "expr": f"{p}:onestop_index766_indicator:score{sel}\n- {_score_of(ind, level, num + ' - 1')}"})
    key = ", ".join(level.by[:1])
    rules.append({"record": points_at_risk(level),
                  "expr": f"sum by ({by}, horizon) (\n  {counts}\n  * on ({key}, indicator) group_left ()\n"
                          f"  {per}{{{MONTH}}}\n)"})
    return rules


def _forecast_rules(config: MixinConfig, level: Level, catalogue: Catalogue) -> list[dict]:
    """Each scenario's score of every indicator a late end moves (2.1 and 5.4), from today's numerator less the
    dossiers the worker says the scenario takes out of it; the total replaces today's scores of those indicators by
    the scenario's, as ``models.at_risk`` does."""
    inds = _indicators(catalogue, AT_RISK_INDICATORS)
    if not inds:
        return []
    p = level.prefix
    by = ", ".join(b for b in level.by if b != "period")
    key = level.by[0]
    late = f"{p}:onestop_forecast_late_dossiers:sum"
    src = (f"onestop_forecast_late_dossiers{{{config.worker_selector}}}" if level is UNIT
           else 'unit:onestop_forecast_late_dossiers:sum{province!=""}')
    fc = f"{p}:onestop_index766_forecast:score"
    rules = [{"record": late, "expr": f"sum by ({by}, indicator, scenario) ({src})"}]
    for ind in inds:
        sel = f'{{{MONTH}, indicator="{ind.id}"}}'
        num = f"{p}:onestop_index766_indicator:numerator{sel}"
        left = f'-{late}{{indicator="{ind.id}"}} + on ({key}) group_left () {num}'
        rules += [
            {"record": fc, "labels": {"indicator": ind.id, "scenario": "on_time_all"},
             "expr": f"max by ({by}) ({p}:onestop_index766_indicator:score{sel})"},
            {"record": fc, "labels": {"indicator": ind.id},
             "expr": _score_of(ind, level, left, join=f"on ({key}) group_left () ")},
        ]
    scale = fmt(catalogue.max_points)
    rules.append({
        "record": forecast_total(level),
        "expr": f"max by ({by}, scenario) (\n  (\n    sum by ({by}, scenario) (\n      {fc}\n"
                f"      - on ({key}, indicator) group_left () {p}:onestop_index766_indicator:score{{{MONTH}}}\n    )\n"
                f"    + on ({key}) group_left () {p}:onestop_index766_total:score{{{MONTH}}}\n  )\n"
                f"  * {scale} / on ({key}) group_left () ({p}:onestop_index766_total:max_points_known{{{MONTH}}} > 0)\n)"})
    return rules


def _official_rules(config: MixinConfig) -> list[dict]:
    sel = config.worker_selector
    rules = []
    for term in ("numerator", "denominator"):
        official = f"max by (unit, indicator, period) (onestop_official_{term}{{{sel}, {MONTH}}})"
        rules.append({"record": f"unit:onestop_official_{term}:max", "expr": official})
    for term in ("numerator", "denominator"):
        ours, theirs = f"unit:onestop_index766_indicator:{term}{{{MONTH}}}", f"unit:onestop_official_{term}:max"
        rules.append({"record": official_difference(), "labels": {"term": term},
                      "expr": f"(\n  {ours}\n  - on (unit, indicator, period) group_left () {theirs}\n)\n"
                              f"/ on (unit, indicator, period) group_left () ({theirs} > 0)"})
    return rules


def risk_group(config: MixinConfig, catalogue: Catalogue | None = None) -> dict:
    catalogue = catalogue or load_catalogue()
    rules: list[dict] = []
    for level in (UNIT, PROVINCE):
        rules += _at_risk_rules(config, level, catalogue)
    for level in (UNIT, PROVINCE):
        rules += _forecast_rules(config, level, catalogue)
    rules += _official_rules(config)
    return {"name": "onestop.risk", "interval": config.evaluation_interval, "rules": rules}


def risk_alerts(config: MixinConfig, lang: str) -> list[tuple[str, str, str, str, dict]]:
    """(name, expr, for, severity, text placeholders) of the at-risk and reconciliation alerts."""
    c = config
    api = c.read_api_base_url.rstrip("/")
    at_risk = (f'{points_at_risk(UNIT)}{{horizon="next_working_day"}} > {fmt(c.at_risk_points_threshold)}')
    mismatch = (f"abs({official_difference()}) > {fmt(c.reconciliation_threshold)}\n"
                f"and on (unit, indicator, period) unit:onestop_official_denominator:max "
                f">= {c.reconciliation_min_count}")
    return [
        ("OnestopPointsAtRisk", at_risk, c.at_risk_for, "warning",
         {"value": texts.value_num(lang), "threshold": texts.num(c.at_risk_points_threshold, lang),
          "list": f"{api}/api/units/{{{{ $labels.unit }}}}/at-risk"}),
        ("OnestopOfficialFigureMismatch", mismatch, c.reconciliation_for, "warning",
         {"value": texts.value_pct(lang),
          "indicator": "{{ $labels.indicator }}",
          "term": (f'{{{{ if eq $labels.term "numerator" }}}}{texts.tr("term.numerator", lang)}{{{{ else }}}}'
                   f'{texts.tr("term.denominator", lang)}{{{{ end }}}}'),
          "threshold": texts.pct(c.reconciliation_threshold, lang)}),
    ]
