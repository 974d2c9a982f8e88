"""P with and without transactions, side by side in one run (docs/benchmarks.md).

One embedded broker, one pre-loaded history; per repeat, a cold-start worker with
``ONESTOP_PROCESSING_GUARANTEE=exactly_once`` and one with ``at_least_once``, interleaved, each with a consumer
group and a changelog of its own. P is the rate between 10 % and 90 % of the history handled (as
``bench/harness.py`` measures it); for both, also the seconds from ready until the group's committed offsets reach
the end of the topic (exactly once commits them with each transaction, at least once with Faust's commit
interval) and whether the figures then equal `onestop score`.

    .venv/bin/python bench/transactions_p.py --events 20000 --repeats 2

Everything binds to 127.0.0.1; the broker and the workers are started here and ended by their PIDs; every wait is
bounded.
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
from bench.harness import Worker, log, preloaded_broker, run_product_throughput, same_figures  # noqa: E402
from streams.runtime.settings import WorkerSettings  # noqa: E402

GUARANTEES = ("exactly_once", "at_least_once")


def committed(bootstrap: str, app_id: str, topic: str) -> int:
    return rel.committed(bootstrap, WorkerSettings(broker=bootstrap, app_id=app_id, events_topic=topic))


def one_run(bootstrap: str, prefix: str, app_id: str, guarantee: str, run_dir: Path, clock: Path, lines: list[bytes],
            expected: dict, topic: str) -> dict:
    w = Worker(bootstrap, prefix, run_dir / app_id, clock, run_dir / f"{app_id}.log", app_id=app_id,
               env={"ONESTOP_PROCESSING_GUARANTEE": guarantee}).start()
    try:
        res = run_product_throughput(w, len(lines), timeout=1800, poll=1.0)
        started = time.monotonic()
        deadline = started + 300
        while committed(bootstrap, app_id, topic) < len(lines) and time.monotonic() < deadline:
            time.sleep(0.5)
        res["committed_after_handled_s"] = round(time.monotonic() - started, 1)
        res["exact"] = all(same_figures(w.figures(p), expected[p]) for p in expected)
        return res
    finally:
        w.child.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", type=Path, default=REPO / "var" / "bench")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    run_dir = args.work / time.strftime("transactions-p-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    out = args.out or run_dir / "results.json"
    lines = rel.simulate(args.events)
    expected = rel.oracle(lines)
    clock = run_dir / "clock"
    clock.write_text(rel.AT.isoformat())
    results: dict[str, list] = {g: [] for g in GUARANTEES}
    prefix = "txp-"
    with preloaded_broker(run_dir, prefix, lines) as (broker, settings):
        for r in range(args.repeats):
            for g in (GUARANTEES if r % 2 == 0 else GUARANTEES[::-1]):  # interleaved, order alternating
                res = one_run(broker.bootstrap, prefix, f"{prefix}{g}-{r}", g, run_dir, clock, lines, expected,
                              settings.events)
                results[g].append(res)
                log(f"{g} run {r + 1}: P {res['rate'] and round(res['rate'])} ev/s, committed "
                    f"{res['committed_after_handled_s']} s after handled, exact {res['exact']}")
                out.write_text(json.dumps({"events": len(lines), "runs": results}, indent=2, default=str))
    summary = {g: {"P_median": statistics.median([x["rate"] for x in runs if x["rate"]] or [0]),
                   "P_runs": [round(x["rate"] or 0) for x in runs],
                   "committed_after_handled_s": [x["committed_after_handled_s"] for x in runs],
                   "exact": all(x["exact"] for x in runs)} for g, runs in results.items()}
    out.write_text(json.dumps({"events": len(lines), "summary": summary, "runs": results}, indent=2, default=str))
    for g, s in summary.items():
        log(f"{g}: P median {s['P_median']:.0f} ev/s (runs {s['P_runs']}), committed "
            f"{s['committed_after_handled_s']} s after handled, exact {s['exact']}")
    return 0 if all(s["exact"] for s in summary.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
