"""Every patch this product makes to the internals of its client libraries (Faust, aiokafka, mode), in one place.

Each entry of ``PATCHES`` names the defect, the upstream report it works around, the versions the patch was written
and tested against, and the test that pins it. ``tests/test_compat.py`` fails when an installed version differs
from ``PINNED``, so an upgrade re-checks every patch instead of carrying one silently onto internals that moved.
Nothing outside this package patches a client library (checked by ``tests/test_layout.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from streams.compat.offsets import rewind_partitions_never_committed, watch_recovery
from streams.compat.pacing import install_empty_fetch_pause
from streams.compat.transactions import read_committed_tables
from streams.compat.repairs import (guard_source_gaps, install_closed_transport_repair, install_complete_buffer_flush,
                                   rebuild_partitions_ahead_of_changelog, watch_stalled_source)

__all__ = ["PATCHES", "PINNED", "Patch", "install_patches"]

#: The distributions whose internals the patches touch, at the versions they were written for.
PINNED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}


class Patch(NamedTuple):
    name: str
    library: str
    defect: str
    upstream: str
    test: str


PATCHES: tuple[Patch, ...] = (
    Patch("install_closed_transport_repair", "aiokafka",
          "under uvloop a write on a transport the broker closed raises RuntimeError, which aiokafka does not catch; "
          "the metadata task dies and the consumer never finds its coordinator again",
          "https://github.com/aio-libs/aiokafka/issues/1038 (open; same defect)",
          "tests/test_repairs.py::test_repaired_the_write_is_a_connection_error_and_fails_what_was_in_flight"),
    Patch("install_complete_buffer_flush", "faust-streaming",
          "the producer buffer's flush returns before every buffered record was handed to the client, so a commit "
          "could pass records not yet sent",
          "none found; context: https://github.com/faust-streaming/faust/issues/273 (flush before commit)",
          "tests/test_repairs.py::test_repaired_flush_returns_only_when_every_record_reached_the_client"),
    Patch("rebuild_partitions_ahead_of_changelog", "faust-streaming",
          "a local table partition whose persisted offset is ahead of the changelog crashes recovery "
          "(ConsistencyError); rebuilt from the changelog instead",
          "https://github.com/faust-streaming/faust/issues/158 (open; same defect)",
          "tests/test_stream.py::test_a_changelog_that_lost_acknowledged_records_is_restored_from_not_crashed_on"),
    Patch("watch_stalled_source", "faust-streaming",
          "after a restart under load the agent stops receiving records while its source partitions still hold "
          "some; the watchdog seeks the stalled partitions again",
          "related: https://github.com/faust-streaming/faust/issues/175, /523, /629 (open)",
          "tests/test_worker_smoke.py::test_a_worker_whose_source_partitions_stall_gets_itself_going_again"),
    Patch("guard_source_gaps", "faust-streaming",
          "the consumer can jump over source records across a rebalance and commit past a record never applied; "
          "commits stop at the first unapplied offset and the consumer is sent back to it",
          "related: https://github.com/faust-streaming/faust/issues/606 (open; fix PR 707 not in 0.15.3), "
          "https://github.com/faust-streaming/faust/issues/216",
          "tests/test_repairs.py, tests/test_worker_smoke.py::test_a_consumer_that_jumps_over_records_is_sent_back_to_read_them"),
    Patch("install_empty_fetch_pause", "aiokafka",
          "a broker that answers empty fetches at once (noida-db ignores fetch_max_wait_ms) makes the fetcher "
          "spin; a short pause after an empty fetch",
          "none found (aiokafka backs off only after errors: https://github.com/aio-libs/aiokafka/issues/1155)",
          "tests/test_pacing.py"),
    Patch("rewind_partitions_never_committed", "aiokafka",
          "seek_to_committed skips partitions whose committed offset is None or 0, so records Faust dropped while "
          "its flow was stopped were never read again on a partition that never committed",
          "https://github.com/aio-libs/aiokafka/issues/1003 (open; same defect)",
          "tests/test_stream.py::test_kill_9_mid_stream_and_restart_counts_nothing_twice"),
    Patch("watch_recovery", "faust-streaming",
          "changelog records fetched while the generation changes are discarded after the position advanced; "
          "table recovery then waits forever, so a stalled recovery is re-seeked",
          "related: https://github.com/faust-streaming/faust/issues/432 (open)",
          "tests/test_worker_smoke.py::test_second_worker_joining_and_leaving_never_double_counts"),
    Patch("read_committed_tables", "faust-streaming",
          "the worker consumer reads read_uncommitted unless Faust's own exactly_once is on, and table recovery waits "
          "for a record at a changelog's end offset minus one, which is a transaction marker when the changelog is "
          "written in transactions; read_committed, and recovery ends at the last committed record",
          "related: https://github.com/faust-streaming/faust/issues/47 (recovery hangs under exactly_once; closed), "
          "https://github.com/faust-streaming/faust/issues/597 (the end offset minus one as last record; open)",
          "tests/test_compat.py::test_recovery_ends_at_the_last_committed_changelog_record, tests/test_exactly_once.py"),
)


def install_patches(app: Any, topic: str, runtime: Any, client_config: dict[str, Any] | None = None) -> None:
    """Install every patch on a freshly built worker app (idempotent for the process-wide ones).

    Every topic is read committed and recovery ends at a changelog's last committed record, whatever the
    guarantee: a deployment moved from exactly-once to at-least-once keeps changelogs whose last offsets are
    transaction markers, and recovery waiting for the end offset minus one would never end. With ``runtime.txn``
    set (exactly-once outputs), recovery starts after the runtime fenced the partitions' previous owners, and Faust
    commits no source offsets (the runtime's transactions do); ``client_config`` holds aiokafka's connection
    arguments."""
    transactional = getattr(runtime, "txn", None) is not None
    read_committed_tables(app, client_config or {},
                          before_recovery=runtime.own_transactions if transactional else None)
    rewind_partitions_never_committed(app, topic)
    watch_recovery(app)
    watch_stalled_source(app, topic, lambda: runtime.records_received, stall_seconds=runtime.settings.stall_seconds)
    guard_source_gaps(app, topic, applied=None if transactional else runtime.applied_offsets,
                      commit_source=not transactional)
    install_closed_transport_repair()
    install_complete_buffer_flush()
    install_empty_fetch_pause()
    rebuild_partitions_ahead_of_changelog(app, on_restoring=runtime.on_table_restoring)
