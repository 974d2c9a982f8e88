"""The worker's garbage-collector policy (streams.runtime.heap): its schedule with an injected clock and collector,
then what it does to a real heap, in a child interpreter so this test process's own collector is left alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from streams.runtime.heap import HeapPolicy
from streams.runtime.settings import WorkerSettings


class FakeCollector:
    """Records the calls in order; ``collect`` returns how many objects it "freed"."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def collect(self, generation: int = 2) -> int:
        self.calls.append(f"collect({generation})")
        return 3

    def freeze(self) -> None:
        self.calls.append("freeze")

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")

    def get_freeze_count(self) -> int:
        return 7


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def policy(freeze: float, full: float) -> tuple[HeapPolicy, FakeCollector, FakeClock]:
    gc, clock = FakeCollector(), FakeClock()
    return HeapPolicy(freeze, full, monotonic=clock, collector=gc), gc, clock


FULL = ["unfreeze", "collect(2)", "freeze"]
YOUNG_THEN_FREEZE = ["collect(1)", "freeze"]


@pytest.mark.parametrize("freeze, full, ticks_at, expected", [
    # nothing is due before the intervals have passed
    (10, 3600, [5, 9.9], []),
    # a freeze once freeze_seconds have passed since the last one, then not again until they pass again
    (10, 3600, [10, 15, 19.9, 20], YOUNG_THEN_FREEZE * 2),
    # the full collection once full_seconds have passed; it freezes too, so the next freeze counts from it
    (10, 30, [10, 20, 30, 35, 40], YOUNG_THEN_FREEZE * 2 + FULL + YOUNG_THEN_FREEZE),
    # full_seconds 0: freezes only, never a full collection
    (10, 0, [10, 20, 5000], YOUNG_THEN_FREEZE * 3),
    # freeze_seconds 0: the policy is off, whatever full_seconds says
    (0, 30, [10, 30, 60], []),
])
def test_the_schedule_of_freezes_and_full_collections(freeze, full, ticks_at, expected) -> None:
    p, gc, clock = policy(freeze, full)
    for at in ticks_at:
        clock.t = 100.0 + at
        p.tick()
    assert gc.calls == expected


def test_after_a_rebuild_the_heap_is_collected_once_and_frozen() -> None:
    p, gc, clock = policy(10, 3600)
    clock.t = 150.0
    p.settled()
    assert gc.calls == FULL
    assert p.full_collections == 1 and p.last_full_seconds == 0.0
    clock.t = 155.0  # the settle counts as a freeze and as a full collection
    p.tick()
    assert gc.calls == FULL


def test_a_disabled_policy_never_touches_the_collector() -> None:
    p, gc, clock = policy(0, 0)
    p.settled()
    clock.t = 1e9
    p.tick()
    assert gc.calls == [] and not p.enabled


@pytest.mark.parametrize("freeze, full", [(-1, 10), (10, -1)])
def test_negative_intervals_are_refused(freeze, full) -> None:
    with pytest.raises(ValueError):
        HeapPolicy(freeze, full)
    with pytest.raises(ValueError, match="gc_freeze_seconds and gc_full_seconds"):
        WorkerSettings(gc_freeze_seconds=freeze, gc_full_seconds=full)


def test_the_settings_reach_the_policy_from_the_environment() -> None:
    s = WorkerSettings.from_env({"ONESTOP_GC_FREEZE_SECONDS": "2.5", "ONESTOP_GC_FULL_SECONDS": "0"})
    assert (s.gc_freeze_seconds, s.gc_full_seconds) == (2.5, 0.0)
    assert (WorkerSettings().gc_freeze_seconds, WorkerSettings().gc_full_seconds) == (1.0, 3600.0)


REAL_HEAP = textwrap.dedent("""
    import gc, weakref
    from streams.runtime.heap import HeapPolicy

    class Node:
        pass

    t = [0.0]
    policy = HeapPolicy(10, 60, monotonic=lambda: t[0])
    state = [Node() for _ in range(20000)]                                # long-lived, as a worker's state is
    a, b = Node(), Node()
    a.other, b.other = b, a                                               # a cycle, still referenced
    holder = [a]
    alive = weakref.ref(a)
    policy.settled()
    frozen = gc.get_freeze_count()
    assert frozen > 20000, frozen                                         # the state left the collector's passes
    holder.clear(); del a, b                                              # the cycle becomes garbage while frozen
    gc.collect()
    assert alive() is not None                                            # a frozen cycle waits...
    t[0] = 10.0; policy.tick()                                            # a freeze is not a full collection
    gc.collect()
    assert alive() is not None
    t[0] = 60.0; policy.tick()                                            # ...for the periodic full collection
    assert alive() is None
    assert policy.full_collections == 2 and gc.get_freeze_count() >= len(state)
    print("ok", frozen)
""")


def test_on_a_real_heap_the_state_is_frozen_and_a_frozen_cycle_is_freed_by_the_full_collection() -> None:
    done = subprocess.run([sys.executable, "-c", REAL_HEAP], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok ")
