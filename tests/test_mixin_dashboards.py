"""Dashboards as code: JSON Schema validity (and that the schema catches damage), fixed uids, variables, links,
read-only provisioning, and the Grafana API push.

No Grafana server can run here, so ``push_dashboards`` is tested against a small loopback HTTP stub that records the
requests grafana-client makes: that checks our client wiring (paths, payloads, token auth, folder handling), not
Grafana's behaviour. The dashboards' PromQL is run against a real Prometheus in tests/test_mixin_e2e.py.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest

from tests.loopback import LoopbackServer, QuietHandler
import yaml

from monitoring.config import DEFAULT_CONFIG
from monitoring.dashboards import UIDS, panel_queries
from monitoring.push import load_committed_dashboards, push_dashboards

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "dashboards" / "schema" / "dashboard.schema.json").read_text(encoding="utf-8"))
BOARDS = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted((REPO / "dashboards").glob("*.json"))}


def _errors(board: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(board)]


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", sorted(UIDS))
def test_dashboard_validates_against_the_schema(name: str) -> None:
    assert not _errors(BOARDS[name])


def _first_panel_with_targets(board: dict) -> dict:
    return next(p for p in board["panels"] if p.get("targets"))


@pytest.mark.parametrize("damage, where", [
    (lambda b: _first_panel_with_targets(b)["gridPos"].update(h="8"), "gridPos"),
    (lambda b: b.update(refresh=10), "refresh"),
    (lambda b: _first_panel_with_targets(b)["targets"][0].pop("refId"), "refId"),
    (lambda b: _first_panel_with_targets(b)["targets"][0].update(expr=""), "expr"),
    (lambda b: b.pop("uid"), "uid"),
    (lambda b: b.update(schemaVersion="39"), "schemaVersion"),
    (lambda b: b["templating"].update(list={"province": 1}), "templating"),
    (lambda b: _first_panel_with_targets(b).update(targets=[]), "targets"),
    (lambda b: _first_panel_with_targets(b)["gridPos"].update(w=30), "gridPos"),
])
def test_a_damaged_dashboard_fails_the_schema(damage, where: str) -> None:
    board = copy.deepcopy(BOARDS["unit-drilldown"])
    damage(board)
    errors = _errors(board)
    assert errors, f"damage to {where} went unnoticed"


def test_uids_are_fixed_and_unique_and_titles_set() -> None:
    assert {b["uid"] for b in BOARDS.values()} == set(UIDS.values())
    assert {name: b["uid"] for name, b in BOARDS.items()} == UIDS
    for b in BOARDS.values():
        assert b["schemaVersion"] >= 39 and b["editable"] is False and b["title"].startswith("Một cửa")


def test_panels_do_not_overlap_and_have_unique_ids() -> None:
    for name, board in BOARDS.items():
        cells, ids = set(), set()
        for p in board["panels"]:
            assert p["id"] not in ids, (name, p["id"])
            ids.add(p["id"])
            g = p["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, (name, p["title"])
                    cells.add((x, y))


def test_every_query_uses_the_datasource_variable_and_known_variables() -> None:
    for name, board in BOARDS.items():
        variables = {v["name"] for v in board["templating"]["list"]} | {"__rate_interval", "__interval"}
        for p in board["panels"]:
            for t in p.get("targets", []):
                assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for title, ref, expr in panel_queries(board):
            used = set(re.findall(r"\$\{?(\w+)", expr))
            assert used <= variables, (name, title, used - variables)


def test_unit_drilldown_links_to_the_read_api() -> None:
    board = BOARDS["unit-drilldown"]
    names = [v["name"] for v in board["templating"]["list"]]
    assert names[:4] == ["datasource", "province", "level", "unit"] and "api_base" in names
    api_base = next(v for v in board["templating"]["list"] if v["name"] == "api_base")
    assert api_base["query"] == DEFAULT_CONFIG.read_api_base_url
    urls = [link.get("url") for link in board["links"]]
    assert "${api_base}/api/units/${unit}/dossiers?state=overdue" in urls
    assert "${api_base}/api/units/${unit}/dossiers.csv?state=overdue" in urls


def test_scorecard_ranks_units_and_shows_the_six_groups() -> None:
    board = BOARDS["province-scorecard"]
    exprs = [e for _, _, e in panel_queries(board)]
    groups = next(p for p in board["panels"] if p["title"] == "Điểm theo nhóm (tỉnh)")
    # Five groups have indicators computable from events; the sixth (transparency) is named as not computable.
    assert sum('group="' in e for e in exprs) == 5
    assert "1. Công khai, minh bạch" in groups["description"]
    ranking = next(p for p in board["panels"] if p["type"] == "table" and p["title"].startswith("Xếp hạng"))
    assert ranking["transformations"][-1]["id"] == "sortBy"


def test_provisioning_is_read_only() -> None:
    provider = yaml.safe_load((REPO / "dashboards/provisioning/dashboards/onestop.yaml").read_text())
    assert provider["apiVersion"] == 1
    (p,) = provider["providers"]
    assert p["allowUiUpdates"] is False and p["type"] == "file" and p["options"]["path"]
    ds = yaml.safe_load((REPO / "dashboards/provisioning/datasources/onestop-prometheus.yaml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus"


# ------------------------------------------------------------------------------------ Grafana API client wiring

class _GrafanaStub:
    """Records requests; answers what Grafana answers for folder lookups and dashboard saves."""

    def __init__(self, folder_exists: bool) -> None:
        requests = self.requests = []

        class Handler(QuietHandler):
            def _answer(self, status: int, doc: dict) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _record(self) -> dict | None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                requests.append((self.command, self.path, self.headers.get("Authorization"), body))
                return body

            def do_GET(self) -> None:  # noqa: N802
                self._record()
                if self.path.startswith("/api/folders/") and not folder_exists:
                    self._answer(404, {"message": "folder not found"})
                else:
                    self._answer(200, {"uid": self.path.rsplit("/", 1)[1], "title": "x"})

            def do_POST(self) -> None:  # noqa: N802
                body = self._record()
                if self.path == "/api/folders":
                    self._answer(200, {"uid": body["uid"], "title": body["title"]})
                else:
                    uid = body["dashboard"]["uid"]
                    self._answer(200, {"status": "success", "uid": uid, "version": 1, "url": f"/d/{uid}/x"})

        self._loopback = LoopbackServer(Handler)
        self.url = self._loopback.url

    def close(self) -> None:
        self._loopback.close()


@pytest.mark.parametrize("folder_exists", [False, True])
def test_push_creates_the_folder_and_overwrites_each_dashboard(folder_exists: bool) -> None:
    stub = _GrafanaStub(folder_exists)
    try:
        result = push_dashboards(stub.url, "glsa_test_token", timeout=5)
    finally:
        stub.close()
    assert result.folder_created is (not folder_exists)
    assert [r["uid"] for r in result.dashboards] == list(UIDS.values())
    assert all(auth == "Bearer glsa_test_token" for _, _, auth, _ in stub.requests)
    paths = [(m, p) for m, p, _, _ in stub.requests]
    assert paths[0] == ("GET", f"/api/folders/{DEFAULT_CONFIG.dashboard_folder_uid}")
    if not folder_exists:
        assert paths[1] == ("POST", "/api/folders")
        assert stub.requests[1][3] == {"title": DEFAULT_CONFIG.dashboard_folder,
                                       "uid": DEFAULT_CONFIG.dashboard_folder_uid}
    saves = [body for m, p, _, body in stub.requests if p == "/api/dashboards/db"]
    committed = load_committed_dashboards()
    assert len(saves) == len(committed) == 4
    for body, board in zip(saves, committed):
        assert body["overwrite"] is True and body["folderUid"] == DEFAULT_CONFIG.dashboard_folder_uid
        assert body["dashboard"] == {**board, "id": None}


def test_legends_name_every_open_state_and_alert_kind_in_the_readers_language():
    # The dashboards name the domain's states and alert kinds; each must be the runtime's and have its words.
    from monitoring import dashboards
    from streams.serve.readapi import OPEN_STATES

    assert dashboards.OPEN_STATES == OPEN_STATES
    messages = Path(__file__).resolve().parents[1] / "models" / "catalogue" / "messages.yaml"
    catalogue = yaml.safe_load(messages.read_text(encoding="utf-8"))
    kinds = {k.split(".", 1)[1] for k in catalogue if k.startswith("alert.") and k.count(".") == 1}
    assert set(dashboards.ALERT_KINDS) == kinds


def test_every_rejection_reason_the_code_counts_is_named_in_both_languages():
    # The literal reasons the runtime dead-letters or counts, read from its source: a new one without a name
    # would show as its code on the Vietnamese dashboard.
    from monitoring import dashboards, texts

    root = Path(__file__).resolve().parents[1] / "streams"
    literal = re.compile(r'(?:reject\(|_dead_letter\([^"\n]*|dead\.append\(\([^"\n]*|dead_letter=\(|_ERROR = )"([a-z_]+)"')
    found = {m for f in root.rglob("*.py") for m in literal.findall(f.read_text(encoding="utf-8"))}
    assert {"missing_key", "missing_value", "processor_error", "reevaluate_error"} <= found  # the pattern reads them
    assert found <= set(dashboards.REJECTION_REASONS)
    assert len(set(dashboards.REJECTION_REASONS)) == len(dashboards.REJECTION_REASONS)
    for reason in dashboards.REJECTION_REASONS:
        vi, en = (texts.tr(f"dash.reason.{reason}", lang) for lang in ("vi", "en"))
        assert vi and en and vi != en and reason not in (vi, en), reason
    for lang, board in (("vi", "pipeline-health.json"), ("en", "en/pipeline-health.json")):
        doc = json.loads((Path(__file__).resolve().parents[1] / "dashboards" / board).read_text(encoding="utf-8"))
        panel = next(p for p in doc["panels"] if "onestop_events_rejected_total" in json.dumps(p.get("targets", []))
                     and "by (reason)" in json.dumps(p.get("targets", [])))
        shown = {o["matcher"]["options"]: o["properties"][0]["value"] for o in panel["fieldConfig"]["overrides"]}
        assert shown == {r: texts.tr(f"dash.reason.{r}", lang) for r in dashboards.REJECTION_REASONS}
