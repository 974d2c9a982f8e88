#!/usr/bin/env python3
"""Batch score throughput of two trees of ``models/``, interleaved so that machine noise hits both alike.

Usage: ``bench/ab_score.py FILE BEFORE_DIR [AFTER_DIR]`` where BEFORE_DIR holds an older ``models/``, e.g. made
with ``git archive <commit> models | tar -x -C BEFORE_DIR``. Timed in-process (replay + score + JSON), without
interpreter start-up, which ``bench/run`` includes.
"""
import statistics
import subprocess
import sys
from pathlib import Path

BEFORE = sys.argv[2]
AFTER = sys.argv[3] if len(sys.argv) > 3 else str(Path(__file__).resolve().parents[1])
runs = {"before": [], "after": []}
for i in range(3):
    for name, pp in (("before", BEFORE), ("after", AFTER)):
        out = subprocess.run([sys.executable, "-c", f"""
import sys; sys.path.insert(0, {pp!r})
import time, models
assert models.__file__.startswith({pp!r}), models.__file__
from datetime import datetime
from models.calendar import WorkCalendar
from models.dossier import Context
from models.figures import iter_lines, replay, score_document, to_json
ctx = Context(now=datetime.fromisoformat("2026-03-10T16:00:00+07:00"), calendar=WorkCalendar.default())
t0 = time.perf_counter(); rep = replay(iter_lines({sys.argv[1]!r}), ctx); t1 = time.perf_counter()
doc = score_document(rep, "month:2026-03", ctx); to_json(doc); t2 = time.perf_counter()
print(rep.lines / (t2 - t0), t1 - t0, t2 - t1)
"""], capture_output=True, text=True, cwd="/tmp")
        eps, rp, sc = map(float, out.stdout.split())
        runs[name].append((eps, rp, sc))
        print(name, f"{eps:.0f} ev/s replay {rp:.2f}s score {sc:.2f}s", flush=True)
for k, v in runs.items():
    print(k, "median ev/s", round(statistics.median(x[0] for x in v)), "min", round(min(x[0] for x in v)), "max", round(max(x[0] for x in v)))
