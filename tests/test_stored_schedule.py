"""The deadline schedule kept in RocksDB (streams/runtime/stored_schedule.py) behaves as the in-memory one: whatever sequence
of reschedules, cancellations and pops, both pop what a plain dictionary of next checks says is due, earliest first,
and report the same next check, size and scheduled instants. Its database is scratch space: a new schedule starts
empty even where a crashed process left one, and closing it removes it."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.calendar import TZ
from streams.runtime.clock import DeadlineSchedule
import os
import subprocess
import sys

from streams.runtime.stored_schedule import (StoredAnnouncements, StoredSchedule, announcements_path, clear_abandoned, schedule_path)

START = datetime(2026, 3, 10, 16, tzinfo=TZ)
CODES = [f"G22.001-251201-{n:06d}" for n in range(6)] + ["Đ.01-ü", "A", "AB"]  # prefixes of one another too

_op = st.one_of(
    st.tuples(st.just("schedule"), st.sampled_from(CODES), st.none() | st.integers(0, 50), st.integers(0, 999_999)),
    st.tuples(st.just("advance"), st.integers(0, 20)),
    st.tuples(st.just("next_due")),
)
_paths = itertools.count()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(CODES), st.integers(0, 50), max_size=5), st.lists(_op, max_size=60))
def test_the_stored_schedule_pops_what_a_dictionary_of_next_checks_says_is_due(tmp_path: Path, loaded, ops) -> None:
    stored = StoredSchedule(START, tmp_path / f"s{next(_paths)}")
    heap = DeadlineSchedule(START, stale_slack=2)
    model: dict[str, datetime] = {}
    for code, minutes in loaded.items():  # as a rebuild fills a new schedule from the table
        stored.load(code, START + timedelta(minutes=minutes))
        heap.load(code, START + timedelta(minutes=minutes))
        model[code] = START + timedelta(minutes=minutes)
    now = START
    try:
        for op in ops:
            if op[0] == "schedule":
                _, code, minutes, micros = op
                when = None if minutes is None else START + timedelta(minutes=minutes, microseconds=micros)
                stored.schedule(code, when)
                heap.schedule(code, when)
                if when is None:
                    model.pop(code, None)
                else:
                    model[code] = when
            elif op[0] == "advance":
                now += timedelta(minutes=op[1])
                due = sorted((when, code.encode()) for code, when in model.items() if when <= now)
                expected = [code.decode() for _, code in due]
                assert stored.pop_due(now) == expected
                assert sorted(heap.pop_due(now)) == sorted(expected)
                for code in expected:
                    del model[code]
            else:
                assert stored.next_due() == heap.next_due() == min(model.values(), default=None)
            assert len(stored) == len(heap) == len(model)
            assert {c: stored.scheduled_at(c) for c in CODES} == {c: model.get(c) for c in CODES}
            assert sorted(stored.codes()) == sorted(model)
    finally:
        stored.close()


def test_nothing_is_due_before_the_earliest_check_even_after_it_moved_later(tmp_path: Path) -> None:
    schedule = StoredSchedule(START, tmp_path / "s")
    schedule.schedule("a", START + timedelta(hours=1))
    schedule.schedule("b", START + timedelta(hours=3))
    schedule.schedule("a", START + timedelta(hours=5))  # the earliest check moved after b's
    assert schedule.pop_due(START + timedelta(hours=2)) == []
    assert schedule.pop_due(START + timedelta(hours=4)) == ["b"]
    schedule.schedule("c", START + timedelta(minutes=1))  # earlier than anything popped so far
    assert schedule.pop_due(START + timedelta(minutes=2)) == ["c"]
    assert schedule.pop_due(START + timedelta(hours=5)) == ["a"]
    assert len(schedule) == 0 and schedule.next_due() is None
    schedule.close()


def test_instants_come_back_exactly_whatever_their_offset(tmp_path: Path) -> None:
    schedule = StoredSchedule(START, tmp_path / "s")
    when = datetime(2026, 3, 10, 9, 30, 1, 123456, tzinfo=timezone(timedelta(hours=7)))
    schedule.schedule("a", when)
    assert schedule.scheduled_at("a") == when and schedule.next_due() == when
    assert schedule.pop_due(when - timedelta(microseconds=1)) == []
    assert schedule.pop_due(when) == ["a"]
    schedule.close()


def test_a_schedule_starts_empty_where_a_crashed_process_left_one_and_closing_removes_it(tmp_path: Path) -> None:
    path = schedule_path(tmp_path / "schedules", 0, 1)
    left = StoredSchedule(START, path)
    left.schedule("a", START)
    left._db.close()  # the process died: the database stays on disk, never closed by the schedule
    again = StoredSchedule(START, path)
    assert len(again) == 0 and again.codes() == [] and again.pop_due(START + timedelta(days=1)) == []
    again.close()
    assert not path.exists()
    again.close()  # twice is harmless


def test_only_the_schedules_of_processes_that_are_gone_are_cleared(tmp_path: Path) -> None:
    from streams.runtime.stored_schedule import _process_token

    root = tmp_path / "schedules"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead = root / f"{int(gone.stdout)}.5-p0-1"
    assert _process_token(int(gone.stdout)).endswith(".gone")
    mine = StoredSchedule(START, schedule_path(root, 1, 2))
    mine.schedule("a", START)
    parent = root / f"{_process_token(os.getppid())}-p2-3"  # a live process that is not this one
    earlier_me = root / f"{os.getpid()}.1-p3-4"  # this PID's previous holder, as a container restart gives
    unnamed = root / f"{int(gone.stdout)}.gone-p1-1"
    for path in (dead, parent, earlier_me, unnamed):
        path.mkdir(parents=True)
    assert sorted(clear_abandoned(root)) == sorted([dead, earlier_me, unnamed])
    assert parent.exists() and mine.pop_due(START) == ["a"]
    mine.close()


@pytest.mark.parametrize("moves", [1, 5])
def test_many_dossiers_rescheduled_many_times_pop_in_time_order(tmp_path: Path, moves: int) -> None:
    schedule = StoredSchedule(START, tmp_path / "s")
    codes = [f"G22.{n % 120:03d}-251201-{n:06d}" for n in range(3_000)]
    for move in range(moves):
        for i, code in enumerate(reversed(codes)):
            schedule.schedule(code, START + timedelta(seconds=37 * (len(codes) - 1 - i) + move))
    assert len(schedule) == len(codes)
    assert schedule.pop_due(START + timedelta(days=30)) == codes
    assert len(schedule) == 0 and schedule.codes() == []
    schedule.close()


def test_the_runtime_keeps_schedules_in_rocksdb_and_closes_them_with_their_partition(tmp_path: Path) -> None:
    from streams.runtime.runtime import Runtime
    from streams.runtime.clock import FrozenClock
    from streams.runtime.processor import Processor
    from streams.runtime.settings import WorkerSettings

    root = tmp_path / "schedules"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    (root / f"{int(gone.stdout)}-p0-7").mkdir(parents=True)  # left by a worker that crashed
    runtime = Runtime(WorkerSettings(data_dir=tmp_path, partitions=2), Processor(), FrozenClock(START))
    announced = runtime.announcements.path  # the processor's announced alerts, in their own scratch database
    assert list(root.iterdir()) == [announced] and runtime.processor._announced is runtime.announcements

    def schedules():
        return [path for path in root.iterdir() if path != announced]

    for p in (0, 1):
        runtime.partitions[p] = runtime._new_state(p, START)
        runtime.partitions[p].schedule.schedule(f"D{p}", START)
    assert isinstance(runtime.partitions[0].schedule, StoredSchedule) and len(schedules()) == 2
    dropped = runtime.partitions[0]
    runtime.on_assigned({1})  # partition 0 went to another worker
    assert [path.name.split("-")[1] for path in schedules()] == ["p1"]
    dropped.schedule.schedule("late", START)  # a batch that fetched the state before the drop can still apply
    assert isinstance(dropped.schedule, DeadlineSchedule) and len(schedules()) == 1
    assert runtime.partitions[1].schedule.pop_due(START) == ["D1"]
    runtime.on_assigned(set())
    assert schedules() == [] and announced.exists()
    in_memory = Runtime(WorkerSettings(data_dir=tmp_path, store="memory"), Processor(), FrozenClock(START))
    assert isinstance(in_memory._new_state(0, START).schedule, DeadlineSchedule)
    chosen = Runtime(WorkerSettings(data_dir=tmp_path, schedule_store="memory"), Processor(), FrozenClock(START))
    assert isinstance(chosen._new_state(0, START).schedule, DeadlineSchedule)
    assert in_memory.announcements is None and type(in_memory.processor._announced) is dict
    assert chosen.announcements is None and type(chosen.processor._announced) is dict
    with pytest.raises(ValueError, match="schedule_store"):
        WorkerSettings(schedule_store="disk")


def test_checks_loaded_by_a_rebuild_are_seen_by_every_later_call(tmp_path: Path) -> None:
    from streams.runtime.stored_schedule import LOAD_BATCH

    n = LOAD_BATCH + 10  # one batch written, one pending
    codes = [f"G22.001-251201-{i:06d}" for i in range(n)]
    for ask in ("scheduled_at", "schedule", "pop_due", "next_due", "codes"):
        schedule = StoredSchedule(START, tmp_path / ask)
        for i, code in enumerate(codes):
            schedule.load(code, START + timedelta(seconds=i))
        assert len(schedule) == n
        last = START + timedelta(seconds=n - 1)
        if ask == "scheduled_at":
            assert schedule.scheduled_at(codes[-1]) == last
        elif ask == "schedule":
            schedule.schedule(codes[-1], START - timedelta(seconds=1))  # its pending entry must not survive
            assert schedule.pop_due(last) == [codes[-1], *codes[:-1]]
        elif ask == "pop_due":
            assert schedule.pop_due(last) == codes
        elif ask == "next_due":
            assert schedule.next_due() == START
        else:
            assert schedule.codes() == sorted(codes)
        schedule.close()


_alerts = st.frozensets(st.builds(lambda kind, due: (kind, due), st.sampled_from(
    ["due_soon", "overdue", "apology_missing", "repeated_supplement", "second_reschedule"]),
    st.sampled_from(["20260310T010000Z", "20260402T090000Z"])), max_size=3)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(CODES), st.none() | _alerts), max_size=40))
def test_stored_announcements_remember_what_a_dictionary_does(tmp_path: Path, ops) -> None:
    """The processor's memory of announced alerts, in RocksDB: after any sequence of sets and pops, every code
    gives back exactly the alerts a dictionary holds for it (ids with their code, kinds), or the default."""
    from models.dossier import Alert

    def alerts_of(code, made):
        return frozenset(Alert(f"{code}:{kind}" + (f":{due}" if kind in ("due_soon", "overdue", "apology_missing")
                                                    else ""), kind) for kind, due in made)

    path = announcements_path(tmp_path / "schedules", next(_paths))
    stored, model = StoredAnnouncements(path), {}
    for code, made in ops:
        if made is None:
            assert stored.pop(code, None) is None
            model.pop(code, None)
        elif made:
            stored[code] = model[code] = alerts_of(code, made)
        for c in CODES:
            assert stored.get(c, frozenset()) == model.get(c, frozenset())
    assert stored.get("never", None) is None
    stored.close()
    assert not path.exists()
    stored.close()  # twice is harmless
