#!/usr/bin/env python3
"""RSS a worker's state adds per tracked dossier, up to a million dossiers, in-process, with no broker.

The memory goal (docs/benchmarks.md) is 300 bytes of RSS per tracked dossier at 1 M dossiers. The embedded broker
cannot hold a million dossiers' events and changelog for long (it rewrites a JSON snapshot of everything), and a
worker fed by it also holds the records it has fetched but not read. This script keeps only what the worker keeps
per dossier: each partition's RocksDB database, opened with the worker's own options (``WorkerSettings``), its
deadline schedule (a ``StoredSchedule`` database, or with ``--schedule-store memory`` a ``DeadlineSchedule``) and
``TallyBook``, and the processor's announced alerts. Records go through
``Processor.handle`` and are applied as ``Runtime._apply`` does; nothing else of Faust or Kafka is loaded.

    bench/state_memory.py                       # 1 M one-event (open) dossiers, bench/run's memory data set
    bench/state_memory.py --dossiers 200000 --checkpoints 50000,100000,200000
    bench/state_memory.py --schedule-store memory   # the schedule in Python objects, as before

The data set is ``var/bench/received-N.jsonl`` (written if missing, as ``bench/run``'s memory phase does): one
``received`` event per dossier, the worst case for memory, since every dossier stays open and scheduled. Prints,
at each checkpoint, RSS above the state-free start and what it comes to per dossier, with the entries held in
Python. The worker's fixed cost (interpreter, Faust, clients: ~200 MB) is measured by ``bench/run``, not here.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import zlib
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import AT, proc_memory, received_only, subject_of  # noqa: E402


def rss_bytes() -> int:
    return proc_memory()[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dossiers", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--checkpoints", default="100000,250000,500000,1000000")
    ap.add_argument("--data-dir", help="where the RocksDB databases go (default: a temporary directory, removed)")
    ap.add_argument("--schedule-store", choices=("rocksdb", "memory"), help="default: the worker's")
    args = ap.parse_args()

    from faust.stores.rocksdb import RocksDBOptions

    from streams.runtime.partitions import PartitionState, _table_key
    from streams.runtime.clock import DeadlineSchedule
    from streams.runtime.processor import Processor
    from streams.runtime.settings import WorkerSettings
    from streams.runtime.stored_schedule import StoredSchedule

    data = ROOT / "var" / "bench" / f"received-{args.dossiers}.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    received_only(data, args.dossiers)
    checkpoints = sorted({int(c) for c in args.checkpoints.split(",") if int(c) <= args.dossiers} | {args.dossiers})
    now = datetime.fromisoformat(AT)
    # The worker's settings, ONESTOP_ROCKSDB_* and ONESTOP_SCHEDULE_STORE from the environment included.
    settings = WorkerSettings.from_env(**({"schedule_store": args.schedule_store} if args.schedule_store else {}))
    options = RocksDBOptions(**settings.store_options)
    print(f"RocksDB per partition: {settings.rocksdb_block_cache_mib} MiB block cache, "
          f"{settings.rocksdb_write_buffers} x {settings.rocksdb_write_buffer_mib} MiB memtables; "
          f"{args.partitions} partitions; deadline schedules in {settings.schedule_store}")

    with tempfile.TemporaryDirectory(prefix="state-memory-", dir=args.data_dir) as tmp:
        dbs = [options.open(Path(tmp) / f"dossiers-{p}.db") for p in range(args.partitions)]
        def schedule(p: int) -> DeadlineSchedule | StoredSchedule:
            if settings.schedule_store == "rocksdb":
                return StoredSchedule(now, Path(tmp) / f"schedule-{p}")
            return DeadlineSchedule(now)

        states = [PartitionState(p, now, False, schedule(p)) for p in range(args.partitions)]
        processor = Processor()
        with open(data, "rb") as fh:  # warm the calendar, catalogue and memos on one event, then forget it
            processor.handle(fh.readline().strip(), None, now)
        processor = Processor()
        gc.collect()
        base = rss_bytes()
        print(f"RSS before any dossier: {base / 2**20:.0f} MiB")
        held = alerts = 0
        with open(data, "rb") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                key = subject_of(line)
                code = key.decode()
                p = zlib.crc32(key) % args.partitions
                db, state = dbs[p], states[p]
                tkey = _table_key(code)
                stored = db.get(tkey)
                outcome = processor.handle(line, stored, now, key=code)
                if outcome.dead_letter is not None:
                    raise SystemExit(f"refused {code}: {outcome.dead_letter}")
                if outcome.state is not None:
                    db.put(tkey, outcome.state)
                    if stored is None:
                        state.dossiers += 1
                state.held += outcome.held_delta
                if outcome.tally_delta:
                    state.tallies.add(outcome.tally_delta)
                alerts += len(outcome.alerts)
                state.schedule.schedule(code, outcome.next_check_at)
                held += 1
                if held == checkpoints[0]:
                    checkpoints.pop(0)
                    gc.collect()
                    grown = rss_bytes() - base
                    scheduled = sum(len(s.schedule) for s in states)
                    heap = sum(len(getattr(s.schedule, "_heap", ())) for s in states)
                    print(f"{held:>9,} dossiers: RSS +{grown / 2**20:6.0f} MiB = {grown / held:5.0f} B per dossier; "
                          f"{scheduled:,} scheduled ({heap:,} Python heap entries), "
                          f"{len(processor._announced):,} with announced alerts, {alerts:,} alerts", flush=True)
        for db in dbs:
            db.close()
        for state in states:
            close = getattr(state.schedule, "close", None)
            if close is not None:
                close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
