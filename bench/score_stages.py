#!/usr/bin/env python3
"""Where a batch ``onestop score`` spends its time, stage by stage: reading lines, decoding and validating them,
folding them into dossier states, and scoring the states (evaluate, tallies, 766 table, JSON).

Each stage runs alone over the whole file, best of ``--repeats`` (after one warm-up), in-process (no interpreter
start-up, which ``bench/run``'s score figure includes). ``--tree`` measures another checkout's ``models/``, so a
change can be compared with the code before it on the same file:

    .venv/bin/python bench/score_stages.py var/bench/events-quick.jsonl
    .venv/bin/python bench/score_stages.py var/bench/events-quick.jsonl --tree /tmp/before

Prints figures only, never asserts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

END = "2026-03-10T16:00:00+07:00"


def best(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", type=Path)
    ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--at", default=END)
    ap.add_argument("--period", default="month:2026-03")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, str(args.tree))
    from datetime import datetime

    import models
    from models import events as ev
    from models.calendar import WorkCalendar
    from models.dossier import Context, apply
    from models.figures import iter_lines, replay, score_document, to_json

    assert models.__file__.startswith(str(args.tree)), models.__file__
    ctx = Context(now=datetime.fromisoformat(args.at), calendar=WorkCalendar.default())
    lines = [line for _n, line in iter_lines(str(args.file))]
    events = [ev.decode_event(line) for line in lines]

    def fold() -> None:
        states: dict = {}
        for e in events:
            state, _effects = apply(states.get(e.subject), e, ctx)
            states[e.subject] = state

    replayed = replay(iter_lines(str(args.file)), ctx)
    stages = {
        "read": best(lambda: list(iter_lines(str(args.file))), args.repeats),
        "decode": best(lambda: [ev.decode_event(line) for line in lines], args.repeats),
        "apply": best(fold, args.repeats),
        "score": best(lambda: to_json(score_document(replayed, args.period, ctx)), max(1, args.repeats // 2)),
    }
    total = sum(stages.values())
    n = len(lines)
    print(f"tree {args.tree}: {n} events, {len(replayed.states)} dossiers")
    for name, seconds in stages.items():
        print(f"  {name:7s} {seconds * 1e6 / n:6.2f} µs/event  {100 * seconds / total:5.1f} %")
    print(f"  total   {total * 1e6 / n:6.2f} µs/event  -> {n / total:,.0f} events/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
