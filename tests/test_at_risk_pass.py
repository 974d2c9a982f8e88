"""models/at_risk_pass.py: the counts and the forecast of one pass equal what models.at_risk finds from its
records and views, whatever order the dossiers come in, while holding counts instead of dossiers."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.at_risk import forecast_from_tallies, risk_records
from models.at_risk_pass import RiskPass
from models.evaluation import evaluate
from models.figures import iter_lines, replay, tallies_of
from models.tally import parse_period, unit_period_tallies
from tests.builders import SAMPLE_FILE, at_risk_counts
from tests.test_at_risk import AT, PERIOD, ctx_at, mixed_lines, on_time, open_, run


def period_views(rep, ctx, period: str = PERIOD):
    start, _end = parse_period(period)
    views = [v for s in rep.states.values() if (v := evaluate(s, ctx)) is not None]
    return [v for v in views if v.is_open or v.end_at >= start]


def check_equal(rep, ctx, at=AT, period: str = PERIOD, seed: int = 0) -> RiskPass:
    """The pass over the views in a shuffled order against risk_records and forecast_from_tallies."""
    views = period_views(rep, ctx, period)
    unit_tallies = unit_period_tallies(tallies_of(rep.states.values(), ctx), period)
    records = risk_records(views, unit_tallies, {}, period, at, ctx=ctx)
    want_forecast = forecast_from_tallies(views, unit_tallies, {}, period, at, ctx=ctx)
    shuffled = list(views)
    random.Random(seed).shuffle(shuffled)
    counted = RiskPass(period, at)
    for v in shuffled:
        counted.add(v)
    got = counted.summary(unit_tallies)
    assert got.counts == at_risk_counts(records)
    assert got.forecast == want_forecast
    by_level: dict[str, set[str]] = {}
    for r in records:
        by_level.setdefault(str(r["level"] or ""), set()).update(r["indicators"])
    assert got.indicators_by_level == by_level
    assert got.dossiers == len(views)
    return counted


def test_the_sample_file_in_any_order():
    ctx = ctx_at()
    rep = replay(iter_lines(str(SAMPLE_FILE)), ctx)
    for seed in range(3):
        counted = check_equal(rep, ctx, seed=seed)
    assert counted.groups and counted.ended  # both halves of the pass were exercised


def test_views_outside_the_period_are_left_out():
    rep, ctx = run(on_time("D-1") + open_("D-2"))
    counted = RiskPass("month:2026-04", AT.replace(month=4, day=10))
    for s in rep.states.values():  # D-1 ended in March: not in April's pass
        counted.add(evaluate(s, ctx))
    assert counted.ended == {} and counted.dossiers == 2


def test_alike_dossiers_are_one_count():
    """A thousand open dossiers of one unit and procedure, due the same day: one key, not a thousand records."""
    lines = on_time("D-0") + sum((open_(f"D-{i}", due="2026-03-20 08:00") for i in range(1, 1001)), [])
    rep, ctx = run(lines)
    counted = check_equal(rep, ctx)
    assert list(counted.groups.values()) == [1000]


kinds = st.sampled_from(["on_time", "late", "open", "open_unsatisfied", "overdue", "supplement", "due_tomorrow"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(units=st.lists(st.lists(kinds, min_size=1, max_size=10), min_size=1, max_size=3), seed=st.integers(0, 99))
def test_any_mix_of_dossiers_in_any_order(units, seed):
    lines = mixed_lines(units, lambda u: f"T0{1 + u % 2}.S{u + 1:02d}")  # two provinces: sums and rates per province
    rep, ctx = run(lines)
    check_equal(rep, ctx, seed=seed)
