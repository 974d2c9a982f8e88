"""A batch replay split into shares by dossier, so that a province-year can be scored on several cores.

Every line of the file belongs to exactly one share: a line whose ``subject`` can be read belongs to the share of
its dossier (every event of a dossier, and so its duplicate check and its state, stays in one share), any other
line to the share of its line number (it will be rejected there, once). Each share replays its lines as
``figures.replay`` does and keeps only what the score document needs: the tallies (sums over dossiers), each
unit's province and level with the line that first stated them, and the input counts. ``merge`` adds the shares
up into exactly what one replay of the whole file gives (tests/test_replay_shares.py compares the documents).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

import msgspec

from . import events as ev
from .dossier import Context
from .figures import Rejection, document_from_tallies, replay, tallies_of, views
from .index766 import Catalogue
from .report import LateDossier, late_dossiers_from_views
from .tally import add_into


class _Subject(msgspec.Struct):
    """The one member a line is routed by; every other member is skipped unread."""

    subject: object = None


_SUBJECT = msgspec.json.Decoder(_Subject)


def share_of(raw: bytes, line: int, shares: int) -> int:
    """The share a line belongs to: its dossier's when its ``subject`` is a string, its line number's otherwise."""
    if len(raw) <= ev.MAX_EVENT_BYTES:
        try:
            subject = _SUBJECT.decode(raw).subject
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            subject = None
        if type(subject) is str:
            return zlib.crc32(subject.encode("utf-8", "surrogatepass")) % shares
    return line % shares


@dataclass
class ShareResult:
    """What one share contributes to the score document; small enough to send between processes."""

    tallies: dict
    # unit -> (line, province) and (line, level) of the first dossier, in the order dossiers were first applied,
    # that stated them: the order ``figures.unit_meta_of`` reads a whole replay's states in
    province: dict[str, tuple[int, str]] = field(default_factory=dict)
    level: dict[str, tuple[int, str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)
    first_rejections: list[Rejection] = field(default_factory=list)
    # with ``late=True``: the report's late dossiers, each with the line that first applied it
    late: list[tuple[int, LateDossier]] = field(default_factory=list)


def replay_share(records: Iterable[tuple[int, bytes]], ctx: Context, share: int, shares: int, limit: int = 100,
                 late: bool = False, ended_since: datetime | None = None) -> ShareResult:
    """Replay the lines of one share with ``figures.replay`` and keep what ``merge`` needs; with
    ``late`` also the report's late dossiers at ``ctx.now``, as ``report.late_dossiers_from_views(views, ctx.now,
    ended_since=ended_since)`` lists them."""
    first_line: dict[str, int] = {}
    out = replay(((n, raw) for n, raw in records if share_of(raw, n, shares) == share), ctx, first_line)
    result = ShareResult(tallies_of(out.states.values(), ctx))
    for subject, s in out.states.items():
        r = s.reception
        if r is None:
            continue
        n = first_line[subject]
        unit = r.handling_unit_code
        if r.province_code and unit not in result.province:
            result.province[unit] = (n, r.province_code)
        if r.unit_level and unit not in result.level:
            result.level[unit] = (n, r.unit_level)
    if late:
        for subject, s in out.states.items():
            for dossier in late_dossiers_from_views(views([s], ctx), ctx.now, ended_since=ended_since):
                result.late.append((first_line[subject], dossier))
    report = out.report(limit)
    result.counts = {k: report[k] for k in ("lines", "applied", "duplicates", "late_arrivals", "after_at", "rejected")}
    result.by_reason = report["rejected_by_reason"]
    result.first_rejections = out.rejections[:limit]
    return result


@dataclass
class Merged:
    """The shares added up: the tallies, unit metadata and input report of one replay of the whole file."""

    tallies: dict
    unit_meta: dict[str, dict]
    report: dict
    late: list[LateDossier] = field(default_factory=list)  # in the order one replay lists them


def merge(results: Iterable[ShareResult], limit: int = 100) -> Merged:
    """Add the shares up; the order of the shares does not matter."""
    tallies: dict = {}
    province: dict[str, tuple[int, str]] = {}
    level: dict[str, tuple[int, str]] = {}
    counts = dict.fromkeys(("lines", "applied", "duplicates", "late_arrivals", "after_at", "rejected"), 0)
    by_reason: dict[str, int] = {}
    rejections: list[Rejection] = []
    late_pairs: list[tuple[int, LateDossier]] = []
    for r in results:
        late_pairs.extend(r.late)
        add_into(tallies, r.tallies)
        for mine, theirs in ((province, r.province), (level, r.level)):
            for unit, first in theirs.items():
                if unit not in mine or first < mine[unit]:
                    mine[unit] = first
        for k, n in r.counts.items():
            counts[k] += n
        for k, n in r.by_reason.items():
            by_reason[k] = by_reason.get(k, 0) + n
        rejections.extend(r.first_rejections)
    rejections.sort(key=lambda r: r.line)
    # units that stated neither are left out: the document reads a missing unit's province and level as None
    unit_meta = {u: {"province": None, "level": None} for u in sorted(set(province) | set(level))}
    for unit, (_n, p) in province.items():
        unit_meta[unit]["province"] = p
    for unit, (_n, lv) in level.items():
        unit_meta[unit]["level"] = lv
    report = {**counts, "rejected_by_reason": dict(sorted(by_reason.items())),
              "rejections": [r.__dict__ for r in rejections[:limit]]}
    late_pairs.sort(key=lambda pair: pair[0])
    return Merged(tallies, unit_meta, report, [d for _n, d in late_pairs])


def merged_document(merged: Merged, period: str, now: datetime, ctx: Context,
                    catalogue: Catalogue | None = None) -> dict:
    """The score document of the merged shares: the same as ``figures.score_document`` of the whole replay."""
    return document_from_tallies(merged.tallies, merged.unit_meta, period, now, ctx, catalogue,
                                 extra={"input": merged.report})
