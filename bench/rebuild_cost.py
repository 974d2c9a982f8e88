#!/usr/bin/env python3
"""Per-dossier cost of rebuilding a partition's tallies and deadline schedule, in-process, with no broker.

A restart, a rebalance or a new calendar makes the worker visit every dossier it holds: a ``Processor.rebuilder``
fed the stored bytes, the next checks into the deadline schedule (a ``StoredSchedule`` database, as the worker
keeps it, or with ``--schedule-store memory`` a ``DeadlineSchedule``), the summed tallies into a ``TallyBook``
(``Runtime._rebuild`` without the RocksDB scan of the table). At a million dossiers this loop is most of the time
from ``kill -9`` to exact figures once the local tables are kept (docs/reliability.md 4.14), so it is measured alone.

    bench/rebuild_cost.py FILE [--events N] [--repeats 3] [--schedule-store memory]

FILE is an event log (``onestop simulate`` output; bench/run writes ``var/bench/events-1m.jsonl``). The states
come from ``onestop score``'s replay of its first N events, ``now`` at the end of the data set. Prints the median
and spread of microseconds per dossier over separate processes (the calendar and period memos cold, as in a
restarted worker), and a digest of the tallies as a check that runs agree.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.dossier import encode_state, pack_settled
from models.evaluation import evaluate, next_change_at  # noqa: E402
from models.figures import iter_lines, replay  # noqa: E402
from streams.runtime.clock import DeadlineSchedule  # noqa: E402
from streams.runtime.settings import WorkerSettings  # noqa: E402
from streams.runtime.stored_schedule import StoredSchedule  # noqa: E402
from streams.runtime.tallies import TallyBook  # noqa: E402
from models.tally import settled_of, settled_stamp  # noqa: E402
from streams.runtime.processor import Processor  # noqa: E402

END = "2026-03-10T16:00:00+07:00"


def once(file: str, events: int, settled: bool, schedule_store: str) -> None:
    """One rebuild in this process, with the calendar and period memos cold, as in a restarted worker."""
    now = datetime.fromisoformat(END)
    processor = Processor()
    ctx = processor.context(now)
    replayed = replay(islice(iter_lines(file), events), ctx)
    stamp = settled_stamp(processor.calendar.version, processor.config)
    stored = []
    for code, dossier in replayed.states.items():
        if settled:  # as the worker stores a dossier (Processor.handle), counted at ``now``
            view = evaluate(dossier, ctx)
            dossier.settled = pack_settled(settled_of(view, now, stamp, next_change_at(dossier, ctx, view)))
        stored.append((code, encode_state(dossier)))
    dossier = None
    lines = replayed.lines
    del replayed  # a restarted worker holds no decoded history: leave none for the collector to walk
    gc.collect()
    for memo in _memos():
        if memo is not settled_stamp:
            memo.cache_clear()  # the replay above filled them; a restarted worker starts without
    scratch = tempfile.TemporaryDirectory(prefix="rebuild-cost-")
    schedule = StoredSchedule(now, Path(scratch.name) / "s") if schedule_store == "rocksdb" else DeadlineSchedule(now)
    book, held = TallyBook(), 0
    started = time.perf_counter()
    # The catch-up window reaches back from ``now``; dossiers that ended in it are evaluated as the worker would.
    rebuild = processor.rebuilder(now)
    clock, in_rows, in_others = time.perf_counter, 0.0, 0.0
    for code, value in stored:
        counted = rebuild.settled + rebuild.standing
        t0 = clock()
        is_held, check, _unannounced = rebuild.add(value)
        held += is_held
        if check is not None:  # as PartitionState.count_restored
            schedule.load(code, check)
        if rebuild.settled + rebuild.standing != counted:
            in_rows += clock() - t0
        else:
            in_others += clock() - t0
    t0 = clock()
    book.add(rebuild.tallies())
    summing = clock() - t0
    seconds = time.perf_counter() - started
    from_rows = rebuild.settled + rebuild.standing
    evaluated = len(stored) - from_rows
    digest = hashlib.blake2b(repr(sorted(book.as_dict().items())).encode(), digest_size=6).hexdigest()
    print(json.dumps({"dossiers": len(stored), "events": lines, "us": seconds / len(stored) * 1e6,
                      "settled": rebuild.settled, "standing": rebuild.standing,
                      "bytes": sum(len(v) for _c, v in stored) / len(stored),
                      "us_rows": in_rows / from_rows * 1e6 if from_rows else None,
                      "us_others": in_others / evaluated * 1e6 if evaluated else None,
                      "ms_summing": summing * 1e3,
                      "scheduled": len(schedule), "held": held, "digest": digest}))
    if isinstance(schedule, StoredSchedule):
        schedule.close()
    scratch.cleanup()


def _memos() -> list:
    from models import calendar, dossier, tally

    return [f for mod in (calendar, dossier, tally) for f in vars(mod).values() if hasattr(f, "cache_clear")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--without-settled", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--schedule-store", choices=("rocksdb", "memory"), default=WorkerSettings().schedule_store,
                    help="where the deadline schedule is rebuilt (default: the worker's)")
    args = ap.parse_args()
    if args.once:
        once(args.file, args.events, not args.without_settled, args.schedule_store)
        return
    digests = set()
    for label, flag in (("stored as the worker stores them", []), ("without stored rows", ["--without-settled"])):
        runs = []
        for _ in range(args.repeats):  # one process per run: nothing warm from the previous one
            out = subprocess.run([sys.executable, __file__, args.file, "--events", str(args.events), "--once",
                                  "--schedule-store", args.schedule_store, *flag],
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout))
        us = [r["us"] for r in runs]
        digests |= {r["digest"] for r in runs}
        r = runs[0]
        parts = [f"{statistics.median(x[k] for x in runs):.1f} us per {what}" for k, what in
                 (("us_rows", "dossier from its rows"), ("us_others", "other")) if r[k] is not None]
        parts.append(f"{statistics.median(x['ms_summing'] for x in runs):.0f} ms summing the tallies")
        split = f" ({', '.join(parts)})"
        print(f"{label}: {r['dossiers']} dossiers from {r['events']} events, counted from their stored rows: "
              f"{r['settled']} ended, {r['standing']} open; {r['bytes']:.0f} bytes each: rebuild "
              f"{statistics.median(us):.1f} us per dossier (min {min(us):.1f}, max {max(us):.1f}, {len(us)} "
              f"processes){split}; checks scheduled {r['scheduled']}, held {r['held']}, tallies digest {r['digest']}")
    assert len(digests) == 1, f"rebuilds disagree: {sorted(digests)}"


if __name__ == "__main__":
    main()
