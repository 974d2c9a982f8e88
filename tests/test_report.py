"""The 766 report of a province from the score document: Markdown (golden files), CSV, xlsx, chart.

Regenerate the golden files after an intended change with ``ONESTOP_UPDATE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from datetime import datetime
from pathlib import Path

import pytest

from models.calendar import WorkCalendar
from models.config import load_config
from models.dossier import Context
from models.figures import iter_lines, replay, score_document, views
from models.report import LateDossier, ReportDependencyError, build_report, build_reports, late_dossiers_from_views
from models.report_render import period_label, scorecard_chart, to_csv, to_markdown, to_xlsx
from models.units import UnitRegistry

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "sample-events.jsonl"
UNITS = REPO / "samples" / "units" / "units-sample-province.yaml"
GOLDEN = Path(__file__).resolve().parent / "golden" / "report"
AT = "2026-03-10T16:00:00+07:00"
UPDATE = os.environ.get("ONESTOP_UPDATE_GOLDEN") == "1"


def _score(period: str, at: str = AT):
    """As ``onestop score`` builds it: bundled calendar, default rules, figures as of ``at``."""
    ctx = Context(now=datetime.fromisoformat(at), calendar=WorkCalendar.default(), config=load_config(None))
    replayed = replay(iter_lines(str(SAMPLE)), ctx)
    return score_document(replayed, period, ctx), replayed, ctx


@pytest.fixture(scope="module")
def registry() -> UnitRegistry:
    return UnitRegistry.load(UNITS)


@pytest.fixture(scope="module")
def march():
    doc, replayed, ctx = _score("month:2026-03")
    late = late_dossiers_from_views(views(replayed.states.values(), ctx), ctx.now)
    return doc, late


@pytest.fixture(scope="module")
def report(march, registry):
    doc, late = march
    return build_report(doc, late, registry, "month:2026-03")


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with ONESTOP_UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(encoding="utf-8"), \
        f"{name} differs from the golden file; if the change is intended, rerun with ONESTOP_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_markdown_matches_the_golden_file(report, lang):
    _golden(f"sample-month-2026-03.{lang}.md", to_markdown(report, lang, chart="sample-month-2026-03.png"))


@pytest.mark.parametrize("needle", [
    "# Báo cáo Bộ chỉ số 766 — Tỉnh Sơn Nguyên",
    "**Báo cáo ngày 10/03/2026 (lũy kế tháng 03/2026)**",
    "## Tổng quan", "## Điểm theo nhóm chỉ số", "## Bảng chỉ số 766", "## Xếp hạng đơn vị",
    "### Xếp hạng Sở, ban, ngành", "### Xếp hạng Xã, phường", "## Hồ sơ quá hạn theo đơn vị",
    "| Tỷ lệ hồ sơ đúng hạn | 90,48 % |",
    "| 2.1 | Tỷ lệ hồ sơ xử lý trước hạn, đúng hạn (bao gồm đã xử lý và đang xử lý) | 133 / 147 | 90,48 % | 18,10 | 20 |",
    "| 1 | UBND xã Mường Hum | T99.X005 |", "Xuất sắc (ước tính)", "Sở Nông nghiệp và Môi trường",
    "### Sở Khoa học và Công nghệ (T99.S06) — 1 hồ sơ",
])
def test_markdown_is_vietnamese_with_unit_names(report, needle):
    assert needle in to_markdown(report)


def test_markdown_in_english(report):
    md = to_markdown(report, "en")
    for needle in ("# Decision 766 index report — Son Nguyen Province", "| On-time ratio | 90.48% |",
                   "Muong Hum Commune People's Committee", "Excellent (estimate)", "## Overdue dossiers by unit"):
        assert needle in md
    assert "Xếp hạng" not in md


def test_ranking_follows_the_band_score_within_each_level(report):
    for level in ("agency", "commune"):
        units = [u for u in report.units if u.level == level]
        assert [u.rank for u in units] == list(range(1, len(units) + 1))
        assert [u.value for u in units] == sorted((u.value for u in units), reverse=True)
    assert report.units[0].code == "T99.S01" and report.units[0].name_vi == "Sở Tài chính"
    assert {u.code for u in report.units} == set(_score("month:2026-03")[0]["units"])


def test_late_dossiers_are_grouped_by_unit_most_hours_first(report, march):
    _, late = march
    assert late and all(d.state == "open_overdue" and d.hours_overdue > 0 for d in late)
    assert sum(len(ds) for ds in report.late.values()) == len(late)
    overdue = {u.code: u.open_overdue for u in report.units}
    for code, ds in report.late.items():
        assert len(ds) == overdue[code]  # the list agrees with the figures' open_overdue count
        assert [d.hours_overdue for d in ds] == sorted((d.hours_overdue for d in ds), reverse=True)


def test_ended_late_dossiers_can_be_listed_for_a_month_end_report():
    doc, replayed, ctx = _score("month:2026-02")
    start = datetime.fromisoformat(doc["period_start"])
    late = late_dossiers_from_views(views(replayed.states.values(), ctx), ctx.now, ended_since=start)
    ended = [d for d in late if d.state == "ended_late"]
    assert ended and all(d.hours_overdue >= 0 for d in ended)
    rep = build_report(doc, late, None)
    assert rep.kind == "period_end"
    md = to_markdown(rep)
    assert "**Báo cáo cuối kỳ: tháng 02/2026**" in md
    assert "T99.S01" in md  # no registry: codes stand for names


@pytest.mark.parametrize("period, lang, expected", [
    ("month:2026-03", "vi", "tháng 03/2026"), ("month:2026-03", "en", "March 2026"),
    ("quarter:2026-Q1", "vi", "quý I/2026"), ("quarter:2026-Q4", "en", "Q4 2026"),
    ("year:2026", "vi", "năm 2026"), ("year:2026", "en", "year 2026"), ("week:2026-10", "vi", "week:2026-10"),
])
def test_period_label(period, lang, expected):
    assert period_label(period, lang) == expected


def test_a_report_labelled_with_another_period_is_refused(march, registry):
    doc, late = march
    with pytest.raises(ValueError, match="is for 'month:2026-03', not 'month:2026-02'"):
        build_report(doc, late, registry, "month:2026-02")


def test_province_must_be_named_when_the_document_has_several(march, registry):
    doc, late = march
    two = {**doc, "provinces": {**doc["provinces"], "T98": doc["provinces"]["T99"]}}
    with pytest.raises(ValueError, match="2 provinces"):
        build_report(two, late, registry)
    assert [r.province for r in build_reports(two, late, registry)] == ["T98", "T99"]
    assert build_reports(two, late, registry)[0].units == ()
    with pytest.raises(ValueError, match="province 'T01' is not in"):
        build_report(doc, late, registry, province="T01")


def test_late_dossier_from_read_api_items():
    item = {"dossier_code": "T99.S04-20260129-00004", "procedure_code": "1.001612", "unit_code": "T99.S04",
            "due_at": "2026-02-26T10:03:00+07:00", "overdue_working_hours": 29.0, "state": "overdue"}
    d = LateDossier.from_mapping(item)
    assert (d.code, d.procedure, d.unit, d.hours_overdue, d.state) == (
        "T99.S04-20260129-00004", "1.001612", "T99.S04", 29.0, "open_overdue")
    assert d.due_at.isoformat() == "2026-02-26T10:03:00+07:00"
    assert LateDossier.from_mapping({"code": "A", "unit": "U", "hours_overdue": 1}).procedure == ""
    with pytest.raises(ValueError, match="missing unit"):
        LateDossier.from_mapping({"code": "A"})


# ---------------------------------------------------------------------------------------------------- CSV


def _rows(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


@pytest.mark.parametrize("table, lang, header_start", [
    ("units", "vi", ["Hạng", "Mã đơn vị", "Tên đơn vị", "Cấp", "Tổng điểm"]),
    ("units", "en", ["Rank", "Unit code", "Unit name", "Level", "Total"]),
    ("indicators", "vi", ["Chỉ số", "Tên chỉ số", "Nhóm", "Tử số", "Mẫu số", "Tỷ lệ", "Điểm"]),
    ("late", "vi", ["Mã đơn vị", "Tên đơn vị", "Mã hồ sơ", "Mã thủ tục", "Hạn xử lý"]),
])
def test_csv_tables(report, table, lang, header_start):
    rows = _rows(to_csv(report, lang, table))
    assert rows[0][:len(header_start)] == header_start
    assert len(rows) > 1 and all(len(r) == len(rows[0]) for r in rows)


def test_csv_units_row(report):
    rows = _rows(to_csv(report))
    by_code = {r[1]: r for r in rows[1:]}
    r = by_code["T99.X005"]
    assert r[2:4] == ["UBND xã Mường Hum", "Xã, phường"]
    assert r[7] == "Xuất sắc" and r[8] == "theo điểm ước tính"
    assert float(r[6]) == pytest.approx(92.9, abs=0.01)  # machine-readable numbers
    assert rows[0][-6:] == ["Công khai, minh bạch", "Tiến độ, kết quả giải quyết", "Dịch vụ công trực tuyến",
                            "Thanh toán trực tuyến", "Số hóa hồ sơ", "Mức độ hài lòng"]


def test_csv_unknown_table(report):
    with pytest.raises(ValueError, match="unknown CSV table"):
        to_csv(report, table="groups")


# ------------------------------------------------------------------------------------- xlsx and chart


def test_xlsx(report, tmp_path):
    import openpyxl

    path = to_xlsx(report, "vi", tmp_path / "bao-cao.xlsx")
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Tổng quan", "Chỉ số 766", "Xếp hạng", "Hồ sơ quá hạn"]
    assert wb["Tổng quan"]["A1"].value == "Báo cáo Bộ chỉ số 766 — Tỉnh Sơn Nguyên"
    ranking = list(wb["Xếp hạng"].iter_rows(values_only=True))
    assert ranking[0][:3] == ("Hạng", "Mã đơn vị", "Tên đơn vị")
    assert ("T99.X005", "UBND xã Mường Hum") in {row[1:3] for row in ranking[1:]}
    late = list(wb["Hồ sơ quá hạn"].iter_rows(values_only=True))
    assert len(late) == 1 + sum(len(ds) for ds in report.late.values())
    en = openpyxl.load_workbook(to_xlsx(report, "en", tmp_path / "report.xlsx"))
    assert en.sheetnames == ["Summary", "Indicators", "Ranking", "Overdue dossiers"]


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_scorecard_chart(report, tmp_path, lang):
    path = scorecard_chart(report, tmp_path / f"chart.{lang}.png", lang)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    md = to_markdown(report, lang, chart=path.name)
    assert f"]({path.name})" in md and ("![Biểu đồ" in md if lang == "vi" else "![Chart" in md)


@pytest.mark.parametrize("module, call", [
    ("openpyxl", lambda r, p: to_xlsx(r, "vi", p / "x.xlsx")),
    ("matplotlib", lambda r, p: scorecard_chart(r, p / "x.png")),
])
def test_a_missing_optional_library_is_named(report, tmp_path, monkeypatch, module, call):
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # makes "import module" fail
    with pytest.raises(ReportDependencyError, match=f"pip install {module}"):
        call(report, tmp_path)
