"""Alert rules: expressions over the recording rules, and their texts in the configured language.

Every ``summary`` and ``description`` is a message-catalogue key (``mon.alert.<Name>.summary|description``, both
languages) whose placeholders are filled with Prometheus template snippets and configured thresholds. Data alerts
join the unit's name from ``unit:onestop_unit_info:max`` (``onestop_unit_info`` of the workers, or the bare code when
no name is known yet), so the name is a label of the alert, never of the series it is computed from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from monitoring import texts
from monitoring.config import MixinConfig, duration_seconds
from monitoring.risk import UNIT_INFO, risk_alerts
from monitoring.rules import burn_record, fmt, new_in_month, silence_expr
from monitoring.worktime import CALENDAR_COVERED, WORKING_TIME, CalendarFacts

__all__ = ["AlertSpec", "alert_specs", "alert_groups", "with_unit_name"]


@dataclass(frozen=True)
class AlertSpec:
    name: str
    expr: str
    for_: str
    severity: str
    category: str  # "data" (about dossiers, per unit) or "pipeline" (about the monitor itself)
    summary: str
    description: str
    labels: Mapping[str, str] = field(default_factory=dict)
    keep_firing_for: str | None = None

    @property
    def anchor(self) -> str:
        return self.name.lower()


def with_unit_name(expr: str) -> str:
    """``expr`` (one series per unit) with the unit's ``name`` and ``name_en`` labels joined from the info rule."""
    inner = f"(\n  {expr.replace(chr(10), chr(10) + '  ')}\n)"
    # `or on (unit)`: a unit the info rule does not know yet still alerts, under its code.
    return f"{inner}\n* on (unit) group_left (name, name_en) {UNIT_INFO}\nor on (unit)\n{inner}"


def alert_specs(config: MixinConfig, facts: CalendarFacts, lang: str | None = None) -> list[AlertSpec]:
    c = config
    lang = lang or c.lang
    sel = c.worker_selector
    api = c.read_api_base_url.rstrip("/")
    unit = texts.unit_tmpl(lang)
    where = texts.tr("where", lang, unit=unit, province=texts.province_tmpl(lang))
    count, pct = texts.value_count(lang), texts.value_pct(lang)
    unit_on = "on (unit, province, level, period)"
    overdue_list = f"{api}/api/units/{{{{ $labels.unit }}}}/dossiers?state=overdue"

    def text(name: str, **kw: object) -> tuple[str, str]:
        return (texts.tr(f"alert.{name}.summary", lang, unit=unit, **kw),
                texts.tr(f"alert.{name}.description", lang, unit=unit, where=where, **kw))

    def data(name: str, expr: str, for_: str, severity: str, labels: Mapping[str, str] | None = None,
             keep: str | None = None, **kw: object) -> AlertSpec:
        summary, description = text(name, **kw)
        return AlertSpec(name, with_unit_name(expr), for_, severity, "data", summary, description, labels or {}, keep)

    def pipeline(name: str, expr: str, for_: str, severity: str, **kw: object) -> AlertSpec:
        summary, description = text(name, **kw)
        return AlertSpec(name, expr, for_, severity, "pipeline", summary, description)

    specs = [
        data("OnestopDossiersOverdue", f'unit:onestop_dossiers_open:sum{{state="overdue"}} >= {c.overdue_threshold}',
             c.overdue_for, "warning", value=count, list=overdue_list,
             csv=f"{api}/api/units/{{{{ $labels.unit }}}}/dossiers.csv?state=overdue"),
        data("OnestopDossiersDueSoon", f'unit:onestop_dossiers_open:sum{{state="due_soon"}} >= {c.due_soon_threshold}',
             c.due_soon_for, "info", value=count, list=f"{api}/api/units/{{{{ $labels.unit }}}}/dossiers?state=due_soon"),
        data("OnestopLateWithoutApology",
             new_in_month("unit:onestop_dossiers_late_without_apology:sum", c.late_without_apology_window, c),
             "0m", "warning", keep=c.late_without_apology_keep, value=count,
             keep_for=texts.duration(c.late_without_apology_keep, lang)),
        data("OnestopOnTimeRatioBelowTarget",
             f'unit:onestop_on_time:ratio{{period="month"}}\n  < on (unit) group_left () unit:onestop_on_time:target\n'
             f'and {unit_on} unit:onestop_dossiers_population:sum{{period="month"}} >= {c.on_time_min_volume}',
             c.on_time_for, "warning", value=pct, target=texts.pct(c.on_time_target, lang),
             volume=c.on_time_min_volume),
    ]
    for w in c.burn_windows:
        expr = (f"{burn_record(w.long)} > {fmt(w.factor)}\nand {burn_record(w.short)} > {fmt(w.factor)}\n"
                f'and {unit_on} unit:onestop_dossiers_population:sum{{period="month"}} >= {c.on_time_min_volume}\n'
                f"and on () {WORKING_TIME} == 1")
        specs.append(data("OnestopOnTimeBudgetBurn", expr, w.for_, w.severity, {"long": w.long, "short": w.short},
                          factor=texts.num(w.factor, lang), long=texts.duration(w.long, lang),
                          short=texts.duration(w.short, lang), list=overdue_list))
    specs += [
        data("OnestopOnlineSubmissionShareLow",
             f'unit:onestop_online_submission:ratio{{period="month"}} < {fmt(c.online_submission_target)}\n'
             f'and {unit_on} unit:onestop_dossiers_received:sum{{period="month"}} >= {c.share_min_volume}',
             c.share_for, "info", value=pct, target=texts.pct(c.online_submission_target, lang),
             volume=c.share_min_volume),
        data("OnestopOnlinePaymentShareLow",
             f'unit:onestop_online_payment:ratio{{period="month"}} < {fmt(c.online_payment_target)}\n'
             f'and {unit_on} unit:onestop_dossiers_fee_bearing:sum{{period="month"}} >= {c.share_min_volume}',
             c.share_for, "info", value=pct, target=texts.pct(c.online_payment_target, lang),
             volume=c.share_min_volume),
        data("OnestopSatisfactionLow",
             f'unit:onestop_satisfied:ratio{{period="month"}} < {fmt(c.satisfaction_threshold)}\n'
             f'and {unit_on} unit:onestop_dossiers_rated:sum{{period="month"}} >= {c.satisfaction_min_ratings}',
             c.share_for, "warning", value=pct, target=texts.pct(c.satisfaction_threshold, lang),
             volume=c.satisfaction_min_ratings),
    ]
    for name, expr, for_, severity, kw in risk_alerts(c, lang):
        specs.append(data(name, expr, for_, severity, **kw))
    instance = "{{ $labels.instance }}"
    specs += [
        pipeline("OnestopWorkerDown", f"up{{{sel}}} == 0", c.worker_down_for, "critical", instance=instance),
        pipeline("OnestopWorkersAbsent", f"absent(up{{{sel}}})", c.worker_down_for, "critical",
                 selector=f"up{{{sel}}}"),
        pipeline("OnestopWorkerNotReady", f"onestop_worker_ready{{{sel}}} == 0", c.worker_not_ready_for, "warning",
                 instance=instance),
        pipeline("OnestopSourceSilent", silence_expr(c), "0m", "warning", source="{{ $labels.source }}",
                 hours=texts.num(c.source_silence_working_hours, lang)),
        pipeline("OnestopDeadLetterRateHigh",
                 f"job:onestop_events_rejected:ratio_rate{c.dead_letter_window} > {fmt(c.dead_letter_ratio)}\n"
                 f"and job:onestop_events_rejected:increase{c.dead_letter_window} >= {c.dead_letter_min_count}",
                 "5m", "warning", value=pct, window=texts.duration(c.dead_letter_window, lang),
                 job="{{ $labels.job }}",
                 threshold=texts.pct(c.dead_letter_ratio, lang)),
        pipeline("OnestopSyncRecordsRefused",
                 f"service:onestop_sync_records_refused:ratio_rate{c.dead_letter_window} >= {fmt(c.sync_refused_ratio)}\n"
                 f"and service:onestop_sync_records_refused:increase{c.dead_letter_window} >= {c.sync_refused_min_count}",
                 c.sync_refused_for, "warning", value=pct, service="{{ $labels.service }}",
                 window=texts.duration(c.dead_letter_window, lang), threshold=texts.pct(c.sync_refused_ratio, lang),
                 count=c.sync_refused_min_count),
        pipeline("OnestopProcessingLagHigh",
                 f"job:onestop_processing_lag:max_seconds > {fmt(c.processing_lag_seconds)}",
                 c.processing_lag_for, "warning", value=texts.value_duration(lang), job="{{ $labels.job }}",
                 threshold=fmt(c.processing_lag_seconds)),
        pipeline("OnestopAtRiskScanStale",
                 f"onestop_clock_timestamp_seconds{{{sel}}} - onestop_at_risk_scan_timestamp_seconds{{{sel}}}\n"
                 f"  > {duration_seconds(c.at_risk_stale_after)}", c.at_risk_stale_for, "warning", instance=instance,
                 value=texts.value_duration(lang), threshold=texts.duration(c.at_risk_stale_after, lang)),
        pipeline("OnestopCollectorErrors", f"increase(onestop_collector_errors_total{{{sel}}}[10m]) > 0", "0m",
                 "warning", instance=instance, value=count),
        pipeline("OnestopCalendarNotCovered", f"{CALENDAR_COVERED} == 0", "1h", "warning",
                 first=min(facts.years), last=max(facts.years)),
    ]
    return specs


def alert_groups(config: MixinConfig, facts: CalendarFacts, lang: str | None = None) -> list[dict]:
    """Alert rules with ``runbook_url`` added here, for all of them, so that none can ship without one."""
    by_category: dict[str, list[dict]] = {}
    for spec in alert_specs(config, facts, lang):
        rule = {"alert": spec.name, "expr": spec.expr}
        if duration_seconds(spec.for_) > 0:
            rule["for"] = spec.for_
        if spec.keep_firing_for:
            rule["keep_firing_for"] = spec.keep_firing_for
        rule["labels"] = {"severity": spec.severity, "category": spec.category, **spec.labels}
        rule["annotations"] = {
            "summary": spec.summary,
            "description": spec.description,
            "runbook_url": config.runbook_url_pattern.format(anchor=spec.anchor),
        }
        if spec.category == "data":  # every data alert carries its unit's province
            rule["annotations"]["province_name"] = texts.province_name_tmpl(lang or config.lang)
        by_category.setdefault(spec.category, []).append(rule)
    return [{"name": f"onestop.alerts.{cat}", "interval": config.evaluation_interval, "rules": rules}
            for cat, rules in by_category.items()]
