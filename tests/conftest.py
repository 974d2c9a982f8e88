"""Shared fixtures: one real Kafka-protocol broker per session, unique topic names per test.

Set KAFKA_BOOTSTRAP=host:port to run the same tests against another broker (a real Apache Kafka, say).
"""

from __future__ import annotations

import os
import re
import uuid

import pytest

from streams.tools.broker import EmbeddedBroker


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3.0.12 calls importlib.resources.open_text on every client; the warning is raised from the
    # stdlib module, so the "kafka.*" filters in pyproject do not catch it.
    config.addinivalue_line("filterwarnings", "ignore:open_text is deprecated:DeprecationWarning")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> str:
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    broker = EmbeddedBroker(tmp_path_factory.mktemp("broker"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A prefix no other test (or earlier run on the same broker) uses, readable in broker listings."""
    name = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-")[:40]
    return f"t-{name}-{uuid.uuid4().hex[:6]}-"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the item, so fixtures can tell whether the test failed (to dump logs)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
