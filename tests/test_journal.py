"""The write journal and the start-up decision about local tables (files only; the broker-backed crash test is
tests/test_worker_smoke.py::test_a_crash_keeps_the_local_tables_and_sends_their_unsent_writes_to_the_changelog)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.runtime.journal import CARRIED, FILES, WriteJournal, read_entries
from streams.worker import prepare_local_state


def test_a_crash_names_every_write_not_released_by_a_checkpoint(tmp_path: Path) -> None:
    j = WriteJournal(tmp_path)
    j.open(crashed=False)
    j.record([(0, "A"), (1, "B")])
    old = j.rotate()  # a checkpoint begins: later writes go to the other file
    j.record([(1, "C")])
    j.release(old)  # the producer flushed: A and B are on the broker
    j.record([(2, "D"), (1, "C")])
    j.close()  # kill -9: nothing else runs

    again = WriteJournal(tmp_path)
    assert again.exists()
    assert again.open(crashed=True) == {1: {"C"}, 2: {"D"}}
    assert read_entries(tmp_path / CARRIED) == {1: {"C"}, 2: {"D"}}  # kept until repaired
    assert not any((tmp_path / n).stat().st_size for n in FILES if (tmp_path / n).exists())


def test_a_checkpoint_that_never_finished_releases_nothing(tmp_path: Path) -> None:
    j = WriteJournal(tmp_path)
    j.open(crashed=False)
    j.record([(0, "A")])
    j.rotate()  # crash while the producer flushes: the rotated-out file is still there
    j.record([(0, "B")])
    j.close()
    assert WriteJournal(tmp_path).open(crashed=True) == {0: {"A", "B"}}


def test_a_rotation_keeps_the_entries_of_the_file_it_returns_to(tmp_path: Path) -> None:
    j = WriteJournal(tmp_path)
    j.open(crashed=False)
    j.record([(0, "A")])
    j.rotate()  # a checkpoint that released nothing: "writes-a" still holds A
    j.record([(0, "B")])
    old = j.rotate()  # back to "writes-a", which must keep A
    j.record([(0, "C")])
    j.release(old)  # B's file confirmed
    j.close()
    assert WriteJournal(tmp_path).open(crashed=True) == {0: {"A", "C"}}


def test_after_a_clean_stop_only_entries_carried_from_an_earlier_crash_stay_pending(tmp_path: Path) -> None:
    j = WriteJournal(tmp_path)
    j.open(crashed=False)
    j.record([(3, "X")])
    j.close()
    j = WriteJournal(tmp_path)
    assert j.open(crashed=True) == {3: {"X"}}
    j.repaired([])  # partition 3 went to another worker: nothing repaired
    j.record([(0, "Y")])
    j.close()  # then a clean stop (the producer flushed Y)
    j = WriteJournal(tmp_path)
    assert j.open(crashed=False) == {3: {"X"}}
    j.repaired([3])
    assert not (tmp_path / CARRIED).exists() and j.pending == {}


def test_a_line_cut_short_by_the_crash_is_left_out(tmp_path: Path) -> None:
    (tmp_path / FILES[0]).write_bytes(b'0\t"A"\n1\t"B"\nnot-a-line\n\t\n3\tA\n2\t"C-cut-sh')
    assert read_entries(tmp_path / FILES[0]) == {0: {"A"}, 1: {"B"}}


def test_codes_are_kept_exactly_even_unusual_ones(tmp_path: Path) -> None:
    j = WriteJournal(tmp_path)
    j.open(crashed=False)
    codes = ["T01.S01-20260302-00001", "mã hồ sơ có dấu", "with space", "tab\tinside", "new\nline", '"quoted"']
    j.record((0, c) for c in codes)
    j.close()
    assert WriteJournal(tmp_path).open(crashed=True) == {0: set(codes)}


def _tables(tmp_path: Path, *, with_files: bool) -> Path:
    tabledir = tmp_path / "v1" / "tables"
    tabledir.mkdir(parents=True)
    if with_files:
        (tabledir / "dossiers-0.db").mkdir()
    return tabledir


@pytest.mark.parametrize("tables, clean_marker, journal_kept, keep, outcome, tables_left", [
    (False, False, False, True, "fresh", True),
    (True, True, True, True, "clean", True),
    (True, False, True, True, "kept", True),
    (True, False, False, True, "discarded", False),  # the crashed run kept no journal (an older version)
    (True, False, True, False, "discarded", False),  # ONESTOP_KEEP_STATE_AFTER_CRASH=0
])
def test_what_happens_to_local_tables_at_start(tmp_path: Path, tables: bool, clean_marker: bool,
                                                journal_kept: bool, keep: bool, outcome: str,
                                                tables_left: bool) -> None:
    tabledir = _tables(tmp_path, with_files=tables)
    marker = tmp_path / "clean-stop"
    if clean_marker:
        marker.write_text("stopped cleanly\n")
    journal_dir = tmp_path / "write-journal"
    if journal_kept:
        old = WriteJournal(journal_dir)
        old.open(crashed=False)
        old.record([(0, "A")])
        old.close()
    journal = WriteJournal(journal_dir)
    assert prepare_local_state(tabledir, marker, journal, keep_after_crash=keep) == outcome
    assert (tabledir.is_dir() and any(tabledir.iterdir())) == (tables and tables_left)
    assert not marker.exists()  # written again only by the next clean stop
    assert journal.pending == ({0: {"A"}} if outcome == "kept" else {})
    journal.close()


def test_after_a_failed_changelog_send_the_runtime_releases_nothing_more(tmp_path: Path) -> None:
    """The record behind a failed send may be missing for good: its journal entry must wait for a crash repair,
    however many later checkpoints succeed."""
    import asyncio
    from types import SimpleNamespace

    from streams.runtime.runtime import Runtime
    from streams.runtime.settings import WorkerSettings

    async def scenario() -> None:
        runtime = Runtime(WorkerSettings(), SimpleNamespace(handle=lambda value, stored, now: None), clock=None)
        runtime.journal = WriteJournal(tmp_path)
        runtime.journal.open(crashed=False)
        runtime.table, runtime._fast_store = SimpleNamespace(data=object()), True  # the direct table path
        failed = asyncio.get_running_loop().create_future()
        failed.set_exception(RuntimeError("the broker refused the record"))
        runtime.journal.record([(0, "A")])
        runtime._last_changelog = {0: failed}
        await runtime.checkpoint_journal()
        for code in ("B", "C", "D"):  # later checkpoints whose sends all succeed
            runtime.journal.record([(0, code)])
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            runtime._last_changelog = {0: done}
            await runtime.checkpoint_journal()
        runtime.journal.close()

    asyncio.run(scenario())
    assert WriteJournal(tmp_path).open(crashed=True) == {0: {"A", "B", "C", "D"}}
