"""The unit registry: names in both languages, history across the 2025 mergers, strict loading, reference records."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from models.units import (
    UNIT_LEVELS,
    UnitRecord,
    UnitRegistry,
    UnitRegistryError,
    from_reference_record,
)
from models.units_sample import ascii_fold, simulated_registry

REPO = Path(__file__).resolve().parent.parent
SAMPLE_UNITS = REPO / "samples" / "units" / "units-sample-province.yaml"


@pytest.fixture(scope="module")
def sample() -> UnitRegistry:
    return UnitRegistry.load(SAMPLE_UNITS)


# ----------------------------------------------------------------------------------------------- the sample


def _simulator_codes(cfg) -> list[str]:
    import random

    from streams.tools.simulator import make_units

    return [u.code for u in make_units(cfg, random.Random(cfg.seed))]


def test_every_code_the_simulator_generates_has_a_name_now(sample):
    from streams.tools.simulator import SAMPLE, SimulationConfig

    for cfg in (SimulationConfig(), SAMPLE):
        for code in _simulator_codes(cfg):
            rec = sample.record_at(code, "2026-03-10")
            assert rec is not None, code
            assert rec.level == ("agency" if ".S" in code else "commune")
            assert rec.name_vi != code and rec.name_en != code


def test_sample_names_look_like_vietnamese_units(sample):
    current = sample.current("2026-03-10")
    for code, rec in current.items():
        if rec.level == "commune":
            assert rec.name_vi.startswith(("UBND xã ", "UBND phường ")), rec
            assert rec.name_en.endswith(("Commune People's Committee", "Ward People's Committee")), rec
        elif rec.level == "agency":
            assert rec.name_vi.split()[0] in ("Sở", "Thanh", "Văn", "Ban", "Công", "Bảo", "Thuế", "Chi"), rec
    names = [r.name_vi for r in current.values()]
    assert len(names) == len(set(names)), "two units in force with the same name"
    assert current["T99"].name_vi == "Tỉnh Sơn Nguyên"
    assert current["T99.X005"].name_vi == "UBND xã Mường Hum"


def test_sample_file_is_what_the_generator_writes(sample):
    """The YAML is the generator's output: a demo registry built in memory and the sample file never disagree."""
    generated = simulated_registry("T99", 20, 100)
    assert [r.as_row() for r in sample.records()] == [r.as_row() for r in generated.records()]


def test_generator_covers_larger_provinces_with_unique_names():
    reg = simulated_registry("T42", agencies=40, communes=400, history=False)
    current = reg.current("2026-01-01")
    assert len(current) == 1 + 40 + 400
    names = [r.name_vi for r in current.values()]
    assert len(names) == len(set(names))
    assert current["T42.S30"].name_vi.startswith("Chi nhánh Văn phòng Đăng ký đất đai khu vực")


# ---------------------------------------------------------------------------------------------- history


@pytest.mark.parametrize("code, when, lang, expected", [
    # March 2025 restructuring: a renamed agency keeps its code
    ("T99.S03", "2025-02-28", "vi", "Sở Nông nghiệp và Phát triển nông thôn"),
    ("T99.S03", "2025-03-01", "vi", "Sở Nông nghiệp và Môi trường"),
    ("T99.S03", "2025-02-28", "en", "Department of Agriculture and Rural Development"),
    ("T99.S03", "2026-03-10", "en", "Department of Agriculture and Environment"),
    # 17:30 UTC on 28 February is 00:30 on 1 March in Vietnam: the Vietnamese date decides
    ("T99.S03", datetime(2025, 2, 28, 17, 30, tzinfo=timezone.utc), "vi", "Sở Nông nghiệp và Môi trường"),
    ("T99.S03", datetime(2025, 2, 28, 16, 30, tzinfo=timezone.utc), "vi", "Sở Nông nghiệp và Phát triển nông thôn"),
    # a dissolved agency has a name only before the merger
    ("T99.S91", date(2025, 1, 15), "vi", "Sở Tài nguyên và Môi trường"),
    ("T99.S91", date(2025, 3, 1), "vi", None),
    # July 2025 two-tier reform: merged wards renamed
    ("T99.X001", "2025-06-30", "vi", "UBND phường Đông Thành"),
    ("T99.X001", "2025-07-01", "vi", "UBND phường Sơn Nguyên"),
    ("T99.H02", "2025-06-30", "vi", "UBND huyện Bát Sơn"),
    ("T99.H02", "2025-07-01", "vi", None),
    ("T99.S04", "2024-01-01", "vi", "Sở Tư pháp"),  # no valid_from: since always
    ("T00.S01", "2026-01-01", "vi", None),  # unknown code
])
def test_name_at(sample, code, when, lang, expected):
    assert sample.name_at(code, when, lang) == expected


@pytest.mark.parametrize("code, when, lang, with_code, expected", [
    ("T99.S04", "2026-03-10", "vi", False, "Sở Tư pháp"),
    ("T99.S04", "2026-03-10", "en", False, "Department of Justice"),
    ("T99.S04", "2026-03-10", "vi", True, "Sở Tư pháp (T99.S04)"),
    ("T99.S91", "2026-03-10", "vi", False, "Sở Tài nguyên và Môi trường"),  # ended: its last name, not its code
    ("T99.H01", "2026-03-10", "en", False, "Son Nguyen City People's Committee"),
    ("T77.X999", "2026-03-10", "vi", False, "T77.X999"),  # unknown: the code itself
    ("T77.X999", None, "en", True, "T77.X999"),
    ("", None, "vi", False, ""),
])
def test_display(sample, code, when, lang, with_code, expected):
    assert sample.display(code, lang, when, with_code=with_code) == expected


def test_merged_units_name_their_successor_and_parents_follow_the_reform(sample):
    old = sample.records("T99.S91")[-1]
    assert old.merged_into == "T99.S03" and old.valid_to == date(2025, 3, 1)
    assert sample.record_at("T99.X005", "2025-06-30").parent == "T99.H03"
    assert sample.record_at("T99.X005", "2025-07-01").parent == "T99"
    assert "T99.X005" in sample.children("T99", "2026-01-01")
    assert "T99.X005" in sample.children("T99.H03", "2025-01-01")


def test_name_en_defaults_to_name_vi():
    rec = UnitRecord("T01.S01", "Sở Tư pháp", level="agency")
    assert rec.name_en == "Sở Tư pháp"
    reg = UnitRegistry.loads("units:\n  - {code: T01, name_vi: Tỉnh A, level: province}\n", "yaml")
    assert reg.display("T01", "en") == "Tỉnh A"


def test_ascii_fold():
    assert ascii_fold("Đường Mường Hum, Tả Phìn") == "Duong Muong Hum, Ta Phin"


# ------------------------------------------------------------------------------------------------ loading


CSV_OK = ("code,name_vi,name_en,level,parent,valid_from,valid_to,merged_into\r\n"
          "T01,Tỉnh Thử,Test Province,province,,,,\r\n"
          "T01.S01,Sở Nông nghiệp và Phát triển nông thôn,,agency,T01,,2025-03-01,\r\n"
          "T01.S01,Sở Nông nghiệp và Môi trường,Department of Agriculture and Environment,agency,T01,2025-03-01,,\r\n")


@pytest.mark.parametrize("bom", [True, False])
def test_csv_with_or_without_bom(tmp_path, bom):
    p = tmp_path / "units.csv"
    p.write_bytes(("\ufeff" if bom else "").encode() + CSV_OK.encode("utf-8"))
    reg = UnitRegistry.load(p)
    assert reg.name_at("T01.S01", "2025-02-01") == "Sở Nông nghiệp và Phát triển nông thôn"
    assert reg.name_at("T01.S01", "2025-02-01", "en") == "Sở Nông nghiệp và Phát triển nông thôn"
    assert reg.name_at("T01.S01", "2025-03-01", "en") == "Department of Agriculture and Environment"


def test_csv_round_trip_of_the_sample(sample, tmp_path):
    data = sample.to_csv()
    assert data.startswith(b"\xef\xbb\xbf")
    p = tmp_path / "units.csv"
    p.write_bytes(data)
    again = UnitRegistry.load(p)
    assert [r.as_row() for r in again.records()] == [r.as_row() for r in sample.records()]


HEADER = "code,name_vi,name_en,level,parent,valid_from,valid_to,merged_into\n"


@pytest.mark.parametrize("body, expected", [
    ("T01,Tỉnh Thử,,province,,,,\nT01.S01,Sở Y tế,,department,T01,,,\n", ["line 3, field level", "'department'"]),
    ("T01,,,province,,,,\n", ["line 2, field name_vi: missing"]),
    ("T01,Tỉnh Thử,,province,,2025-13-01,,\n", ["line 2, field valid_from", "YYYY-MM-DD"]),
    ("T01,Tỉnh Thử,,province,,2025-03-01,2025-01-01,\n", ["line 2, field valid_to", "must be after"]),
    ("T01,Tỉnh Thử,,province,,,,\nT01.S01,Sở A,,agency,T01,,2025-06-01,\nT01.S01,Sở B,,agency,T01,2025-03-01,,\n",
     ["line 4, field valid_from", "must not overlap", "line 3"]),
    ("T01,Tỉnh Thử,,province,,,,\nT01.S01,Sở A,,agency,T09,,,\n", ["line 3, field parent", "'T09'"]),
    ("T01,Tỉnh Thử,,province,,,,\nT01.S01,Sở A,,agency,T01,,,T01.S02\n", ["line 3, field merged_into"]),
    ("T 01,Tỉnh Thử,,province,,,,\n", ["line 2, field code", "not a unit code"]),
    ("T01,Tỉnh Thử,,province,,,,,extra\n", ["line 2", "more cells"]),
])
def test_csv_problems_name_line_and_field(body, expected):
    with pytest.raises(UnitRegistryError) as exc:
        UnitRegistry.loads(HEADER + body, "csv", source="units.csv")
    msg = str(exc.value)
    for part in expected:
        assert part in msg, msg
    assert "units.csv" in msg


def test_csv_header_problems():
    with pytest.raises(UnitRegistryError, match=r"line 1 \(header\): missing column\(s\) level; unknown column"):
        UnitRegistry.loads("code,name_vi,ten\nT01,Tỉnh,x\n", "csv")


def test_yaml_problems_name_the_line(tmp_path):
    p = tmp_path / "units.yaml"
    p.write_text("units:\n"
                 "  - {code: T01, name_vi: Tỉnh Thử, level: province}\n"
                 "  - code: T01.S01\n"
                 "    name_vi: Sở Y tế\n"
                 "    level: agency\n"
                 "    valid_from: 2025-02-30\n"
                 "    colour: red\n", encoding="utf-8")
    with pytest.raises(UnitRegistryError) as exc:
        UnitRegistry.load(p)
    msg = str(exc.value)
    assert "units.yaml line 3, field valid_from" in msg
    assert "units.yaml line 3: unknown field(s) colour" in msg


@pytest.mark.parametrize("text, expected", [
    ("units: 3\n", "expected a list of units"),
    ("- [a, b]\n", "item 1: expected a mapping"),
    ("units: [\n", "not valid YAML"),
    ("units: []\n", "no unit records"),
])
def test_yaml_shape_problems(text, expected):
    with pytest.raises(UnitRegistryError, match=expected):
        UnitRegistry.loads(text, "yaml")


def test_not_utf8_is_refused_clearly(tmp_path):
    p = tmp_path / "units.csv"
    p.write_bytes(HEADER.encode() + b"T01,T\xecnh Th\xfd,,province,,,,\n")  # a Windows-1258 export
    with pytest.raises(UnitRegistryError, match="not UTF-8"):
        UnitRegistry.load(p)


def test_levels_are_those_of_the_reference_reader():
    from streams.runtime.reference import UNIT_LEVELS as READER_LEVELS

    assert set(UNIT_LEVELS) == set(READER_LEVELS)


# ----------------------------------------------------------------------------------------- reference topic


def test_reference_record_round_trip(sample):
    values = dict(sample.reference_records("2026-03-10"))
    assert len(values) == len(sample)
    doc = json.loads(values[b"T99.S03"])
    assert doc["unit_code"] == "T99.S03" and doc["name"] == "Sở Nông nghiệp và Môi trường"
    assert doc["province_code"] == "T99" and doc["parent_unit_code"] == "T99"
    assert [h["name_vi"] for h in doc["history"]] == ["Sở Nông nghiệp và Phát triển nông thôn",
                                                      "Sở Nông nghiệp và Môi trường"]
    again = UnitRegistry.from_reference({k.decode(): v for k, v in values.items()})
    assert [r.as_row() for r in again.records()] == [r.as_row() for r in sample.records()]


def test_reference_record_is_read_by_the_worker(sample):
    """The value keeps the fields the worker's reference reader already parses."""
    from streams.runtime.reference import parse_unit

    for key, value in sample.reference_records("2026-03-10"):
        parsed = parse_unit(key.decode(), value)
        assert parsed["name"] == sample.display(key.decode(), "vi", "2026-03-10")
    assert parse_unit("T99.X065", dict(sample.reference_records())[b"T99.X065"])["level"] == "commune"


def test_reference_record_of_the_older_form():
    recs = from_reference_record(b"G09.20", json.dumps({"unit_code": "G09.20", "name": "UBND xã Ba Vì",
                                                        "level": "commune", "province_code": "G09"}))
    assert recs == [UnitRecord("G09.20", "UBND xã Ba Vì", None, "commune")]


@pytest.mark.parametrize("key, value, expected", [
    ("A", b"{not json", "not JSON"),
    ("A", json.dumps({"unit_code": "B", "name": "x"}), "unit_code equals the key"),
    ("A", json.dumps({"unit_code": "A", "history": []}), "non-empty list"),
    ("A", json.dumps({"unit_code": "A", "history": [{"name_vi": "Sở A", "level": "sở"}]}), "history\\[0\\], field level"),
])
def test_reference_record_problems(key, value, expected):
    with pytest.raises(UnitRegistryError, match=expected):
        from_reference_record(key, value)


def test_info_rows_for_the_unit_info_metric(sample):
    rows = {r["unit"]: r for r in sample.info_rows("2026-03-10")}
    assert rows["T99.X005"] == {"unit": "T99.X005", "name": "UBND xã Mường Hum",
                                "name_en": "Muong Hum Commune People's Committee", "level": "commune",
                                "province": "T99", "parent": "T99"}
    assert "T99.S91" not in rows and "T99.H01" not in rows  # ended units are not in force
    assert rows["T99.S03"]["name"] == "Sở Nông nghiệp và Môi trường"
