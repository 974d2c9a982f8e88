"""``onestop demo``: the whole product on one machine, started and stopped by one command.

It starts the embedded Kafka-protocol broker (data under ``var/demo``), creates the topics, starts one worker,
publishes a realistic recent history of a simulated province so month-to-date figures, 766 scores and overdue
dossiers appear at once, then keeps publishing live events while a terminal view shows the units' figures and the
newest per-dossier alerts. Optionally (when Debian's binaries are installed) it also runs Prometheus and
Alertmanager with the project's rules.

The province's unit registry (names in Vietnamese and English) goes to the unit-registry topic before the worker
starts, so the worker's ``onestop_unit_info`` and read API name every unit, and the view shows names in the language
asked for (``--lang``, Vietnamese by default; ``streams/tools/demo_view.py``).

Time is simulated: the worker reads "now" from a clock file the demo advances ``speed`` times faster than the wall
clock, starting at the next office-hours instant, so a demo at night in Vietnam still shows a working day.
Every child process is started here, remembered by PID and ended here, on ``--duration``, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from models.calendar import TZ, WorkCalendar
from models.events import event_to_json
from models.tally import period_key

from models.i18n import DEFAULT_LANG, LANGS, format_datetime, format_number, t

from streams.tools.broker import EmbeddedBroker, free_port
from streams.runtime.settings import WorkerSettings
from streams.tools.demo_view import ViewInput, render_view
from streams.tools.simulator import SimulationConfig, Simulator, unit_registry
from streams.tools.units_ref import publish_unit_records, registry_records
from streams.runtime.topics import ensure_topics


ALERTS_DIR = Path(__file__).resolve().parents[2] / "alerts"
"""The generated rules and Alertmanager config of a source checkout (absent from a wheel install: then skipped)."""


@dataclass
class DemoOptions:
    base_dir: Path = Path("var/demo")
    duration: float | None = None
    speed: float = 60.0
    history_days: int = 24
    dossiers_per_day: float = 300.0
    agencies: int = 20
    communes: int = 100
    seed: int = 2026
    web_port: int | None = None
    live_view: bool = True
    fresh: bool = True
    prometheus: bool = True
    lang: str = DEFAULT_LANG


@dataclass
class DemoState:
    started: float = field(default_factory=time.monotonic)
    sim_now: datetime | None = None
    published: int = 0
    history_total: int = 0
    alerts: deque = field(default_factory=lambda: deque(maxlen=8))
    figures: dict | None = None
    error: str | None = None


def _get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


class Demo:
    def __init__(self, opts: DemoOptions):
        self.opts = opts
        self.state = DemoState()
        self.children: list[subprocess.Popen] = []
        self.broker: EmbeddedBroker | None = None
        self.stop_event = threading.Event()
        self.cal = WorkCalendar.default()

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def run(self) -> int:
        if self.opts.lang not in LANGS:
            print(f"lỗi: --lang phải là một trong {', '.join(LANGS)}, không phải {self.opts.lang!r} / "
                  f"error: --lang must be one of {', '.join(LANGS)}, not {self.opts.lang!r}", file=sys.stderr)
            return 2
        for sig in (signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal was closed; still end every child
            signal.signal(sig, lambda *_: self.stop_event.set())
        try:
            self._start()
            self._loop()
            return 0
        except KeyboardInterrupt:
            return 0
        finally:
            self.shutdown()

    def _start(self) -> None:
        o = self.opts
        o.base_dir = o.base_dir.resolve()
        if o.fresh and o.base_dir.exists():
            shutil.rmtree(o.base_dir)
        o.base_dir.mkdir(parents=True, exist_ok=True)
        self.sim_start = self.cal.next_working_instant(datetime.now(TZ).replace(microsecond=0))
        self.clock_file = o.base_dir / "clock"
        self._set_clock(self.sim_start)
        self.broker = EmbeddedBroker(data_dir=o.base_dir / "broker").start()
        self.settings = WorkerSettings(broker=self.broker.bootstrap, web_port=o.web_port or free_port(),
                                       data_dir=o.base_dir / "worker", session_timeout=6.0,
                                       clock_file=self.clock_file)
        ensure_topics(self.broker.bootstrap, self.settings)
        self.cfg = SimulationConfig(seed=o.seed, agencies=o.agencies, communes=o.communes,
                                    start=(self.sim_start - timedelta(days=o.history_days)).date(),
                                    end=self.sim_start + timedelta(days=3), dossiers_per_day=o.dossiers_per_day)
        self.registry = unit_registry(self.cfg)
        publish_unit_records(self.broker.bootstrap, self.settings.units, registry_records(self.registry, self.sim_start))
        self.worker_url = self.settings.web_url
        self._spawn([sys.executable, "-m", "streams.worker", "--broker", self.broker.bootstrap,
                     "--web-port", str(self.settings.web_port), "--data-dir", str(self.settings.data_dir),
                     "--clock-file", str(self.clock_file), "--session-timeout", "6", "--log-level", "warn"],
                    "worker.log")
        self._wait_ready()
        self.prometheus_url = self._start_prometheus() if o.prometheus else None
        events = list(Simulator(self.cfg, self.cal).events())
        split = next((i for i, e in enumerate(events) if datetime.fromisoformat(e["time"]) > self.sim_start), len(events))
        self.history, self.live = events[:split], deque(events[split:])
        self.state.history_total = len(self.history)
        from streams.tools.publisher import DossierEventPublisher

        self.publisher = DossierEventPublisher(self.broker.bootstrap, self.settings.events)
        threading.Thread(target=self._publish_history, name="history", daemon=True).start()
        threading.Thread(target=self._follow_alerts, name="alerts", daemon=True).start()

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen:
        log = open(self.opts.base_dir / log_name, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.children.append(proc)
        return proc

    def _wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.children):
                raise RuntimeError(f"worker exited; see {self.opts.base_dir / 'worker.log'}")
            try:
                urllib.request.urlopen(self.worker_url + "/ready", timeout=2).read()
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"worker not ready after {timeout:.0f} s; see {self.opts.base_dir / 'worker.log'}")

    def _start_prometheus(self) -> str | None:
        """Prometheus + Alertmanager with the project's rules, when Debian's binaries are installed."""
        prom, am = shutil.which("prometheus"), shutil.which("prometheus-alertmanager")
        rules = [p for p in (ALERTS_DIR / "rules.yml", ALERTS_DIR / "alerts.yml") if p.exists()]
        if not prom:
            return None
        port = free_port()
        am_url = None
        if am and (ALERTS_DIR / "alertmanager.yml").exists():
            am_port = free_port()
            self._spawn([am, f"--config.file={ALERTS_DIR / 'alertmanager.yml'}",
                         f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
                         f"--storage.path={self.opts.base_dir / 'alertmanager'}"], "alertmanager.log")
            am_url = f"127.0.0.1:{am_port}"
        config = {
            "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
            "rule_files": [str(r.resolve()) for r in rules],
            "scrape_configs": [{"job_name": "onestop", "static_configs": [{"targets": [self.worker_url.removeprefix("http://")]}]}],
        }
        if am_url:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [am_url]}]}]}
        cfg_path = self.opts.base_dir / "prometheus.yml"
        cfg_path.write_text(json.dumps(config))
        self._spawn([prom, f"--config.file={cfg_path}", f"--web.listen-address=127.0.0.1:{port}",
                     f"--storage.tsdb.path={self.opts.base_dir / 'prometheus'}"], "prometheus.log")
        return f"http://127.0.0.1:{port}"

    def shutdown(self) -> None:
        self.stop_event.set()
        pub = getattr(self, "publisher", None)
        if pub is not None:
            try:
                pub.close(timeout=5)
            except Exception:
                pass
        for proc in reversed(self.children):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.children):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self.broker is not None:
            self.broker.stop()

    # -- simulated time and publishing ------------------------------------------------------------------------

    def _set_clock(self, t: datetime) -> None:
        tmp = self.clock_file.with_name("clock.tmp")
        tmp.write_text(t.isoformat())
        os.replace(tmp, self.clock_file)
        self.state.sim_now = t

    def _publish_history(self) -> None:
        try:
            for env in self.history:
                if self.stop_event.is_set():
                    return
                self.publisher.publish_raw(event_to_json(env), env["subject"].encode())
                self.state.published += 1
            self.publisher.flush()
            self.history_done_at = time.monotonic()
        except Exception as exc:  # shown in the view; the demo keeps running
            self.state.error = t("live.error.history", self.opts.lang, error=exc)

    def _loop(self) -> None:
        o = self.opts
        end = time.monotonic() + o.duration if o.duration else None
        view = _LiveView(self) if o.live_view else None
        last_fig = 0.0
        live_started = None
        try:
            while not self.stop_event.is_set() and (end is None or time.monotonic() < end):
                if self.state.published >= self.state.history_total and live_started is None:
                    live_started = time.monotonic()
                if live_started is not None:
                    sim = self.sim_start + timedelta(seconds=(time.monotonic() - live_started) * o.speed)
                    self._set_clock(sim)
                    while self.live and datetime.fromisoformat(self.live[0]["time"]) <= sim:
                        env = self.live.popleft()
                        self.publisher.publish_raw(event_to_json(env), env["subject"].encode())
                        self.state.published += 1
                if time.monotonic() - last_fig > 2:
                    last_fig = time.monotonic()
                    try:
                        self.state.figures = _get_json(f"{self.worker_url}/figures?period={period_key('month', self.state.sim_now)}")
                    except OSError:
                        pass
                    if any(p.poll() is not None for p in self.children):
                        self.state.error = t("live.error.child", o.lang, dir=o.base_dir)
                if view:
                    view.update()
                else:
                    self._print_line()
                self.stop_event.wait(1.0)
        finally:
            if view:
                view.close()

    def _print_line(self) -> None:
        s = self.state
        prov = next(iter((s.figures or {}).get("provinces", {}).values()), None)
        total = prov and prov.get("total_estimated")
        lang = self.opts.lang
        print(t("live.line", lang, time=format_datetime(s.sim_now, lang), published=format_number(s.published, lang, 0),
                total=format_number(total, lang, 2), alerts=format_number(len(s.alerts), lang, 0), url=self.worker_url),
              flush=True)

    def _follow_alerts(self) -> None:
        from kafka import KafkaConsumer

        try:
            consumer = KafkaConsumer(self.settings.alerts, bootstrap_servers=self.broker.bootstrap,
                                     auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=1000,
                                     group_id=None, isolation_level="read_committed")  # committed alerts only
            while not self.stop_event.is_set():
                for msg in consumer:
                    try:
                        self.state.alerts.appendleft(json.loads(msg.value))
                    except ValueError:
                        pass
                    if self.stop_event.is_set():
                        break
            consumer.close()
        except Exception as exc:
            self.state.error = t("live.error.alerts", self.opts.lang, error=exc)


class _LiveView:
    """The terminal view: province and worst units, newest alerts, and where to look."""

    def __init__(self, demo: Demo):
        from rich.live import Live

        self.demo = demo
        self.live = Live(self._render(), refresh_per_second=2, screen=False)
        self.live.start()

    def update(self) -> None:
        self.live.update(self._render())

    def close(self) -> None:
        self.live.stop()

    def _render(self):
        d, s = self.demo, self.demo.state
        return render_view(ViewInput(sim_now=s.sim_now, speed=d.opts.speed, published=s.published,
                                     history_total=s.history_total, worker_url=d.worker_url,
                                     prometheus_url=getattr(d, "prometheus_url", None), figures=s.figures,
                                     alerts=list(s.alerts), registry=d.registry, error=s.error), d.opts.lang)


def run_demo(opts: DemoOptions) -> int:
    return Demo(opts).run()
