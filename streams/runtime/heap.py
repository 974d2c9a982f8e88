"""The worker's garbage-collector policy: the long-lived state kept out of the cyclic collector's full passes.

A worker holds its partitions' tallies, schedules, caches and client state for as long as it runs. CPython's
full (generation 2) collection traverses every tracked object again each time enough new ones have survived;
at 1,000 ev/s that happened about once a second and stopped the event loop for 150-250 ms while finding
nothing to free, the tail of produce -> ``/metrics`` (docs/benchmarks.md, run 19). ``gc.freeze()`` moves the
objects alive now into a permanent generation the collector skips, so a full pass only walks what survived
since the last freeze. Reference counting still frees frozen objects that are dropped; only cyclic garbage
among them waits, for the full collection this policy runs every ``full_seconds`` (with everything unfrozen).

Batch commands pause the collector altogether instead (``streams.tools.cli_common.batch_gc``): they end.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any, Callable

__all__ = ["HeapPolicy"]

log = logging.getLogger(__name__)


class HeapPolicy:
    """When to freeze the heap and when to collect it whole; ``tick`` runs from the deadline clock's timer.

    ``freeze_seconds`` 0 leaves the collector as CPython configures it (``tick`` and ``settled`` do nothing);
    ``full_seconds`` 0 never unfreezes (cyclic garbage among frozen objects then stays until the worker stops).
    ``monotonic`` and ``collector`` are injected so the schedule can be tested without a real heap.
    """

    def __init__(self, freeze_seconds: float, full_seconds: float, *,
                 monotonic: Callable[[], float] = time.monotonic, collector: Any = gc) -> None:
        if freeze_seconds < 0 or full_seconds < 0:
            raise ValueError("freeze_seconds and full_seconds must be >= 0")
        self.freeze_seconds = freeze_seconds
        self.full_seconds = full_seconds
        self._monotonic = monotonic
        self._gc = collector
        started = monotonic()
        self._frozen_at = started
        self._full_at = started
        #: How long the last full collection stopped the worker (seconds), and how many ran; for the log and tests.
        self.last_full_seconds: float | None = None
        self.full_collections = 0

    @property
    def enabled(self) -> bool:
        return self.freeze_seconds > 0

    def settled(self) -> None:
        """After a rebuild: the partitions' state is loaded and will live on. Collect once (the rebuild's own
        garbage) and freeze what is left, before the first record is handled."""
        if self.enabled:
            self._full()

    def tick(self) -> None:
        """Freeze what survived since the last freeze once ``freeze_seconds`` have passed, and run the periodic
        full collection once ``full_seconds`` have."""
        if not self.enabled:
            return
        now = self._monotonic()
        if self.full_seconds and now - self._full_at >= self.full_seconds:
            self._full()
            return
        if now - self._frozen_at >= self.freeze_seconds:
            # The young generations first: cyclic garbage made since the last pass would otherwise be frozen too.
            self._gc.collect(1)
            self._gc.freeze()
            self._frozen_at = now

    def _full(self) -> None:
        started = self._monotonic()
        self._gc.unfreeze()
        freed = self._gc.collect()
        self._gc.freeze()
        now = self._monotonic()
        self._full_at = self._frozen_at = now
        self.last_full_seconds = now - started
        self.full_collections += 1
        log.info("full garbage collection: %s objects freed in %.3f s; %s objects frozen", freed,
                 self.last_full_seconds, self._gc.get_freeze_count())
