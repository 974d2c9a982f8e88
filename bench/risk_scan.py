#!/usr/bin/env python3
"""What the worker's at-risk scan costs per dossier, and how much it keeps: the first N events of a file are
replayed into states and stored as the worker stores them; the scan is then timed the way
``streams.serve.risk.RiskService`` runs it (decode and evaluate each stored state, ``RiskPass.add``, then
``summary`` on the period's tallies), in-process, without a broker:

    .venv/bin/python bench/risk_scan.py var/bench/received-1000000.jsonl --events 100000   # open dossiers only
    .venv/bin/python bench/risk_scan.py var/bench/events-1m.jsonl                           # the simulator's mix

Prints figures only, never asserts.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.at_risk_pass import RiskPass  # noqa: E402
from models.calendar import WorkCalendar  # noqa: E402
from models.dossier import Context, decode_state, encode_state  # noqa: E402
from models.evaluation import evaluate  # noqa: E402
from models.figures import iter_lines, replay, tallies_of  # noqa: E402
from models.tally import unit_period_tallies  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", type=Path)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--at", default="2026-03-10T16:00:00+07:00")
    ap.add_argument("--period", default="month:2026-03")
    args = ap.parse_args()
    at = datetime.fromisoformat(args.at)
    ctx = Context(now=at, calendar=WorkCalendar.default())
    rep = replay(itertools.islice(iter_lines(str(args.file)), args.events), ctx)
    stored = [encode_state(s) for s in rep.states.values()]
    unit_tallies = unit_period_tallies(tallies_of(rep.states.values(), ctx), args.period)

    started = time.perf_counter()
    views = [evaluate(decode_state(b), ctx) for b in stored]
    evaluated = time.perf_counter() - started
    counted = RiskPass(args.period, at)
    started = time.perf_counter()
    for v in views:
        if v is not None:
            counted.add(v)
    added = time.perf_counter() - started
    started = time.perf_counter()
    summary = counted.summary(unit_tallies)
    summed = time.perf_counter() - started

    n = len(stored)
    per = (evaluated + added) * 1e6 / n
    print(f"{n} dossiers ({args.file.name}, first {args.events} events)")
    print(f"  decode + evaluate  {evaluated * 1e6 / n:6.1f} µs/dossier")
    print(f"  RiskPass.add       {added * 1e6 / n:6.1f} µs/dossier")
    print(f"  summary            {summed * 1e3:6.1f} ms in all")
    print(f"  kept: {len(counted.groups)} candidate keys, {len(counted.ended)} ended keys; "
          f"{sum(summary.counts.values())} in the at-risk counts (dossier x indicator x horizon)")
    print(f"  -> {per:.1f} µs/dossier: {per:.0f} s per scan of a million dossiers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
