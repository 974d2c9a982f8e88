"""The worker's log level is the level its libraries log at (streams/worker.py ``faust_worker``).

Faust's own worker, at WARN or above, turns the root logger to DEBUG for its terminal spinner, so every ``debug``
call in Faust and aiokafka built a record nobody printed (docs/benchmarks.md). These tests set logging up exactly as
the worker does at start and look at what is then enabled.
"""

from __future__ import annotations

import logging

import pytest

from streams.worker import build_app
from streams.runtime.processor import Processor
from streams.runtime.settings import WorkerSettings
from streams.worker import faust_worker

from .test_table_access import CLOCK

LIBRARY_LOGGERS = ("aiokafka.producer.producer", "faust.topics", "faust.tables.base")


@pytest.fixture
def restored_logging():
    """Faust's set-up replaces the root logger's handlers and level; give pytest its own back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _app(tmp_path):
    settings = WorkerSettings(broker="127.0.0.1:1", data_dir=tmp_path, store="memory", app_id="logging-test")
    return build_app(settings, Processor(), CLOCK)


def test_faust_own_worker_at_warn_enables_debug_records_everywhere(tmp_path, restored_logging) -> None:
    """Why ``faust_worker`` exists; if a Faust upgrade stops doing this, the repair can go."""
    app = _app(tmp_path)
    app.Worker(loglevel="warn", quiet=True, redirect_stdouts=False)._setup_logging()
    assert all(logging.getLogger(name).isEnabledFor(logging.DEBUG) for name in LIBRARY_LOGGERS)


@pytest.mark.parametrize("level, enabled, disabled", [
    ("warn", logging.WARNING, logging.INFO),
    ("error", logging.ERROR, logging.WARNING),
    ("info", logging.INFO, logging.DEBUG),
])
def test_the_worker_logs_at_its_level_and_no_lower(tmp_path, restored_logging, level, enabled, disabled) -> None:
    faust_worker(_app(tmp_path), level)._setup_logging()
    for name in LIBRARY_LOGGERS:
        assert logging.getLogger(name).isEnabledFor(enabled), name
        assert not logging.getLogger(name).isEnabledFor(disabled), name
