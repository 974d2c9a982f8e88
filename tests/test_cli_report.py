"""``onestop report`` as an operator runs it on the bundled sample: Markdown with its chart, CSV, Excel; Vietnamese
by default, English when asked; daily (month to date) or end of period."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "sample-events.jsonl"
UNITS = REPO / "samples" / "units" / "units-sample-province.yaml"
AT = "2026-03-10T16:00:00+07:00"
GOLDEN = REPO / "tests" / "golden" / "report"


def onestop(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("ONESTOP_LANG", None)
    env.pop("ONESTOP_UNITS_FILE", None)
    return subprocess.run([sys.executable, "-m", "streams.tools.cli", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=240)


def report(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return onestop("report", str(SAMPLE), "--period", "month:2026-03", "--units", str(UNITS), *args, cwd=tmp_path)


def test_markdown_is_vietnamese_with_unit_names_and_embeds_the_chart(tmp_path):
    out = report(tmp_path, "--at", AT, "--format", "md", "--out", "march.md")
    assert out.returncode == 0, out.stderr.decode()
    md = (tmp_path / "march.md").read_text(encoding="utf-8")
    assert md.startswith("# Báo cáo Bộ chỉ số 766 — Tỉnh Sơn Nguyên")
    for heading in ("## Tổng quan", "## Bảng chỉ số 766", "## Xếp hạng đơn vị", "## Hồ sơ quá hạn theo đơn vị"):
        assert heading in md
    assert "Báo cáo ngày 10/03/2026 (lũy kế tháng 03/2026)" in md  # --at inside the period: daily, month to date
    assert "UBND xã Mường Hum" in md and "Sở Nông nghiệp và Môi trường" in md and "90,48 %" in md
    assert "![Biểu đồ điểm 766 theo đơn vị](march.png)" in md
    png = tmp_path / "march.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # The same figures as the reviewed golden report (and so as `onestop score`).
    golden = (GOLDEN / "sample-month-2026-03.vi.md").read_text(encoding="utf-8")
    assert md == golden.replace("sample-month-2026-03.png", "march.png")


def test_markdown_in_english(tmp_path):
    out = report(tmp_path, "--at", AT, "--lang", "en", "--out", "march-en.md")
    assert out.returncode == 0, out.stderr.decode()
    md = (tmp_path / "march-en.md").read_text(encoding="utf-8")
    assert md.startswith("# Decision 766 index report — Son Nguyen Province")
    assert "## Ranking of units" in md and "Department of Agriculture and Environment" in md and "90.48%" in md
    assert (tmp_path / "march-en.png").exists()


def test_after_the_period_it_is_the_end_of_period_report(tmp_path):
    out = report(tmp_path, "--at", "2026-04-02T09:00:00+07:00")
    assert out.returncode == 0, out.stderr.decode()
    md = (tmp_path / "bao-cao-766-month-2026-03.md").read_text(encoding="utf-8")  # the default file name
    assert "**Báo cáo cuối kỳ: tháng 03/2026**" in md and "số liệu tính đến 01/04/2026 00:00" in md
    assert (tmp_path / "bao-cao-766-month-2026-03.png").exists()


def test_csv_has_a_bom_and_vietnamese_headers(tmp_path):
    out = report(tmp_path, "--at", AT, "--format", "csv", "--out", "units.csv")
    assert out.returncode == 0, out.stderr.decode()
    data = (tmp_path / "units.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][:4] == ["Hạng", "Mã đơn vị", "Tên đơn vị", "Cấp"]
    names = {r[2] for r in rows[1:]}
    assert "UBND xã Mường Hum" in names and "Sở Tư pháp" in names
    late = report(tmp_path, "--at", AT, "--format", "csv", "--table", "late", "--out", "-")
    assert late.returncode == 0, late.stderr.decode()
    rows = list(csv.reader(io.StringIO(late.stdout.decode("utf-8-sig"))))
    assert late.stdout.startswith(b"\xef\xbb\xbf") and rows[0][-1] == "Tình trạng"
    assert len(rows) > 1 and {r[-1] for r in rows[1:]} == {"quá hạn"}
    english = report(tmp_path, "--at", AT, "--format", "csv", "--lang", "en", "--out", "-")
    assert english.stdout.decode("utf-8-sig").startswith("Rank,Unit code,Unit name,Level")


def test_xlsx_opens_with_vietnamese_sheets_and_headers(tmp_path):
    import openpyxl
    out = report(tmp_path, "--at", AT, "--format", "xlsx", "--out", "march.xlsx")
    assert out.returncode == 0, out.stderr.decode()
    wb = openpyxl.load_workbook(tmp_path / "march.xlsx")
    assert wb.sheetnames == ["Tổng quan", "Chỉ số 766", "Xếp hạng", "Hồ sơ quá hạn"]
    assert wb["Tổng quan"]["A1"].value == "Báo cáo Bộ chỉ số 766 — Tỉnh Sơn Nguyên"
    ranking = wb["Xếp hạng"]
    assert [c.value for c in ranking[1]][:3] == ["Hạng", "Mã đơn vị", "Tên đơn vị"]
    assert "UBND xã Mường Hum" in {row[2] for row in ranking.iter_rows(min_row=2, values_only=True)}


@pytest.mark.parametrize("args, message", [
    (["--format", "pdf"], "--format must be one of md, csv, xlsx"),
    (["--lang", "fr"], "--lang must be one of vi, en"),
    (["--at", "2026-02-10T10:00:00+07:00"], "has not started"),
    (["--province", "T01"], "province 'T01' is not in the events"),
])
def test_bad_requests_are_refused_clearly(tmp_path, args, message):
    out = report(tmp_path, *args)
    assert out.returncode == 2 and message in out.stderr.decode()
    assert not list(tmp_path.iterdir())


def test_a_broken_units_file_is_refused_with_its_line(tmp_path):
    bad = tmp_path / "units.yaml"
    bad.write_text("units:\n  - {code: T99.S01, name_vi: Sở Tài chính, level: sở}\n", encoding="utf-8")
    out = onestop("report", str(SAMPLE), "--period", "month:2026-03", "--units", str(bad), cwd=tmp_path)
    assert out.returncode == 2 and "line 2, field level" in out.stderr.decode()
