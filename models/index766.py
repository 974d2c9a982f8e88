"""The 766 index (Decision 766/QĐ-TTg): scoring of units and provinces over the indicator catalogue.

The catalogue (``models.index766_catalogue``, re-exported here as part of the index's public surface) says what each
indicator measures; this module turns tallies into ratios, points, group sums, totals and bands. Scores keep full
precision; DVCQG publishes two decimals, which is a display concern for callers. "No data" is ``None`` and never 0,
because a 0 would lower a unit's published total for something it was never measured on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from models.index766_catalogue import __all__ as CATALOGUE_NAMES
from models.index766_catalogue import (BUNDLED_CATALOGUE, KINDS, LEVELS, PERIOD_FILTERS, ZERO_DEN_POLICIES, Band,
                                       Catalogue, CatalogueError, Group, Indicator, SUM_TOLERANCE, load_catalogue,
                                       parse_catalogue)  # noqa: F401 (re-exported: part of the index's surface)

__all__ = [  # the catalogue's names, then the scoring's
    *CATALOGUE_NAMES,
    "band_for",
    "combine",
    "indicator_score",
    "score_unit",
    "sum_tallies",
]

def combine(coeffs: Mapping[str, int], tallies: Mapping[str, float]) -> float:
    # A key absent from the tallies is a counter nobody incremented in the period, i.e. zero, not "unknown".
    return sum((c * tallies.get(k, 0) for k, c in coeffs.items()), 0)


def indicator_score(numerator: float, denominator: float, ind: Indicator) -> tuple[float | None, float | None]:
    """Return ``(ratio, score)``; DVCQG's shapes are linear or capped-linear, both covered by ``min(M, M r / T)``.

    Inconsistent inputs (negative or non-finite) are an upstream bug, so they raise instead of being scored.
    A negative numerator (e.g. more late-or-dissatisfied than population) scores 0 rather than below 0.
    """
    for name, v in (("numerator", numerator), ("denominator", denominator)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"indicator {ind.id}: {name} must be a finite number, got {v!r}")
    if denominator < 0:
        raise ValueError(f"indicator {ind.id}: denominator {denominator!r} is negative; the tallies are inconsistent")

    ratio: float | None
    score: float | None
    if denominator == 0:
        policy = ind.zero_den_policy
        if policy == "zero_ratio":
            ratio, score = 0.0, 0.0
        elif policy == "zero_score":
            ratio, score = None, 0.0
        elif policy == "full_points":
            ratio, score = None, ind.max_points
        else:
            ratio, score = None, None
    else:
        ratio = numerator / denominator
        score = min(ind.max_points, max(0.0, ind.max_points * ratio / ind.threshold))
    if not ind.scored:
        score = None
    return ratio, score


def band_for(total: float | None, catalogue: Catalogue) -> Band | None:
    if total is None:
        return None
    for band in catalogue.bands:
        if total + SUM_TOLERANCE >= band.min_total:
            return band
    # Below every band's floor can only be a negative total; the lowest band is still the honest answer.
    return catalogue.bands[-1]


def sum_tallies(items: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Roll children up into a parent by adding counts; ratios are then recomputed from the sums.

    Averaging children's ratios would weight a commune with 3 dossiers like an agency with 3,000.
    """
    out: dict[str, float] = {}
    for item in items:
        for key, value in item.items():
            out[key] = out.get(key, 0) + value
    return out


def _check_external(
    external: Mapping[str, float], valid: Mapping[str, Indicator], level: str | None, on: date
) -> dict[str, float]:
    # An operator's file of national-only scores is checked as strictly as the catalogue: a misplaced value
    # would otherwise shift a published total without any trace.
    checked: dict[str, float] = {}
    for ind_id, value in external.items():
        ind = valid.get(ind_id)
        if ind is None:
            raise ValueError(f"external score for indicator {ind_id!r}: no such indicator valid on {on.isoformat()}")
        if not ind.scored:
            raise ValueError(f"external score for indicator {ind_id!r}: a monitoring indicator carries no score")
        if not ind.applies_to(level):
            raise ValueError(
                f"external score for indicator {ind_id!r}: it does not apply to level {level!r}, so it cannot be used"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"external score for indicator {ind_id!r} must be a finite number, got {value!r}")
        if value < -SUM_TOLERANCE or value > ind.max_points + SUM_TOLERANCE:
            raise ValueError(
                f"external score for indicator {ind_id!r} is {value!r}, outside [0, {ind.max_points:g}] points"
            )
        checked[ind_id] = min(ind.max_points, max(0.0, float(value)))
    return checked


def score_unit(
    tallies: Mapping[str, float],
    level: str | None,
    catalogue: Catalogue,
    on: date,
    external: Mapping[str, float] | None = None,
) -> dict:
    """Score one unit for one period from its tallies (and any official scores supplied for what events can't see).

    Partial knowledge is the normal case for a live monitor (national-only indicators, non-applicable ones), so the
    document says how much is known (``max_points_known``, ``complete``) and, when incomplete, bands a total rescaled
    to 100 and labels it an estimate instead of banding a total that is low only because points are missing.

    An external score overrides the events' score for the same indicator (the official value is authoritative);
    the events' numerator, denominator and ratio are kept beside it so the difference stays visible.
    """
    if isinstance(on, datetime) or not isinstance(on, date):
        raise TypeError(f"on must be a date (the period's reference day), got {on!r}")
    if level is not None and level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; known: {', '.join(sorted(LEVELS))} or None")
    if on < catalogue.valid_from:
        raise ValueError(
            f"catalogue {catalogue.catalogue_id} {catalogue.version} is valid from {catalogue.valid_from.isoformat()}; "
            f"{on.isoformat()} needs an older catalogue"
        )
    valid = catalogue.indicators_valid_on(on)
    by_id = {i.id: i for i in valid}
    official = _check_external(external or {}, by_id, level, on)

    indicators: dict[str, dict[str, Any]] = {}
    for ind in valid:
        applicable = ind.applies_to(level)
        num = den = ratio = score = None
        source = None
        if applicable:
            if ind.computable_from_events:
                num = combine(ind.numerator, tallies)
                den = combine(ind.denominator, tallies)
                ratio, score = indicator_score(num, den, ind)
                source = "events"
            if ind.id in official:
                score, source = official[ind.id], "external"
        indicators[ind.id] = {
            "numerator": num,
            "denominator": den,
            "ratio": ratio,
            "score": score,
            "max_points": ind.max_points,
            "group": ind.group,
            "computable": ind.computable_from_events,
            "source": source,
            "applicable": applicable,
        }

    known = [i for i in valid if i.scored and indicators[i.id]["score"] is not None]
    groups: dict[str, dict[str, Any]] = {}
    for g in catalogue.groups:
        members = [i for i in known if i.group == g.id]
        groups[str(g.id)] = {
            "code": g.code,
            "name_vi": g.name_vi,
            "score": math.fsum(indicators[i.id]["score"] for i in members) if members else None,
            "max_points": g.max_points,
            "max_points_known": math.fsum(i.max_points for i in members),
        }

    max_known = math.fsum(i.max_points for i in known)
    total = math.fsum(indicators[i.id]["score"] for i in known) if known else None
    estimated = total * catalogue.max_points / max_known if total is not None and max_known > 0 else None
    complete = all(indicators[i.id]["score"] is not None for i in valid if i.scored)

    band_doc = None
    if complete and total is not None:
        band, basis = band_for(total, catalogue), "total"
    else:
        band, basis = band_for(estimated, catalogue), "estimate"
    if band is not None:
        band_doc = {"code": band.code, "name_vi": band.name_vi, "number": band.number, "basis": basis}

    return {
        "indicators": indicators,
        "groups": groups,
        "total": total,
        "max_points_known": max_known,
        "total_estimated": estimated,
        "complete": complete,
        "band": band_doc,
    }
