"""One benchmark run: batch score, baselines A/B/C and the product P on one embedded broker, then latency,
memory, recovery and the overdue-alert delay, ending with a one-line summary.

Everything binds to 127.0.0.1, every child is started here and ended by its PID, and every wait is bounded, so a
run always stops by itself. Figures are printed as they are measured and written as JSON to ``--out`` so a run
that is cut short still leaves its partial results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streams.tools.broker import EmbeddedBroker, free_port  # noqa: E402
from streams.runtime.settings import WorkerSettings  # noqa: E402
from streams.runtime.topics import ensure_topics  # noqa: E402

PY = sys.executable
AT = "2026-03-10T16:00:00+07:00"  # the simulator's default end: every generated event is at or before it
PARTITIONS = 4
RESULTS: dict[str, Any] = {}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def record(key: str, value: Any, out: Path) -> None:
    RESULTS[key] = value
    out.write_text(json.dumps(RESULTS, indent=2, default=str))


def spread(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "runs": values}


def fmt(s: dict, unit: str = "", nd: int = 0) -> str:
    if not s.get("n"):
        return "n/a"
    f = f"{{:.{nd}f}}"
    return f"{f.format(s['median'])}{unit} (min {f.format(s['min'])}, max {f.format(s['max'])}, n={s['n']})"


# ---------------------------------------------------------------------------------------------------------------
# data


def simulate(path: Path, dossiers_per_day: float, start: str) -> None:
    if path.exists():
        return
    log(f"simulating {path.name} ({dossiers_per_day}/day from {start})")
    subprocess.run([PY, "-m", "streams.tools.cli", "simulate", "--out", str(path) + ".tmp", "--dossiers-per-day",
                    str(dossiers_per_day), "--start", start, "--end", AT], cwd=REPO, check=True, timeout=1800)
    os.replace(str(path) + ".tmp", path)


def received_only(path: Path, n: int) -> None:
    """n one-event dossiers (``received`` only): the cheapest way to hold a given number of open dossiers."""
    if path.exists():
        return
    from models.events import event_to_json, make_envelope

    log(f"writing {n} received-only dossiers to {path.name}")
    end = datetime.fromisoformat(AT)
    with open(str(path) + ".tmp", "wb") as fh:
        for i in range(n):
            unit = f"T98.X{i % 120:03d}"
            t = end - timedelta(minutes=1 + (i * 7) % (60 * 24 * 40))
            data = {"procedure_code": "1.001193", "handling_unit_code": unit, "receiving_unit_code": unit,
                    "channel": ("online", "direct", "postal")[i % 3], "received_at": t.isoformat(),
                    "time_limit": {"value": 3 + i % 10, "unit": "working_day"}, "province_code": "T98",
                    "unit_level": "commune", "has_fee": i % 2 == 0, "result_is_paper_document": True}
            fh.write(event_to_json(make_envelope("received", event_id=f"mem-{i}", source="igate.bench",
                                                 subject=f"{unit}-M{i:08d}", time=t, data=data)) + b"\n")
    os.replace(str(path) + ".tmp", path)


def read_lines(path: Path, limit: int | None = None) -> list[bytes]:
    out = []
    with open(path, "rb") as fh:
        for line in fh:
            line = line.strip()
            if line:
                out.append(line)
                if limit is not None and len(out) >= limit:
                    break
    return out


def subject_of(line: bytes) -> bytes:
    m = re.search(rb'"subject":"([^"]+)"', line)
    return m.group(1) if m else b"unreadable"


@contextmanager
def preloaded_broker(run_dir: Path, prefix: str, lines: list[bytes]) -> Iterator[tuple[EmbeddedBroker, WorkerSettings]]:
    """An embedded broker on 127.0.0.1 whose events topic for ``prefix`` (``PARTITIONS`` partitions) holds ``lines``,
    and the workers' settings for it; the broker is stopped on exit (bench/transactions_p.py, bench/scale_out.py)."""
    broker = EmbeddedBroker(data_dir=run_dir / "broker").start()
    try:
        settings = WorkerSettings(broker=broker.bootstrap, topic_prefix=prefix, app_id=prefix + "app",
                                  partitions=PARTITIONS)
        ensure_topics(broker.bootstrap, settings)
        log(f"preloaded {len(lines)} events at {produce_bulk(broker.bootstrap, settings.events, lines):.0f} ev/s")
        yield broker, settings
    finally:
        broker.stop()


def produce_bulk(bootstrap: str, topic: str, lines: list[bytes]) -> float:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20, batch_size=256 * 1024,
                      max_request_size=8 * 1024 * 1024)
    started = time.monotonic()
    for line in lines:
        p.send(topic, key=subject_of(line), value=line)
    p.flush(timeout=600)
    p.close()
    return len(lines) / (time.monotonic() - started)


# ---------------------------------------------------------------------------------------------------------------
# processes


class Child:
    """A child process in its own session, ended by PID only."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._fh = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                                     stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 20.0) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=grace)
        self._fh.close()

    def kill9(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
        self._fh.close()

    def rss(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in bytes."""
        return proc_memory(self.pid)


def proc_memory(pid: int | str = "self") -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in bytes, from /proc."""
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            k, v = line.split(":")
            vals[k] = int(v.split()[0]) * 1024
    return vals.get("VmRSS", 0), vals.get("VmHWM", 0)


def http(url: str, timeout: float = 30.0) -> tuple[int, bytes]:
    assert url.startswith("http://127.0.0.1:")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(pred: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = pred()
        except OSError:
            v = None
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout:.0f} s")


def rate_between(marks: list[tuple[int, float]], expect: int, lo: float = 0.1, hi: float = 0.9) -> float | None:
    """Sustained rate between the lo and hi fractions of the run (leaves out start-up and the tail)."""
    if len(marks) < 2:
        return None

    def t_at(n: float) -> float:
        prev = marks[0]
        for m in marks:
            if m[0] >= n:
                if m[0] == prev[0]:
                    return m[1]
                return prev[1] + (m[1] - prev[1]) * (n - prev[0]) / (m[0] - prev[0])
            prev = m
        return marks[-1][1]

    a, b = lo * expect, hi * expect
    dt = t_at(b) - t_at(a)
    return (b - a) / dt if dt > 0 else None


# ---------------------------------------------------------------------------------------------------------------
# the product's worker


PROBE_QUERY = ("?name[]=onestop_events_processed_total&name[]=onestop_events_rejected_total"
               "&name[]=onestop_dossiers_tracked")
METRIC_RE = re.compile(rb"^(onestop_events_processed_total|onestop_events_rejected_total|onestop_dossiers_tracked)"
                       rb"(?:\{[^}]*\})? ([0-9.eE+-]+)$", re.M)


@dataclass
class Worker:
    bootstrap: str
    prefix: str
    data_dir: Path
    clock_file: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    app_id: str | None = None
    child: Child | None = None
    env: dict[str, str] = field(default_factory=dict)  # more ONESTOP_* settings (bench/transactions_p.py)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Worker":
        env = {"ONESTOP_TOPIC_PREFIX": self.prefix, "ONESTOP_APP_ID": self.app_id or self.prefix + "app",
               "ONESTOP_PARTITIONS": str(PARTITIONS), "ONESTOP_CLOCK_FILE": str(self.clock_file),
               "ONESTOP_LOG_LEVEL": os.environ.get("BENCH_WORKER_LOG_LEVEL", "warn"),
               # 6 s finds a killed worker quickly; a 1 M run needs more, as the broker stalls on its snapshots.
               "ONESTOP_SESSION_TIMEOUT": os.environ.get("BENCH_SESSION_TIMEOUT", "6"), "ONESTOP_LOOP": "uvloop",
               "PYTHONPATH": str(REPO), **self.env}
        self.child = Child([PY, "-m", "streams.worker", "--broker", self.bootstrap, "--web-port", str(self.port),
                            "--data-dir", str(self.data_dir)], env, self.log_path)
        return self

    def ready(self) -> bool:
        if not self.child.alive():
            raise RuntimeError(f"worker died; see {self.log_path}")
        try:
            return http(self.url + "/ready", timeout=2)[0] == 200
        except OSError:
            return False

    def counts(self, named: bool = False) -> tuple[float, float]:
        """(events handled = processed + rejected, dossiers tracked) from /metrics; ``named``: asking for those
        three samples alone (``?name[]=``), which the worker answers without building the unit families."""
        _, body = http(self.url + ("/metrics" + PROBE_QUERY if named else "/metrics"))
        handled = tracked = 0.0
        for name, value in METRIC_RE.findall(body):
            if name == b"onestop_dossiers_tracked":
                tracked = float(value)
            else:
                handled += float(value)
        return handled, tracked

    def figures(self, period: str) -> dict:
        # The figures alone: the forecast block scans every dossier held, a minute of its own at 1 M dossiers.
        status, body = http(self.url + f"/figures?period={period}&forecast=0", timeout=120)
        assert status == 200, body[:300]
        return json.loads(body)


def same_figures(got: dict, want: dict) -> bool:
    return got["units"] == want["units"] and got["provinces"] == want["provinces"]


def run_product_throughput(w: Worker, expect: int, timeout: float, poll: float = 3.0) -> dict:
    started = time.monotonic()
    wait_for(w.ready, timeout=120, what="worker ready")
    ready_s = time.monotonic() - started
    marks: list[tuple[int, float]] = []
    scrape: list[float] = []
    deadline = time.monotonic() + timeout
    n = 0
    while n < expect and time.monotonic() < deadline:
        t0 = time.monotonic()
        n, tracked = w.counts()
        t1 = time.monotonic()
        scrape.append(t1 - t0)
        marks.append((int(n), (t0 + t1) / 2))
        time.sleep(max(0.0, poll - (t1 - t0)))
    rss, hwm = w.child.rss()
    return {"rate": rate_between(marks, expect), "handled": n, "expect": expect, "ready_s": ready_s,
            "scrape_ms_median": 1000 * statistics.median(scrape) if scrape else None, "rss": rss, "hwm": hwm,
            "tracked": tracked, "complete": n >= expect}


# ---------------------------------------------------------------------------------------------------------------
# phases


def phase_score(file: Path, runs: int, out: Path, events: int) -> tuple[dict, dict]:
    """``onestop score`` end to end (process start included), and its documents as the stream's oracle."""
    times, docs = [], {}
    for i in range(runs):
        t0 = time.monotonic()
        res = subprocess.run([PY, "-m", "streams.tools.cli", "score", str(file), "--at", AT, "--period", "month:2026-03"],
                             cwd=REPO, capture_output=True, timeout=3600)
        times.append(time.monotonic() - t0)
        if res.returncode not in (0, 1):
            raise RuntimeError(res.stderr.decode()[-2000:])
        docs["month:2026-03"] = json.loads(res.stdout)
        log(f"score run {i + 1}: {times[-1]:.2f} s, {events / times[-1]:.0f} ev/s")
    res = subprocess.run([PY, "-m", "streams.tools.cli", "score", str(file), "--at", AT, "--period", "quarter:2026-Q1"],
                         cwd=REPO, capture_output=True, timeout=3600)
    docs["quarter:2026-Q1"] = json.loads(res.stdout)
    s = spread([events / t for t in times])
    record("score", {"events": events, "seconds": spread(times), "eps": s}, out)
    return s, docs


def phase_score_cores(file: Path, runs: int, out: Path, events: int, oracle: dict) -> dict:
    """``onestop score --jobs 0`` (a share of the dossiers per core) end to end; its document must equal one
    process's, or the figure is not recorded."""
    times = []
    for i in range(runs):
        t0 = time.monotonic()
        res = subprocess.run([PY, "-m", "streams.tools.cli", "score", str(file), "--at", AT, "--period", "month:2026-03",
                              "--jobs", "0"], cwd=REPO, capture_output=True, timeout=3600)
        times.append(time.monotonic() - t0)
        if res.returncode not in (0, 1) or json.loads(res.stdout) != oracle["month:2026-03"]:
            raise RuntimeError("score --jobs 0 differs from one process: " + res.stderr.decode()[-2000:])
        log(f"score --jobs 0 run {i + 1}: {times[-1]:.2f} s, {events / times[-1]:.0f} ev/s on {len(os.sched_getaffinity(0))} cores")
    s = spread([events / t for t in times])
    record("score_cores", {"events": events, "cores": len(os.sched_getaffinity(0)), "seconds": spread(times),
                           "eps": s}, out)
    return s


def phase_baseline(mode: str, bootstrap: str, topic: str, expect: int, work: Path, tag: str) -> float | None:
    result = work / f"{mode}-{tag}.json"
    logp = work / f"{mode}-{tag}.log"
    if mode == "C":
        child = Child([PY, str(REPO / "bench" / "baseline_kafka.py"), bootstrap, topic, str(expect),
                       f"bench-c-{tag}", str(result)], {}, logp)
    else:
        env = {"BENCH_MODE": mode, "BENCH_TOPIC": topic, "BENCH_EXPECT": str(expect), "BENCH_OUT": str(result),
               "BENCH_APP_ID": f"bench-{mode.lower()}-{tag}", "BENCH_BROKER": bootstrap,
               "BENCH_DATA_DIR": str(work / f"{mode}-{tag}-data"), "BENCH_PARTITIONS": str(PARTITIONS)}
        child = Child([PY, str(REPO / "bench" / "baseline_faust.py"), "worker", "-l", "warn", "--web-port",
                       str(free_port()), "--web-bind", "127.0.0.1"], env, logp)
    try:
        wait_for(lambda: result.exists() or not child.alive(), timeout=max(300, expect / 300), interval=0.5,
                 what=f"baseline {mode}")
    finally:
        child.stop()
    if not result.exists():
        log(f"baseline {mode} produced no result; see {logp}")
        return None
    doc = json.loads(result.read_text())
    return rate_between(doc["marks"], expect)


class Scraper(threading.Thread):
    """Scrapes /metrics every ``interval`` seconds (0: back to back) and keeps (time the response arrived, events
    handled); ``named``: only the event counters (the latency probe)."""

    def __init__(self, w: Worker, interval: float = 0.0, named: bool = False, first_after: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.w, self.interval, self.named, self.samples, self.stop_flag = w, interval, named, [], False
        self.first_after = first_after

    def run(self) -> None:
        next_at = time.monotonic() + self.first_after
        time.sleep(self.first_after)
        while not self.stop_flag:
            try:
                n, _ = self.w.counts(self.named)
                self.samples.append((time.monotonic(), n))
            except OSError:
                time.sleep(0.05)
            if self.interval:
                next_at += self.interval
                time.sleep(max(0.0, next_at - time.monotonic()))


def visible_after(sent_at: list[float], samples: list[tuple[float, float]], base: float) -> list[float]:
    """Per event sent at ``sent_at[i]``: seconds until the first sample (response time, events handled) that covers
    it, sorted; events no sample covers are left out."""
    lat = []
    j = 0
    for i, ts in enumerate(sent_at):
        need = base + i + 1
        while j < len(samples) and (samples[j][1] < need or samples[j][0] < ts):
            j += 1
        if j < len(samples):
            lat.append(samples[j][0] - ts)
    lat.sort()
    return lat


def phase_latency(w: Worker, bootstrap: str, topic: str, lines: list[bytes], rate: float, seconds: float,
                  scrape_interval: float = 0.0, probe_interval: float = 0.0) -> dict:
    """Produce at a steady rate; an event counts as visible at the first /metrics response whose total covers it.

    With a scrape interval the figure includes waiting for the next scrape (up to the interval); back to back
    (interval 0) it does not, but the scrapes then take a large share of the worker's loop themselves. With a
    probe interval, a second client asks every ``probe_interval`` seconds for the event counters alone
    (``?name[]=``), and ``probe_p50_ms``/``probe_p99_ms`` are the time until the probe sees an event, while the
    full scrapes every ``scrape_interval`` are the load a Prometheus server puts on the worker (15 s, its
    default, or 0.25 s)."""
    from kafka import KafkaProducer

    n = int(rate * seconds)
    lines = lines[:n]
    base, _ = w.counts()
    # A scrape interval longer than the phase: its one scrape falls in the middle, as it would somewhere in a
    # Prometheus server's 15 s (one such scrape per phase is more load than one per 15 s, not less).
    scraper = Scraper(w, scrape_interval, first_after=seconds / 2 if scrape_interval > seconds else 0.0)
    scraper.start()
    probe = Scraper(w, probe_interval, named=True) if probe_interval > 0 else None
    if probe is not None:
        probe.start()
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    sent_at: list[float] = []
    t0 = time.monotonic()
    for i, line in enumerate(lines):
        target = t0 + i / rate
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent_at.append(time.monotonic())
        p.send(topic, key=subject_of(line), value=line)
    p.flush(timeout=60)
    p.close()
    try:
        wait_for(lambda: scraper.samples and scraper.samples[-1][1] >= base + len(lines),
                 timeout=120 + scrape_interval, interval=0.1, what="latency events visible")
    except TimeoutError:
        pass  # the worker cannot keep up with this rate: the events not yet visible are reported as missing
    for client in filter(None, (scraper, probe)):
        client.stop_flag = True
        client.join(timeout=10 + client.interval)
    samples = scraper.samples

    def quantiles(lat: list[float]) -> tuple[int, Callable[[float], float | None]]:
        visible = len(lat)
        lat = lat + [float("inf")] * (len(sent_at) - visible)  # not visible within the wait: worse than any measured
        return visible, lambda f: 1000 * lat[min(len(lat) - 1, int(f * len(lat)))] if lat else None

    visible, q = quantiles(visible_after(sent_at, samples, base))
    out = {"rate": rate, "scrape_interval_s": scrape_interval, "events": len(lines), "visible": visible,
           "p50_ms": q(0.5), "p99_ms": q(0.99),
           "max_ms": q(1.0), "scrapes": len(samples),
           "scrape_ms_mean": 1000 * (samples[-1][0] - samples[0][0]) / max(1, len(samples) - 1) if samples else None}
    if probe is not None:
        probe_visible, pq = quantiles(visible_after(sent_at, probe.samples, base))
        out |= {"probe_interval_s": probe_interval, "probe_visible": probe_visible, "probe_p50_ms": pq(0.5),
                "probe_p99_ms": pq(0.99), "probe_max_ms": pq(1.0), "probes": len(probe.samples)}
    return out


def time_to_exact(w: Worker, want: dict, started: float, timeout: float) -> float | None:
    def ok() -> bool:
        if not w.ready():
            return False
        return all(same_figures(w.figures(p), d) for p, d in want.items())

    try:
        wait_for(ok, timeout=timeout, interval=0.5, what="exact figures")
    except TimeoutError:
        return None
    return time.monotonic() - started


def phase_recovery(w: Worker, want: dict, mode: str, timeout: float) -> float | None:
    """mode: crash (kill -9; the product then discards local state), wipe (kill -9 and rm), clean (SIGTERM)."""
    if mode == "clean":
        w.child.stop()
    else:
        w.child.kill9()
    if mode == "wipe":
        shutil.rmtree(w.data_dir, ignore_errors=True)
    started = time.monotonic()
    w.start()
    return time_to_exact(w, want, started, timeout)


def phase_overdue(w: Worker, bootstrap: str, prefix: str, runs: int) -> list[float]:
    """A fresh dossier due at D; the clock file jumps to D + 1 s; time until its overdue alert is on the topic."""
    from kafka import KafkaConsumer, KafkaProducer

    from models.events import event_to_json, make_envelope

    alerts = KafkaConsumer(prefix + "dossier-alerts", bootstrap_servers=bootstrap, auto_offset_reset="latest",
                           consumer_timeout_ms=200, isolation_level="read_committed")
    alerts.poll(timeout_ms=2000)  # join and position at the end
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    clock = w.clock_file
    now = datetime.fromisoformat(clock.read_text().strip())
    delays = []
    for i in range(runs):
        code = f"T97.X001-OVERDUE-{i:03d}-{int(time.time())}"
        due = now + timedelta(hours=1)
        data = {"procedure_code": "1.001193", "handling_unit_code": "T97.X001", "receiving_unit_code": "T97.X001",
                "channel": "direct", "received_at": now.isoformat(), "due_at": due.isoformat(),
                "province_code": "T97", "unit_level": "commune"}
        env = make_envelope("received", event_id=f"overdue-{code}", source="igate.bench", subject=code, time=now,
                            data=data)
        p.send(prefix + "dossier-events", key=code.encode(), value=event_to_json(env))
        p.flush()
        wait_for(lambda: w.counts()[1] > 0, timeout=10)  # worker alive
        time.sleep(2.0)  # let it be applied (and its due_soon alert, if any, go out)
        now = due + timedelta(seconds=1)
        tmp = clock.with_name(clock.name + ".tmp")
        tmp.write_text(now.isoformat())
        os.replace(tmp, clock)
        t0 = time.monotonic()
        seen = None
        while seen is None and time.monotonic() - t0 < 60:
            for recs in alerts.poll(timeout_ms=100).values():
                for r in recs:
                    a = json.loads(r.value)
                    if a.get("dossier_code") == code and a.get("kind") == "overdue":
                        seen = time.monotonic()
        delays.append(seen - t0 if seen else None)
        log(f"overdue alert {i + 1}: {delays[-1]}")
    alerts.close()
    p.close()
    return delays


# ---------------------------------------------------------------------------------------------------------------


def machine() -> dict:
    load = Path("/proc/loadavg").read_text().split()[:3]
    mem = Path("/proc/meminfo").read_text().splitlines()[0]
    return {"cpus": os.cpu_count(), "load_at_start": load, "mem": mem, "python": platform.python_version(),
            "kernel": platform.release()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--work", type=Path, default=REPO / "var" / "bench")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--events", type=int, default=None,
                    help="use only the first N events of the data set (a time-ordered prefix)")
    ap.add_argument("--baseline-events", type=int, default=None)
    ap.add_argument("--poll", type=float, default=3.0,
                    help="seconds between /metrics polls while measuring P (each scrape costs the worker CPU)")
    ap.add_argument("--scrape-interval", type=float, default=0.25,
                    help="seconds between /metrics scrapes in the latency phases (also run back to back; 0: only that)")
    ap.add_argument("--prometheus-interval", type=float, default=15.0,
                    help="also measure latency with full scrapes this far apart, Prometheus' default (0: skip)")
    ap.add_argument("--probe-interval", type=float, default=0.01,
                    help="seconds between the latency probe's requests for the event counters alone (0: no probe)")
    ap.add_argument("--memory-dossiers", type=int, default=1_000_000,
                    help="one-event dossiers the memory phase holds before measuring RSS and recovery")
    ap.add_argument("--memory-backlog", type=int, default=10_000,
                    help="feed the memory phase in chunks of this many events (0: pre-load everything, which the "
                         "embedded broker hands the worker at once; docs/benchmarks.md, run 14)")
    ap.add_argument("--skip", default="", help="comma list of phases to skip: score,A,B,C,P,latency,recovery,overdue,memory")
    args = ap.parse_args()
    quick = args.quick
    skip = set(filter(None, args.skip.split(",")))
    repeats = args.repeats or (2 if quick else 3)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    run_dir = work / time.strftime("run-%Y%m%d-%H%M%S")
    run_dir.mkdir()
    out = args.out or run_dir / "results.json"
    record("machine", machine(), out)
    record("mode", "quick" if quick else "full", out)

    # Quick: ~60 k events (~10 k dossiers); full: ~1 M events (~165 k dossiers).
    data = work / ("events-quick.jsonl" if quick else "events-1m.jsonl")
    simulate(data, 150 if quick else 2700, "2025-12-01" if not quick else "2026-01-05")
    lines = read_lines(data, args.events)
    if args.events:
        data = run_dir / "events.jsonl"
        data.write_bytes(b"\n".join(lines) + b"\n")
    total = len(lines)
    lat_plan = [(100.0, 10.0), (1000.0, 5.0 if quick else 10.0)]
    lat_runs = 1 if quick else 3
    # Scrape every 0.25 s (the reported figure: 60 times Prometheus' usual 15 s), every 15 s (Prometheus' default;
    # 1,000 ev/s only), and back to back as runs 0-4 did; the probe (--probe-interval) watches the event counters.
    lat_intervals = [("", args.scrape_interval, lat_plan)] if args.scrape_interval else []
    if args.prometheus_interval:
        lat_intervals.append(("_scrapes_%gs" % args.prometheus_interval, args.prometheus_interval, lat_plan[1:]))
    lat_intervals.append(("_back_to_back", 0.0, lat_plan))
    reserved = int(sum(r * s for _, _, plan in lat_intervals for r, s in plan) * lat_runs)
    preload, tail = lines[: total - reserved], lines[total - reserved:]
    baseline_n = min(len(preload), args.baseline_events or (40_000 if quick else 200_000))
    log(f"{total} events, {len(preload)} preloaded, {reserved} kept for the latency phases")
    record("dataset", {"file": str(data), "events": total, "preloaded": len(preload), "baseline_events": baseline_n},
           out)

    oracle: dict = {}
    score_eps = score_cores_eps = {"median": None}
    if "score" not in skip:
        score_eps, oracle = phase_score(data, repeats, out, total)
        log(f"score: {fmt(score_eps, ' ev/s')}")
        score_cores_eps = phase_score_cores(data, repeats, out, total, oracle)
        log(f"score on every core: {fmt(score_cores_eps, ' ev/s')}")
    if not {"A", "B", "C", "P", "latency", "recovery", "overdue", "memory"} - skip:
        record("summary", {"score_eps": score_eps["median"], "score_cores_eps": score_cores_eps["median"]}, out)
        log(f"results: {out} (every phase that needs the broker skipped)")
        print(f"score_eps={score_eps['median']:.0f} score_cores_eps={score_cores_eps['median']:.0f}"
              if score_eps["median"] else "nothing measured")
        return 0

    broker = EmbeddedBroker(data_dir=run_dir / "broker").start()
    children: list[Worker] = []
    summary = {}
    try:
        prefix = "bench-"
        settings = WorkerSettings(broker=broker.bootstrap, topic_prefix=prefix, app_id=prefix + "app",
                                  partitions=PARTITIONS)
        ensure_topics(broker.bootstrap, settings)
        topic = settings.events
        prate = produce_bulk(broker.bootstrap, topic, preload)
        log(f"preloaded {len(preload)} events at {prate:.0f} ev/s")
        record("preload_eps", prate, out)

        rates: dict[str, list] = {k: [] for k in "ABCP"}
        product_runs = []
        clock = run_dir / "clock"
        clock.write_text(AT)
        last_worker: Worker | None = None
        for r in range(repeats):
            for mode in "CABP":
                if mode in skip:
                    continue
                if mode == "P":
                    if last_worker is not None:
                        last_worker.child.stop()
                    # Each repeat is a new consumer group with its own changelog: a cold start on the full log.
                    w = Worker(broker.bootstrap, prefix, run_dir / f"P-{r}", clock, run_dir / f"P-{r}.log",
                               app_id=f"{prefix}app-{r}").start()
                    children.append(w)
                    res = run_product_throughput(w, len(preload), timeout=7200, poll=args.poll)
                    product_runs.append(res)
                    rates["P"].append(res["rate"])
                    last_worker = w
                    if r < repeats - 1:
                        # An idle worker still burns CPU (see docs/benchmarks.md); the next baselines need a quiet
                        # machine, and the next P run is a cold start anyway.
                        w.child.stop()
                    log(f"P run {r + 1}: {res}")
                else:
                    rate = phase_baseline(mode, broker.bootstrap, topic, baseline_n, run_dir, str(r))
                    rates[mode].append(rate)
                    log(f"{mode} run {r + 1}: {rate and round(rate)} ev/s")
                record("throughput", {k: spread(v) for k, v in rates.items()} | {"P_runs": product_runs}, out)
        thr = {k: spread(v) for k, v in rates.items()}
        for k in "ABCP":
            log(f"{k}: {fmt(thr[k], ' ev/s')}")
        pa = thr["P"]["median"] / thr["A"]["median"] if thr["P"]["n"] and thr["A"]["n"] else None
        pb = thr["P"]["median"] / thr["B"]["median"] if thr["P"]["n"] and thr["B"]["n"] else None
        record("ratios", {"P/A": pa, "P/B": pb}, out)

        w = last_worker
        p99, probe_p99 = None, []
        if w is not None and "latency" not in skip:
            offset = 0
            lat_results = {}
            for suffix, interval, plan in lat_intervals:
                for rate, secs in plan:
                    runs = []
                    for _ in range(lat_runs):
                        n = int(rate * secs)
                        res = phase_latency(w, broker.bootstrap, topic, tail[offset:offset + n], rate, secs, interval,
                                            args.probe_interval)
                        offset += n
                        runs.append(res)
                        log(f"latency at {rate:.0f} ev/s, scrapes {'every %.2f s' % interval if interval else 'back to back'}: {res}")
                    key = str(int(rate)) + suffix
                    lat_results[key] = {"scrape_interval_s": interval, "p50_ms": spread([x["p50_ms"] for x in runs]),
                                        "p99_ms": spread([x["p99_ms"] for x in runs]), "runs": runs}
                    if args.probe_interval:
                        lat_results[key] |= {"probe_p50_ms": spread([x["probe_p50_ms"] for x in runs]),
                                             "probe_p99_ms": spread([x["probe_p99_ms"] for x in runs])}
                    record("latency", lat_results, out)
            p99 = lat_results["1000"]["p99_ms"]["median"] if "1000" in lat_results else None
            probe_p99 = [lat_results[k]["probe_p99_ms"]["median"] for k in lat_results
                         if k.startswith("1000") and "probe_p99_ms" in lat_results[k] and "back_to_back" not in k]
        if w is not None and oracle:
            exact = time_to_exact(w, oracle, time.monotonic(), timeout=300)
            record("exact_vs_oracle", exact is not None, out)
            log(f"worker figures equal to `onestop score`: {exact is not None}")
        bytes_per = None
        if w is not None:
            rss, hwm = w.child.rss()
            _, tracked = w.counts()
            disk = sum(f.stat().st_size for f in w.data_dir.rglob("*") if f.is_file())
            bytes_per = rss / tracked if tracked else None
            record("memory_main", {"rss": rss, "hwm": hwm, "dossiers": tracked, "rss_per_dossier": bytes_per,
                                   "disk_bytes": disk, "disk_per_dossier": disk / tracked if tracked else None}, out)
            log(f"memory: {RESULTS['memory_main']}")
        recovery = None
        if w is not None and "recovery" not in skip:
            want = {p: w.figures(p) for p in ("month:2026-03", "quarter:2026-Q1")}
            rec = {}
            for mode in ("crash", "clean", "wipe"):
                rec[mode] = phase_recovery(w, want, mode, timeout=900)
                log(f"recovery ({mode}): {rec[mode]}")
                record("recovery", rec, out)
            recovery = rec["crash"]
        if w is not None and "overdue" not in skip:
            delays = phase_overdue(w, broker.bootstrap, prefix, 3 if not quick else 2)
            record("overdue_alert_s", spread(delays), out)
        if "memory" not in skip and not quick:
            mem = phase_memory(broker, run_dir, out, args.memory_dossiers, args.memory_backlog)
            bytes_per = mem.get("rss_per_dossier_end") or bytes_per
        summary = {"P/A": pa, "P/B": pb, "p99_ms": p99, "probe_p99_ms": probe_p99, "bytes_per_dossier": bytes_per,
                   "recovery_s": recovery, "score_eps": score_eps["median"],
                   "score_cores_eps": score_cores_eps["median"]}
        record("summary", summary, out)
    finally:
        for wk in children:
            if wk.child is not None:
                wk.child.stop()
        broker.stop()
    log(f"results: {out}")
    f = lambda v, nd=2: "n/a" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))  # noqa: E731
    probes = "/".join(f(v, 0) for v in summary.get("probe_p99_ms") or []) or "n/a"
    print(f"P/A={f(summary.get('P/A'))} P/B={f(summary.get('P/B'))} p99_ms={f(summary.get('p99_ms'), 0)} "
          f"probe_p99_ms={probes} "
          f"bytes_per_dossier={f(summary.get('bytes_per_dossier'), 0)} recovery_s={f(summary.get('recovery_s'), 1)} "
          f"score_eps={f(summary.get('score_eps'), 0)} score_cores_eps={f(summary.get('score_cores_eps'), 0)}")
    return 0


def phase_memory(broker: EmbeddedBroker, run_dir: Path, out: Path, dossiers: int = 1_000_000,
                 backlog: int = 0) -> dict:
    """RSS per tracked dossier at 100 k and at ``dossiers`` one-event dossiers (1 M by default), then recovery.

    ``backlog`` > 0 feeds the events in chunks of that size, each once the worker has caught up with all but one
    chunk: the embedded broker ignores fetch size limits and hands a consumer its whole backlog at once, so with
    everything pre-loaded the worker's RSS holds the unread events too, not only the state it keeps.
    """
    prefix = "mem-"
    settings = WorkerSettings(broker=broker.bootstrap, topic_prefix=prefix, app_id=prefix + "app",
                              partitions=PARTITIONS)
    ensure_topics(broker.bootstrap, settings)
    data = run_dir.parent / f"received-{dossiers}.jsonl"
    received_only(data, dossiers)
    lines = read_lines(data)
    produced = 0
    if not backlog:
        log(f"memory phase: producing {len(lines)} events")
        produce_bulk(broker.bootstrap, settings.events, lines)
        produced = len(lines)
    clock = run_dir / "clock-mem"
    clock.write_text(AT)
    w = Worker(broker.bootstrap, prefix, run_dir / "M", clock, run_dir / "M.log").start()
    res: dict[str, Any] = {}
    try:
        wait_for(w.ready, timeout=120, what="memory worker ready")
        t0 = time.monotonic()
        at_100k = None
        while time.monotonic() - t0 < 5400:
            n, tracked = w.counts()
            if produced < len(lines) and n >= produced - backlog:
                chunk = lines[produced:produced + backlog]
                produce_bulk(broker.bootstrap, settings.events, chunk)
                produced += len(chunk)
                continue
            rss, hwm = w.child.rss()
            if at_100k is None and tracked >= 100_000:
                at_100k = {"rss": rss, "dossiers": tracked, "rss_per_dossier": rss / tracked}
                res["at_100k"] = at_100k
                record("memory", res, out)
                log(f"memory at 100k: {at_100k}")
            if n >= dossiers:
                break
            time.sleep(2)
        del lines
        res["seconds_to_hold_all"] = time.monotonic() - t0
        res["backlog"] = backlog or None
        rss, hwm = w.child.rss()
        _, tracked = w.counts()
        disk = sum(f.stat().st_size for f in w.data_dir.rglob("*") if f.is_file())
        res.update(rss_end=rss, hwm_end=hwm, dossiers_end=tracked,
                   rss_per_dossier_end=rss / tracked if tracked else None, disk_end=disk)
        record("memory", res, out)
        log(f"memory at {tracked:.0f} dossiers: {res}")
        want = {p: w.figures(p) for p in ("month:2026-03",)}
        for mode in ("crash", "clean"):
            res[f"recovery_{mode}_s"] = phase_recovery(w, want, mode, timeout=1800)
            record("memory", res, out)
            log(f"recovery at {tracked:.0f} dossiers ({mode}): {res[f'recovery_{mode}_s']}")
    finally:
        w.child.stop()
    return res


if __name__ == "__main__":
    sys.exit(main())
