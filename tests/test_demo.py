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
    assert (tmp_path / "var/demo/broker").is_dir()  # its data stays in a local folder
    time.sleep(0.5)
    assert _processes_mentioning(str(tmp_path)) == [] and _processes_mentioning(f"--web-port {port}") == []
