"""The committed Prometheus rules under the real ``promtool``: syntax, unit tests, and their coverage.

The promtool test files are hand-written (except the generated calendar one), so they check the generator rather
than repeat it; their 766 expectations are recomputed here with ``models.index766.score_unit``.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pytest
import yaml

from models.index766 import load_catalogue, score_unit, sum_tallies
from monitoring.config import DEFAULT_CONFIG
from monitoring.generate import committed_years
from monitoring.worktime import calendar_facts

REPO = Path(__file__).resolve().parents[1]
ALERTS = REPO / "alerts"
#: The Vietnamese tests (against alerts.yml) and the same cases on the English golden set (alerts/en/alerts.yml).
TESTS = sorted((ALERTS / "tests").glob("*.yml")) + sorted((ALERTS / "tests" / "en").glob("*.yml"))
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: apt-get install prometheus")


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@needs_promtool
def test_promtool_check_rules_accepts_both_files() -> None:
    out = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS / "rules.yml"), str(ALERTS / "alerts.yml")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    """Each file in its own promtool, in parallel: the long ones (burn rates, silence) dominate the runtime."""
    assert len(TESTS) >= 4

    def run(path: Path) -> tuple[Path, subprocess.CompletedProcess]:
        return path, subprocess.run([PROMTOOL, "test", "rules", path.name], cwd=path.parent, capture_output=True,
                                    text=True, timeout=240)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, TESTS))
    failed = {p.name: r.stdout[-4000:] + r.stderr[-2000:] for p, r in results if r.returncode != 0}
    assert not failed, "\n".join(f"--- {name}\n{text}" for name, text in failed.items())


def _tested_alerts() -> dict[str, list[dict]]:
    tested: dict[str, list[dict]] = defaultdict(list)
    for path in TESTS:
        for group in _yaml(path).get("tests", []):
            for case in group.get("alert_rule_test", []):
                tested[case["alertname"]].extend(case.get("exp_alerts") or [])
    return tested


def test_every_alert_rule_fires_in_a_promtool_test() -> None:
    """Every alert (each severity variant too) is asserted firing, with the exact annotations it renders."""
    tested = _tested_alerts()
    rules = [r for g in _yaml(ALERTS / "alerts.yml")["groups"] for r in g["rules"]]
    missing = []
    for rule in rules:
        fired = [a for a in tested.get(rule["alert"], []) if
                 all(a["exp_labels"].get(k) == v for k, v in rule["labels"].items())]
        if not fired:
            missing.append(f"{rule['alert']} {rule['labels']}")
        for a in fired:
            assert set(a.get("exp_annotations", {})) == set(rule["annotations"]), rule["alert"]
    assert not missing, "alerts never asserted firing: " + "; ".join(missing)


def test_every_alert_has_severity_annotations_and_a_runbook_section() -> None:
    runbook = (ALERTS / "runbook.md").read_text(encoding="utf-8")
    anchors = {re.sub(r"[^a-z0-9_-]", "", line[3:].strip().lower().replace(" ", "-"))
               for line in runbook.splitlines() if line.startswith("## ")}
    for group in _yaml(ALERTS / "alerts.yml")["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
            assert rule["labels"]["category"] in ("data", "pipeline"), rule["alert"]
            ann = rule["annotations"]
            assert ann["summary"].strip() and ann["description"].strip(), rule["alert"]
            url = ann["runbook_url"]
            assert url == DEFAULT_CONFIG.runbook_url_pattern.format(anchor=rule["alert"].lower()), url
            assert url.split("#", 1)[1] in anchors, f"runbook has no section for {rule['alert']}"
            # the notification titles read the province's name from data alerts (alerts/README.md)
            assert set(ann) == {"summary", "description", "runbook_url"} | (
                {"province_name"} if rule["labels"]["category"] == "data" else set()), rule["alert"]


def test_recording_rule_names_follow_level_metric_operations() -> None:
    pattern = re.compile(r"^(unit|province|nation|job|source|service|onestop):[a-z0-9_]+:[a-z0-9_]+$")
    names = {r["record"] for g in _yaml(ALERTS / "rules.yml")["groups"] for r in g["rules"]}
    assert names and all(pattern.match(n) for n in names), sorted(n for n in names if not pattern.match(n))


def test_rules_use_no_promql_changed_in_prometheus_3() -> None:
    """Production runs 3.x: no renamed function, no regex whose meaning changed (`.` now matches newlines)."""
    text = (ALERTS / "rules.yml").read_text() + (ALERTS / "alerts.yml").read_text()
    for changed in ("holt_winters", "double_exponential_smoothing", ".*", ".+", "info("):
        assert changed not in text, changed


# ---------------------------------------------------------------------------- 766 expectations vs Python scoring

def _tallies_from_input(path: Path) -> dict[tuple[str, str, str], dict[str, float]]:
    """(unit, province, level) -> tally keys, summed over workers, from a promtool file's input series."""
    units: dict[tuple[str, str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    renamed = {"onestop_dossiers_ended_working_seconds": "processing_seconds_sum",
               "onestop_dossiers_ended_timed": "processing_count"}
    for group in _yaml(path)["tests"]:
        for s in group["input_series"]:
            name, labels = s["series"].split("{", 1)
            lab = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            value = float(s["values"].split("x")[0])
            key3 = (lab["unit"], lab["province"], lab["level"])
            if name == "onestop_dossiers_received":
                units[key3]["received"] += value
                units[key3][f"received_{lab['channel']}"] += value
            elif name in renamed:
                units[key3][renamed[name]] += value
            else:
                units[key3][name.removeprefix("onestop_dossiers_")] += value
    return units


def test_index766_promtool_expectations_equal_python_scoring() -> None:
    path = ALERTS / "tests" / "index766.yml"
    catalogue = load_catalogue()
    on = date(2026, 3, 1)
    units = _tallies_from_input(path)
    docs: dict[tuple[str, tuple], dict] = {}
    by_province: dict[str, list] = defaultdict(list)
    for (unit, province, level), tallies in units.items():
        docs[("unit", (("unit", unit), ("province", province), ("level", level)))] = score_unit(
            tallies, level, catalogue, on)
        by_province[province].append(tallies)
    for province, items in by_province.items():
        docs[("province", (("province", province),))] = score_unit(sum_tallies(items), "province", catalogue, on)
    docs[("nation", ())] = score_unit(sum_tallies(t for ts in by_province.values() for t in ts), None, catalogue, on)

    checked = 0
    for group in _yaml(path)["tests"]:
        for case in group.get("promql_expr_test", []):
            for sample in case["exp_samples"]:
                name, _, labels = sample["labels"].partition("{")
                lab = dict(re.findall(r'(\w+)="([^"]*)"', labels))
                level, metric, op = name.split(":")
                ident = tuple((k, lab[k]) for k in ("unit", "province", "level") if k in lab)
                doc = docs[(level, ident)]
                if metric == "onestop_index766_indicator":
                    expected = doc["indicators"][lab["indicator"]][op]
                elif metric == "onestop_index766_group":
                    expected = doc["groups"][lab["group"]]["score"]
                elif metric == "onestop_index766_total":
                    expected = {"score": doc["total"], "estimated": doc["total_estimated"],
                                "max_points_known": doc["max_points_known"]}[op]
                elif metric == "onestop_index766_band":
                    expected = doc["band"]["number"]
                else:
                    continue
                assert expected is not None and math.isclose(expected, sample["value"], rel_tol=1e-12), (
                    sample["labels"], expected, sample["value"])
                checked += 1
    assert checked >= 40


def test_working_time_test_covers_every_day_off_of_the_committed_years() -> None:
    doc = _yaml(ALERTS / "tests" / "worktime_calendar.yml")
    values = doc["tests"][0]["input_series"][0]["values"].split()
    facts = calendar_facts(DEFAULT_CONFIG, committed_years(REPO))
    assert facts.weekday_days_off and facts.rest_day_workdays
    assert len(values) >= 2 * sum(len(r.days()) for r in (*facts.weekday_days_off, *facts.rest_day_workdays))
