"""Replay a long history through `onestop replay` into one worker and check its figures against `onestop score`.

The proof that backfill is exact at scale (a year of a province, about a million events): score the file in batch,
start the embedded broker and one worker, publish the file with `onestop replay`, and wait until the worker's
figures for the period equal the batch document, unit by unit and province by province. Prints one JSON document
of figures (durations, rates, peak RSS of the worker, lag and dead letters at the end). Not a test: it takes tens
of minutes; docs/benchmarks.md and docs/reliability.md quote its output.

    .venv/bin/onestop simulate --out var/year.jsonl --start 2025-01-02 --end 2025-12-31T17:00:00+07:00 \\
        --dossiers-per-day 700 --seed 2025
    .venv/bin/python bench/replay_year.py var/year.jsonl --at 2025-12-31T17:00:00+07:00 --period year:2025
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.reliability import _proc_status, committed, end_offsets  # noqa: E402
from streams.tools.broker import EmbeddedBroker  # noqa: E402
from streams.runtime.settings import WorkerSettings  # noqa: E402
from tests.procs import WorkerProcess  # noqa: E402

ONESTOP = str(Path(sys.executable).with_name("onestop"))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def lag_and_dlq(bootstrap: str, settings: WorkerSettings) -> tuple[int, int]:
    """Records of the events topic not yet committed by the group, and records in the dead-letter topic."""
    lag = end_offsets(bootstrap, settings.events, settings.partitions) - committed(bootstrap, settings)
    return lag, end_offsets(bootstrap, settings.dlq, settings.partitions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("--at", required=True, help="the instant both sides evaluate open dossiers at")
    parser.add_argument("--period", required=True, help="e.g. year:2025")
    parser.add_argument("--timeout", type=float, default=7200.0, help="bound of the wait for equality, seconds")
    parser.add_argument("--session-timeout", default="30", help="the worker's consumer session timeout, seconds")
    parser.add_argument("--keep", type=Path, default=None, help="keep broker data and the worker log here")
    args = parser.parse_args(argv)

    base = args.keep or Path(tempfile.mkdtemp(prefix="replay-year-"))
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    lines = sum(1 for line in args.file.open("rb") if line.strip())
    out: dict = {"file": str(args.file), "lines": lines, "period": args.period, "at": args.at}

    t = time.monotonic()
    scored = subprocess.run([ONESTOP, "score", str(args.file), "--at", args.at, "--period", args.period],
                            capture_output=True, check=True)
    out["score_seconds"] = round(time.monotonic() - t, 1)
    out["score_events_per_second"] = round(lines / out["score_seconds"])
    oracle = json.loads(scored.stdout)
    log(f"scored {lines:,} lines in {out['score_seconds']} s")

    clock = base / "clock"
    clock.write_text(args.at)
    settings = WorkerSettings(partitions=4)
    peak = {"kib": 0}
    try:
        with EmbeddedBroker(base / "broker") as broker:
            worker = WorkerProcess(bootstrap=broker.bootstrap, data_dir=base / "w1", log_path=base / "w1.log",
                                   env={"ONESTOP_CLOCK_FILE": str(clock), "ONESTOP_LOG_LEVEL": "warn",
                                        "ONESTOP_PARTITIONS": "4", "ONESTOP_SESSION_TIMEOUT": args.session_timeout})
            worker.start()
            worker.wait_ready(timeout=180)
            sampling = {"on": True}

            def sample() -> None:
                while sampling["on"]:
                    try:
                        peak["kib"] = max(peak["kib"], _proc_status(worker.pid)["VmHWM"])
                    except (OSError, KeyError, TypeError):
                        pass
                    time.sleep(2)

            threading.Thread(target=sample, daemon=True).start()
            started = time.monotonic()
            replayed = subprocess.run([ONESTOP, "replay", str(args.file), "--broker", broker.bootstrap, "--quiet"],
                                      capture_output=True, text=True)
            out["replay_exit"] = replayed.returncode
            out["replay_seconds"] = round(time.monotonic() - started, 1)
            out["replay_events_per_second"] = round(lines / out["replay_seconds"])
            out["replay_report"] = replayed.stderr.strip()[-400:]
            log(f"published in {out['replay_seconds']} s; waiting for the worker")
            equal = False
            while time.monotonic() - started < args.timeout:
                time.sleep(10)
                try:
                    got = worker.get_json(f"/figures?period={args.period}")
                except Exception as exc:  # busy or rebalancing: try again
                    log(f"poll: {exc!r}")
                    continue
                received = sum(u["counts"]["received"] for u in got["units"].values())
                log(f"{time.monotonic() - started:.0f} s: {received:,} dossiers received so far")
                if got["units"] == oracle["units"] and got["provinces"] == oracle["provinces"]:
                    equal = True
                    break
            out["figures_equal_score"] = equal
            out["seconds_to_equal"] = round(time.monotonic() - started, 1)
            out["end_to_end_events_per_second"] = round(lines / out["seconds_to_equal"])
            out["lag_at_equality"], out["dlq_records"] = lag_and_dlq(broker.bootstrap, settings)
            drain_until = time.monotonic() + 120  # the last records' offsets are committed on the next interval
            while True:
                out["lag_after"], out["dlq_records"] = lag_and_dlq(broker.bootstrap, settings)
                if out["lag_after"] == 0 or time.monotonic() > drain_until:
                    break
                time.sleep(2)
            out["worker_alive"] = worker.alive()
            sampling["on"] = False
            out["peak_rss_mib"] = round(peak["kib"] / 1024)
            out["units"] = len(oracle["units"])
            worker.stop()
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(out, indent=2))
    return 0 if out.get("figures_equal_score") else 1


if __name__ == "__main__":
    sys.exit(main())
