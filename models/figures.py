"""Batch replay of an event log with the domain core alone: the audit path and the oracle of the stream.

``onestop score`` prints ``score_document(...)``; the worker's ``GET /figures`` returns the same document built from
its running tallies. Both go through ``document_from_tallies`` so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Iterator

import msgspec

from . import events as ev
from .config import config_as_dict
from models.dossier import Context, DossierState, apply
from models.evaluation import View, evaluate
from .index766 import Catalogue, load_catalogue, score_unit, sum_tallies
from .tally import ContributionSum, parse_period, unit_period_tallies


@dataclass
class Rejection:
    line: int
    reason: str
    message: str


@dataclass
class Replay:
    """The result of folding a file of events: the dossiers' states and what was refused, line by line."""

    states: dict[str, DossierState] = field(default_factory=dict)
    lines: int = 0
    applied: int = 0
    duplicates: int = 0
    late_arrivals: int = 0
    after_at: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def report(self, limit: int = 100) -> dict:
        by_reason: dict[str, int] = {}
        for r in self.rejections:
            by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
        return {
            "lines": self.lines, "applied": self.applied, "duplicates": self.duplicates,
            "late_arrivals": self.late_arrivals, "after_at": self.after_at, "rejected": len(self.rejections),
            "rejected_by_reason": dict(sorted(by_reason.items())),
            "rejections": [r.__dict__ for r in self.rejections[:limit]],
        }


def iter_lines(path: str) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if line:
                yield n, line


def replay(records: Iterable[tuple[int, bytes]], ctx: Context, first_lines: dict[str, int] | None = None) -> Replay:
    """Apply every valid record in order; events dated after ``ctx.now`` are left out (figures "as of" that time).
    ``first_lines`` receives each dossier's first applied line: the order of ``states``, which a replay split into
    shares needs to merge (``models.replay_shares``)."""
    out = Replay()
    for n, raw in records:
        out.lines += 1
        try:
            event = ev.decode_event(raw)
            if event.time > ctx.now:
                out.after_at += 1
                continue
            state, effects = apply(out.states.get(event.subject), event, ctx)
        except ev.EventError as exc:
            out.rejections.append(Rejection(n, exc.reason, exc.message))
            continue
        except Exception as exc:  # noqa: BLE001 - as the worker dead-letters it: one line must not stop the audit
            out.rejections.append(Rejection(n, "processor_error", f"{type(exc).__name__}: {exc}"))
            continue
        if effects.duplicate:
            out.duplicates += 1
            continue
        out.applied += 1
        out.late_arrivals += effects.late_arrival
        if first_lines is not None and event.subject not in out.states:
            first_lines[event.subject] = n
        out.states[event.subject] = state
    return out


def views(states: Iterable[DossierState], ctx: Context) -> Iterator[View]:
    for s in states:
        v = evaluate(s, ctx)
        if v is not None:
            yield v


def tallies_of(states: Iterable[DossierState], ctx: Context) -> dict:
    total = ContributionSum()
    for v in views(states, ctx):
        total.add(v, ctx.now)
    return total.totals()


def unit_meta_of(states: Iterable[DossierState]) -> dict[str, dict]:
    """Province and level of each handling unit, as the received events state them."""
    meta: dict[str, dict] = {}
    for s in states:
        r = s.reception
        if r is None:
            continue
        m = meta.setdefault(r.handling_unit_code, {"province": None, "level": None})
        m["province"] = m["province"] or r.province_code
        m["level"] = m["level"] or r.unit_level
    return meta


SHARES = {
    "on_time_ratio": ("on_time", "population"),
    "online_submission_share": ("received_online", "received"),
    "online_payment_share": ("paid_online", "fee_bearing"),
    "satisfied_share": ("rated_satisfied", "rated"),
    "digitized_share": ("digitized", "received"),
    "e_result_share": ("paper_result_e_result", "paper_result"),
}
COUNTS = ("received", "received_direct", "received_online", "received_postal", "population", "on_time",
          "ended_early", "ended_on_time", "ended_late", "late_with_apology", "late_without_apology",
          "open_within", "open_due_soon", "open_overdue", "open_awaiting_supplement", "open_awaiting_payment",
          "rated", "rated_satisfied", "fee_bearing", "paid_online")


def _unit_block(tallies: dict[str, float], level: str | None, province: str | None, catalogue: Catalogue, on) -> dict:
    scored = score_unit(tallies, level, catalogue, on)
    shares = {name: (tallies.get(n, 0) / tallies[d] if tallies.get(d) else None) for name, (n, d) in SHARES.items()}
    return {"level": level, "province": province, "counts": {k: int(tallies.get(k, 0)) for k in COUNTS},
            "shares": shares, **scored}


def document_from_tallies(tallies: dict, unit_meta: dict[str, dict], period: str, now: datetime, ctx: Context,
                          catalogue: Catalogue | None = None, extra: dict | None = None) -> dict:
    """The score document for one period: every unit, every province (sum of its units' tallies, then scored)."""
    catalogue = catalogue or load_catalogue()
    start, end = parse_period(period)
    on = start.date()
    per_unit = unit_period_tallies(tallies, period)
    units = {}
    by_province: dict[str, list[dict]] = {}
    for unit in sorted(per_unit):
        meta = unit_meta.get(unit, {})
        units[unit] = _unit_block(per_unit[unit], meta.get("level"), meta.get("province"), catalogue, on)
        if meta.get("province"):
            by_province.setdefault(meta["province"], []).append(per_unit[unit])
    provinces = {p: _unit_block(sum_tallies(ts), "province", p, catalogue, on) for p, ts in sorted(by_province.items())}
    doc = {
        "period": period, "period_start": start.isoformat(), "period_end": end.isoformat(),
        "at": now.isoformat(), "catalogue": f"{catalogue.catalogue_id}:{catalogue.version}",
        "calendar": ctx.calendar.version, "rules": config_as_dict(ctx.config),
        "units": units, "provinces": provinces,
    }
    if extra:
        doc.update(extra)
    return doc


def score_document(replayed: Replay, period: str, ctx: Context, catalogue: Catalogue | None = None) -> dict:
    states = replayed.states.values()
    return document_from_tallies(tallies_of(states, ctx), unit_meta_of(states), period, ctx.now, ctx, catalogue,
                                 extra={"input": replayed.report()})


def to_json(doc: dict) -> bytes:
    return msgspec.json.format(msgspec.json.encode(doc), indent=2)
