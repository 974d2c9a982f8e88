#!/usr/bin/env python3
"""Bytes per dossier of the processor's memory of announced alerts, in a dictionary and in RocksDB.

A worker remembers, for every dossier with an active alert, which alerts it announced (``Processor._announced``),
so that an alert goes out once. Each announced dossier costs Python objects in a dictionary; with
``streams.runtime.stored_schedule.StoredAnnouncements`` (the worker's default with the RocksDB store) one key and value in
a scratch database. This feeds the first N one-event dossiers of a data set through ``Processor.handle`` at its
end, then announces every one's alerts (as the clock or a restart does) and prints what the announcing added to
the process's RSS, then, in other runs, to Python's allocations (tracemalloc). One process per figure.

    bench/announced_memory.py [var/bench/received-1000000.jsonl] [--dossiers 50000]
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import tempfile
import tracemalloc
from datetime import datetime
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import AT, proc_memory  # noqa: E402
from streams.runtime.processor import Processor  # noqa: E402
from streams.runtime.stored_schedule import StoredAnnouncements  # noqa: E402


def measure(file: str, dossiers: int, stored: bool, trace: bool) -> None:
    now = datetime.fromisoformat(AT)  # the data set's end
    processor = Processor(view_memo_size=0)
    scratch = tempfile.TemporaryDirectory(prefix="announced-")
    store = StoredAnnouncements(Path(scratch.name) / "a") if stored else None
    if store is not None:
        processor.keep_announced_in(store)
    with open(file, "rb") as fh:
        states = [processor.handle(line, None, now).state for line in islice(fh, dossiers)]
    gc.collect()
    rss_before = proc_memory()[0]
    if trace:
        tracemalloc.start()  # its own bookkeeping grows the RSS: the RSS figure comes from a run without it
        before = tracemalloc.take_snapshot()
    alerting = 0
    for state in states:
        alerting += bool(processor.announce(state, now))
    gc.collect()
    label = "RocksDB (StoredAnnouncements)" if stored else "dictionary"
    if trace:
        added = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
        tracemalloc.stop()
        print(f"{label}: {alerting} of {len(states)} dossiers announced alerts; Python allocations "
              f"{added / alerting:.0f} bytes per announced dossier (the evaluation memos included)")
    else:
        rss = proc_memory()[0] - rss_before
        print(f"{label}: {alerting} of {len(states)} dossiers announced alerts; RSS {rss / alerting:.0f} bytes "
              f"per announced dossier")
    if store is not None:
        store.close()
    scratch.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", default=str(ROOT / "var/bench/received-1000000.jsonl"))
    ap.add_argument("--dossiers", type=int, default=50_000)
    ap.add_argument("--store", choices=("dict", "rocksdb", "both"), default="both")
    ap.add_argument("--trace", action="store_true", help="count Python allocations (tracemalloc) instead of RSS")
    args = ap.parse_args()
    if args.store != "both":
        measure(args.file, args.dossiers, args.store == "rocksdb", args.trace)
        return
    for trace in ([], ["--trace"]):
        for store in ("dict", "rocksdb"):  # one process each: memory one run freed would flatter the next
            subprocess.run([sys.executable, __file__, args.file, "--dossiers", str(args.dossiers), "--store", store,
                            *trace], check=True)


if __name__ == "__main__":
    main()
