"""What the exactly-once runtime remembers of a failed transaction (streams.runtime.transactions), as bookkeeping.

A failed transaction of a partition leaves the committed offset known before it, whether it carried changelog
records, and its alerts and dead letters once the broker acknowledged them, for the partition's restoration: if the
broker committed its offset while the table holds none of its changelog records, its records are read again from
before it, unless it carried no changelog records and every one of its outputs is there (it committed; reading it
again would write its dead letters twice). The memory must not outlive the partition's stay here: a partition
fenced, or gone to another worker, and owned again later must not rewind to the offset of a failure long past and
dead-letter its bad records a second time. tests/test_transaction_outputs.py reads outputs back on a real broker.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from streams.runtime.transactions import Failure, Output, TransactionalPath, Transactions


class Path(TransactionalPath):
    def __init__(self) -> None:
        self.txn = Transactions(SimpleNamespace(app_id="t", broker="127.0.0.1:9"), {}, "t-changelog")
        self.partitions = {0: "state-0", 1: "state-1"}
        self._staged = {0: {"D1": b"x"}, 1: {}}
        self.released: list = []

    def _release(self, state) -> None:
        self.released.append(state)


def test_a_failed_transaction_is_remembered_with_the_offset_before_it_and_whether_it_wrote_the_changelog():
    path = Path()
    path.txn.committed = {0: 120, 1: 7}
    asyncio.run(path._roll_back(0, reown=True, had_changelog=True))
    asyncio.run(path._roll_back(1, reown=True, had_changelog=False))
    assert path.txn.before_failure == {0: Failure(120, True), 1: Failure(7, False)}
    assert path.txn.broken == {0, 1} and not path.partitions and path.released == ["state-0", "state-1"]
    assert 0 not in path._staged
    path.partitions[0] = "again"
    path.txn.committed[0] = 150
    asyncio.run(path._roll_back(0, reown=True, had_changelog=False))  # not restored yet: the first failure counts
    assert path.txn.before_failure[0] == Failure(120, True)


def test_a_fenced_or_released_partition_forgets_its_failure():
    path = Path()
    path.txn.committed = {0: 120, 1: 7}
    asyncio.run(path._roll_back(0, reown=True, had_changelog=True))
    asyncio.run(path._roll_back(0, reown=False))  # then another worker took it
    assert 0 not in path.txn.before_failure and path.txn.fenced == {0}
    asyncio.run(path._roll_back(1, reown=True, had_changelog=True))
    path._assigned_here = lambda p: False  # gone to another worker at a rebalance
    asyncio.run(path._restore_broken())
    assert path.txn.before_failure == {} and not path.txn.broken


def test_a_transaction_cancelled_mid_commit_is_rolled_back_like_a_failed_one():
    path = Path()
    path.txn.committed = {0: 5}
    path.generation = 1
    path.table = None

    async def cancelled(*args, **kwargs):
        raise asyncio.CancelledError

    path.txn.commit = cancelled
    path._alert_record = lambda a: (None, b"")
    path._dead_letter_record = lambda *d: d

    async def run() -> None:
        try:
            await path._commit_partition(0, [], [], 6)
        except asyncio.CancelledError:
            return
        raise AssertionError("the cancellation was swallowed")

    asyncio.run(run())
    assert path.txn.broken == {0} and path.txn.before_failure == {0: Failure(5, True)} and 0 not in path.partitions


DEAD = Output("t-dlq", 1, 40, b"D9", b"{not json", (("x-reason", b"invalid_json"),))
ALERT = Output("t-alerts", 0, 12, b"a-1", b"{}")


def test_the_outputs_the_broker_acknowledged_are_remembered_with_the_failure_and_forgotten_after_a_commit():
    path = Path()
    path.txn.committed = {0: 120, 1: 7}
    path.txn.acknowledged = {0: (DEAD, ALERT)}
    asyncio.run(path._roll_back(0, reown=True, had_changelog=False))
    asyncio.run(path._roll_back(1, reown=True, had_changelog=False))  # failed before every output was acknowledged
    assert path.txn.before_failure == {0: Failure(120, False, (DEAD, ALERT)), 1: Failure(7, False, None)}
    assert path.txn.acknowledged == {}


class Restoring(Path):
    """A partition restored after its failed transaction: the group's offset is now ``moved_to``; records whether
    the outputs were looked for and where the partition is read from again."""

    def __init__(self, failure: Failure, moved_to: int, found) -> None:
        super().__init__()
        self.partitions = {}
        self.txn.broken = {0}
        self.txn.before_failure = {0: failure}
        self.looked_for: list = []
        self.seeks: list = []

        async def own(ps):
            pass

        async def load_committed(ps):
            self.txn.committed[0] = moved_to

        async def outputs_committed(outputs):
            self.looked_for.append(outputs)
            if isinstance(found, Exception):
                raise found
            return found

        self.txn.own, self.txn.load_committed, self.txn.outputs_committed = own, load_committed, outputs_committed

    def _assigned_here(self, p):
        return True

    async def _catch_up_table(self, p):
        return 0

    async def _rebuild(self, p):
        return "rebuilt"

    async def _seek_source(self, p, offset):
        self.seeks.append(offset)


@pytest.mark.parametrize("failure, found, looked_for, read_from", [
    # dead letters only, all there: it committed; reading it again would write them twice
    (Failure(120, False, (DEAD, ALERT)), True, [(DEAD, ALERT)], 131),
    # some missing (a broker that committed the offset and lost records): read again, none lost
    (Failure(120, False, (DEAD, ALERT)), False, [(DEAD, ALERT)], 120),
    # nothing to look for: a batch of duplicates whose offset committed
    (Failure(120, False, ()), True, [()], 131),
    # not every output acknowledged: it cannot have committed them
    (Failure(120, False, None), True, [], 120),
    # the broker away again while looking: read again
    (Failure(120, False, (DEAD,)), ConnectionError("broker away"), [(DEAD,)], 120),
    # changelog records missing: the broker's fault, read again whatever the outputs say
    (Failure(120, True, (DEAD,)), True, [], 120),
], ids=["outputs-there", "outputs-missing", "no-outputs", "not-acknowledged", "check-failed", "changelog-lost"])
def test_a_failed_transaction_whose_offset_committed_is_read_again_unless_all_its_outputs_are_there(
        failure, found, looked_for, read_from):
    path = Restoring(failure, 131, found)
    asyncio.run(path._restore_broken())
    assert path.looked_for == looked_for
    assert path.seeks == [read_from] and path.txn.committed[0] == read_from
    assert path.partitions == {0: "rebuilt"} and not path.txn.before_failure


def test_a_failed_transaction_whose_offset_did_not_move_is_read_again_from_it_without_looking():
    path = Restoring(Failure(120, False, (DEAD,)), 120, True)
    asyncio.run(path._restore_broken())
    assert path.looked_for == [] and path.seeks == [120]
