#!/usr/bin/env python3
"""Bytes one open dossier costs in a partition's in-memory deadline schedule (``streams.runtime.clock.DeadlineSchedule``).

The memory goal (docs/benchmarks.md) is 300 bytes of RSS per tracked dossier; the dossier states live in RocksDB,
but in this schedule every open dossier's next check is a Python heap entry and a dict entry keyed by its code.
That is why the worker keeps the schedule in RocksDB (``streams.runtime.stored_schedule``; ``bench/state_memory.py``
measures both) whenever its table is there; the memory store still uses this one. Measured with tracemalloc on
``--entries`` dossiers with codes of the simulator's length, once freshly scheduled and once after every dossier was
rescheduled ``--moves`` times (stale heap entries wait for the next compaction, at twice the live entries).

    bench/schedule_memory.py
    bench/schedule_memory.py --entries 1000000

Prints figures only.
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.calendar import TZ  # noqa: E402
from streams.runtime.clock import DeadlineSchedule  # noqa: E402


def traced(build) -> tuple[object, int]:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return kept, after - before


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--moves", type=int, default=3, help="reschedules per dossier in the second measurement")
    args = ap.parse_args()
    start = datetime(2026, 3, 10, 16, tzinfo=TZ)
    n = args.entries

    def fresh() -> DeadlineSchedule:
        schedule = DeadlineSchedule(start)
        for i in range(n):  # codes as the simulator writes them; each check a distinct aware datetime
            schedule.schedule(f"G22.{i % 120:03d}-251201-{i:06d}", start + timedelta(seconds=37 * i))
        return schedule

    schedule, size = traced(fresh)
    print(f"{n:,} open dossiers freshly scheduled: {size / n:.0f} bytes each (code, datetime, heap and dict entries)")

    def moved() -> None:
        codes = schedule.codes()
        for move in range(1, args.moves + 1):
            for i, code in enumerate(codes):
                schedule.schedule(code, start + timedelta(seconds=37 * i + move))

    _, grown = traced(moved)
    print(f"after {args.moves} reschedules of each: {(size + grown) / n:.0f} bytes each "
          f"({len(schedule._heap):,} heap entries for {len(schedule):,} dossiers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
