"""Time for the deadline clock: injectable sources of "now" and the per-partition schedule of re-evaluations.

Open dossiers cross "due soon" and "overdue" as time passes, without any event. Tests and demos must be able to
drive that time, so the worker never calls ``datetime.now()`` directly: it asks a ``Clock``. A test process moves
a worker's time with a file (``FileClock``) or the test-mode HTTP endpoint (``FrozenClock.set``).
"""

from __future__ import annotations

import heapq
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

__all__ = [
    "Clock",
    "SystemClock",
    "FrozenClock",
    "FileClock",
    "DeadlineSchedule",
    "parse_instant",
    "clock_from_settings",
]


class Clock(Protocol):
    def now(self) -> datetime:  # timezone-aware
        ...


def parse_instant(text: str) -> datetime:
    """ISO-8601 with an explicit offset; a naive time would silently mean different instants on different hosts."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"instant {text!r} has no UTC offset (write e.g. 2026-03-10T09:00:00+07:00)")
    return value


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def __repr__(self) -> str:
        return "SystemClock()"


class FrozenClock:
    """Stands still until told otherwise; ``set`` refuses to go back because deadlines only move forward."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware instant")
        self._at = at

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> datetime:
        if at.tzinfo is None:
            raise ValueError("clock instants must be timezone-aware")
        if at < self._at:
            raise ValueError(f"clock cannot go back from {self._at.isoformat()} to {at.isoformat()}")
        self._at = at
        return at

    def advance(self, delta: timedelta | float) -> datetime:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self.set(self._at + step)

    def __repr__(self) -> str:
        return f"FrozenClock({self._at.isoformat()})"


class FileClock:
    """Reads the instant from a file that another process rewrites; re-parsed only when the file changes.

    Survives a worker restart (unlike an in-memory frozen clock), which is what kill-and-restart tests need.
    """

    def __init__(self, path: str | os.PathLike[str], default: datetime | None = None) -> None:
        self.path = Path(path)
        self._default = default
        self._stamp: tuple[int, int] | None = None
        self._value: datetime | None = None

    def now(self) -> datetime:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            if self._value is not None:
                return self._value
            if self._default is not None:
                return self._default
            raise
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp or self._value is None:
            text = self.path.read_text(encoding="utf-8").strip()
            if text:  # a writer may be mid-rewrite; keep the last good value
                self._value = parse_instant(text)
                self._stamp = stamp
        if self._value is None:
            raise ValueError(f"clock file {self.path} is empty")
        return self._value

    def set(self, at: datetime) -> datetime:
        """Atomic rewrite, so a concurrent reader sees the old or the new instant, never half of one."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(at.isoformat(), encoding="utf-8")
        os.replace(tmp, self.path)
        return at

    def __repr__(self) -> str:
        return f"FileClock({str(self.path)!r})"


def clock_from_settings(settings: object) -> Clock:
    clock_file = getattr(settings, "clock_file", None)
    fake_now = getattr(settings, "fake_now", None)
    start = parse_instant(fake_now) if fake_now else None
    if clock_file:
        return FileClock(clock_file, default=start)
    if start is not None:
        return FrozenClock(start)
    return SystemClock()


class DeadlineSchedule:
    """One partition's pending re-evaluations and the instant its tallies are evaluated at.

    A min-heap of ``(when, dossier_code)`` with lazy deletion: rescheduling a dossier only records the new time,
    and stale heap entries are skipped when popped. That keeps every event O(log n) even when each event moves
    its dossier's next check. The heap is rebuilt from the live entries once the stale ones outnumber them (plus
    ``stale_slack``): a stale entry costs ~110 bytes, and an open dossier ~220 bytes in all, so allowing three
    stale entries per dossier, as before, let a schedule grow to ~560 bytes per open dossier
    (``bench/schedule_memory.py``). The rebuild is O(n) once per n reschedules.
    """

    __slots__ = ("evaluated_at", "stale_slack", "_heap", "_when")

    def __init__(self, evaluated_at: datetime, stale_slack: int = 1024) -> None:
        self.evaluated_at = evaluated_at
        self.stale_slack = stale_slack
        self._heap: list[tuple[datetime, str]] = []
        self._when: dict[str, datetime] = {}

    def schedule(self, code: str, when: datetime | None) -> None:
        if when is None:
            if self._when.pop(code, None) is None:
                return
        elif self._when.get(code) == when:
            return
        else:
            self._when[code] = when
            heapq.heappush(self._heap, (when, code))
        if len(self._heap) > 2 * len(self._when) + self.stale_slack:  # also when dossiers end, not only move
            self._compact()

    def load(self, code: str, when: datetime) -> None:
        """Schedule a code that is not scheduled yet (a rebuild from the table; see ``StoredSchedule.load``)."""
        self.schedule(code, when)

    def pop_due(self, now: datetime) -> list[str]:
        """Codes whose check is at or before ``now``, earliest first; each is unscheduled."""
        due: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, code = heapq.heappop(heap)
            if self._when.get(code) == when:
                del self._when[code]
                due.append(code)
        return due

    def next_due(self) -> datetime | None:
        while self._heap and self._when.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def codes(self) -> list[str]:
        return list(self._when)

    def scheduled_at(self, code: str) -> datetime | None:
        return self._when.get(code)

    def _compact(self) -> None:
        self._heap = [(w, c) for c, w in self._when.items()]
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._when)
