"""P with one worker and with two in one consumer group, side by side on one broker (docs/benchmarks.md, run 21).

A backfill is where users wait; the answer the product gives is more workers (up to the partition count). One
embedded broker, one pre-loaded history; per repeat, interleaved, a cold-start group of one worker and a group of
two (4 partitions: two each after the rebalance), each group with its own changelog. The rate is the events the
group's workers have handled together (`/metrics`, polled every second), between 10 % and 90 % of the history, as
``bench/harness.py`` measures P. Events handled twice around the rebalance (a partition's records read again by
its new owner after the first one's last commit) count too; the script prints how many beyond the history.

    .venv/bin/python bench/scale_out.py --events 20000 --repeats 2

Everything binds to 127.0.0.1; the broker and the workers are started here and ended by their PIDs; every wait is
bounded. Prints figures, never asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import reliability as rel  # noqa: E402
from bench.harness import Worker, log, preloaded_broker, rate_between, wait_for  # noqa: E402


def one_group(bootstrap: str, prefix: str, app_id: str, workers: int, run_dir: Path, clock: Path, expect: int,
              timeout: float = 1800) -> dict:
    group = [Worker(bootstrap, prefix, run_dir / f"{app_id}-{i}", clock, run_dir / f"{app_id}-{i}.log",
                    app_id=app_id).start() for i in range(workers)]
    try:
        started = time.monotonic()
        for w in group:
            wait_for(w.ready, timeout=180, what="worker ready")
        marks: list[tuple[int, float]] = []
        deadline = time.monotonic() + timeout
        n = 0
        while n < expect and time.monotonic() < deadline:
            t0 = time.monotonic()
            n = int(sum(w.counts(named=True)[0] for w in group))
            marks.append((n, time.monotonic()))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
        time.sleep(3)  # what is still in flight when the history is covered: events handled twice
        handled = int(sum(w.counts(named=True)[0] for w in group))
        return {"workers": workers, "rate": rate_between(marks, expect), "seconds": round(time.monotonic() - started, 1),
                "handled": handled, "beyond_history": handled - expect, "complete": n >= expect}
    finally:
        for w in group:
            w.child.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", type=Path, default=REPO / "var" / "bench")
    args = ap.parse_args()
    run_dir = args.work / time.strftime("scale-out-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    out = run_dir / "results.json"
    lines = rel.simulate(args.events)
    clock = run_dir / "clock"
    clock.write_text(rel.AT.isoformat())
    results: dict[int, list] = {1: [], 2: []}
    prefix = "scale-"
    with preloaded_broker(run_dir, prefix, lines) as (broker, _settings):
        for r in range(args.repeats):
            for n in ((1, 2) if r % 2 == 0 else (2, 1)):  # interleaved, order alternating
                res = one_group(broker.bootstrap, prefix, f"{prefix}{n}w-{r}", n, run_dir, clock, len(lines))
                results[n].append(res)
                log(f"{n} worker(s), run {r + 1}: {res}")
                out.write_text(json.dumps({"events": len(lines), "runs": results}, indent=2))
    rates = {n: [x["rate"] for x in runs if x["rate"]] for n, runs in results.items()}
    summary = {n: {"P_median": statistics.median(r) if r else None, "P_runs": [round(x) for x in r],
                   "beyond_history": [x["beyond_history"] for x in results[n]]} for n, r in rates.items()}
    out.write_text(json.dumps({"events": len(lines), "summary": summary, "runs": results}, indent=2))
    for n, s in summary.items():
        log(f"{n} worker(s): P median {s['P_median'] and round(s['P_median'])} ev/s (runs {s['P_runs']}), handled "
            f"beyond the history {s['beyond_history']}")
    one, two = summary[1]["P_median"], summary[2]["P_median"]
    if one and two:
        log(f"two workers / one: {two / one:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
