"""Fetch pacing: what a broker's long poll does for a consumer, done on the client when the broker does not.

A Kafka broker holds an empty fetch up to the consumer's ``fetch_max_wait_ms`` (Faust asks for 1.5 s) and answers
as soon as data arrives, so an idle consumer sends about one fetch per second. The embedded broker answers an empty
fetch at once; aiokafka then sends the next one at once, and an idle worker spent 85–90 % of a core (and its GIL)
encoding, sending and decoding empty fetches (docs/benchmarks.md). Pausing briefly after a fetch that brought
nothing restores a bounded fetch rate at the cost of at most the pause in latency for a record that arrives
during it. Against a broker that honours the long poll the pause never matters: an empty answer there has
already waited far longer.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

__all__ = ["EMPTY_FETCH_PAUSE_SECONDS", "install_empty_fetch_pause"]

#: Pause after a fetch that brought no record for any of its partitions: an idle worker uses ~6 % of a core at
#: 20 ms (3 % at 50 ms, which added 0.2-0.4 s to the p99 of produce-to-/metrics at 1,000 ev/s; 85-91 % without).
#: ``ONESTOP_EMPTY_FETCH_PAUSE=0`` turns it off (for a broker that honours fetch_max_wait_ms, where it is
#: harmless anyway).
EMPTY_FETCH_PAUSE_SECONDS = float(os.environ.get("ONESTOP_EMPTY_FETCH_PAUSE", "0.02"))

_MARK = "_onestop_empty_fetch_pause"


def install_empty_fetch_pause(pause: float | None = None) -> None:
    """Make aiokafka's fetcher wait ``pause`` seconds after a fetch request that returned no record.

    The fetcher sends no new request to a node while one is in flight, so keeping the finished request's task
    alive a little longer paces that node's fetches; the pause is capped by the consumer's own
    ``fetch_max_wait_ms``, the longest a compliant broker would have held the request. Idempotent; the pause of
    the first call stays.
    """
    from aiokafka.consumer.fetcher import Fetcher

    original = Fetcher._proc_fetch_request
    if getattr(original, _MARK, False):
        return
    wait = EMPTY_FETCH_PAUSE_SECONDS if pause is None else pause
    if wait <= 0:
        return

    async def _proc_fetch_request(self: Any, assignment: Any, node_id: Any, request: Any) -> bool:
        got = await original(self, assignment, node_id, request)
        if not got and assignment.active:
            try:
                await asyncio.sleep(min(wait, self._fetch_max_wait_ms / 1000))
            except asyncio.CancelledError:
                # Cancelled by close() or a new assignment, as the fetch itself may be: aiokafka's own handling
                # of that case is to end the task quietly with "no new data".
                return False
        return got

    setattr(_proc_fetch_request, _MARK, True)
    _proc_fetch_request.__wrapped__ = original  # type: ignore[attr-defined]
    Fetcher._proc_fetch_request = _proc_fetch_request
