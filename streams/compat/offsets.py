"""Patches of Faust's and aiokafka's offset handling: rewinding partitions that never committed, and a watchdog
that re-seeks changelog partitions whose table recovery stalled. The upstream issues and pinned versions are listed
in ``streams.compat``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["RECOVERY_STALL_SECONDS", "rewind_partitions_never_committed", "watch_recovery"]

log = logging.getLogger(__name__)


def rewind_partitions_never_committed(app: Any, topic: str) -> None:
    """Make "seek to committed" also rewind source partitions whose committed offset is missing or 0.

    Faust drops records it fetched while the flow was stopped (rebalance, table recovery) and relies on seeking
    back to the committed offsets to read them again. aiokafka's seek_to_committed skips partitions whose
    committed offset is None or 0, so on a partition that never committed (a worker killed within its first
    commit interval, or a partition whose first record is still unprocessed) those records were silently
    skipped: we measured a restarted worker that processed nothing at all. Seeking such partitions to the
    beginning is what auto_offset_reset=earliest means anyway.
    """
    thread = app.consumer._thread
    original = thread.seek_to_committed

    async def seek_to_committed() -> Any:
        committed = await original()
        never = [tp for tp, offset in committed.items() if not offset and tp.topic == topic]
        if never:
            # A plain seek to the listed earliest offsets: seek_to_beginning would park the consumer thread
            # until the fetcher performs the reset, and recovery needs that thread meanwhile.
            for tp, offset in (await thread.earliest_offsets(*never)).items():
                if offset is not None:
                    thread.seek(tp, offset)
        return committed

    thread.seek_to_committed = seek_to_committed


#: Seconds without any changelog record received during recovery before the watchdog re-seeks.
RECOVERY_STALL_SECONDS = 6.0


def watch_recovery(app: Any, interval: float = 2.0) -> None:
    """Re-seek changelog partitions whose records were fetched but never reached table recovery.

    Faust discards fetched records when the generation changes or the active set moves while a fetch is in
    flight, after the consumer position already advanced past them. For source topics a later seek to the
    committed offset repairs that; for changelogs nothing does, and recovery then waits forever for offsets it
    will never see. We saw a worker stuck this way after a second worker left the group. Recovery records the
    last offset it received per partition, so when it makes no progress for a while and the consumer sits
    further ahead, reading again from just after that offset is safe (applying changelog records is idempotent).
    """
    thread = app.consumer._thread
    watch = {"progress": None, "since": time.monotonic()}

    @app.timer(interval=interval, name="onestop.recovery-watchdog")
    async def recovery_watchdog() -> None:
        recovery = app.tables.recovery
        remaining = {tp: n for tp, n in recovery.active_remaining().items() if n > 0}
        progress = sum(v for v in recovery.active_offsets.values() if v is not None)
        now = time.monotonic()
        if not recovery.in_recovery or not remaining or progress != watch["progress"]:
            watch.update(progress=progress, since=now)
            return
        if now - watch["since"] < RECOVERY_STALL_SECONDS:
            return
        watch["since"] = now
        for tp in remaining:
            received = recovery.active_offsets.get(tp)
            resume_at = 0 if received is None or received < 0 else received + 1
            position = await thread.position(tp)
            if position is not None and position > resume_at:
                log.warning("table recovery stalled on %s[%s]: consumer at %s, recovery at %s; seeking back",
                            tp.topic, tp.partition, position, resume_at)
                thread.seek(tp, resume_at)

