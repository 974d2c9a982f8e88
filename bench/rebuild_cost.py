#!/usr/bin/env python3
"""Per-dossier cost of rebuilding a partition's tallies and deadline schedule, in-process, with no broker.

A restart, a rebalance or a new calendar makes the worker visit every dossier it holds: a ``Processor.rebuilder``
fed the stored bytes, the next checks into a ``DeadlineSchedule``, the summed tallies into a ``TallyBook``
(``Runtime._rebuild`` without the RocksDB scan). At a million dossiers this loop is most of the time from
``kill -9`` to exact figures once the local tables are kept (docs/reliability.md 4.14), so it is measured alone.

    bench/rebuild_cost.py FILE [--events N] [--repeats 3]

FILE is an event log (``onestop simulate`` output; bench/run writes ``var/bench/events-1m.jsonl``). The states
come from ``onestop score``'s replay of its first N events, ``now`` at the end of the data set. Prints the median
and spread of microseconds per dossier over separate processes (the calendar and period memos cold, as in a
restarted worker), and a digest of the tallies as a check that runs agree.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from datetime import datetime
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.calendar import WorkCalendar  # noqa: E402
from models.dossier import Context, encode_state  # noqa: E402
from models.figures import iter_lines, replay  # noqa: E402
from streams.clock import DeadlineSchedule  # noqa: E402
from streams.metrics import TallyBook  # noqa: E402
from streams.processor import Processor  # noqa: E402

END = "2026-03-10T16:00:00+07:00"


def once(file: str, events: int) -> None:
    """One rebuild in this process, with the calendar and period memos cold, as in a restarted worker."""
    now = datetime.fromisoformat(END)
    replayed = replay(islice(iter_lines(file), events), Context(now=now, calendar=WorkCalendar.default()))
    stored = [(code, encode_state(s)) for code, s in replayed.states.items()]
    for memo in _memos():
        memo.cache_clear()  # the replay above filled them; a restarted worker starts without
    book, schedule, held = TallyBook(), DeadlineSchedule(now), 0
    started = time.perf_counter()
    rebuild = Processor().rebuilder(now)
    for code, value in stored:
        is_held, check, _unannounced = rebuild.add(value)
        held += is_held
        schedule.schedule(code, check)
    book.add(rebuild.tallies())
    seconds = time.perf_counter() - started
    digest = hashlib.blake2b(repr(sorted(book.as_dict().items())).encode(), digest_size=6).hexdigest()
    print(json.dumps({"dossiers": len(stored), "events": replayed.lines, "us": seconds / len(stored) * 1e6,
                      "scheduled": len(schedule), "held": held, "digest": digest}))


def _memos() -> list:
    from models import calendar, dossier, tally

    return [f for mod in (calendar, dossier, tally) for f in vars(mod).values() if hasattr(f, "cache_clear")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.once:
        once(args.file, args.events)
        return
    runs = []
    for _ in range(args.repeats):  # one process per run: nothing warm from the previous one
        out = subprocess.run([sys.executable, __file__, args.file, "--events", str(args.events), "--once"],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout))
    us = [r["us"] for r in runs]
    assert len({r["digest"] for r in runs}) == 1, "runs disagree"
    r = runs[0]
    print(f"{r['dossiers']} dossiers from {r['events']} events: rebuild {statistics.median(us):.1f} us per dossier "
          f"(min {min(us):.1f}, max {max(us):.1f}, {len(us)} processes); checks scheduled {r['scheduled']}, "
          f"held {r['held']}, tallies digest {r['digest']}")


if __name__ == "__main__":
    main()
