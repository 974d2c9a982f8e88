"""``onestop score --jobs N``: the batch replay on N processes, one share of the dossiers each.

Replaying a province-year is the job where users wait, and one Python process uses one core. The shares and
their merge are pure (``models.replay_shares``); this module only forks the processes and hands each its share
number. Forked children inherit the parsed rules and calendars, so nothing but the small share results crosses
a pipe.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from models.dossier import Context
from models.figures import iter_lines
from models.replay_shares import Merged, ShareResult, merge, replay_share

_JOB: tuple[str, Context, int, dict] | None = None  # (file, context, shares, options), set before the fork


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers narrow), at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _replay_share(share: int) -> ShareResult:
    assert _JOB is not None, "the job is set before the processes are forked"
    path, ctx, shares, options = _JOB
    return replay_share(iter_lines(path), ctx, share, shares, **options)


def replay_in_shares(path: Path, ctx: Context, jobs: int, **options: object) -> Merged:
    """Replay ``path`` on ``jobs`` forked processes and merge their shares (``options`` go to ``replay_share``,
    e.g. ``late`` and ``ended_since`` for a report)."""
    global _JOB
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    _JOB = (str(path), ctx, jobs, options)
    try:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            results = pool.map(_replay_share, range(jobs), chunksize=1)
    finally:
        _JOB = None
    return merge(results)
