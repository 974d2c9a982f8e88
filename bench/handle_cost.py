#!/usr/bin/env python3
"""Per-event cost of ``Processor.handle``, in-process, with no broker: where the worker's domain time goes.

Feeds an event log through a fresh ``Processor`` the way the worker does (stored bytes in, new bytes out, deltas
added into running tallies) and prints microseconds per event, median of ``--repeats`` runs. Two clocks:

- ``replay``: ``now`` fixed at the log's end, as the benchmark worker's file clock is (history loaded at once);
- ``live``: ``now`` just after each event's time, as a worker keeping up with the province sees it.

A second, instrumented pass wraps every ``models`` function the processor module calls and prints the time spent
in each (wrapping costs ~0.2 µs per call, so parts add up to a bit more than the plain figure). The line
``digest`` hashes the final tallies, the stored facts and the alerts, so two trees can be checked to agree.

    bench/handle_cost.py                                   # bundled sample + /tmp/perf_sim.jsonl if present
    bench/handle_cost.py --tree /tmp/before FILE ...       # measure another checkout's models/ and streams/
    bench/handle_cost.py --against /tmp/before --repeats 3 # before/after interleaved, one process per run
    python -m streams.tools.cli simulate --out /tmp/perf_sim.jsonl --dossiers-per-day 500 --start 2025-12-01

Prints figures only, never asserts: timings on a shared VM vary by tens of percent, so compare medians.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
END = "2026-03-10T16:00:00+07:00"


def subject(line: bytes) -> str | None:
    if b'"subject":"' not in line:
        return None
    return line.split(b'"subject":"', 1)[1].split(b'"', 1)[0].decode()


def event_time(line: bytes) -> datetime:
    return datetime.fromisoformat(line.split(b'"time":"', 1)[1].split(b'"', 1)[0].decode())


KEEP_WARM = ("_default_calendar", "_baseline_year")  # loading files and generating holidays: start-up, not per event


def clear_model_caches() -> None:
    """Every run starts with cold memo caches (a worker's start), so a repeat cannot reuse the previous run's."""
    for name, module in list(sys.modules.items()):
        if name == "models" or name.startswith("models."):
            for attr, fn in list(vars(module).items()):
                if hasattr(fn, "cache_clear") and attr not in KEEP_WARM:
                    fn.cache_clear()


def feed(processor_cls, lines, nows) -> tuple[float, str]:
    """One pass through a fresh processor; returns (seconds inside handle, digest of the outcome)."""
    from models.tally import add_into

    clear_model_caches()
    p = processor_cls()
    store: dict[str, bytes] = {}
    tallies: dict = {}
    alerts = 0
    handle = p.handle
    spent = 0.0
    clock = time.perf_counter
    for line, now in zip(lines, nows):
        code = subject(line)
        stored = store.get(code)
        t0 = clock()
        o = handle(line, stored, now, key=code)
        spent += clock() - t0
        if o.state is not None:
            store[o.dossier_code] = o.state
        add_into(tallies, o.tally_delta)
        alerts += len(o.alerts)
    h = hashlib.sha256()
    h.update(repr(sorted(tallies.items())).encode())
    for code in sorted(store):  # the facts stored; settled rows are derived from them and the counting code
        facts = msgspec.msgpack.decode(store[code])
        facts.pop("settled", None)
        h.update(msgspec.msgpack.encode(facts))
    h.update(str(alerts).encode())
    return spent, f"{h.hexdigest()[:16]} alerts={alerts} dossiers={len(store)}"


def instrumented(processor_cls, lines, nows) -> dict[str, float]:
    """Seconds per wrapped ``models`` callable during one pass (calls nested in another wrapped one count twice)."""
    import streams.runtime.processor as sp
    from models import events as ev

    spent: dict[str, float] = {}
    originals = []

    def wrap(owner, name, fn):
        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0
        originals.append((owner, name, fn))
        setattr(owner, name, timed)

    wrap(ev, "decode_event", ev.decode_event)
    for name, fn in list(vars(sp).items()):
        if callable(fn) and getattr(fn, "__module__", "").startswith("models.") and not isinstance(fn, type) \
                and name not in ("load_catalogue", "document_from_tallies", "combine"):
            wrap(sp, name, fn)
    try:
        total, _ = feed(processor_cls, lines, nows)
    finally:
        for owner, name, fn in reversed(originals):
            setattr(owner, name, fn)
    spent["handle (instrumented total)"] = total
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="event logs (JSON lines); default: the bundled sample and "
                                             "/tmp/perf_sim.jsonl when it exists")
    ap.add_argument("--tree", default=str(ROOT), help="checkout whose models/ and streams/ are measured")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--events", type=int, default=0, help="use only the first N lines of each file")
    ap.add_argument("--modes", default="replay,live")
    ap.add_argument("--no-parts", action="store_true")
    ap.add_argument("--against", metavar="DIR", help="a checkout to compare with (``before``): runs alternate "
                                                      "between it and --tree, one fresh process per run")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one result line per file and mode
    args = ap.parse_args()
    if args.against:
        return compare(args)

    sys.path.insert(0, args.tree)
    import models
    from streams.runtime.processor import Processor

    print(f"tree: {Path(models.__file__).parents[1]}")
    files = args.files or [str(ROOT / "samples" / "sample-events.jsonl")] + \
        [f for f in ("/tmp/perf_sim.jsonl",) if Path(f).exists()]
    Processor()  # warm the default calendar and catalogue, shared by every processor
    for path in files:
        with open(path, "rb") as fh:
            lines = [ln.strip() for ln in fh if ln.strip()]
        if args.events:
            lines = lines[:args.events]
        end = max(datetime.fromisoformat(END), max(event_time(ln) for ln in lines))
        for mode in args.modes.split(","):
            nows = [end] * len(lines) if mode == "replay" else [event_time(ln) + timedelta(seconds=1) for ln in lines]
            runs, digest = [], ""
            for _ in range(args.repeats):
                spent, digest = feed(Processor, lines, nows)
                runs.append(spent / len(lines) * 1e6)
            if args.json:
                print(json.dumps({"file": Path(path).name, "mode": mode, "us": runs, "digest": digest}), flush=True)
                continue
            print(f"{Path(path).name} [{mode}] {len(lines)} events: handle {statistics.median(runs):.1f} µs/event "
                  f"(min {min(runs):.1f}, max {max(runs):.1f}, {args.repeats} runs)  digest {digest}", flush=True)
            if not args.no_parts:
                parts = instrumented(Processor, lines, nows)
                for name, s in sorted(parts.items(), key=lambda kv: -kv[1]):
                    print(f"    {name:<28} {s / len(lines) * 1e6:7.1f} µs/event")


def compare(args) -> None:
    """Interleave before and after so that the machine's load drifts over both alike; medians per file and mode."""
    trees = {"before": args.against, "after": args.tree}
    results: dict[tuple[str, str, str], list[float]] = {}
    digests: dict[tuple[str, str, str], str] = {}
    for i in range(args.repeats):
        for name, tree in trees.items():
            cmd = [sys.executable, __file__, "--tree", tree, "--repeats", "1", "--no-parts", "--json",
                   "--modes", args.modes, "--events", str(args.events), *args.files]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd="/")
            for line in out.stdout.splitlines():
                if line.startswith("{"):
                    r = json.loads(line)
                    key = (r["file"], r["mode"], name)
                    results.setdefault(key, []).extend(r["us"])
                    digests[key] = r["digest"]
                    print(f"run {i + 1} {name:<6} {r['file']} [{r['mode']}] {r['us'][0]:.1f} µs/event", flush=True)
    print("median µs/event per handle (min-max):")
    for (file, mode) in dict.fromkeys((f, m) for f, m, _ in results):
        b, a = results[(file, mode, "before")], results[(file, mode, "after")]
        same = "same figures" if digests[(file, mode, "before")] == digests[(file, mode, "after")] else "FIGURES DIFFER"
        print(f"  {file} [{mode}]: before {statistics.median(b):.1f} ({min(b):.1f}-{max(b):.1f})  after "
              f"{statistics.median(a):.1f} ({min(a):.1f}-{max(a):.1f})  x{statistics.median(b) / statistics.median(a):.2f}"
              f"  {same}")


if __name__ == "__main__":
    main()
