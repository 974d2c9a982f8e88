"""The composition root: builds the worker's Faust app (streams.runtime), attaches what it serves
(streams.serve) and runs it until SIGTERM.

``python -m streams.worker --broker 127.0.0.1:9092 --web-port 6066 --data-dir DIR`` works on its own (tests use
it); the ``onestop worker`` command calls ``run_worker`` with the same settings.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streams.runtime.heap import HeapPolicy
from streams.runtime.janitor import GroupJanitor
from streams.runtime.clock import Clock, clock_from_settings
from streams.runtime.security import describe as describe_security
from streams.runtime.security import kafka_client_config
from streams.runtime.journal import WriteJournal
from streams.runtime.settings import WorkerSettings, settings_from_args
from streams.runtime.topics import ensure_topics

__all__ = ["build_app", "run_worker", "load_processor", "main"]

log = logging.getLogger(__name__)

CLEAN_STOP_MARKER = "clean-stop"
#: After a crash, keep the local tables and repair them from the write journal (streams.runtime.journal) rather than
#: discard them and read the whole changelog. 0 restores the discard.
KEEP_STATE_AFTER_CRASH = os.environ.get("ONESTOP_KEEP_STATE_AFTER_CRASH", "1") != "0"


def build_app(settings: WorkerSettings, processor: Any, clock: Clock) -> Any:
    """The worker's Faust app with ``/metrics`` and the read API attached; the runtime is ``app.onestop_runtime``."""
    from streams.runtime.app import build_stream_app
    from streams.serve import readapi, risk, sync
    from streams.serve.metrics import new_registry

    app = build_stream_app(settings, processor, clock)
    runtime = app.onestop_runtime
    registry = new_registry(runtime)
    at_risk = risk.register(app, runtime, registry)  # /api/units/{unit}/at-risk[.csv], at-risk and official metrics
    readapi.register(app, runtime, registry, figures_extensions=[at_risk.figures_forecast])
    sync.register(app, runtime)  # POST /api/dvcqg/{service} (docs/dvcqg.md)
    return app


def load_processor(spec: str | None = None) -> Any:
    """The processor named by ``module:attribute`` (a factory or an instance), else the product's default."""
    if spec:
        module_name, _, attr = spec.partition(":")
        if not attr:
            raise ValueError(f"processor spec {spec!r} must look like 'package.module:factory'")
        target = getattr(importlib.import_module(module_name), attr)
        return target if hasattr(target, "handle") and not isinstance(target, type) else target()
    try:
        from streams.runtime.processor import default_processor
    except ImportError as exc:
        raise RuntimeError(
            "streams.runtime.processor is not available; pass --processor package.module:factory"
        ) from exc
    return default_processor()


def run_worker(settings: WorkerSettings, processor: Any = None, clock: Clock | None = None) -> None:
    """Blocking. Exits through SystemExit like any Faust worker; SIGTERM and SIGINT stop it cleanly."""
    import mode.loop

    if settings.loop == "uvloop":
        mode.loop.use("uvloop")

    ensure_topics(settings.broker, settings)
    janitor = None
    if settings.evict_stale_members:
        janitor = GroupJanitor(settings.broker, settings.app_id, settings.web_url,
                               client_config=kafka_client_config(settings))
        try:
            janitor.sweep(starting=True)
        except Exception:  # best effort: never stop a worker from starting
            log.exception("could not check the consumer group for stale members")
    processor = processor if processor is not None else load_processor(settings.processor)
    clock = clock if clock is not None else clock_from_settings(settings)
    app = build_app(settings, processor, clock)
    # This process is the worker's alone: its long-lived state may leave the collector's full passes.
    app.onestop_runtime.heap = HeapPolicy(settings.gc_freeze_seconds, settings.gc_full_seconds)
    if janitor is not None:
        _schedule_janitor(app, janitor)
    marker = settings.data_dir / CLEAN_STOP_MARKER
    prepare_local_state(Path(app.conf.tabledir), marker, app.onestop_runtime.journal,
                        exactly_once=app.onestop_runtime.txn is not None)
    log.info("worker %s on %s, web %s, clock %r", settings.app_id, settings.broker, settings.web_url, clock)
    log.info("security: %s", describe_security(settings))
    worker = faust_worker(app, settings.log_level)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code in (0, None):
            marker.write_text("stopped cleanly; local table state matches the changelog\n", encoding="utf-8")
        raise


def faust_worker(app: Any, log_level: str) -> Any:
    """Faust's worker without its terminal spinner.

    At a log level of WARN or above, Faust hands every log record to a spinner: it sets the root logger to DEBUG
    and adds a DEBUG handler. Every ``debug`` call in Faust and aiokafka (several per changelog record sent) then
    built and dispatched a record that no handler printed: ~3 % of the worker's samples under load
    (docs/benchmarks.md). A service writing its log to a file has no terminal to spin in anyway."""
    worker = app.Worker(loglevel=log_level, quiet=True, redirect_stdouts=False)
    worker.spinner = None
    return worker


def _schedule_janitor(app: Any, janitor: GroupJanitor, interval: float = 5.0) -> threading.Thread:
    """Sweep the group every ``interval`` seconds from a plain daemon thread, passing our own member id.

    Not a Faust timer: Faust starts timers only once table recovery has completed, and recovery cannot complete
    while a crashed member leads the group, so a timer-driven sweep waited forever exactly when it was needed (a
    worker restarted while another one had just been killed rejoined the same generation every few seconds
    for minutes). kafka-python is blocking anyway.
    """

    def my_member_id() -> str | None:
        try:  # app._consumer, not app.consumer: the property would create the consumer from this thread
            return app._consumer._thread._consumer._coordinator.member_id or None
        except AttributeError:
            return None

    def run() -> None:
        while True:
            time.sleep(interval)
            try:
                janitor.sweep(my_member_id)
            except Exception as exc:  # best effort, like the sweep at start
                log.warning("group janitor failed: %r", exc)

    thread = threading.Thread(target=run, name="onestop-group-janitor", daemon=True)
    thread.start()
    return thread


def prepare_local_state(tabledir: Path, marker: Path, journal: WriteJournal | None,
                        keep_after_crash: bool | None = None, exactly_once: bool = False) -> str:
    """Decide what happens to the local tables at start; returns "fresh", "clean", "kept" or "discarded".

    Faust writes a dossier to RocksDB at once but to the changelog through the producer buffer. After a crash
    the local copy can hold states the changelog never got; the records behind them are re-delivered (their
    offsets were not committed), look like duplicates, and are not written again, so the changelog would stay
    behind for good and the next owner of the partition would recover stale dossiers. When the previous run kept
    a write journal, the journal names every such dossier: the tables are kept and those dossiers are sent to the
    changelog again once recovery is done (``Runtime._repair_changelog``). Without one (a run of an older
    version, or ``ONESTOP_KEEP_STATE_AFTER_CRASH=0``) the tables are discarded and recovered from the changelog,
    which keeps local state and changelog identical at the cost of reading all of it.

    With ``exactly_once`` the local tables are written only after their transaction committed, so they are never
    ahead of the changelog and are kept after a crash with nothing to repair; unless the journal names dossiers
    of an at-least-once run that crashed: those would have to be sent outside any transaction, so the tables are
    discarded instead.
    """
    keep_after_crash = KEEP_STATE_AFTER_CRASH if keep_after_crash is None else keep_after_crash
    has_tables = tabledir.is_dir() and any(tabledir.iterdir())
    crashed = not marker.exists() and has_tables
    outcome = "fresh" if not has_tables else "clean"
    if crashed and exactly_once and journal is not None and journal.holds_entries():
        keep_after_crash = False  # an at-least-once crash's dossiers: never repaired outside a transaction
    if crashed and keep_after_crash and journal is not None and journal.exists():
        pending = journal.open(crashed=True)
        log.warning("previous run did not stop cleanly: keeping %s; %s dossier(s) named by the write journal are "
                    "sent to the changelog again after recovery", tabledir, sum(len(c) for c in pending.values()))
        outcome = "kept"
    elif crashed:
        log.warning("previous run did not stop cleanly: discarding %s, tables are recovered from the changelog",
                    tabledir)
        shutil.rmtree(tabledir)
        if journal is not None:
            journal.discard()
            journal.open(crashed=False)
        outcome = "discarded"
    elif journal is not None:
        journal.open(crashed=False)
    marker.unlink(missing_ok=True)
    return outcome


def main(argv: Sequence[str] | None = None) -> None:
    settings = settings_from_args(argv)
    level = {"warn": "WARNING"}.get(settings.log_level.lower(), settings.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # kafka-python logs every connection at INFO; the admin calls here (topics, janitor) would drown the log.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    run_worker(settings)


if __name__ == "__main__":
    main()
