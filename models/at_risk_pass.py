"""The at-risk counts and the forecast of a period from one pass over the dossiers, in memory bounded by what
is counted, not by how many dossiers there are.

``models.at_risk`` answers with one record per at-risk dossier, which the read API pages through for one unit.
A worker's scrape families and the forecast block of ``/figures`` need only sums: how many at-risk dossiers per
unit, indicator and horizon, and the forecast's scenarios. Holding a view and a record for each of a million
open dossiers to add them up would cost gigabytes and stop the worker's loop for a minute, so ``RiskPass`` takes
the dossiers one at a time and keeps, per ``group_key`` (unit, procedure, what ending late would change, due
soon, due within the next working day), a count. The results are those of ``models.at_risk`` on the same
dossiers (tests/test_at_risk_pass.py holds them equal).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from .at_risk import (_candidate, _check_at, _losses, _provinces_of, ended_key, forecast_doc, group_key,
                      lateness_rates)
from .evaluation import View
from .index766 import Catalogue, load_catalogue
from .tally import parse_period

__all__ = ["HORIZONS", "RiskPass", "RiskSummary"]

HORIZONS = ("all", "next_working_day")


@dataclass
class RiskSummary:
    """What a pass found: ``counts[(unit, indicator, horizon)]`` of at-risk dossiers, the indicators seen at
    each unit level (``""`` for a unit whose level is unknown), and the forecast document."""

    counts: dict[tuple[str, str, str], int]
    indicators_by_level: dict[str, set[str]]
    forecast: dict
    dossiers: int  # dossiers the pass was given


class RiskPass:
    """Add the views of one period's dossiers (``add``), then ``summary`` on the period's tallies.

    Every view may be given: those neither open nor ended since the period began are left out, as the worker's
    scan of the period leaves them out.
    """

    def __init__(self, period: str, at: datetime) -> None:
        _check_at(at)
        self.period, self.at = period, at
        self.start, self.end = parse_period(period)
        self.groups: dict[tuple, int] = {}
        self.ended: dict[tuple, int] = {}
        self.seen_meta: dict[str, list] = {}
        self.dossiers = 0
        self._next_day: dict[int, datetime] = {}

    def add(self, v: View) -> None:
        self.dossiers += 1
        if not (v.is_open or v.end_at >= self.start):
            return
        m = self.seen_meta.get(v.unit_code)
        if m is None:
            m = self.seen_meta[v.unit_code] = [None, None]
        m[0] = m[0] or v.unit_level
        m[1] = m[1] or v.province_code
        key = ended_key(v, self.at, self.period)
        if key is not None:
            self.ended[key] = self.ended.get(key, 0) + 1
            return
        c = _candidate(v, self.at, self.period, self.end, self._next_day)
        if c is not None:
            key = group_key(c)
            self.groups[key] = self.groups.get(key, 0) + 1

    def summary(self, unit_tallies: Mapping[str, Mapping[str, float]],
                unit_meta: Mapping[str, tuple[str | None, str | None]] | None = None,
                catalogue: Catalogue | None = None) -> RiskSummary:
        """Scored on ``unit_tallies`` (``{unit: {metric: n}}`` of the period) and the units' ``(level,
        province)``, which take precedence over what the views said."""
        catalogue = catalogue or load_catalogue()
        tallies = {u: dict(t) for u, t in unit_tallies.items()}
        meta = {u: (m[0], m[1]) for u, m in self.seen_meta.items()}
        meta.update(unit_meta or {})
        provinces = _provinces_of(tallies, meta)
        rates = lateness_rates(self.ended, meta)
        forecast = forecast_doc(self.period, self.at, catalogue, tallies, meta, provinces, rates, self.groups)
        on = self.start.date()
        counts: dict[tuple[str, str, str], int] = {}
        by_level: dict[str, set[str]] = {}
        indicators: dict[tuple, tuple[str, ...]] = {}  # (unit, delta) -> the indicators its records name
        for (unit, _procedure, delta, _soon, next_day), n in self.groups.items():
            level = meta[unit][0]
            names = indicators.get((unit, delta))
            if names is None:
                names = indicators[(unit, delta)] = tuple(
                    _losses(catalogue, on, level, tallies.get(unit, {}), dict(delta)))
            by_level.setdefault(str(level or ""), set()).update(names)
            for ind in names:
                for horizon in HORIZONS:
                    if horizon == "all" or next_day:
                        k = (unit, ind, horizon)
                        counts[k] = counts.get(k, 0) + n
        return RiskSummary(counts=counts, indicators_by_level=by_level, forecast=forecast, dossiers=self.dossiers)
