"""What the exactly-once runtime remembers of a failed transaction (streams.runtime.transactions), as bookkeeping.

A failed transaction of a partition leaves the committed offset known before it, and whether it carried changelog
records, for the partition's restoration: if the broker committed its offset while the table holds none of its
changelog records, its records are read again from before it (and the log says whether the broker lost changelog
records or only, perhaps, dead letters). The memory must not outlive the partition's stay here: a partition
fenced, or gone to another worker, and owned again later must not rewind to the offset of a failure long past and
dead-letter its bad records a second time.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from streams.runtime.transactions import TransactionalPath, Transactions


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
    assert path.txn.before_failure == {0: (120, True), 1: (7, False)}
    assert path.txn.broken == {0, 1} and not path.partitions and path.released == ["state-0", "state-1"]
    assert 0 not in path._staged
    path.partitions[0] = "again"
    path.txn.committed[0] = 150
    asyncio.run(path._roll_back(0, reown=True, had_changelog=False))  # not restored yet: the first failure counts
    assert path.txn.before_failure[0] == (120, True)


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
    assert path.txn.broken == {0} and path.txn.before_failure == {0: (5, True)} and 0 not in path.partitions
