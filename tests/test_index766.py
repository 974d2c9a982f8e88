"""Tests of the 766 catalogue and scoring (spec: /work/shared/spec/domain.md section 1)."""

from __future__ import annotations

import ast
import copy
import json
import math
import re
from datetime import date, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from models.index766 import (
    BUNDLED_CATALOGUE,
    Catalogue,
    CatalogueError,
    band_for,
    combine,
    indicator_score,
    load_catalogue,
    parse_catalogue,
    score_unit,
    sum_tallies,
)

REPO = Path(__file__).resolve().parents[1]
ON = date(2026, 3, 31)


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


def bundled_doc() -> dict:
    return yaml.safe_load(BUNDLED_CATALOGUE.read_text(encoding="utf-8"))


def ind_row(doc: dict, ind_id: str) -> dict:
    return next(r for r in doc["indicators"] if r["id"] == ind_id)


def score_of(cat: Catalogue, ind_id: str, num: float, den: float):
    return indicator_score(num, den, cat.indicator(ind_id))


# ------------------------------------------------------------------------------------------- the bundled catalogue

EXPECTED = {
    # id: (group, max_points, threshold, zero_den_policy, computable_from_events, kind)
    "1.1": (1, 6, 1.0, None, False, "scored"),
    "1.2": (1, 4, 1.0, None, False, "scored"),
    "1.3": (1, 2, 1.0, None, False, "scored"),
    "1.4": (1, 6, 1.0, "zero_ratio", False, "scored"),
    "2.1": (2, 20, 1.0, None, True, "scored"),
    "2.2": (2, 0, 1.0, None, True, "monitoring"),
    "3.1": (3, 2, 0.8, None, False, "scored"),
    "3.2": (3, 4, 1.0, None, False, "scored"),
    "3.3": (3, 6, 0.5, None, True, "scored"),
    "3.5": (4, 2, 0.8, "zero_ratio", False, "scored"),
    "3.5b": (4, 2, 0.8, "zero_ratio", False, "scored"),
    "3.6": (4, 6, 1.0, "zero_ratio", True, "scored"),
    "4.1": (5, 6, 1.0, None, True, "scored"),
    "4.2": (5, 4, 1.0, None, True, "scored"),
    "4.3": (5, 2, 1.0, None, False, "scored"),
    "4.4": (5, 2, 0.8, None, True, "scored"),
    "4.5": (5, 4, 1.0, None, True, "scored"),
    "4.6": (5, 2, 1.0, None, True, "scored"),
    "4.7": (5, 2, 1.0, None, False, "scored"),
    "5.1": (6, 0, 1.0, None, False, "monitoring"),
    "5.2": (6, 6, 1.0, "full_points", False, "scored"),
    "5.3": (6, 6, 1.0, "full_points", False, "scored"),
    "5.4": (6, 6, 0.9, "zero_score", True, "scored"),
}


def test_catalogue_identity(cat):
    assert (cat.catalogue_id, cat.version) == ("index766", "2026.1")
    assert isinstance(cat.valid_from, date)
    assert [(g.id, g.code, g.max_points) for g in cat.groups] == [
        (1, "CKMB", 18), (2, "TDGQ", 20), (3, "CLGQ", 12), (4, "TTTT", 10), (5, "MDSH", 22), (6, "MDHL", 18)
    ]
    assert cat.max_points == 100


@pytest.mark.parametrize("ind_id", sorted(EXPECTED))
def test_catalogue_rows(cat, ind_id):
    ind = cat.indicator(ind_id)
    got = (ind.group, ind.max_points, ind.threshold, ind.zero_den_policy, ind.computable_from_events, ind.kind)
    assert got == EXPECTED[ind_id]
    assert ind.valid_to is None and ind.valid_on(ON)
    assert ind.name_vi and ind.name_en and ind.source and ind.confidence
    if ind.computable_from_events:
        assert ind.numerator and ind.denominator
    else:
        assert ind.numerator is None and ind.denominator is None


def test_catalogue_lists_exactly_the_spec_indicators(cat):
    assert [i.id for i in cat.indicators] == list(EXPECTED)


def test_group_maxima_add_up_to_100(cat):
    for g in cat.groups:
        members = [i for i in cat.indicators_valid_on(ON) if i.group == g.id and i.scored]
        assert math.fsum(i.max_points for i in members) == g.max_points
    assert math.fsum(i.max_points for i in cat.indicators_valid_on(ON)) == 100


@pytest.mark.parametrize(
    "ind_id, numerator, denominator",
    [
        ("2.1", {"on_time": 1}, {"population": 1}),
        ("2.2", {"processing_seconds_sum": 1}, {"processing_count": 1}),
        ("3.3", {"online_qualified": 1}, {"received": 1}),
        ("3.6", {"paid_online": 1}, {"fee_bearing": 1}),
        ("4.1", {"paper_result_e_result": 1}, {"paper_result": 1}),
        ("4.2", {"digitized": 1}, {"received": 1}),
        ("4.4", {"reused_data": 1}, {"received": 1}),
        ("4.5", {"personal_store": 1}, {"received": 1}),
        ("4.6", {"population_db": 1}, {"received": 1}),
        ("5.4", {"population": 1, "late_or_dissatisfied": -1}, {"population": 1}),
    ],
)
def test_event_formulas(cat, ind_id, numerator, denominator):
    ind = cat.indicator(ind_id)
    assert dict(ind.numerator) == numerator and dict(ind.denominator) == denominator


def test_tally_keys_are_documented_in_architecture(cat):
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text.split("### Tally metric keys", 1)[1]
    documented = set(re.findall(r"`([a-z_]+)`", table))
    assert cat.tally_keys() <= documented
    assert "late_or_dissatisfied" in cat.tally_keys() and "processing_count" in cat.tally_keys()


def test_levels(cat):
    assert cat.indicator("4.6").levels == {"province", "ministry", "agency"}
    assert "commune" not in cat.indicator("4.7").levels
    assert cat.indicator("1.1").levels == {"province", "ministry"}
    assert cat.indicator("2.1").levels == {"province", "ministry", "agency", "commune", "district_legacy"}


def test_loading_is_cached_and_rows_are_immutable(cat):
    assert load_catalogue() is cat
    assert load_catalogue(BUNDLED_CATALOGUE) is cat
    ind = cat.indicator("2.1")
    hash(ind)
    with pytest.raises(TypeError):
        ind.numerator["on_time"] = 2  # type: ignore[index]


@pytest.mark.parametrize("module", ["index766.py", "index766_catalogue.py"])
def test_domain_core_stays_pure(module):
    tree = ast.parse((REPO / "models" / module).read_text(encoding="utf-8"))
    roots, ours = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
            if node.module.startswith("models"):
                ours.add(node.module)
    assert roots.isdisjoint({"faust", "kafka", "prometheus_client", "streams", "msgspec"})
    assert roots - {"yaml", "__future__", "models"} <= set(__import__("sys").stdlib_module_names)
    # The scoring reads only its own catalogue; the catalogue reads nothing else of ours.
    assert ours <= ({"models.index766_catalogue"} if module == "index766.py" else set())


# ------------------------------------------------------------------------------------------- seed figures (§1.8)


@pytest.mark.parametrize(
    "ind_id, numerator, denominator, published",
    [
        ("1.1", 0.6667, 1, 4.00),  # "TTHC công bố đúng hạn 66.67 %" -> 4.00 / 6
        ("1.2", 0.7468, 1, 2.99),  # "cập nhật, công khai đúng hạn 74.68 %" -> 2.99 / 4
        ("5.3", 1, 1, 6.00),  # "hài lòng trong xử lý PAKN 100 %" -> 6 / 6
        ("5.4", 9345, 10000, 6.00),  # 93.45 % >= the 90 % threshold -> 6 / 6
        ("2.1", 935, 1000, 18.70),  # "Tiến độ 18.7/20" <=> on-time ratio 93.5 %
    ],
)
def test_seed_figures(cat, ind_id, numerator, denominator, published):
    _, score = score_of(cat, ind_id, numerator, denominator)
    assert round(score, 2) == published


def test_seed_province_total_is_kha(cat):
    assert band_for(14.2 + 18.7 + 14.4 + 17.7 + 13.7, cat).code == "kha"


# ------------------------------------------------------------------------------------------- scoring shapes


@pytest.mark.parametrize(
    "ind_id, ratio, expected",
    [
        ("3.3", 0.25, 3.0),  # threshold 50 %: half-way to the threshold is half the points
        ("3.3", 0.50, 6.0),
        ("3.3", 0.60, 6.0),  # capped
        ("4.4", 0.40, 1.0),  # threshold 80 %
        ("4.4", 0.80, 2.0),
        ("3.1", 0.40, 1.0),
        ("5.4", 0.45, 3.0),  # threshold 90 %
        ("5.4", 0.90, 6.0),
        ("4.2", 0.50, 2.0),  # linear per the API (the description's 80 % threshold is not used)
        ("2.1", 0.00, 0.0),
        ("2.1", 1.00, 20.0),
        ("3.6", 0.25, 1.5),
    ],
)
def test_threshold_and_linear_scoring(cat, ind_id, ratio, expected):
    r, score = score_of(cat, ind_id, ratio * 1000, 1000)
    assert r == pytest.approx(ratio)
    assert score == pytest.approx(expected)


@pytest.mark.parametrize(
    "ind_id, expected",
    [
        ("2.1", (None, None)),  # no data, excluded from the rating
        ("3.3", (None, None)),
        ("4.1", (None, None)),
        ("3.6", (0.0, 0.0)),  # payment ratios: ratio 0
        ("3.5", (0.0, 0.0)),
        ("3.5b", (0.0, 0.0)),
        ("5.4", (None, 0.0)),  # dossier satisfaction: score 0
        ("5.2", (None, 6.0)),  # petitions: no petitions -> full points
        ("5.3", (None, 6.0)),
        ("2.2", (None, None)),  # monitoring
    ],
)
def test_zero_denominator_policies(cat, ind_id, expected):
    assert score_of(cat, ind_id, 0, 0) == expected


def test_monitoring_indicator_has_a_ratio_but_no_score(cat):
    assert score_of(cat, "2.2", 3 * 3600 + 3600, 2) == (7200.0, None)


def test_negative_numerator_scores_zero_and_bad_inputs_raise(cat):
    assert score_of(cat, "5.4", -3, 10) == (-0.3, 0.0)
    with pytest.raises(ValueError, match="negative"):
        score_of(cat, "2.1", 1, -1)
    with pytest.raises(ValueError, match="finite"):
        score_of(cat, "2.1", float("nan"), 1)


def test_combine_treats_missing_keys_as_zero():
    assert combine({"population": 1, "late_or_dissatisfied": -1}, {"population": 10}) == 10
    assert combine({"population": 1, "late_or_dissatisfied": -1}, {"population": 10, "late_or_dissatisfied": 3}) == 7
    assert combine({"received": 2}, {}) == 0


# ------------------------------------------------------------------------------------------- bands


@pytest.mark.parametrize(
    "total, code, number",
    [
        (100, "xuat_sac", 5),
        (90, "xuat_sac", 5),
        (89.99, "tot", 4),
        (80, "tot", 4),
        (79.99, "kha", 3),
        (78.7, "kha", 3),
        (70, "kha", 3),
        (69.99, "trung_binh", 2),
        (50, "trung_binh", 2),
        (49.99, "yeu", 1),
        (0, "yeu", 1),
        (90 - 1e-12, "xuat_sac", 5),  # float noise under an edge the exact sum reaches
    ],
)
def test_band_edges(cat, total, code, number):
    band = band_for(total, cat)
    assert (band.code, band.number) == (code, number)


def test_band_names_and_none(cat):
    assert [(b.code, b.name_vi) for b in cat.bands] == [
        ("xuat_sac", "Xuất sắc"), ("tot", "Tốt"), ("kha", "Khá"), ("trung_binh", "Trung bình"), ("yeu", "Yếu")
    ]
    assert band_for(None, cat) is None


# ------------------------------------------------------------------------------------------- score_unit

# A province whose figures reproduce the seed's group scores: CKMB 14.2, TDGQ 18.7, DVCTT + TTTT 14.4, MDSH 17.7,
# MDHL 13.7, total 78.7 (Khá).
SEED_TALLIES = {
    "population": 200, "on_time": 187, "late_or_dissatisfied": 13,  # 2.1 -> 18.7, 5.4 (93.5 %) -> 6
    "received": 200, "online_qualified": 50,  # 3.3: 25 % of a 50 % threshold -> 3
    "fee_bearing": 40, "paid_online": 20,  # 3.6 -> 3
    "paper_result": 10, "paper_result_e_result": 10,  # 4.1 -> 6
    "digitized": 200, "reused_data": 160, "personal_store": 100, "population_db": 200,  # 4.2 4, 4.4 2, 4.5 2, 4.6 2
    "processing_seconds_sum": 36_000, "processing_count": 12,
}
SEED_EXTERNAL = {
    "1.1": 4.0, "1.2": 2.99, "1.3": 2.0, "1.4": 5.21,  # 14.2
    "3.1": 2.0, "3.2": 2.4, "3.5": 2.0, "3.5b": 2.0,  # with 3.3 and 3.6: 7.4 + 7.0 = 14.4
    "4.3": 1.7, "4.7": 0.0,  # with the events' 4.1..4.6: 17.7
    "5.2": 1.7, "5.3": 6.0,  # with 5.4: 13.7
}


def test_seed_province_document(cat):
    doc = score_unit(SEED_TALLIES, "province", cat, ON, SEED_EXTERNAL)
    json.dumps(doc, allow_nan=False)
    groups = {g["code"]: g["score"] for g in doc["groups"].values()}
    assert groups == pytest.approx({"CKMB": 14.2, "TDGQ": 18.7, "CLGQ": 7.4, "TTTT": 7.0, "MDSH": 17.7, "MDHL": 13.7})
    assert doc["total"] == pytest.approx(78.7)
    assert doc["max_points_known"] == 100 and doc["complete"] is True
    assert doc["total_estimated"] == pytest.approx(78.7)
    assert doc["band"] == {"code": "kha", "name_vi": "Khá", "number": 3, "basis": "total"}

    i21 = doc["indicators"]["2.1"]
    assert (i21["numerator"], i21["denominator"], i21["source"], i21["computable"]) == (187, 200, "events", True)
    assert i21["score"] == 20 * (187 / 200) != round(i21["score"], 2)  # full precision: no rounding in the document
    assert doc["indicators"]["2.2"]["ratio"] == 3000 and doc["indicators"]["2.2"]["score"] is None
    i11 = doc["indicators"]["1.1"]
    assert (i11["numerator"], i11["ratio"], i11["score"], i11["source"]) == (None, None, 4.0, "external")
    assert set(doc["indicators"]) == set(EXPECTED)


def test_events_only_is_an_estimate_and_unknowns_are_null_not_zero(cat):
    doc = score_unit(SEED_TALLIES, "province", cat, ON)
    for ind_id in ("1.1", "1.2", "1.3", "1.4", "3.1", "3.2", "3.5", "3.5b", "4.3", "4.7", "5.1", "5.2", "5.3"):
        row = doc["indicators"][ind_id]
        assert (row["numerator"], row["denominator"], row["ratio"], row["score"], row["source"]) == (None,) * 5
        assert row["applicable"] is True and row["computable"] is False
    known = 20 + 6 + 6 + 6 + 4 + 2 + 4 + 2 + 6  # 2.1 3.3 3.6 4.1 4.2 4.4 4.5 4.6 5.4
    total = 18.7 + 3 + 3 + 6 + 4 + 2 + 2 + 2 + 6
    assert doc["max_points_known"] == known
    assert doc["total"] == pytest.approx(total)
    assert doc["complete"] is False
    assert doc["total_estimated"] == pytest.approx(total * 100 / known)
    assert doc["band"]["basis"] == "estimate"
    assert doc["band"]["code"] == band_for(total * 100 / known, cat).code
    assert doc["groups"]["1"] == {"code": "CKMB", "name_vi": "Công khai, minh bạch", "score": None,
                                  "max_points": 18, "max_points_known": 0}
    assert doc["groups"]["2"]["max_points_known"] == 20


def test_nothing_known_gives_no_total_and_no_band():
    doc = bundled_doc()
    for ind_id in ("3.6", "5.4"):
        ind_row(doc, ind_id)["zero_den_policy"] = None
    variant = parse_catalogue(doc)
    out = score_unit({}, None, variant, ON)
    assert (out["total"], out["total_estimated"], out["band"], out["complete"]) == (None, None, None, False)
    assert out["max_points_known"] == 0


def test_empty_tallies_follow_the_zero_policies(cat):
    out = score_unit({}, "province", cat, ON)
    assert out["indicators"]["2.1"]["score"] is None
    assert out["indicators"]["3.6"]["ratio"] == 0 and out["indicators"]["3.6"]["score"] == 0
    assert out["indicators"]["5.4"]["score"] == 0
    assert out["total"] == 0 and out["max_points_known"] == 12


@pytest.mark.parametrize("ind_id", ["1.1", "1.2", "1.3", "4.3", "4.6", "4.7"])
def test_indicator_not_applicable_to_a_commune(cat, ind_id):
    doc = score_unit(SEED_TALLIES, "commune", cat, ON)
    row = doc["indicators"][ind_id]
    assert row["applicable"] is False and row["score"] is None and row["source"] is None
    assert doc["complete"] is False


def test_commune_excludes_non_applicable_points(cat):
    province = score_unit(SEED_TALLIES, "province", cat, ON)
    commune = score_unit(SEED_TALLIES, "commune", cat, ON)
    assert province["indicators"]["4.6"]["score"] == 2
    assert commune["max_points_known"] == province["max_points_known"] - 2
    assert commune["total"] == pytest.approx(province["total"] - 2)
    assert commune["groups"]["5"]["max_points_known"] == province["groups"]["5"]["max_points_known"] - 2
    external = {k: v for k, v in SEED_EXTERNAL.items() if k not in {"1.1", "1.2", "1.3", "4.3", "4.7"}}
    full = score_unit(SEED_TALLIES, "commune", cat, ON, external)
    assert full["complete"] is False and full["band"]["basis"] == "estimate"
    assert full["max_points_known"] == 100 - (6 + 4 + 2 + 2 + 2 + 2)


def test_level_none_means_every_indicator_applies(cat):
    doc = score_unit(SEED_TALLIES, None, cat, ON)
    assert all(row["applicable"] for row in doc["indicators"].values())
    assert doc["indicators"]["4.6"]["score"] == 2


def test_external_overrides_events_but_keeps_the_event_figures(cat):
    doc = score_unit(SEED_TALLIES, "province", cat, ON, {"2.1": 19.5})
    row = doc["indicators"]["2.1"]
    assert (row["numerator"], row["denominator"], row["ratio"]) == (187, 200, 0.935)
    assert (row["score"], row["source"]) == (19.5, "external")


@pytest.mark.parametrize(
    "level, external, message",
    [
        ("province", {"9.9": 1.0}, "no such indicator"),
        ("province", {"1.1": 7.0}, r"outside \[0, 6\]"),
        ("province", {"1.1": -0.5}, "outside"),
        ("province", {"1.1": float("nan")}, "finite"),
        ("province", {"2.2": 1.0}, "monitoring"),
        ("commune", {"4.6": 2.0}, "does not apply to level 'commune'"),
    ],
)
def test_bad_external_values_are_refused(cat, level, external, message):
    with pytest.raises(ValueError, match=message):
        score_unit({}, level, cat, ON, external)


def test_score_unit_argument_checks(cat):
    with pytest.raises(ValueError, match="unknown level"):
        score_unit({}, "district", cat, ON)
    with pytest.raises(ValueError, match="older catalogue"):
        score_unit({}, None, cat, date(2024, 12, 31))
    with pytest.raises(TypeError):
        score_unit({}, None, cat, datetime(2026, 3, 31, 12))


# ------------------------------------------------------------------------------------------- roll-up


def test_rollup_adds_tallies_and_recomputes_ratios(cat):
    agency = {"population": 1000, "on_time": 990, "late_or_dissatisfied": 10, "received": 1000, "online_qualified": 100}
    commune = {"population": 10, "on_time": 1, "late_or_dissatisfied": 9, "received": 10, "online_qualified": 10}
    summed = sum_tallies([agency, commune])
    assert summed == {"population": 1010, "on_time": 991, "late_or_dissatisfied": 19, "received": 1010,
                      "online_qualified": 110}

    province = score_unit(summed, "province", cat, ON)
    assert province["indicators"]["2.1"]["ratio"] == 991 / 1010
    assert province["indicators"]["2.1"]["score"] == pytest.approx(20 * 991 / 1010)

    children = [score_unit(t, None, cat, ON) for t in (agency, commune)]
    averaged = sum(c["indicators"]["2.1"]["ratio"] for c in children) / 2
    assert not math.isclose(province["indicators"]["2.1"]["ratio"], averaged)


def test_sum_tallies_handles_disjoint_keys_and_nothing():
    assert sum_tallies([]) == {}
    assert sum_tallies([{"a": 1}, {"b": 2}, {"a": 3}]) == {"a": 4, "b": 2}


# ------------------------------------------------------------------------------------------- group 4 (§1.3)


def group4_reference(a: float, b: float, c: float) -> float:
    # DVCQG's reproduced formula, with C capped as B (the spec's default).
    return 6 * a + min(2, 2.5 * b) + min(2, 2.5 * c)


@pytest.mark.parametrize(
    "a, b, c",
    [(0, 0, 0), (1, 1, 1), (0.5, 0.4, 0.3), (0.9345, 0.8, 0.8), (0.2, 0.95, 0.1), (0.75, 0.79, 0.81)],
)
def test_group4_formula_from_indicator_scores(cat, a, b, c):
    total = sum(score_of(cat, i, r, 1)[1] for i, r in (("3.6", a), ("3.5b", b), ("3.5", c)))
    assert total == pytest.approx(group4_reference(a, b, c), abs=1e-12)


def test_group4_formula_through_score_unit(cat):
    tallies = {"fee_bearing": 80, "paid_online": 36}  # A = 0.45
    external = {"3.5b": score_of(cat, "3.5b", 0.6, 1)[1], "3.5": score_of(cat, "3.5", 0.7, 1)[1]}
    doc = score_unit(tallies, "province", cat, ON, external)
    assert doc["groups"]["4"]["score"] == pytest.approx(group4_reference(0.45, 0.6, 0.7))
    assert doc["groups"]["4"]["max_points_known"] == 10


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
def test_group4_formula_property(a, b, c):
    cat = load_catalogue()
    total = sum(score_of(cat, i, r, 1)[1] for i, r in (("3.6", a), ("3.5b", b), ("3.5", c)))
    assert total == pytest.approx(group4_reference(a, b, c), abs=1e-9)


# ------------------------------------------------------------------------------------------- properties

SCORED = sorted(i for i, row in EXPECTED.items() if row[-1] == "scored")


@settings(max_examples=300, deadline=None)
@given(
    ind_id=st.sampled_from(SCORED),
    den=st.integers(1, 10**7),
    a=st.floats(-0.5, 2.0, allow_nan=False),
    b=st.floats(-0.5, 2.0, allow_nan=False),
)
def test_score_is_bounded_and_monotonic(ind_id, den, a, b):
    cat = load_catalogue()
    ind = cat.indicator(ind_id)
    lo, hi = sorted((a * den, b * den))
    _, s_lo = indicator_score(lo, den, ind)
    _, s_hi = indicator_score(hi, den, ind)
    assert 0 <= s_lo <= ind.max_points and 0 <= s_hi <= ind.max_points
    assert s_lo <= s_hi


@settings(max_examples=100, deadline=None)
@given(st.lists(st.fixed_dictionaries({"population": st.integers(0, 500), "on_time": st.integers(0, 500)}),
                min_size=1, max_size=6))
def test_rollup_property(children):
    cat = load_catalogue()
    summed = sum_tallies(children)
    doc = score_unit(summed, "province", cat, ON)
    pop = sum(c["population"] for c in children)
    on_time = sum(c["on_time"] for c in children)
    expected = indicator_score(on_time, pop, cat.indicator("2.1"))
    assert (doc["indicators"]["2.1"]["ratio"], doc["indicators"]["2.1"]["score"]) == expected


# ------------------------------------------------------------------------------------------- broken catalogues


def write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "index766.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _set(ind_id, key, value):
    def edit(doc):
        ind_row(doc, ind_id)[key] = value
    return edit


def _group_max(gid, value):
    def edit(doc):
        next(g for g in doc["groups"] if g["id"] == gid)["max"] = value
    return edit


def _drop(ind_id, key):
    def edit(doc):
        del ind_row(doc, ind_id)[key]
    return edit


def _duplicate(ind_id):
    def edit(doc):
        doc["indicators"].append(copy.deepcopy(ind_row(doc, ind_id)))
    return edit


def _band(code, key, value):
    def edit(doc):
        next(b for b in doc["bands"] if b["code"] == code)[key] = value
    return edit


def _retire(ind_id, on):
    def edit(doc):
        ind_row(doc, ind_id)["valid_to"] = on
    return edit


BROKEN = [
    ("group sum", _set("2.1", "max_points", 19),
     r"group 2 \(TDGQ\): scored indicators valid on 2025-01-01 have maxima 2\.1=19 = 19, but the group maximum is 20"),
    ("group sum, group 5", _set("4.4", "max_points", 3), r"group 5 \(MDSH\).* = 23, but the group maximum is 22"),
    ("scale", _group_max(6, 17), r"maxima add up to 99 .* 100-point scale"),
    ("unknown policy", _set("2.1", "zero_den_policy", "zero"),
     r"indicator '2\.1': zero_den_policy 'zero' is not one of null, full_points, zero_ratio, zero_score"),
    ("unknown level", _set("4.6", "levels", ["province", "district"]),
     r"indicator '4\.6': unknown level\(s\) district"),
    ("typo in a field", _set("3.3", "treshold", 0.5), r"indicator '3\.3': unknown field\(s\) treshold"),
    ("missing field", _drop("3.3", "threshold"), r"indicator '3\.3': missing field\(s\) threshold"),
    ("unquoted id", _set("2.1", "id", 2.1), r"id 2\.1 must be a quoted string"),
    ("bad id", _set("2.1", "id", "two.one"), r"id 'two\.one' must look like"),
    ("threshold 0", _set("3.3", "threshold", 0), r"threshold must be in \(0, 1\]"),
    ("threshold > 1", _set("3.3", "threshold", 1.5), r"threshold must be in \(0, 1\]"),
    ("monitoring with points", _set("2.2", "max_points", 1), r"monitoring indicator carries no points"),
    ("scored without points", _set("1.3", "max_points", 0),
     r"indicator '1\.3': a scored indicator needs max_points > 0"),
    ("unknown kind", _set("1.3", "kind", "scored_"), r"kind 'scored_' is not one of"),
    ("no groups", lambda doc: doc.__setitem__("groups", []), r"groups: at least one group is needed"),
    ("non-computable with a formula", _set("1.1", "numerator", {"on_time": 1}), r"must be null"),
    ("computable without formula", _set("4.1", "denominator", None), r"not both given"),
    ("zero coefficient", _set("4.1", "numerator", {"paper_result_e_result": 0}), r"non-zero integer"),
    ("bad key", _set("4.1", "numerator", {"Paper Result": 1}), r"not a tally metric key"),
    ("unknown group", _set("4.1", "group", 7), r"group 7 is not among the groups"),
    ("bad date", _set("4.1", "valid_from", "2025-13-01"), r"valid_from must be a date"),
    ("bad period filter", _set("4.1", "period_filter", "received"), r"period_filter 'received' is not one of"),
    ("bad confidence", _set("4.1", "confidence", "high"), r"confidence 'high'"),
    ("overlapping rows", _duplicate("4.1"), r"indicator '4\.1': rows valid from 2025-01-01 and 2025-01-01 overlap"),
    ("retired without successor", _retire("4.5", "2026-07-01"),
     r"group 5 \(MDSH\): scored indicators valid on 2026-07-01 .* = 18, but the group maximum is 22"),
    ("band order", _band("yeu", "number", 9), r"higher min_total must have a higher number"),
    ("band floor", _band("yeu", "min_total", 10), r"lowest band 'yeu' starts at 10"),
    ("band duplicate", _band("tot", "code", "kha"), r"code 'kha' appears twice"),
    ("unquoted version", lambda doc: doc.__setitem__("version", 2026.1), r"version 2026\.1 must be a quoted string"),
]


@pytest.mark.parametrize("name, edit, message", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_catalogue_is_refused(tmp_path, name, edit, message):
    doc = bundled_doc()
    edit(doc)
    with pytest.raises(CatalogueError, match=message) as info:
        load_catalogue(write(tmp_path, doc))
    assert str(tmp_path) in str(info.value)  # the message names the file


def test_every_problem_is_reported_at_once(tmp_path):
    doc = bundled_doc()
    _set("2.1", "zero_den_policy", "nil")(doc)
    _set("4.6", "levels", ["village"])(doc)
    _set("3.3", "threshold", 2)(doc)
    with pytest.raises(CatalogueError, match=r"3 problem\(s\)") as info:
        load_catalogue(write(tmp_path, doc))
    for ind_id in ("2.1", "4.6", "3.3"):
        assert f"indicator '{ind_id}'" in str(info.value)


def test_unreadable_catalogues_are_refused(tmp_path):
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="not valid YAML"):
        load_catalogue(bad)
    with pytest.raises(CatalogueError, match="expected a mapping"):
        parse_catalogue(["not", "a", "mapping"])


def test_edited_file_is_reloaded(tmp_path):
    doc = bundled_doc()
    path = write(tmp_path, doc)
    first = load_catalogue(path)
    doc["version"] = "2026.2-test"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False) + "\n# edited\n", encoding="utf-8")
    assert load_catalogue(path).version == "2026.2-test" and first.version == "2026.1"


# ------------------------------------------------------------------------------------------- versioned rows


def test_successor_row_takes_over_on_its_valid_from(tmp_path):
    doc = bundled_doc()
    ind_row(doc, "4.2")["valid_to"] = date(2026, 7, 1)
    successor = copy.deepcopy(ind_row(doc, "4.2"))
    successor.update(threshold=0.8, valid_from=date(2026, 7, 1), valid_to=None, source="description: threshold 80 %")
    doc["indicators"].append(successor)
    cat = load_catalogue(write(tmp_path, doc))

    before, after = date(2026, 6, 30), date(2026, 7, 1)
    assert cat.indicator("4.2", before).threshold == 1.0
    assert cat.indicator("4.2", after).threshold == 0.8
    assert cat.indicator("4.2").threshold == 0.8
    assert [i.id for i in cat.indicators_valid_on(after)].count("4.2") == 1
    tallies = {"received": 10, "digitized": 4}
    assert score_unit(tallies, None, cat, before)["indicators"]["4.2"]["score"] == pytest.approx(1.6)
    assert score_unit(tallies, None, cat, after)["indicators"]["4.2"]["score"] == pytest.approx(2.0)
    assert cat.indicators_valid_on(date(2024, 1, 1)) == ()
