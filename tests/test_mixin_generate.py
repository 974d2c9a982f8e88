"""Generation from one configuration: the committed files are exactly what the generator writes (drift check), and
the configuration refuses what would generate wrong monitoring."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monitoring import generate as gen
from monitoring.config import DEFAULT_CONFIG, MixinConfigError, load_config, parse_config, replace
from monitoring.alerts import alert_groups
from monitoring.rules import recording_groups
from monitoring.worktime import calendar_facts

REPO = Path(__file__).resolve().parents[1]


def test_committed_files_equal_a_fresh_generation() -> None:
    stale = gen.check(REPO)
    assert not stale, f"stale generated files (run `onestop mixin generate`): {stale}"


def test_generation_covers_every_file_it_owns() -> None:
    files = gen.generate(DEFAULT_CONFIG, gen.committed_years(REPO)).files
    assert {"alerts/rules.yml", "alerts/alerts.yml", "alerts/alertmanager.yml", "alerts/runbook.md",
            "alerts/tests/worktime_calendar.yml", "dashboards/province-scorecard.json",
            "dashboards/unit-drilldown.json", "dashboards/backlog-deadlines.json",
            "dashboards/pipeline-health.json", "dashboards/provisioning/datasources/onestop-prometheus.yaml",
            "dashboards/provisioning/dashboards/onestop.yaml",
            # the English golden set and the notification templates (drift-checked like the rest)
            "alerts/en/alerts.yml", "alerts/templates/onestop.vi.tmpl", "alerts/templates/onestop.en.tmpl",
            "dashboards/en/province-scorecard.json", "dashboards/en/unit-drilldown.json",
            "dashboards/en/backlog-deadlines.json", "dashboards/en/pipeline-health.json"} == set(files)


def test_a_hand_edit_is_reported_as_drift(tmp_path: Path) -> None:
    years = gen.committed_years(REPO)
    gen.write_all(tmp_path, DEFAULT_CONFIG, years)
    assert gen.check(tmp_path) == []
    rules = tmp_path / "alerts" / "alerts.yml"
    rules.write_text(rules.read_text().replace(">= 5", ">= 50"))
    (tmp_path / "dashboards" / "pipeline-health.json").unlink()
    assert gen.check(tmp_path) == ["alerts/alerts.yml", "dashboards/pipeline-health.json"]


def test_generation_is_deterministic_and_years_are_pinned() -> None:
    a = gen.generate(DEFAULT_CONFIG, (2026, 2027)).files
    b = gen.generate(DEFAULT_CONFIG, (2026, 2027)).files
    assert a == b
    c = gen.generate(DEFAULT_CONFIG, (2027, 2028)).files
    assert a["alerts/alertmanager.yml"] != c["alerts/alertmanager.yml"]
    assert "# calendar years: 2027-2028" in c["alerts/rules.yml"]


def test_yaml_override_changes_thresholds_and_targets(tmp_path: Path) -> None:
    path = tmp_path / "monitoring.yaml"
    path.write_text(yaml.safe_dump({
        "on_time_target": 0.9, "on_time_targets_by_unit": {"T99.S01": 0.98},
        "on_time_targets_by_province": {"T99": 0.93}, "due_soon_threshold": 3,
        "worker_selector": 'job="onestop-prod"', "calendar_years": [2026],
        "burn_windows": [{"long": "2h", "short": "10m", "factor": 10, "severity": "critical"}],
    }))
    cfg = load_config(path)
    facts = calendar_facts(cfg, cfg.calendar_years)
    rec = {r["record"]: r["expr"] for g in recording_groups(cfg, facts) for r in g["rules"]}
    target = rec["unit:onestop_on_time:target"]
    # Unit overrides win over province ones, which win over the default (the first operand of `or` wins).
    assert target.index('unit="T99.S01"') < target.index('province="T99"') < target.rindex("+ 0.9")
    assert "+ 0.98" in target and "+ 0.93" in target and target.endswith("+ 0.9")
    assert 'job="onestop-prod"' in rec["onestop:clock_local:seconds"]
    assert "unit:onestop_on_time:burnrate2h" in rec and "unit:onestop_on_time:burnrate4h" not in rec
    alerts = [r for g in alert_groups(cfg, facts) for r in g["rules"]]
    # The condition, wrapped by the join that adds the unit's name.
    assert any('state="due_soon"} >= 3\n' in r["expr"] for r in alerts if r["alert"] == "OnestopDossiersDueSoon")
    assert [r["labels"]["long"] for r in alerts if r["alert"] == "OnestopOnTimeBudgetBurn"] == ["2h"]


@pytest.mark.parametrize("doc, message", [
    ({"on_time_target": 1.5}, "on_time_target"),
    ({"on_time_traget": 0.9}, "unknown key(s) on_time_traget"),
    ({"overdue_for": "5 minutes"}, "overdue_for"),
    ({"due_soon_threshold": "5"}, "expected an integer"),
    ({"burn_windows": [{"long": "30m", "short": "1h", "factor": 2, "severity": "critical"}]}, "short window"),
    ({"burn_windows": [{"long": "1h", "short": "5m", "factor": 2, "severity": "page"}]}, "severity"),
    ({"default_receiver": "nobody"}, "'nobody' is used by a route but not defined"),
    ({"runbook_url_pattern": "https://example.org/runbook"}, "{anchor}"),
    ({"office_hours_start": "18:00"}, "office_hours_start must be before"),
    ({"silence_windows": ["1h"]}, "longest window"),
])
def test_config_refuses_what_would_generate_wrong_monitoring(doc: dict, message: str) -> None:
    with pytest.raises(MixinConfigError) as err:
        parse_config(doc)
    assert message in str(err.value)


def test_replace_keeps_validation() -> None:
    assert replace(DEFAULT_CONFIG, due_soon_threshold=2).due_soon_threshold == 2
    with pytest.raises(MixinConfigError):
        replace(DEFAULT_CONFIG, due_soon_threshold=0)


def test_indicator_rules_follow_the_catalogue_rows() -> None:
    """Every event-computable indicator has numerator, denominator and ratio rules per level; scored ones a score."""
    from models.index766 import load_catalogue
    from monitoring.rules import indicators_in_force

    facts = calendar_facts(DEFAULT_CONFIG, (2026,))
    rules = [r for g in recording_groups(DEFAULT_CONFIG, facts) for r in g["rules"]]
    for ind in indicators_in_force(load_catalogue()):
        got = {r["record"] for r in rules if r.get("labels", {}).get("indicator") == ind.id}
        if not ind.computable_from_events:
            assert not got, ind.id
            continue
        levels = ["unit", "nation"] + (["province"] if "province" in ind.levels else [])
        for level in levels:
            for op in ("numerator", "denominator", "ratio"):
                assert f"{level}:onestop_index766_indicator:{op}" in got, (ind.id, level, op)
            assert (f"{level}:onestop_index766_indicator:score" in got) == ind.scored, (ind.id, level)


def test_cli_generate_and_check(tmp_path: Path) -> None:
    """The typer sub-apps the product CLI mounts (`onestop mixin ...`)."""
    from typer.testing import CliRunner

    from monitoring.cli import mixin_app

    runner = CliRunner()
    out = runner.invoke(mixin_app, ["generate", "--root", str(tmp_path), "--year", "2026", "--year", "2027"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "alerts" / "rules.yml").exists() and (tmp_path / "dashboards" / "unit-drilldown.json").exists()
    assert runner.invoke(mixin_app, ["check", "--root", str(tmp_path)]).exit_code == 0
    (tmp_path / "alerts" / "runbook.md").write_text("edited by hand\n")
    stale = runner.invoke(mixin_app, ["check", "--root", str(tmp_path)])
    assert stale.exit_code == 1 and "stale: alerts/runbook.md" in stale.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("due_soon_threshold: -1\n")
    assert runner.invoke(mixin_app, ["check", "--root", str(tmp_path), "--config", str(bad)]).exit_code == 2
