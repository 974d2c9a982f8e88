"""Points at risk and month-end forecasts of the 766 index, from the dossiers still open at an instant.

An official asks two questions mid-month: *which open dossiers would cost us the most if they ended late?*
and *where will our 766 estimate stand at the end of the period?* Both are answered with the tally code's own
counting rules (``models.tally.contribution``) and the catalogue's own scoring (``models.index766``), so the
answers move with the catalogue and the rules, never with a copy of them.

Definitions (see also docs/at-risk.md)
--------------------------------------

*Dossiers at risk* for period P at instant ``at``: open at ``at``, counted in P's 2.1 population, and judged
on time both at ``at`` and at P's judging instant ``min(P end, at)`` — i.e. exactly the open dossiers that the
2.1 numerator counts today and that could still leave it. That covers ``open_within`` and ``open_due_soon``, and
an on-time dossier awaiting a supplement or a payment (its clock restarts once the applicant answers). Overdue
dossiers are already counted late and are not at risk: nothing is left to lose on them.

*Ending late* is simulated by giving the dossier's view an end one second after its fully pause-adjusted due (or
after ``at``, if that is later) and taking ``contribution(late) - contribution(now)`` restricted to P: on_time -1,
the open bucket -1, ended_late +1, late_with/without_apology +1, late_or_dissatisfied +1 unless the dossier is
already rated unsatisfied (plus the 2.2 processing counts, which carry no points).

*Points at risk* of a dossier, per indicator: ``score(now) - score(now + delta)`` at the unit's current counts
of P, with ``indicator_score``, for every scored, event-computable indicator applicable to the unit's level whose
numerator or denominator uses a changed tally key (catalogue 2026.1: 2.1 and 5.4). ``points`` is their sum for the
unit; ``province_points`` the same on the province's summed tallies, scored at level ``province`` (ratios are never
averaged). Each dossier is taken alone, the others unchanged.

*Points in play* of a unit, per indicator: ``score(now) - score(now + sum of every at-risk dossier's delta)``: the
part of today's score held by dossiers that have not ended yet, i.e. what the unit keeps winning only if they all
end in time (what it would lose if they all ended late). The sum over dossiers of their points at risk never
exceeds it, because every score shape in the catalogue, ``min(M, M r / T)``, is concave in the numerator while the
denominator stays put: the first dossier lost costs at most the average of all of them. For the linear 2.1 the
two are equal; for the capped 5.4 (threshold 90 %) a single dossier above the threshold costs nothing, while
losing many can.

*Forecast* of the period end, per unit and province, for the dossiers known at ``at`` (dossiers received later
are not forecast; reception-based indicators keep their current counts):

- ``on_time_all``: every at-risk dossier ends by its due. That is today's figure: an open dossier within its due
  already counts on time.
- ``due_soon_late``: those at risk that are due soon at ``at`` (working time left at most max(1 working day,
  20 % of the limit), the product's rule) end late; the others end in time.
- ``current_rate``: each at-risk dossier ends late with probability ``r``, the share of the period's ended
  population dossiers of the same procedure in the same province that ended late as of ``at``; when that
  procedure has no ended dossier there, the province's share over all procedures; when nothing has ended, 0.
  The expected counts ``now + sum(r * delta)`` are scored (the score of the expected counts; for the linear 2.1
  this equals the expected score).

Each scenario block has the catalogue's ``total``, ``total_estimated`` (rescaled to 100 over the known points)
and ``band`` of ``score_unit``, the 2.1 score, and the expected number of dossiers moved to late.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from .calendar import TZ
from .dossier import Context, DossierState
from .evaluation import View, evaluate
from .index766 import Catalogue, Indicator, combine, indicator_score, load_catalogue, score_unit, sum_tallies
from .tally import ContributionSum, contribution, parse_period, unit_period_tallies

__all__ = [
    "BAND_NAMES_EN",
    "METHOD",
    "at_risk_from_replay",
    "at_risk_lines",
    "count_keys",
    "ended_key",
    "forecast",
    "forecast_doc",
    "forecast_from_replay",
    "forecast_from_tallies",
    "group_key",
    "lateness_rates",
    "points_at_risk",
    "points_in_play",
    "risk_records",
    "risk_sums",
]

# The catalogue's bands carry a Vietnamese name only; the English one is added for readers of the forecast.
BAND_NAMES_EN = {"xuat_sac": "Excellent", "tot": "Good", "kha": "Fair", "trung_binh": "Average", "yeu": "Weak"}

#: Drops float noise (e.g. 1e-15 left by a capped score) so that "costs nothing" reads as 0.
_EPS = 1e-9
_ONE_SECOND = timedelta(seconds=1)

METHOD = {
    "vi": (
        "Dự báo cuối kỳ cho các hồ sơ đã biết tại thời điểm tính (hồ sơ tiếp nhận sau đó không được dự báo; "
        "các chỉ số theo ngày tiếp nhận giữ số đếm hiện tại). on_time_all: mọi hồ sơ đang trong hạn kết thúc "
        "đúng hạn (bằng số liệu hiện tại). due_soon_late: các hồ sơ sắp đến hạn (thời gian làm việc còn lại "
        "≤ max(1 ngày làm việc, 20 % thời hạn)) kết thúc trễ hạn, các hồ sơ khác đúng hạn. current_rate: mỗi hồ "
        "sơ đang trong hạn trễ hạn với xác suất bằng tỷ lệ trễ hạn hiện tại của cùng thủ tục trong tỉnh (hồ sơ "
        "đã kết thúc của kỳ; nếu thủ tục chưa có hồ sơ kết thúc thì dùng tỷ lệ chung của tỉnh; nếu chưa có hồ sơ "
        "nào kết thúc thì 0), điểm được tính trên số đếm kỳ vọng. Điểm theo bộ chỉ số (score_unit), xếp loại "
        "theo tổng điểm quy về thang 100 khi chưa đủ chỉ số."
    ),
    "en": (
        "Period-end forecast for the dossiers known at the computation instant (dossiers received later are "
        "not forecast; reception-based indicators keep their current counts). on_time_all: every open dossier "
        "within its due ends in time (equals today's figure). due_soon_late: those due soon (working time left "
        "<= max(1 working day, 20 % of the limit)) end late, the others in time. current_rate: each open "
        "within-due dossier ends late with the probability equal to today's lateness rate of the same "
        "procedure in the province (ended dossiers of the period; the province's rate over all procedures when "
        "that procedure has none ended; 0 when nothing has ended), and the expected counts are scored. Scores "
        "follow the catalogue (score_unit); the band is that of the total rescaled to 100 while indicators are "
        "missing."
    ),
}


@dataclass
class _Candidate:
    """An at-risk dossier with what ending late would change in the period's tallies."""

    view: View
    delta: dict[str, int]
    bucket: str
    due: datetime
    paused: bool
    hours_left: float
    due_soon: bool
    next_working_day: bool


@dataclass
class _Prepared:
    period: str
    at: datetime
    on: Any
    tallies: dict[str, dict[str, float]]  # unit -> metric -> count, for the period
    meta: dict[str, tuple[str | None, str | None]]  # unit -> (level, province)
    provinces: dict[str, dict[str, float]]  # province -> summed tallies
    candidates: list[_Candidate]
    views: list[View]
    catalogue: Catalogue


# --------------------------------------------------------------------------------------------------- preparation


def _as_views(items: Iterable[DossierState | View], ctx: Context) -> list[View]:
    out = []
    for item in items:
        if isinstance(item, View):
            out.append(item)
        elif isinstance(item, DossierState):
            v = evaluate(item, ctx)
            if v is not None:
                out.append(v)
        else:
            raise TypeError(f"expected DossierState or View, got {type(item).__name__}")
    return out


def _check_at(at: datetime) -> None:
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise ValueError(f"at must be a timezone-aware datetime, got {at!r}")


def _late_view(v: View, at: datetime) -> View:
    """The same dossier ended one second after its fully pause-adjusted due (or after ``at``): certainly late."""
    paused = sum(((b - a) for a, b in v.paused), timedelta())
    end = max(at, v.judged_due_at + paused) + _ONE_SECOND
    return dataclasses.replace(v, end_at=end, end_kind="processed", status="processed", payment_hold=False)


def _period_delta(v: View, at: datetime, period: str) -> dict[str, int]:
    now_c = contribution(v, at)
    late_c = contribution(_late_view(v, at), at)
    out: dict[str, int] = {}
    unit = v.unit_code
    for (u, pk, metric), n in late_c.items():
        if u == unit and pk == period:
            out[metric] = out.get(metric, 0) + n
    for (u, pk, metric), n in now_c.items():
        if u == unit and pk == period:
            out[metric] = out.get(metric, 0) - n
    return {k: n for k, n in out.items() if n}


def _candidate(v: View, at: datetime, period: str, period_end: datetime,
               next_day_cache: dict[int, datetime]) -> _Candidate | None:
    if not v.is_open or v.received_at > at:
        return None
    j_at = v.judge(at)
    if not j_at.on_time or not v.judge(period_end if period_end < at else at).on_time:
        return None
    delta = _period_delta(v, at, period)
    if delta.get("on_time", 0) >= 0:  # not counted on time in this period's population
        return None
    due = v.effective_due_at(at)
    paused = v.open_supplement_at is not None and v.open_supplement_at <= at
    cal = v.calendar
    left_from = v.open_supplement_at if paused else at
    hours_left = max(0.0, cal.working_seconds_between(left_from, due)) / 3600.0
    limit = next_day_cache.get(id(cal))
    if limit is None:
        limit = next_day_cache[id(cal)] = cal.add_working_days(at, 1)
    due_soon = not paused and v.deadline_state(at) == "due_soon"
    return _Candidate(view=v, delta=delta, bucket=j_at.bucket, due=due, paused=paused,
                      hours_left=hours_left, due_soon=due_soon, next_working_day=not paused and due <= limit)


def _meta_of(views: Iterable[View]) -> dict[str, tuple[str | None, str | None]]:
    meta: dict[str, list] = {}
    for v in views:
        m = meta.setdefault(v.unit_code, [None, None])
        m[0] = m[0] or v.unit_level
        m[1] = m[1] or v.province_code
    return {u: (m[0], m[1]) for u, m in meta.items()}


def _provinces_of(tallies: Mapping[str, Mapping[str, float]],
                  meta: Mapping[str, tuple[str | None, str | None]]) -> dict[str, dict[str, float]]:
    by: dict[str, list] = {}
    for unit, t in tallies.items():
        province = meta.get(unit, (None, None))[1]
        if province:
            by.setdefault(province, []).append(t)
    return {p: sum_tallies(ts) for p, ts in by.items()}


def _prepare(items: Iterable[DossierState | View], ctx: Context, period: str, at: datetime,
             catalogue: Catalogue | None, *, unit_tallies: Mapping[str, Mapping[str, float]] | None = None,
             unit_meta: Mapping[str, tuple[str | None, str | None]] | None = None) -> _Prepared:
    _check_at(at)
    start, end = parse_period(period)
    catalogue = catalogue or load_catalogue()
    views = _as_views(items, ctx.at(at))
    if unit_tallies is None:
        total = ContributionSum()
        for v in views:
            total.add(v, at)
        unit_tallies = unit_period_tallies(total.totals(), period)
    tallies = {u: dict(t) for u, t in unit_tallies.items()}
    meta = dict(_meta_of(views))
    if unit_meta:
        meta.update(unit_meta)
    cache: dict[int, datetime] = {}
    # In dossier order, so that sums of rates (floats) do not depend on the order the dossiers were read in.
    candidates = sorted((c for v in views if (c := _candidate(v, at, period, end, cache)) is not None),
                        key=lambda c: c.view.code)
    return _Prepared(period=period, at=at, on=start.date(), tallies=tallies, meta=meta,
                     provinces=_provinces_of(tallies, meta), candidates=candidates, views=views,
                     catalogue=catalogue)


# --------------------------------------------------------------------------------------------------- scoring


def _affected(catalogue: Catalogue, on, level: str | None, keys: Iterable[str]) -> list[Indicator]:
    keys = set(keys)
    return [i for i in catalogue.indicators_valid_on(on)
            if i.scored and i.computable_from_events and i.applies_to(level)
            and keys & (set(i.numerator) | set(i.denominator))]


def _added(tallies: Mapping[str, float], delta: Mapping[str, float], weight: float = 1.0) -> dict[str, float]:
    out = dict(tallies)
    for k, n in delta.items():
        out[k] = out.get(k, 0) + weight * n
    return out


def _score(ind: Indicator, tallies: Mapping[str, float]) -> float | None:
    return indicator_score(combine(ind.numerator, tallies), combine(ind.denominator, tallies), ind)[1]


def _loss(ind: Indicator, before: Mapping[str, float], after: Mapping[str, float]) -> float | None:
    s0, s1 = _score(ind, before), _score(ind, after)
    if s0 is None or s1 is None:
        return None
    d = s0 - s1
    return 0.0 if abs(d) < _EPS else d


def _losses(catalogue: Catalogue, on, level: str | None, tallies: Mapping[str, float],
            delta: Mapping[str, float]) -> dict[str, float]:
    after = _added(tallies, delta)
    out = {}
    for ind in _affected(catalogue, on, level, delta):
        d = _loss(ind, tallies, after)
        if d is not None:
            out[ind.id] = d
    return out


def _record(c: _Candidate, p: _Prepared) -> dict:
    v = c.view
    level, province = p.meta.get(v.unit_code, (v.unit_level, v.province_code))
    ind = _losses(p.catalogue, p.on, level, p.tallies.get(v.unit_code, {}), c.delta)
    prov_ind = None
    if province and province in p.provinces:
        prov_ind = _losses(p.catalogue, p.on, "province", p.provinces[province], c.delta)
    return {
        "dossier": v.code,
        "unit": v.unit_code,
        "province": province,
        "level": level,
        "procedure": v.procedure_code,
        "period": p.period,
        "state": c.bucket,
        "due_at": c.due.astimezone(TZ).isoformat(),  # Vietnam time, whatever offset the state was stored with
        "working_hours_left": round(c.hours_left, 2),
        "clock": "paused" if c.paused else "running",
        "due_soon": c.due_soon,
        "due_within_next_working_day": c.next_working_day,
        "points": math.fsum(ind.values()),
        "province_points": math.fsum(prov_ind.values()) if prov_ind is not None else None,
        "indicators": ind,
        "province_indicators": prov_ind,
    }


def _sorted(records: list[dict]) -> list[dict]:
    # Points rounded first: 20/7 reached by two sums differs in the last bits, and equal points go by due.
    return sorted(records, key=lambda r: (-round(r["points"], 9), r["due_at_sort"], r["dossier"]))


def _records(p: _Prepared) -> list[dict]:
    out = []
    for c in p.candidates:
        r = _record(c, p)
        r["due_at_sort"] = c.due
        out.append(r)
    out = _sorted(out)
    for r in out:
        del r["due_at_sort"]
    return out


# --------------------------------------------------------------------------------------------------- public API


def points_at_risk(states_or_views: Iterable[DossierState | View], ctx: Context, period: str, at: datetime,
                   catalogue: Catalogue | None = None) -> list[dict]:
    """One record per at-risk dossier, sorted by points (descending), then due date, then dossier code.

    ``states_or_views`` must hold every dossier of the file or partition (the counts of the period are summed
    from them); states are evaluated at ``at``. States must be as of ``at`` (replayed with ``ctx.now = at``).
    """
    return _records(_prepare(states_or_views, ctx, period, at, catalogue))


def risk_records(views: Iterable[View], unit_tallies: Mapping[str, Mapping[str, float]],
                 unit_meta: Mapping[str, tuple[str | None, str | None]], period: str, at: datetime,
                 catalogue: Catalogue | None = None, ctx: Context | None = None) -> list[dict]:
    """``points_at_risk`` from tallies the caller already keeps (the worker's running totals of the period,
    ``{unit: {metric: n}}``, and ``{unit: (level, province)}``): only the open dossiers need to be passed."""
    views = list(views)
    if ctx is None:
        ctx = Context(now=at, calendar=views[0].calendar if views else None)  # views need no re-evaluation
    return _records(_prepare(views, ctx, period, at, catalogue, unit_tallies=unit_tallies, unit_meta=unit_meta))


def risk_sums(records: Iterable[Mapping]) -> dict:
    """Per unit and per province: dossiers at risk and their summed points, and the same for those due within
    the next working day (the same moment of the next working day, running clocks only) — for the gauges."""
    units: dict[str, dict] = {}
    provinces: dict[str, dict] = {}

    def bump(into: dict, key: str, points: float | None, soon: bool) -> None:
        row = into.setdefault(key, {"dossiers": 0, "points": 0.0, "dossiers_next_working_day": 0,
                                    "points_next_working_day": 0.0})
        p = points or 0.0
        row["dossiers"] += 1
        row["points"] += p
        if soon:
            row["dossiers_next_working_day"] += 1
            row["points_next_working_day"] += p

    for r in records:
        soon = bool(r.get("due_within_next_working_day"))
        bump(units, r["unit"], r["points"], soon)
        if r.get("province"):
            bump(provinces, r["province"], r.get("province_points"), soon)
    return {"units": dict(sorted(units.items())), "provinces": dict(sorted(provinces.items()))}


def _in_play(p: _Prepared) -> dict:
    deltas_u: dict[str, dict[str, float]] = {}
    deltas_p: dict[str, dict[str, float]] = {}
    for c in p.candidates:
        unit = c.view.unit_code
        province = p.meta.get(unit, (None, None))[1]
        for into, key in ((deltas_u, unit), (deltas_p, province)):
            if key is None:
                continue
            d = into.setdefault(key, {})
            for k, n in c.delta.items():
                d[k] = d.get(k, 0) + n

    def block(key: str, level: str | None, tallies: Mapping[str, float], delta: Mapping[str, float]) -> dict:
        return {"level": level, "indicators": _losses(p.catalogue, p.on, level, tallies, delta)}

    units = {u: block(u, p.meta.get(u, (None, None))[0], p.tallies.get(u, {}), d) for u, d in sorted(deltas_u.items())}
    provinces = {pr: block(pr, "province", p.provinces.get(pr, {}), d) for pr, d in sorted(deltas_p.items())}
    for b in list(units.values()) + list(provinces.values()):
        b["points"] = math.fsum(b["indicators"].values())
    return {"units": units, "provinces": provinces}


def points_in_play(states_or_views: Iterable[DossierState | View], ctx: Context, period: str, at: datetime,
                   catalogue: Catalogue | None = None) -> dict:
    """Per unit and province, per indicator: score now minus score if every at-risk dossier ended late — the
    bound that the summed points at risk never exceed (module docstring)."""
    return _in_play(_prepare(states_or_views, ctx, period, at, catalogue))


# --------------------------------------------------------------------------------------------------- forecast


_ENDED = ("ended_early", "ended_on_time", "ended_late")


def ended_key(v: View, at: datetime, period: str) -> tuple | None:
    """``(unit, province of the view, procedure, late)`` of a dossier that counts in the lateness rates (ended by
    ``at`` and counted in the period's population exactly as the tallies count it, carry-over rule included)."""
    if v.is_open or v.end_at > at:
        return None
    c = contribution(v, at)
    buckets = [m for m in _ENDED if c.get((v.unit_code, period, m))]
    if not buckets:
        return None
    return (v.unit_code, v.province_code, v.procedure_code, buckets[0] == "ended_late")


def group_key(c: _Candidate) -> tuple:
    """What the forecast and the at-risk counts read of a candidate: dossiers with the same key are counted
    together, so a pass over the table keeps one integer per key instead of one record per dossier."""
    v = c.view
    return (v.unit_code, v.procedure_code, tuple(sorted(c.delta.items())), c.due_soon, c.next_working_day)


def count_keys(keys: Iterable[tuple | None]) -> dict[tuple, int]:
    """How many times each key occurs, ``None`` left out."""
    out: dict[tuple, int] = {}
    for k in keys:
        if k is not None:
            out[k] = out.get(k, 0) + 1
    return out


def lateness_rates(ended: Mapping[tuple, int], meta: Mapping[str, tuple[str | None, str | None]]
                   ) -> dict[str | None, dict[str, dict]]:
    """{province: {procedure: {ended, late, rate}, "*": all procedures}} from ``ended_key`` counts."""
    counts: dict[str | None, dict[str, list[int]]] = {}
    for (unit, view_province, procedure, late), n in ended.items():
        province = meta.get(unit, (None, view_province))[1]
        per = counts.setdefault(province, {})
        for key in (procedure, "*"):
            row = per.setdefault(key, [0, 0])
            row[0] += n
            row[1] += n if late else 0
    return {prov: {k: {"ended": n, "late": k_late, "rate": k_late / n} for k, (n, k_late) in sorted(per.items())}
            for prov, per in counts.items()}


def _rate_for(rates: Mapping[str | None, Mapping[str, dict]], province: str | None, procedure: str) -> tuple[float, str]:
    per = rates.get(province) or {}
    if procedure in per:
        return per[procedure]["rate"], "procedure"
    if "*" in per:
        return per["*"]["rate"], "province"
    return 0.0, "none"


def _band_doc(band: Mapping | None) -> dict | None:
    if band is None:
        return None
    return {**band, "name_en": BAND_NAMES_EN.get(band["code"], band["code"])}


def _scenario(catalogue: Catalogue, on, tallies: Mapping[str, float], level: str | None, moved: float,
              affected: list[Indicator], delta: Mapping[str, float]) -> dict:
    doc = score_unit(tallies, level, catalogue, on)
    ind = doc["indicators"]
    return {
        "total": doc["total"],
        "total_estimated": doc["total_estimated"],
        "band": _band_doc(doc["band"]),
        "score_2_1": ind.get("2.1", {}).get("score"),
        "indicators": {i.id: ind[i.id]["score"] for i in affected if i.id in ind},
        "late_added": moved,
        # Per indicator, how many dossiers (expected, for current_rate) the scenario takes out of its numerator:
        # what the worker exports so that Prometheus rebuilds every affected indicator's score, not 2.1 alone.
        "numerator_removed": {i.id: -combine(i.numerator, delta) + 0.0 for i in affected if i.id in ind},
    }


def _forecast(p: _Prepared) -> dict:
    return forecast_doc(p.period, p.at, p.catalogue, p.tallies, p.meta, p.provinces,
                        lateness_rates(count_keys(ended_key(v, p.at, p.period) for v in p.views), p.meta),
                        count_keys(group_key(c) for c in p.candidates))


def forecast_doc(period: str, at: datetime, catalogue: Catalogue, tallies: Mapping[str, Mapping[str, float]],
                 meta: Mapping[str, tuple[str | None, str | None]], provinces: Mapping[str, Mapping[str, float]],
                 rates: Mapping[str | None, Mapping[str, dict]], groups: Mapping[tuple, int]) -> dict:
    """The forecast document from the candidates counted by ``group_key`` and the lateness ``rates``."""
    on = parse_period(period)[0].date()
    acc: dict[tuple[str, str], dict] = {}  # ("unit"|"province", code) -> accumulators

    def slot(kind: str, code: str) -> dict:
        return acc.setdefault((kind, code), {"soon": {}, "rate": {}, "n_soon": 0, "n_rate": 0.0, "n": 0})

    # In key order, so that sums of rates (floats) do not depend on the order the dossiers were read in.
    for (unit, procedure, delta, due_soon, _next_day), m in sorted(groups.items(), key=lambda kv: repr(kv[0])):
        province = meta.get(unit, (None, None))[1]
        r, _basis = _rate_for(rates, province, procedure)
        targets = [slot("unit", unit)] + ([slot("province", province)] if province else [])
        for s in targets:
            s["n"] += m
            if due_soon:
                s["n_soon"] += m
                for k, n in delta:
                    s["soon"][k] = s["soon"].get(k, 0) + m * n
            if r:
                s["n_rate"] += r * m
                for k, n in delta:
                    s["rate"][k] = s["rate"].get(k, 0) + r * m * n

    def block(kind: str, code: str, level: str | None, province: str | None, tallies: Mapping[str, float]) -> dict:
        s = acc.get((kind, code)) or {"soon": {}, "rate": {}, "n_soon": 0, "n_rate": 0.0, "n": 0}
        keys = set(s["soon"]) | set(s["rate"]) | {"on_time"}
        affected = _affected(catalogue, on, level, keys)
        return {
            "level": level,
            "province": province,
            "dossiers_at_risk": s["n"],
            "on_time_all": _scenario(catalogue, on, tallies, level, 0, affected, {}),
            "due_soon_late": _scenario(catalogue, on, _added(tallies, s["soon"]), level, s["n_soon"], affected,
                                       s["soon"]),
            "current_rate": _scenario(catalogue, on, _added(tallies, s["rate"]), level, s["n_rate"], affected,
                                      s["rate"]),
            "method": METHOD,
        }

    units = {u: block("unit", u, *meta.get(u, (None, None)), t) for u, t in sorted(tallies.items())}
    by_province = {pr: block("province", pr, "province", pr, t) for pr, t in sorted(provinces.items())}
    return {
        "period": period,
        "period_end": parse_period(period)[1].isoformat(),
        "at": at.isoformat(),
        "catalogue": f"{catalogue.catalogue_id}:{catalogue.version}",
        "units": units,
        "provinces": by_province,
        "lateness_rates": {str(k): v for k, v in sorted(rates.items(), key=lambda kv: str(kv[0]))},
        "method": METHOD,
    }


def forecast(states_or_views: Iterable[DossierState | View], ctx: Context, period: str, at: datetime,
             catalogue: Catalogue | None = None) -> dict:
    """Period-end 766 estimate per unit and province under three scenarios (module docstring)."""
    return _forecast(_prepare(states_or_views, ctx, period, at, catalogue))


def forecast_from_tallies(views: Iterable[View], unit_tallies: Mapping[str, Mapping[str, float]],
                          unit_meta: Mapping[str, tuple[str | None, str | None]], period: str, at: datetime,
                          catalogue: Catalogue | None = None, ctx: Context | None = None) -> dict:
    """``forecast`` from tallies the caller already keeps (as ``risk_records``): ``views`` are the open dossiers
    and those that ended in the period (the lateness rates are read from the ended ones)."""
    views = list(views)
    if ctx is None:
        ctx = Context(now=at, calendar=views[0].calendar if views else None)
    return _forecast(_prepare(views, ctx, period, at, catalogue, unit_tallies=unit_tallies, unit_meta=unit_meta))


# --------------------------------------------------------------------------------------------------- CLI entry points


def at_risk_from_replay(replayed, ctx: Context, period: str, at: datetime | None = None,
                        catalogue: Catalogue | None = None) -> list[dict]:
    """``points_at_risk`` of a ``models.figures.Replay`` (``onestop at-risk``); ``at`` defaults to ``ctx.now``,
    the instant the file was replayed as of."""
    return points_at_risk(replayed.states.values(), ctx, period, at or ctx.now, catalogue)


def forecast_from_replay(replayed, ctx: Context, period: str, at: datetime | None = None,
                         catalogue: Catalogue | None = None) -> dict:
    return forecast(replayed.states.values(), ctx, period, at or ctx.now, catalogue)


def at_risk_lines(records: Iterable[Mapping]) -> Iterable[bytes]:
    """JSON lines, one record each, in the given order (already sorted by ``points_at_risk``)."""
    enc = msgspec.json.Encoder()
    for r in records:
        yield enc.encode(r) + b"\n"
