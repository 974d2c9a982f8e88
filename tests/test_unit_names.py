"""Unit names where a person reads what the worker serves: ``onestop_unit_info``, the read API's names and CSV, the
registry the worker follows, the files ``onestop reference units`` publishes and ``onestop simulate`` writes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from models.units import UnitRegistry
from models.units_sample import simulated_registry
from streams.runtime.clock import FrozenClock
from streams.runtime.processor import Processor
from streams.runtime.reference import ReferenceFollower
from streams.runtime.tallies import PipelineHealth
from streams.serve.exposition import render
from streams.serve.metrics import new_registry
from streams.serve.units import INFO_LABELS, listing_csv, name_figures, parse_lang, unit_name
from streams.tools.units_ref import UnitFileError, unit_file_records

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "samples" / "units" / "units-sample-province.yaml"
NOW = datetime.fromisoformat("2026-03-10T16:00:00+07:00")


def follower_with(registry: UnitRegistry) -> ReferenceFollower:
    f = ReferenceFollower("unused:0", "cal", "units")
    for key, value in registry.reference_records(NOW):
        f.apply_record("units", key, value)
    return f


class _Runtime:
    def __init__(self, reference=None, known=()):
        self.clock = FrozenClock(NOW)
        self.processor = Processor()
        self.health = PipelineHealth()
        self.reference = reference
        for code in known:
            self.processor.unit_meta[code] = {"province": "T99", "level": "commune"}

    def tally_books(self):
        return []

    def stats(self):
        return {}


def info_series(runtime) -> dict[str, dict[str, str]]:
    text = render(new_registry(runtime, process_metrics=False)).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "onestop_unit_info":
                assert s.value == 1 and tuple(sorted(s.labels)) == tuple(sorted(INFO_LABELS))
                assert s.labels["unit"] not in out
                out[s.labels["unit"]] = s.labels
    return out


# ------------------------------------------------------------------------------------------- the info metric


def test_one_info_series_per_known_unit_with_both_names():
    registry = UnitRegistry.load(UNITS)
    rt = _Runtime(follower_with(registry), known=["T99.X005", "T99.H01", "T99.S91", "G01.X001"])
    series = info_series(rt)
    in_force = registry.current(NOW)
    assert set(series) == set(in_force) | {"G01.X001"}  # districts and agencies that ended in 2025: no series
    assert series["T99.X005"] == {"unit": "T99.X005", "name": "UBND xã Mường Hum",
                                  "name_en": "Muong Hum Commune People's Committee", "level": "commune",
                                  "province": "T99", "parent": "T99"}
    assert series["T99.S03"]["name"] == "Sở Nông nghiệp và Môi trường"
    assert series["T99"]["level"] == "province" and series["T99"]["parent"] == ""
    # A unit with figures that the registry does not name is still there, named by its code, so joins keep it.
    assert series["G01.X001"] == {"unit": "G01.X001", "name": "G01.X001", "name_en": "G01.X001", "level": "commune",
                                  "province": "T99", "parent": ""}


def test_without_a_registry_the_units_with_figures_are_named_by_their_codes():
    series = info_series(_Runtime(None, known=["U1"]))
    assert series == {"U1": {"unit": "U1", "name": "U1", "name_en": "U1", "level": "commune", "province": "T99",
                             "parent": ""}}
    assert info_series(_Runtime(None)) == {}


def test_a_unit_renamed_on_the_topic_is_renamed_in_the_next_scrape():
    f = follower_with(UnitRegistry.load(UNITS))
    rt = _Runtime(f)
    assert info_series(rt)["T99.S04"]["name"] == "Sở Tư pháp"
    f.apply_record("units", b"T99.S04", json.dumps({"unit_code": "T99.S04", "name": "Sở Tư pháp tỉnh",
                                                    "level": "agency", "province_code": "T99"}).encode())
    assert info_series(rt)["T99.S04"]["name"] == "Sở Tư pháp tỉnh"
    f.apply_record("units", b"T99.S04", None)  # tombstone
    assert "T99.S04" not in info_series(rt)


# ------------------------------------------------------------------------------------------- the follower


def test_the_follower_keeps_names_in_both_languages_and_their_history():
    f = follower_with(UnitRegistry.load(UNITS))
    reg = f.unit_registry()
    assert reg.display("T99.S03", "vi", "2025-01-15") == "Sở Nông nghiệp và Phát triển nông thôn"
    assert reg.display("T99.S03", "en", "2026-03-10") == "Department of Agriculture and Environment"
    assert reg is f.unit_registry()  # rebuilt only when the topic changes
    # The older form (a single name) is named too; a value without a name still sets province and level only.
    f.apply_record("units", b"G09.20", json.dumps({"unit_code": "G09.20", "name": "UBND xã Ba Vì",
                                                   "level": "commune", "province_code": "G09"}).encode())
    f.apply_record("units", b"G09.21", json.dumps({"unit_code": "G09.21", "level": "commune"}).encode())
    reg = f.unit_registry()
    assert reg.display("G09.20", "en") == "UBND xã Ba Vì" and "G09.21" not in reg
    assert f.snapshot()[2]["G09.21"] == {"province": None, "level": "commune", "name": None, "parent": None}


# ------------------------------------------------------------------------------------------- the read API


def test_listing_csv_is_vietnamese_by_default_with_a_bom():
    items = [{"dossier_code": "T99.X005-20260302-00001", "procedure_code": "1.001193",
              "due_at": "2026-03-05T10:00:00+07:00", "overdue_working_hours": 12.5, "state": "overdue",
              "unit_name": "UBND xã Mường Hum"}]
    items += [{"dossier_code": f"T99.X005-20260303-0000{n}", "procedure_code": "1.004837", "due_at": None,
               "overdue_working_hours": 0.0, "state": state, "unit_name": "UBND xã Mường Hum"}
              for n, state in enumerate(("due_soon", "within", "awaiting_supplement", "awaiting_payment"), 2)]
    data = listing_csv("T99.X005", items, "vi")
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == ["Mã hồ sơ", "Mã thủ tục", "Mã đơn vị", "Tên đơn vị", "Hạn xử lý", "Số giờ làm việc quá hạn",
                       "Tình trạng"]
    assert rows[1] == ["T99.X005-20260302-00001", "1.001193", "T99.X005", "UBND xã Mường Hum",
                       "2026-03-05T10:00:00+07:00", "12.5", "quá hạn"]
    assert [r[-1] for r in rows[2:]] == ["sắp đến hạn", "trong hạn", "chờ bổ sung", "chờ nghĩa vụ tài chính"]
    en = list(csv.reader(io.StringIO(listing_csv("T99.X005", items, "en").decode("utf-8-sig"))))
    assert en[0][0] == "Dossier code" and [r[-1] for r in en[1:]] == ["overdue", "due soon", "within the deadline",
                                                                    "awaiting supplement", "awaiting payment"]


def test_language_of_a_request():
    assert parse_lang(None) == "vi" and parse_lang("en") == "en"
    assert parse_lang("", "en") == "en" and parse_lang("vi", "en") == "vi"  # the worker's setting, then the request
    with pytest.raises(ValueError, match="lang must be one of vi, en"):
        parse_lang("fr")


def test_the_workers_language_is_a_setting():
    from streams.runtime.settings import WorkerSettings

    assert WorkerSettings.from_env({}).lang == "vi"
    assert WorkerSettings.from_env({"ONESTOP_LANG": "en"}).lang == "en"
    with pytest.raises(ValueError, match="lang must be one of"):
        WorkerSettings.from_env({"ONESTOP_LANG": "fr"})


def test_figures_get_names_only_for_units_the_registry_names():
    reg = UnitRegistry.load(UNITS)
    doc = {"units": {"T99.X005": {"level": "commune"}, "Z1": {"level": "agency"}}, "provinces": {"T99": {}}}
    named = name_figures(doc, reg, NOW)
    assert named["units"]["T99.X005"]["name"] == "UBND xã Mường Hum" and "name" not in named["units"]["Z1"]
    assert named["provinces"]["T99"]["name"] == "Tỉnh Sơn Nguyên"
    assert name_figures({"units": {"A": {}}}, UnitRegistry(), NOW) == {"units": {"A": {}}}  # nothing known: as is
    assert unit_name(reg, "T99.X005", NOW, "en") == "Muong Hum Commune People's Committee"
    assert unit_name(reg, "Z1", NOW, "vi") is None


# -------------------------------------------------------------------------------- files for the reference topic


def test_reference_units_reads_the_registry_yaml_and_csv(tmp_path):
    reg = UnitRegistry.load(UNITS)
    records = dict(unit_file_records(UNITS))
    assert len(records) == len(reg)
    doc = json.loads(records[b"T99.S03"])
    assert doc["name"] == "Sở Nông nghiệp và Môi trường" and len(doc["history"]) == 2
    path = tmp_path / "units.csv"
    path.write_bytes(reg.to_csv())
    assert dict(unit_file_records(path)).keys() == records.keys()


def test_reference_units_still_reads_the_older_flat_list(tmp_path):
    path = tmp_path / "units.yaml"
    flat = [{"unit_code": "T99.S01", "name": "Sở Tư pháp", "level": "agency", "province_code": "T42"}]
    path.write_text(yaml.safe_dump(flat, allow_unicode=True), encoding="utf-8")
    assert [(k, json.loads(v)) for k, v in unit_file_records(path)] == [(b"T99.S01", flat[0])]
    path.write_text(yaml.safe_dump([{**flat[0], "level": "sở"}], allow_unicode=True), encoding="utf-8")
    with pytest.raises(UnitFileError, match=r"\[0\].*level"):
        unit_file_records(path)


def test_reference_units_refuses_a_broken_registry_with_the_line(tmp_path):
    path = tmp_path / "units.yaml"
    path.write_text("units:\n  - {code: T99.S01, name_vi: Sở Tài chính, level: agency}\n"
                    "  - {code: T99.S02, level: agency}\n", encoding="utf-8")
    with pytest.raises(UnitFileError, match="line 3, field name_vi"):
        unit_file_records(path)


def test_simulate_writes_the_names_of_every_unit_of_its_events(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "streams.tools.cli", "simulate", "--sample", "--out", "events.jsonl",
                          "--units-out", "units.yaml"], cwd=tmp_path, env=env, capture_output=True, timeout=240)
    assert out.returncode == 0, out.stderr.decode()
    reg = UnitRegistry.load(tmp_path / "units.yaml")
    codes = {json.loads(line)["data"]["handling_unit_code"] for line in (tmp_path / "events.jsonl").open()
             if '"handling_unit_code"' in line}
    assert codes and all(reg.record_at(c, "2026-03-10") is not None for c in codes)
    assert reg.display("T99.X005") == "UBND xã Mường Hum"
    assert reg.records() == simulated_registry("T99", 6, 10).records()
