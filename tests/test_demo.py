"""`onestop demo` as a newcomer runs it: figures and overdue dossiers appear, and it cleans up after itself."""

import os
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from streams.tools.broker import free_port
from tests.procs import http, wait_for

REPO = Path(__file__).resolve().parent.parent


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd and int(entry.name) != os.getpid():
                found.append(int(entry.name))
    return found


def test_demo_shows_figures_and_overdue_dossiers_then_leaves_nothing_running(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    demo = subprocess.Popen([sys.executable, "-m", "streams.tools.cli", "demo", "--duration", "50", "--no-live",
                             "--history-days", "10", "--dossiers-per-day", "120", "--web-port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        def units_with_figures():
            try:
                status, body = http(base + "/metrics", timeout=3)
            except OSError:
                return None
            units = {s.labels["unit"] for f in text_string_to_metric_families(body.decode()) for s in f.samples
                     if s.name == "onestop_dossiers_received" and s.value > 0}
            return units if len(units) > 50 else None

        units = wait_for(units_with_figures, timeout=45, interval=1.0, what="figures for the simulated units")
        assert any(u.startswith("T99.S") for u in units) and any(u.startswith("T99.X") for u in units)

        def an_overdue_listing():
            for unit in sorted(units):
                status, body = http(f"{base}/api/units/{unit}/dossiers?state=overdue", timeout=3)
                if status == 200 and b'"total":0' not in body.replace(b" ", b""):
                    return unit, body
            return None

        wait_for(an_overdue_listing, timeout=20, interval=2.0, what="an overdue dossier in the read API")
    finally:
        out, _ = demo.communicate(timeout=120)
    assert demo.returncode == 0, out.decode()[-3000:]
    assert "[demo] giờ mô phỏng" in out.decode() and "sự kiện; điểm 766 ước tính của tỉnh" in out.decode()  # vi first
    assert (tmp_path / "var/demo/broker").is_dir()  # its data stays in a local folder
    time.sleep(0.5)
    assert _processes_mentioning(str(tmp_path)) == [] and _processes_mentioning(f"--web-port {port}") == []


# -- the live view, rendered from a fixed state ------------------------------------------------------------------

def _view_text(lang: str | None) -> str:
    from datetime import datetime

    from rich.console import Console

    from models.units_sample import simulated_registry
    from streams.tools.demo_view import ViewInput, render_view

    def block(total, on_time, band, level, overdue):
        return {"level": level, "total_estimated": total, "band": {"code": band},
                "shares": {"on_time_ratio": on_time, "online_submission_share": 0.5, "online_payment_share": 0.25,
                           "satisfied_share": None},
                "counts": {"open_within": 1234, "open_due_soon": 3, "open_overdue": overdue}}

    figures = {"provinces": {"T99": block(71.5, 0.9345, "kha", "province", 9)},
               "units": {"T99.X005": block(42.25, 0.8, "yeu", "commune", 4),
                         "T99.S03": block(55.0, 0.875, "trung_binh", "agency", 5),
                         "T99.S19": block(91.0, 1.0, "xuat_sac", "agency", 0)}}
    alerts = [{"kind": "overdue", "unit_code": "T99.X005", "dossier_code": "T99.X005-20261207-00012",
               "due_at": "2026-12-07T10:00:00+07:00", "overdue_working_hours": 2.5},
              {"kind": "due_soon", "unit_code": "T99.S03", "dossier_code": "T99.S03-20261201-00007",
               "due_at": "2026-12-08T09:30:00+07:00", "overdue_working_hours": 0.0}]
    state = ViewInput(datetime.fromisoformat("2026-12-07T14:05:00+07:00"), 60, 12345, 20000, "http://127.0.0.1:6066",
                      None, figures, alerts, simulated_registry())
    console = Console(record=True, width=200, color_system=None)
    console.print(render_view(state) if lang is None else render_view(state, lang))
    return console.export_text()


def test_the_live_view_speaks_vietnamese_by_default_and_fits_200_columns():
    text = _view_text(None)
    for words in ("Giám sát Bộ phận Một cửa", "Thời gian mô phỏng 07/12/2026 14:05 (x60)", "Đã gửi 12.345 sự kiện",
                  "Đơn vị (lũy kế tháng), theo điểm 766 ước tính, thấp nhất trước", "Đúng hạn", "Trực tuyến", "Sắp đến hạn",
                  "Quá hạn", "Xếp loại", "Cảnh báo hồ sơ mới nhất", "Hồ sơ quá hạn", "Hồ sơ sắp đến hạn"):
        assert words in text, words
    for unit in ("Tỉnh Sơn Nguyên", "UBND xã Mường Hum", "Sở Nông nghiệp và Môi trường",
                 "Chi nhánh Văn phòng Đăng ký đất đai khu vực 1"):
        assert unit in text, unit
    for band in ("Khá", "Yếu", "Trung bình", "Xuất sắc"):
        assert band in text
    assert "93,45 %" in text and "42,25" in text and "1.234" in text and "07/12/2026 10:00" in text and "2,50" in text
    assert "on time" not in text.lower() and "Unit" not in text
    assert max(len(line) for line in text.splitlines()) <= 200
    # The weakest unit comes first under the province.
    assert text.index("UBND xã Mường Hum") < text.index("Sở Nông nghiệp và Môi trường") < text.index("khu vực 1")


def test_the_live_view_in_english():
    text = _view_text("en")
    for words in ("One-stop monitor (demo)", "Simulated time 2026-12-07 14:05 (x60)", "Events published 12,345",
                  "Units (month to date), lowest 766 estimate first", "On time", "Due soon", "Overdue", "Band",
                  "Newest per-dossier alerts", "Dossier overdue", "Dossier due soon", "Son Nguyen Province",
                  "Muong Hum Commune People's Committee", "Department of Agriculture and Environment", "Fair", "Poor",
                  "93.45%", "1,234"):
        assert words in text, words
    assert "Đơn vị" not in text and "Mường Hum" not in text
    assert max(len(line) for line in text.splitlines()) <= 200


def test_demo_refuses_an_unknown_language():
    from streams.tools.demo import DemoOptions, run_demo

    assert run_demo(DemoOptions(lang="fr")) == 2
