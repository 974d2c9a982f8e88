"""The runbook: one section per alert, at the anchor its ``runbook_url`` points to.

Generated rather than hand-kept so that adding an alert without writing its runbook fails the generation (and the
drift check), and so that thresholds quoted in the text are the configured ones.
"""

from __future__ import annotations

from monitoring.config import MixinConfig
from monitoring.rules import AlertSpec, alert_specs, fmt
from monitoring.worktime import CalendarFacts

__all__ = ["render_runbook", "RUNBOOK"]

# name -> (what it means, why it matters, how to investigate, what to do)
RUNBOOK: dict[str, tuple[str, str, str, str]] = {
    "OnestopDossiersOverdue": (
        "Open dossiers of the unit are past their (supplement-adjusted) due date (hồ sơ quá hạn).",
        "Each overdue dossier counts against 766 indicator 2.1 (20 points) for the period, and the applicant is "
        "waiting beyond the date printed on the receipt slip.",
        "Open the list linked in the alert (read API `/api/units/<unit>/dossiers?state=overdue`, or `.csv` for a "
        "spreadsheet). The **Unit drill-down** dashboard shows since when the count grew. Check whether the dossiers "
        "are really stuck or the one-stop system failed to send their `processed`/`result_returned` events "
        "(compare with iGate).",
        "Ask the handling department to finish or return the dossiers; issue an apology and reschedule slip "
        "(phiếu xin lỗi và hẹn lại ngày trả kết quả) where the law allows. If events are missing, replay them from "
        "the source system; figures correct themselves when the events arrive (event time decides).",
    ),
    "OnestopDossiersDueSoon": (
        "Many open dossiers of the unit have at most max(1 working day, 20 % of their time limit) left "
        "(hồ sơ sắp đến hạn).",
        "They will turn overdue unless handled; this is the early warning. It is inhibited while the same unit has "
        "an overdue alert, which already asks for attention.",
        "List: `/api/units/<unit>/dossiers?state=due_soon`. The **Backlog and deadlines** dashboard shows the trend "
        "for all units of the province.",
        "Prioritise these dossiers; where a dossier cannot be finished in time, prepare the apology slip at least "
        "one working day before the due date.",
    ),
    "OnestopLateWithoutApology": (
        "A dossier of the unit ended late this month without an apology and reschedule slip issued at least one "
        "working day before its due date.",
        "The regulation on the one-stop mechanism requires the slip; a late dossier without one is a compliance "
        "finding on top of the lost 2.1 points.",
        "The read API lists open dossiers only; find the unit's dossiers that ended late this month in the one-stop "
        "system and check whether a slip exists but its `due_rescheduled` event was not sent or was dated after "
        "the deadline.",
        "Remind the unit of the procedure; if slips exist but were not sent, fix the publisher of `due_rescheduled` "
        "events. The alert resolves after the configured window.",
    ),
    "OnestopOnTimeRatioBelowTarget": (
        "The unit's on-time ratio this month (766 indicator 2.1: on time / population, open dossiers judged now) "
        "is below its target, with enough dossiers for the ratio to mean something.",
        "Indicator 2.1 is worth 20 of 100 points and feeds the unit's rating band.",
        "Use the **Unit drill-down** dashboard: ended early / on time / late, and open within / due soon / overdue. "
        "A ratio dragged down by open overdue dossiers can still improve; ended-late dossiers cannot.",
        "Work the overdue list first. Targets per unit or province are set in the monitoring configuration "
        "(`on_time_targets_by_unit`, `on_time_targets_by_province`).",
    ),
    "OnestopOnTimeBudgetBurn": (
        "Dossiers of the unit are turning late much faster than the monthly target allows, measured over two "
        "windows of working time (multi-window burn rate). The `long`/`short` labels name the windows.",
        "At this pace the month's allowance of late dossiers ((1 - target) x population) runs out well before the "
        "month ends. Critical = fast burn, warning = slow burn.",
        "Burn rate = (late dossiers added in the window / monthly allowance) / (working seconds in the window / "
        "working seconds in an average month). Nights, weekends and holidays add no working seconds and no deadlines "
        "pass then, so they neither dilute nor inflate it. Check the **Unit drill-down** dashboard.",
        "As for overdue dossiers. The alert is evaluated only during working time; it clears when the short window "
        "stops burning.",
    ),
    "OnestopOnlineSubmissionShareLow": (
        "Few of the dossiers the unit received this month were submitted online.",
        "Indicator 3.3 gives full points at a 50 % online share (6 points).",
        "Compare channels on the **Unit drill-down** dashboard; check whether online dossiers are recorded with "
        "`channel: online` by the publisher.",
        "Promote online submission for the unit's common procedures; fix channel mapping if wrong.",
    ),
    "OnestopOnlinePaymentShareLow": (
        "Few of the unit's fee-bearing dossiers this month were paid online.",
        "Indicator 3.6 scores the online payment share linearly (6 points).",
        "Check `payment_completed` events and their `online` flag; the **Unit drill-down** dashboard shows the share.",
        "Enable or promote payment through the national payment platform or the provincial gateway.",
    ),
    "OnestopSatisfactionLow": (
        "The share of satisfied ratings of the unit's dossiers this month is below the threshold.",
        "Dossier satisfaction (766 indicator 5.4, 6 points) is lost by late dossiers and unsatisfied ratings.",
        "Look at the unit's ratings and late dossiers on the **Unit drill-down** dashboard.",
        "Follow up unsatisfied applicants; address the causes (delays, requests for supplements).",
    ),
    "OnestopWorkerDown": (
        "Prometheus cannot scrape a stream worker.",
        "The dossiers of the partitions it owns are missing from all figures; data alerts are inhibited meanwhile.",
        "Check the process or pod, its log, and whether the broker is reachable. The **Pipeline health** dashboard "
        "shows partitions per worker.",
        "Restart the worker; other workers take over its partitions after the consumer-group session timeout.",
    ),
    "OnestopWorkersAbsent": (
        "No `up` series exists for the workers' job at all.",
        "Nothing is monitored; every figure and data alert is meaningless.",
        "Check Prometheus' scrape configuration and service discovery (Status > Targets).",
        "Restore the scrape job; the job name must match the `worker_selector` of the monitoring configuration.",
    ),
    "OnestopWorkerNotReady": (
        "A worker is up but still recovering its partitions (rebalance or restart).",
        "Its figures are partial until its tallies are rebuilt; data alerts are inhibited meanwhile.",
        "Look at `onestop_tally_rebuild_duration_seconds` and the worker log; a recovery that never ends points to "
        "the broker or the changelog topic.",
        "Wait for recovery; if stuck, restart the worker (its state is rebuilt from the changelog).",
    ),
    "OnestopSourceSilent": (
        "No event from a source system was processed during a stretch holding the configured number of working "
        "hours (Vietnamese calendar: nights, weekends and holidays do not count).",
        "Dossiers of that system stop moving in the figures; overdue counts may be stale.",
        "Check the publisher of that source and its connection to the broker; look at the source's last event time "
        "on the **Pipeline health** dashboard.",
        "Restart the publisher; missed events are processed when they arrive, by event time.",
    ),
    "OnestopDeadLetterRateHigh": (
        "A large share of the records read by the workers is rejected to the dead-letter topic.",
        "Rejected events are not in the figures; a publisher change may have broken the event contract.",
        "See rejections by reason on the **Pipeline health** dashboard; read a few records of the dead-letter topic "
        "(headers `x-reason`, `x-error`) or run `onestop validate` on an export.",
        "Fix the publisher, then replay the dead-lettered records to the events topic.",
    ),
    "OnestopProcessingLagHigh": (
        "The event processed last is old compared with the workers' clock.",
        "Figures lag reality: dossiers that are overdue now may not show yet.",
        "A backlog (workers slower than the input) or a source sending old events (a nightly sync). Check events/s "
        "and lag on the **Pipeline health** dashboard.",
        "Add workers (up to the partition count) or fix the source's delivery.",
    ),
    "OnestopCollectorErrors": (
        "Scrapes of a worker caught errors from the processor (unit metadata or indicator terms).",
        "Some units or indicators are missing from that scrape's figures.",
        "The worker log has the stack trace (`unit_info failed` or `indicator_terms failed`).",
        "Fix the cause (often a malformed catalogue or unit registry entry) and restart the worker.",
    ),
    "OnestopCalendarNotCovered": (
        "The current year is outside the years the working-time rule and notification hours were generated for.",
        "Holidays of this year are not known to the alert gating: working-time alerts may fire on a holiday, and "
        "non-critical notifications may arrive on days off.",
        "Check the header of `alerts/alertmanager.yml` for the covered years.",
        "Load the year's official calendar document, run `onestop mixin generate`, commit and deploy.",
    ),
}


def render_runbook(config: MixinConfig, facts: CalendarFacts) -> str:
    specs = alert_specs(config, facts)
    by_name: dict[str, list[AlertSpec]] = {}
    for spec in specs:
        by_name.setdefault(spec.name, []).append(spec)
    missing = sorted(set(by_name) - set(RUNBOOK))
    if missing:
        raise ValueError(f"alerts without a runbook section: {', '.join(missing)}")
    lines = [
        "# Runbook: onestop-monitor alerts",
        "",
        "<!-- Generated by `onestop mixin generate` from monitoring/runbook.py; do not edit by hand. -->",
        "",
        "Every alert carries `severity` (critical: any hour; warning and info: Vietnamese office hours only) and "
        "`category` (`data`: about a unit's dossiers, labels `unit`, `province`, `level`; `pipeline`: about the "
        "monitor itself). Figures are those of the current period as the workers judge it; the read API lists the "
        "dossiers behind them.",
        "",
    ]
    for name, group in by_name.items():
        meaning, impact, diagnosis, mitigation = RUNBOOK[name]
        first = group[0]
        severities = ", ".join(f"{s.severity} ({s.labels['long']}/{s.labels['short']})" if "long" in s.labels
                               else s.severity for s in group)
        lines += [
            f"## {name}",
            "",
            f"*Severity:* {severities} — *category:* {first.category} — *for:* "
            + ", ".join(dict.fromkeys(s.for_ for s in group))
            + (f" — *keeps firing for:* {first.keep_firing_for}" if first.keep_firing_for else ""),
            "",
            f"**Meaning.** {meaning}",
            "",
            f"**Impact.** {impact}",
            "",
            f"**Diagnosis.** {diagnosis}",
            "",
            f"**Mitigation.** {mitigation}",
            "",
            "<details><summary>Expression</summary>",
            "",
        ]
        for s in group:
            lines += ["```promql", s.expr, "```", ""]
        lines += ["</details>", ""]
    lines += [
        "## Thresholds in force",
        "",
        f"- on-time target {fmt(config.on_time_target)} (minimum population {config.on_time_min_volume}); "
        f"burn windows " + "; ".join(f"{w.long}/{w.short} > {fmt(w.factor)}x ({w.severity})"
                                     for w in config.burn_windows),
        f"- online submission {fmt(config.online_submission_target)}, online payment "
        f"{fmt(config.online_payment_target)}, satisfaction {fmt(config.satisfaction_threshold)}",
        f"- due soon >= {config.due_soon_threshold}, overdue >= {config.overdue_threshold}; source silent after "
        f"{fmt(config.source_silence_working_hours)} working hours; dead letters > {fmt(config.dead_letter_ratio)}; "
        f"lag > {fmt(config.processing_lag_seconds)} s",
        f"- calendar years {min(facts.years)}-{max(facts.years)} ({facts.calendar_version})",
        "",
    ]
    return "\n".join(lines)
