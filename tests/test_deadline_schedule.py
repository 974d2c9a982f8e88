"""The deadline schedule (streams/runtime/clock.py): whatever sequence of reschedules, cancellations and pops, it pops what
a plain dictionary of next checks says is due, earliest first, and after every (re)scheduling its heap of lazily
deleted entries is within its bound."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from models.calendar import TZ
from streams.runtime.clock import DeadlineSchedule

START = datetime(2026, 3, 10, 16, tzinfo=TZ)
CODES = [f"G22.001-251201-{n:06d}" for n in range(8)]

_op = st.one_of(
    st.tuples(st.just("schedule"), st.sampled_from(CODES), st.none() | st.integers(0, 50)),
    st.tuples(st.just("advance"), st.integers(0, 20)),
    st.tuples(st.just("next_due")),
)


def _bound(schedule: DeadlineSchedule) -> int:
    return 2 * len(schedule) + schedule.stale_slack + 1


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=80), st.integers(0, 3))
def test_the_schedule_pops_what_a_dictionary_of_next_checks_says_is_due(ops, slack) -> None:
    schedule = DeadlineSchedule(START, stale_slack=slack)  # small, so that sequences this short reach the rebuild
    model: dict[str, datetime] = {}
    now = START
    for op in ops:
        if op[0] == "schedule":
            _, code, minutes = op
            when = None if minutes is None else START + timedelta(minutes=minutes)
            schedule.schedule(code, when)
            if when is None:
                model.pop(code, None)
            else:
                model[code] = when
            assert len(schedule._heap) <= _bound(schedule)  # pops may leave more, until the next (re)schedule
        elif op[0] == "advance":
            now += timedelta(minutes=op[1])
            due = sorted((when, code) for code, when in model.items() if when <= now)
            assert schedule.pop_due(now) == [code for _, code in due]
            for _, code in due:
                del model[code]
        else:
            assert schedule.next_due() == min(model.values(), default=None)
        assert len(schedule) == len(model)
        assert {code: schedule.scheduled_at(code) for code in CODES} == {code: model.get(code) for code in CODES}


def test_rescheduling_every_dossier_many_times_keeps_at_most_one_stale_entry_each() -> None:
    schedule = DeadlineSchedule(START)
    codes = [f"G22.{n % 120:03d}-251201-{n:06d}" for n in range(5_000)]
    for move in range(10):
        for i, code in enumerate(codes):
            schedule.schedule(code, START + timedelta(seconds=37 * i + move))
            assert len(schedule._heap) <= _bound(schedule)
    assert len(schedule) == len(codes)
    assert schedule.pop_due(START + timedelta(days=30)) == codes


def test_dossiers_that_end_do_not_leave_their_entries_behind() -> None:
    schedule = DeadlineSchedule(START, stale_slack=16)
    codes = [f"G22.{n % 120:03d}-251201-{n:06d}" for n in range(1_000)]
    for move in range(2):
        for i, code in enumerate(codes):
            schedule.schedule(code, START + timedelta(hours=i, minutes=move))
    for code in codes:  # each dossier ends: nothing more to check, and nothing new is scheduled after
        schedule.schedule(code, None)
    assert len(schedule) == 0 and len(schedule._heap) <= 16 + 1
    assert schedule.next_due() is None and schedule.pop_due(START + timedelta(days=400)) == []
