"""What the design of exactly-once outputs rests on (docs/reliability.md section 5), on the embedded broker.

The checks are those of bench/transactions_check.py: each starts its own broker (and, for the Faust probe, its own
worker) on loopback and ends it by PID, so a broker or client upgrade that changes any of them fails here.
"""

from __future__ import annotations

import pytest

from bench import transactions_check as txn

pytestmark = pytest.mark.broker


@pytest.mark.timeout(180)
def test_the_broker_gives_what_consume_transform_produce_needs(tmp_path) -> None:
    checks = txn.run_broker_checks(tmp_path)
    assert {k: v for k, v in checks.items() if not k.startswith("_")} == {
        "read_committed_hides_aborted": True,
        "read_committed_hides_open_transaction": True,
        "offsets_commit_with_the_transaction": True,
        "zombie_fenced": True,
        "killed_transaction_invisible": True,
        "markers_survive_broker_restart": True,
    }, checks


@pytest.mark.timeout(180)
def test_faust_exactly_once_sends_the_agents_own_records_outside_the_transaction(tmp_path) -> None:
    """faust-streaming 0.15.3: with processing_guarantee="exactly_once" the table's changelog records wait for the
    commit, but what the agent sends itself (keyed or not) is visible to a read_committed reader at once and stays
    after a kill -9 before any commit. That is why the worker does not rely on Faust's exactly_once."""
    found = txn.run_faust_probe(tmp_path)
    sent = found["events"] * found["outputs_per_event"]
    for moment in ("while_transaction_open", "after_kill_9"):
        assert found[moment]["fout"] == {"read_uncommitted": sent, "read_committed": sent}, found
        assert found[moment]["eoscheck-ft-changelog"] == {"read_uncommitted": found["events"], "read_committed": 0}, found
