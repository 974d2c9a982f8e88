#!/usr/bin/env python3
"""Cost of one /metrics scrape as the worker renders it, in-process, with no broker: after a first (cold) scrape,
``--events-between`` more events go through the processor before each of ``--scrapes`` scrapes, which is what a
scrape every 0.25 s sees at 1,000 ev/s with 250 (the latency phase of bench/run), and at 100 ev/s with 25.

The tallies are split over four books, as a worker with four partitions holds them. Prints the milliseconds of
``render`` (median, min, max), the body size and sample count; ``--tree`` measures another checkout's
``streams/`` and ``models/`` (``git worktree add /tmp/before HEAD~1``), so before and after can be run in turn.

    bench/scrape_cost.py                                  # 30 k events of bench/run's data set, then 250 between scrapes
    bench/scrape_cost.py --events-between 25
    bench/scrape_cost.py --tree /tmp/before

Prints figures only, never asserts: the same run varies by tens of percent on a shared VM, so run each side
several times and compare medians.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from handle_cost import subject  # noqa: E402  (the dossier code of a raw CloudEvent line, as handle_cost reads it)

END = "2026-03-10T16:00:00+07:00"
BOOKS = 4


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE.parent / "var" / "bench" / "events-1m.jsonl")
    ap.add_argument("--events", type=int, default=30_000, help="events applied before the first scrape")
    ap.add_argument("--events-between", type=int, default=250)
    ap.add_argument("--scrapes", type=int, default=40)
    ap.add_argument("--tree", type=Path, default=HERE.parent, help="checkout whose streams/ and models/ are measured")
    args = ap.parse_args()
    if not args.data.exists():
        print(f"no data at {args.data}: run bench/run once to make it (or pass --data)")
        return 1
    sys.path.insert(0, str(args.tree.resolve()))
    from streams.runtime.tallies import PipelineHealth, TallyBook
    from streams.serve.metrics import new_registry, render
    from streams.runtime.processor import Processor

    need = args.events + args.events_between * args.scrapes
    with args.data.open("rb") as f:
        lines = [line.rstrip(b"\n") for line in itertools.islice(f, need)]
    if len(lines) < need:
        print(f"{args.data} has {len(lines):,} events, {need:,} needed")
        return 1
    now = datetime.fromisoformat(END)
    processor, store, books = Processor(), {}, [TallyBook() for _ in range(BOOKS)]

    def feed(chunk: list[bytes]) -> None:
        for line in chunk:
            code = subject(line)
            outcome = processor.handle(line, store.get(code), now, key=code)
            if outcome.state is not None:
                store[code] = outcome.state
            if outcome.tally_delta:
                books[hash(code) % BOOKS].add(outcome.tally_delta)

    class Clock:
        def now(self) -> datetime:
            return now

    class Runtime:
        clock, health = Clock(), PipelineHealth()

        def __init__(self) -> None:
            self.processor = processor

        def tally_books(self) -> list:
            return books

        def stats(self) -> dict:
            return {"dossiers": len(store)}

    registry = new_registry(Runtime(), process_metrics=False)
    feed(lines[:args.events])
    gc.collect()
    t = time.perf_counter()
    body = render(registry)
    cold = time.perf_counter() - t
    took = []
    for i in range(args.scrapes):
        start = args.events + i * args.events_between
        feed(lines[start:start + args.events_between])
        gc.collect()  # a collection belongs to whatever allocated, not to the scrape it happens to land in
        t = time.perf_counter()
        body = render(registry)
        took.append(time.perf_counter() - t)
    samples = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
    print(f"tree {args.tree}: first scrape {1000 * cold:.1f} ms; then {args.events_between} events between scrapes: "
          f"median {1000 * statistics.median(took):.1f} ms (min {1000 * min(took):.1f}, max {1000 * max(took):.1f}) "
          f"over {len(took)} scrapes; {len(body):,} bytes, {samples:,} samples, {len(store):,} dossiers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
