"""Prometheus recording rules and alert rules, generated from the configuration, the 766 catalogue and the calendar.

Each worker exports only the dossiers of the partitions it owns, so every figure is first summed across workers
(and only then divided: ratios are never averaged). The 766 rules are written from the catalogue rows themselves
(numerator and denominator coefficients, threshold, maximum, zero-denominator policy, levels), so the PromQL
scores are the Python scores by construction, and a catalogue change shows up as a diff of the committed rules.

Names follow ``level:metric:operations`` with levels ``unit`` (labels unit, province, level, period),
``province`` (province, period) and ``nation`` (period); ``job`` and ``source`` for pipeline health, and
``onestop`` for the clock and the working-time helpers, which have no labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from models.figures import SHARES
from models.index766 import LEVELS, Catalogue, Indicator, load_catalogue
from streams.serve import metrics as exposition

from monitoring.config import MixinConfig, duration_seconds
from monitoring.worktime import CalendarFacts, working_seconds_record, working_seconds_rule, working_time_rules

__all__ = ["Level", "LEVELS_OUT", "recording_groups", "tally_keys", "share_names", "indicators_in_force", "fmt"]


# --------------------------------------------------------------------------------------------------- helpers

def fmt(x: float) -> str:
    """A number as PromQL reads it back exactly (repr round-trips a float; integers stay short)."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


@dataclass(frozen=True)
class Level:
    prefix: str
    by: tuple[str, ...]
    #: The unit level that 766 applicability is judged at; None means "every indicator applies" (nation).
    catalogue_level: str | None
    #: Extra matchers on the level's own series (a unit's level label), empty for rolled-up levels.
    per_row_level: bool = False

    @property
    def labels(self) -> str:
        return ", ".join(self.by)


UNIT = Level("unit", ("unit", "province", "level", "period"), None, per_row_level=True)
PROVINCE = Level("province", ("province", "period"), "province")
NATION = Level("nation", ("period",), None)
LEVELS_OUT = (UNIT, PROVINCE, NATION)


def tally_keys(catalogue: Catalogue) -> list[str]:
    """Every tally key the exposition has a family for, plus any the catalogue or the shares refer to."""
    keys = ["received", *(f"received_{c}" for c in exposition.KNOWN_CHANNELS),
            *(f"ended_{o}" for o in exposition.KNOWN_OUTCOMES), *(f"open_{s}" for s in exposition.KNOWN_OPEN),
            *exposition.PLAIN_KEYS, *exposition.RENAMED_KEYS]
    extra = set(catalogue.tally_keys())
    for num, den in SHARES.values():
        extra |= {num, den}
    keys += sorted(extra - set(keys))
    return keys


def _source_series(key: str, sel: str) -> str:
    """The exposed series (summed over workers) that carries one tally key; mirrors streams.serve.metrics' layout."""
    if key == "received":
        return f"onestop_dossiers_received{{{sel}}}"
    for prefix, family, label, known in (
        (exposition.CHANNEL_PREFIX, "onestop_dossiers_received", "channel", exposition.KNOWN_CHANNELS),
        (exposition.OUTCOME_PREFIX, "onestop_dossiers_completed", "outcome", exposition.KNOWN_OUTCOMES),
        (exposition.OPEN_PREFIX, "onestop_dossiers_open_in_period", "state", exposition.KNOWN_OPEN),
    ):
        if key.startswith(prefix) and key[len(prefix):] in known:
            return f'{family}{{{sel}, {label}="{key[len(prefix):]}"}}'
    if key in exposition.PLAIN_KEYS:
        return f"onestop_dossiers_{key}{{{sel}}}"
    if key in exposition.RENAMED_KEYS:
        return f"{exposition.RENAMED_KEYS[key][0]}{{{sel}}}"
    return f'onestop_tally{{{sel}, key="{key}"}}'


def tally_record(level: Level, key: str) -> str:
    return f"{level.prefix}:onestop_dossiers_{key}:sum"


def share_names() -> dict[str, tuple[str, str]]:
    """``on_time`` -> (num key, den key), from the figures' share table so both paths use one definition."""
    return {name.removesuffix("_share").removesuffix("_ratio"): pair for name, pair in SHARES.items()}


def indicators_in_force(catalogue: Catalogue) -> list[Indicator]:
    """The rows in force now (open-ended); a dated successor row needs a regeneration when it starts."""
    current = [i for i in catalogue.indicators if i.valid_to is None]
    by_id: dict[str, Indicator] = {}
    for ind in current:
        if ind.id not in by_id or ind.valid_from > by_id[ind.id].valid_from:
            by_id[ind.id] = ind
    return [by_id[k] for k in sorted(by_id, key=lambda s: [int(p) if p.isdigit() else p for p in
                                                           s.replace("b", ".b").split(".")])]


def _combo(coeffs: Mapping[str, int], level: Level, matcher: str) -> str:
    out = ""
    for key, c in coeffs.items():
        term = tally_record(level, key) + (f"{{{matcher}}}" if matcher else "")
        sign = "-" if c < 0 else "+"
        mag = abs(c)
        term = term if mag == 1 else f"{mag} * {term}"
        out = (term if sign == "+" else f"-{term}") if not out else f"{out} {sign} {term}"
    return out


def _labels(ind: Indicator) -> dict[str, str]:
    # Static rule labels rather than label_replace: promtool then sees one rule per (name, labels), not duplicates.
    return {"indicator": ind.id, "group": str(ind.group)}


def _level_matcher(ind: Indicator, level: Level) -> str | None:
    """Applicability as ``score_unit`` decides it; None when the indicator is not computed at this level."""
    if level.per_row_level:
        if ind.levels >= LEVELS:
            return ""
        # A unit whose level is unknown (empty label) is scored with level None, to which every indicator applies.
        return 'level=~"' + "|".join(sorted(ind.levels)) + '|"'
    if level.catalogue_level is not None and level.catalogue_level not in ind.levels:
        return None
    return ""


# ---------------------------------------------------------------------------------------- recording rules

def _tally_rules(level: Level, keys: Sequence[str], sel: str) -> list[dict]:
    rules = []
    for key in keys:
        if level is UNIT:
            expr = f"sum by ({level.labels}) ({_source_series(key, sel)})"
        elif level is PROVINCE:
            expr = f'sum by ({level.labels}) ({tally_record(UNIT, key)}{{province!=""}})'
        else:
            expr = f"sum by ({level.labels}) ({tally_record(UNIT, key)})"
        rules.append({"record": tally_record(level, key), "expr": expr})
    return rules


def _open_now_rule(level: Level, sel: str) -> dict:
    by = ", ".join([*(b for b in level.by if b != "period"), "state"])
    src = f"onestop_dossiers_open{{{sel}}}" if level is UNIT else "unit:onestop_dossiers_open:sum"
    if level is PROVINCE:
        src = 'unit:onestop_dossiers_open:sum{province!=""}'
    return {"record": f"{level.prefix}:onestop_dossiers_open:sum", "expr": f"sum by ({by}) ({src})"}


def _share_rules(level: Level) -> list[dict]:
    rules = []
    for name, (num, den) in share_names().items():
        rules.append({"record": f"{level.prefix}:onestop_{name}:ratio",
                      "expr": f"{tally_record(level, num)} / ({tally_record(level, den)} > 0)"})
    return rules


def _indicator_rules(level: Level, catalogue: Catalogue) -> list[dict]:
    p = level.prefix
    num_r, den_r = f"{p}:onestop_index766_indicator:numerator", f"{p}:onestop_index766_indicator:denominator"
    ratio_r, score_r = f"{p}:onestop_index766_indicator:ratio", f"{p}:onestop_index766_indicator:score"
    max_r = f"{p}:onestop_index766_indicator:max_points"
    terms, ratios, scores, maxima = [], [], [], []
    for ind in indicators_in_force(catalogue):
        if not ind.computable_from_events:
            continue
        matcher = _level_matcher(ind, level)
        if matcher is None:
            continue
        sel = f'{{indicator="{ind.id}"}}'
        terms.append({"record": num_r, "expr": _combo(ind.numerator, level, matcher), "labels": _labels(ind)})
        terms.append({"record": den_r, "expr": _combo(ind.denominator, level, matcher), "labels": _labels(ind)})
        ratio = f"{num_r}{sel} / ({den_r}{sel} > 0)"
        if ind.zero_den_policy == "zero_ratio":
            ratio += f"\nor 0 * ({den_r}{sel} == 0)"
        ratios.append({"record": ratio_r, "expr": ratio, "labels": _labels(ind)})
        if not ind.scored:
            continue
        m, t = fmt(ind.max_points), fmt(ind.threshold)
        score = f"clamp_max(clamp_min({m} * {ratio_r}{sel} / {t}, 0), {m})"
        if ind.zero_den_policy == "zero_score":
            score += f"\nor 0 * ({den_r}{sel} == 0)"
        elif ind.zero_den_policy == "full_points":
            score += f"\nor 0 * ({den_r}{sel} == 0) + {m}"
        scores.append({"record": score_r, "expr": score, "labels": _labels(ind)})
        maxima.append({"record": max_r, "expr": f"0 * {score_r}{sel} + {m}", "labels": _labels(ind)})
    by = level.labels
    scale = fmt(catalogue.max_points)
    total = [
        {"record": f"{p}:onestop_index766_group:score", "expr": f"sum by ({by}, group) ({score_r})"},
        {"record": f"{p}:onestop_index766_group:max_points_known", "expr": f"sum by ({by}, group) ({max_r})"},
        {"record": f"{p}:onestop_index766_total:score", "expr": f"sum by ({by}) ({score_r})"},
        {"record": f"{p}:onestop_index766_total:max_points_known", "expr": f"sum by ({by}) ({max_r})"},
        # When every scored indicator is known, max_points_known is the full scale and this equals the total,
        # so banding this one number matches score_unit's "total if complete, else estimate".
        {"record": f"{p}:onestop_index766_total:estimated",
         "expr": f"{p}:onestop_index766_total:score * {scale} / ({p}:onestop_index766_total:max_points_known > 0)"},
        {"record": f"{p}:onestop_index766_band:number", "expr": _band_expr(f"{p}:onestop_index766_total:estimated",
                                                                            catalogue)},
    ]
    return terms + ratios + scores + maxima + total


def _band_expr(series: str, catalogue: Catalogue) -> str:
    # band_for adds 1e-9 to the total before comparing; subtracting it from the edge is the same test.
    parts = []
    for band in catalogue.bands:
        if band is catalogue.bands[-1]:
            parts.append(f"0 * {series} + {band.number}")
        else:
            parts.append(f"0 * ({series} >= {fmt(band.min_total - 1e-9)}) + {band.number}")
    return "\nor ".join(parts)


def _target_rule(config: MixinConfig) -> dict:
    pop = "unit:onestop_dossiers_population:sum"
    parts = []
    for unit, t in sorted(config.on_time_targets_by_unit.items()):
        parts.append(f"0 * max by (unit, province, level) ({pop}{{unit=\"{unit}\"}}) + {fmt(t)}")
    for prov, t in sorted(config.on_time_targets_by_province.items()):
        parts.append(f"0 * max by (unit, province, level) ({pop}{{province=\"{prov}\"}}) + {fmt(t)}")
    parts.append(f"0 * max by (unit, province, level) ({pop}) + {fmt(config.on_time_target)}")
    return {"record": "unit:onestop_on_time:target", "expr": "\nor on (unit) ".join(parts)}


def _month_changed(config: MixinConfig, window: str) -> str:
    """Present (value > 0) when the workers' current month differs from the one ``window`` ago."""
    info = f'onestop_period_info{{{config.worker_selector}, period="month"}}'
    return f"(count({info} offset {window} unless on (key) {info}) > 0)"


def burn_windows(config: MixinConfig) -> list[str]:
    seen: list[str] = []
    for w in config.burn_windows:
        for d in (w.long, w.short):
            if d not in seen:
                seen.append(d)
    return sorted(seen, key=duration_seconds)


def burn_record(window: str) -> str:
    return f"unit:onestop_on_time:burnrate{window}"


def _burn_rules(config: MixinConfig, facts: CalendarFacts) -> list[dict]:
    late = 'unit:onestop_dossiers_late:sum{period="month"}'
    pop = 'unit:onestop_dossiers_population:sum{period="month"}'
    month = fmt(round(facts.working_seconds_per_month))
    rules = [{"record": "unit:onestop_dossiers_late:sum",
              "expr": "unit:onestop_dossiers_population:sum - unit:onestop_dossiers_on_time:sum"}]
    for w in burn_windows(config):
        expr = (
            f"(\n  clamp_min({late} - {late} offset {w}, 0)\n"
            f"  / ({pop} * on (unit) group_left () (1 - unit:onestop_on_time:target) > 0)\n)\n"
            f"/ on () group_left () ({working_seconds_record(w)} > 0) * {month}\n"
            f"unless on () {_month_changed(config, w)}"
        )
        rules.append({"record": burn_record(w), "expr": expr})
    return rules


def silence_windows(config: MixinConfig) -> list[str]:
    need = config.source_silence_working_hours * 3600
    return [w for w in sorted(set(config.silence_windows), key=duration_seconds) if duration_seconds(w) >= need]


def _pipeline_rules(config: MixinConfig) -> list[dict]:
    sel = config.worker_selector
    dl = config.dead_letter_window
    processed, rejected = f"onestop_events_processed_total{{{sel}}}", f"onestop_events_rejected_total{{{sel}}}"
    sync = "onestop_sync_records_total"
    rules = [
        {"record": "job:onestop_events_processed:rate5m", "expr": f"sum by (job) (rate({processed}[5m]))"},
        {"record": "job:onestop_events_rejected:rate5m", "expr": f"sum by (job) (rate({rejected}[5m]))"},
        {"record": f"job:onestop_events_rejected:increase{dl}", "expr": f"sum by (job) (increase({rejected}[{dl}]))"},
        {"record": f"job:onestop_events_rejected:ratio_rate{dl}",
         "expr": f"sum by (job) (rate({rejected}[{dl}]))\n/ (\n  sum by (job) (rate({processed}[{dl}]))\n"
                 f"  + sum by (job) (rate({rejected}[{dl}]))\n  > 0\n)"},
        {"record": f"service:onestop_sync_records_refused:increase{dl}",
         "expr": f"sum by (service) (increase({sync}{{{sel}, outcome=\"refused\"}}[{dl}]))"},
        {"record": f"service:onestop_sync_records_refused:ratio_rate{dl}",
         "expr": f"sum by (service) (rate({sync}{{{sel}, outcome=\"refused\"}}[{dl}]))\n"
                 f"/ (sum by (service) (rate({sync}{{{sel}}}[{dl}])) > 0)"},
        {"record": "job:onestop_processing_lag:max_seconds",
         "expr": f"max by (job) (onestop_processing_lag_seconds{{{sel}}})"},
        {"record": "source:onestop_last_event:timestamp_seconds",
         "expr": f"max by (source) (onestop_last_event_timestamp_seconds{{{sel}}})"},
    ]
    for w in silence_windows(config):
        rules.append({"record": f"source:onestop_events_processed:increase{w}",
                      "expr": f"sum by (source) (increase({processed}[{w}]))"})
    return rules


def recording_groups(config: MixinConfig, facts: CalendarFacts, catalogue: Catalogue | None = None) -> list[dict]:
    catalogue = catalogue or load_catalogue()
    keys = tally_keys(catalogue)
    sel = config.worker_selector
    interval = config.evaluation_interval
    windows = sorted({*burn_windows(config), *silence_windows(config)}, key=duration_seconds)
    groups = [{"name": "onestop.worktime", "interval": interval,
               "rules": working_time_rules(config, facts) + [working_seconds_rule(config, w) for w in windows]}]
    for level in LEVELS_OUT:
        rules = _tally_rules(level, keys, sel) + [_open_now_rule(level, sel)] + _share_rules(level)
        rules += _indicator_rules(level, catalogue)
        groups.append({"name": f"onestop.{level.prefix}", "interval": interval, "rules": rules})
    groups.append({"name": "onestop.objectives", "interval": interval,
                   "rules": [_target_rule(config), *_burn_rules(config, facts)]})
    groups.append({"name": "onestop.pipeline", "interval": interval, "rules": _pipeline_rules(config)})
    from monitoring.risk import names_group, risk_group

    groups.insert(1, names_group(config))
    groups.append(risk_group(config, catalogue))
    return groups


# ------------------------------------------------------------------------------------------- alert helpers

def new_in_month(series: str, window: str, config: MixinConfig) -> str:
    """Growth of a monthly count over ``window``; after a month boundary, the new month's whole count is new."""
    s = f'{series}{{period="month"}}'
    changed = _month_changed(config, window)
    return f"{s} - {s} offset {window} > 0 unless on () {changed}\nor {s} > 0 and on () {changed}"


def silence_expr(config: MixinConfig) -> str:
    need = fmt(config.source_silence_working_hours * 3600)
    parts = [f"source:onestop_events_processed:increase{w} == 0 and on () {working_seconds_record(w)} >= {need}"
             for w in silence_windows(config)]
    return "\nor ".join(parts)
