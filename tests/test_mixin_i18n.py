"""One source, two languages: every text of the generated alerts, dashboards, runbook and notification templates
comes from the message catalogue by key (both languages exist for every key, tests/test_i18n.py), Vietnamese is the
default, English is selectable, and both sets are committed golden files covered by the drift check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from monitoring import generate as gen
from monitoring import texts
from monitoring.alerts import alert_groups
from monitoring.config import DEFAULT_CONFIG, MixinConfigError, replace
from monitoring.dashboards import UIDS, all_dashboards
from monitoring.notifications import template_files
from monitoring.worktime import calendar_facts

REPO = Path(__file__).resolve().parents[1]
VIETNAMESE = set("ăâđêôơưáàảãạấầẩẫậắằẳẵặéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ")

# What may remain of a text once the catalogue's words are taken out: template actions, variables, links, numbers,
# durations, PromQL selectors, codes of the 766 catalogue.
_NOT_WORDS = [
    r"⟦[^⟧]*⟧", r"\{\{.*?\}\}", r"https?://\S+", r"\$\{[^}]*\}", r"\$\w+", r"\b\d+(?:[.,]\d+)*[smhdwy]?\b",
    r"\b\w+\{[^}]*\}", r"/api/\S+",
]


def _probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(texts, "tr", lambda key, lang, **kw: f"⟦{key}⟧")
    monkeypatch.setattr(texts, "word", lambda key, lang: f"⟦{key}⟧")
    monkeypatch.setattr(texts, "name", lambda row, lang: f"⟦{type(row).__name__}:{row.id}⟧")


def _leftover(text: str) -> str:
    for pattern in _NOT_WORDS:
        text = re.sub(pattern, " ", text)
    return "".join(ch for ch in text if ch.isalpha())


def _dashboard_texts(node, path: str = "") -> list[tuple[str, str]]:
    """(where, text) of every field of a dashboard a person reads."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            here = f"{path}.{k}"
            if isinstance(v, str) and k in ("title", "description", "legendFormat", "content", "label", "text"):
                if not (k == "legendFormat" and v == "__auto"):
                    out.append((here, v))
            elif k == "renameByName" and isinstance(v, dict):
                out += [(f"{here}.{kk}", vv) for kk, vv in v.items() if vv not in ("unit", "up", "instance")]
            else:
                out += _dashboard_texts(v, here)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _dashboard_texts(v, f"{path}[{i}]")
    return out


def _facts():
    return calendar_facts(DEFAULT_CONFIG, gen.committed_years(REPO))


def test_every_alert_text_comes_from_the_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    _probe(monkeypatch)
    bad = []
    for group in alert_groups(DEFAULT_CONFIG, _facts()):
        for rule in group["rules"]:
            for key in ("summary", "description"):
                left = _leftover(rule["annotations"][key])
                if left:
                    bad.append((rule["alert"], key, left, rule["annotations"][key]))
    assert not bad, bad


def test_every_dashboard_text_comes_from_the_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    _probe(monkeypatch)
    bad = []
    for name, board in all_dashboards(DEFAULT_CONFIG).items():
        found = _dashboard_texts(board)
        assert len(found) > 20, name
        for where, text in found:
            if where.endswith(".annotations.list[0].name") or _leftover(text) == "":
                continue
            # Grafana's built-in annotation and the datasource plugin id are not ours to translate.
            if text in ("Annotations & Alerts", "api_base"):  # and the hidden constant variable (hide: 2)
                continue
            bad.append((name, where, text))
    assert not bad, bad[:20]


def test_every_notification_word_comes_from_the_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    _probe(monkeypatch)
    for path, text in template_files().items():
        # Outside template actions and HTML tags, only catalogue words (markers) remain.
        rest = re.sub(r"<[^>]+>", " ", re.sub(r"\{\{.*?\}\}", " ", text, flags=re.S))
        assert _leftover(rest) == "", (path, _leftover(rest))


def test_the_committed_sets_are_vietnamese_by_default_and_english_under_en() -> None:
    vi_alerts = yaml.safe_load((REPO / "alerts" / "alerts.yml").read_text(encoding="utf-8"))
    en_alerts = yaml.safe_load((REPO / "alerts" / "en" / "alerts.yml").read_text(encoding="utf-8"))
    for vi_g, en_g in zip(vi_alerts["groups"], en_alerts["groups"]):
        for vi, en in zip(vi_g["rules"], en_g["rules"]):
            assert vi["alert"] == en["alert"] and vi["expr"] == en["expr"] and vi["labels"] == en["labels"]
            assert vi["annotations"]["summary"] != en["annotations"]["summary"]
            assert set(vi["annotations"]["summary"].lower()) & VIETNAMESE, vi["alert"]
            assert not set(en["annotations"]["description"].lower()) & VIETNAMESE, en["alert"]
    for name, uid in UIDS.items():
        vi = json.loads((REPO / "dashboards" / f"{name}.json").read_text(encoding="utf-8"))
        en = json.loads((REPO / "dashboards" / "en" / f"{name}.json").read_text(encoding="utf-8"))
        assert vi["uid"] == uid and en["uid"] == f"{uid}-en"
        assert vi["title"].startswith("Một cửa") and en["title"].startswith("One-stop")
        # Same panels and the same queries in both languages: only the words differ.
        assert [p["gridPos"] for p in vi["panels"]] == [p["gridPos"] for p in en["panels"]]
        assert [[t["expr"] for t in p.get("targets", [])] for p in vi["panels"]] == \
               [[t["expr"] for t in p.get("targets", [])] for p in en["panels"]]
    provider = yaml.safe_load((REPO / "dashboards/provisioning/dashboards/onestop.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == DEFAULT_CONFIG.dashboards_path
    runbook = (REPO / "alerts" / "runbook.md").read_text(encoding="utf-8")
    assert "**Ý nghĩa.**" in runbook and "**Meaning.**" in runbook


def test_lang_en_selects_english_alert_texts_and_lang_is_checked() -> None:
    cfg = replace(DEFAULT_CONFIG, lang="en")
    files = gen.generate(cfg, gen.committed_years(REPO)).files
    assert files["alerts/alerts.yml"].split("\n", 1)[1] == files["alerts/en/alerts.yml"].split("\n", 1)[1]
    assert 'template "onestop.en.text"' not in files["alerts/alertmanager.yml"]  # no channel enabled by default
    with pytest.raises(MixinConfigError, match="lang"):
        replace(DEFAULT_CONFIG, lang="fr")


def test_unit_names_are_joined_never_exported_per_series() -> None:
    rules = (REPO / "alerts" / "rules.yml").read_text(encoding="utf-8")
    alerts = yaml.safe_load((REPO / "alerts" / "alerts.yml").read_text(encoding="utf-8"))
    assert "max by (unit, name, name_en) (onestop_unit_info" in rules
    for group in alerts["groups"]:
        for rule in group["rules"]:
            if rule["labels"]["category"] == "data":
                assert "group_left (name, name_en) unit:onestop_unit_info:max" in rule["expr"], rule["alert"]
                assert "$labels.name" in rule["annotations"]["summary"], rule["alert"]
    board = json.loads((REPO / "dashboards" / "backlog-deadlines.json").read_text(encoding="utf-8"))
    legends = [t["legendFormat"] for p in board["panels"] for t in p.get("targets", [])]
    assert "{{unit}} {{name}}" in legends
