#!/usr/bin/env python3
"""Two figures of a worker at rest, on the embedded broker: CPU while idle, and the cost of one /metrics scrape.

1. A worker with nothing to read: CPU of the worker and of the broker over ``--seconds`` (from /proc), which is
   what empty-fetch pacing (streams/compat/pacing.py) is for.
2. The same worker after ``--events`` events of the quick data set (bench/run --quick makes it): /metrics read
   back to back for ``--seconds``; mean time per scrape, body size and sample count.

    bench/idle_and_scrape.py                       # 30,000 events, 20 s each
    ONESTOP_EMPTY_FETCH_PAUSE=0 bench/idle_and_scrape.py --skip-scrape   # the idle worker without pacing

Prints figures only. Every process is started here, bound to 127.0.0.1 and ended by its PID.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import harness  # noqa: E402
from streams.tools.broker import EmbeddedBroker  # noqa: E402
from streams.runtime.settings import WorkerSettings  # noqa: E402
from streams.runtime.topics import ensure_topics  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--data", type=Path, default=harness.REPO / "var" / "bench" / "events-quick.jsonl")
    ap.add_argument("--skip-scrape", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="onestop-idle-"))
    with EmbeddedBroker(data_dir=work / "broker") as broker:
        settings = WorkerSettings(broker=broker.bootstrap, topic_prefix="idle-", app_id="idle-app", partitions=4)
        ensure_topics(broker.bootstrap, settings)
        (work / "clock").write_text(harness.AT)
        w = harness.Worker(broker.bootstrap, "idle-", work / "worker", work / "clock", work / "worker.log").start()
        try:
            harness.wait_for(w.ready, 120, what="worker ready")
            time.sleep(5)
            c0, b0 = cpu_seconds(w.child.pid), cpu_seconds(broker.pid)
            time.sleep(args.seconds)
            c1, b1 = cpu_seconds(w.child.pid), cpu_seconds(broker.pid)
            print(f"idle: worker {100 * (c1 - c0) / args.seconds:.0f} % of a core, broker "
                  f"{100 * (b1 - b0) / args.seconds:.0f} % over {args.seconds:.0f} s "
                  f"(ONESTOP_EMPTY_FETCH_PAUSE={os.environ.get('ONESTOP_EMPTY_FETCH_PAUSE', 'default')})")
            if args.skip_scrape:
                return 0
            if not args.data.exists():
                print(f"no data at {args.data}: run bench/run --quick once to make it")
                return 1
            lines = harness.read_lines(args.data, args.events)
            harness.produce_bulk(broker.bootstrap, settings.events, lines)
            harness.wait_for(lambda: w.counts()[0] >= len(lines), 600, interval=1.0, what="events processed")
            stop = threading.Event()
            took: list[float] = []

            def scrape() -> None:
                while not stop.is_set():
                    t = time.monotonic()
                    harness.http(w.url + "/metrics")
                    took.append(time.monotonic() - t)

            t = threading.Thread(target=scrape)
            t.start()
            time.sleep(args.seconds)
            stop.set()
            t.join(timeout=30)
            body = harness.http(w.url + "/metrics")[1]
            samples = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
            _, tracked = w.counts()
            print(f"scrape: {len(took)} back to back, mean {1000 * sum(took) / len(took):.1f} ms, "
                  f"{len(body):,} bytes, {samples:,} samples ({len(lines):,} events, {tracked:,.0f} dossiers)")
        finally:
            w.child.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
