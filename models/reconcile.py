"""Reconciliation of our 766 figures with those the national portal (DVCQG) publishes.

A local estimate is only trusted once it agrees with the official figure, and a gap is the earliest sign of a data
problem: fewer dossiers here than on the portal means events are missing from our feed; more here means dossiers
that never reached the portal (indicator 1.4). So per unit and indicator the numerator and denominator are set side
by side, with their absolute difference (ours - official) and relative difference ((ours - official) / official),
and flagged where the relative difference exceeds a threshold.

Official figures are read from saved responses of the portal's public reporting API (domain reference §4.4) or from
a CSV an operator downloads; see docs/reconcile.md for the shapes and the fields read. They are kept apart: the
score document is only read, and every row holds ``ours`` and ``official`` separately.

Reading the official files is ``models/reconcile_sources.py`` (re-exported here); this module compares.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path

from .index766 import Catalogue, load_catalogue
from .reconcile_sources import (  # noqa: F401  (the reading side is re-exported: part of this module's surface)
    CSV_COLUMNS, GROUP_SCORE_IS, OfficialRecord, ReconcileError, load_official, official_fetched_at,
    parse_official_csv, parse_portal_json)

__all__ = [
    "CSV_COLUMNS",
    "OfficialRecord",
    "ReconcileError",
    "load_official",
    "official_fetched_at",
    "ours_document",
    "parse_official_csv",
    "parse_portal_json",
    "reconcile",
]

def ours_document(path: str | Path, period: str, ctx, catalogue: Catalogue | None = None) -> dict:
    """Our score document: a file ``onestop score`` wrote, or an event file replayed as of ``ctx.now``."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, Mapping) and "units" in doc and "period" in doc:
        if doc["period"] != period:
            raise ReconcileError(f"{p}: figures of {doc['period']}, not {period} / số liệu kỳ {doc['period']}, "
                                 f"không phải {period}")
        return dict(doc)
    from .figures import iter_lines, replay, score_document

    return score_document(replay(iter_lines(str(p)), ctx), period, ctx, catalogue)


# --------------------------------------------------------------------------------------------------- comparing


def _difference(ours: float | None, official: float | None) -> dict | None:
    if ours is None or official is None:
        return None
    absolute = ours - official
    if official == 0:
        relative = 0.0 if ours == 0 else None  # undefined: the portal has none, we have some
    else:
        relative = absolute / official
    return {"absolute": absolute, "relative": relative}


def _exceeds(diff: dict | None, threshold: float) -> bool:
    if diff is None:
        return False
    return diff["relative"] is None or abs(diff["relative"]) > threshold


def _pct(r: float | None) -> str:
    return "∞" if r is None else f"{r * 100:+.1f} %"


_FLAG_TEXT = {
    "fewer_dossiers_than_portal": (
        "Mẫu số của hệ thống thấp hơn Cổng DVCQG {size}: thiếu sự kiện từ hệ thống một cửa (có lần đồng bộ bị thiếu).",
        "Our denominator is {size} below the national portal's: events are missing from our feed (a sync is missing).",
    ),
    "more_dossiers_than_portal": (
        "Mẫu số của hệ thống cao hơn Cổng DVCQG {size}: có hồ sơ chưa được đồng bộ lên Cổng (xem chỉ số 1.4).",
        "Our denominator is {size} above the national portal's: dossiers have not been synced to it (see indicator 1.4).",
    ),
    "numerator_differs": (
        "Tử số lệch {rel} so với Cổng DVCQG trong khi mẫu số khớp: quy tắc đếm khác nhau (đúng hạn, hồ sơ tồn kỳ "
        "trước, ngày hẹn sau phiếu xin lỗi, kết quả điện tử).",
        "The numerator differs by {rel} from the national portal's while the denominators agree: a counting rule "
        "differs (on-time test, carry-over, rescheduled due date, e-result qualifier).",
    ),
    "score_differs": (
        "Điểm lệch {abs} điểm so với Cổng DVCQG (quá {thr} điểm tối đa).",
        "The score differs by {abs} points from the national portal's (more than {thr} of the maximum).",
    ),
    "unit_not_in_ours": (
        "Cổng DVCQG có số liệu của đơn vị này nhưng hệ thống này không nhận được sự kiện nào của đơn vị trong kỳ.",
        "The national portal has figures for this unit but no event of it reached us in the period.",
    ),
    "unit_not_on_portal": (
        "Chúng tôi có hồ sơ của đơn vị này nhưng Cổng DVCQG không công bố số liệu nào của đơn vị.",
        "We have dossiers of this unit but the national portal publishes no figure for it.",
    ),
}


def _flag(code: str, unit: str, indicator: str, field: str | None, diff: dict | None, threshold: float,
          max_points: float | None = None) -> dict:
    vi, en = _FLAG_TEXT[code]
    size = "" if not diff else ("∞" if diff["relative"] is None else f"{abs(diff['relative']) * 100:.1f} %")
    fmt = {"rel": _pct(diff["relative"]) if diff else "", "size": size, "abs": f"{diff['absolute']:+.2f}" if diff else "",
           "thr": f"{threshold * 100:g} %"}
    return {"code": code, "unit": unit, "indicator": indicator, "field": field,
            "absolute_difference": diff["absolute"] if diff else None,
            "relative_difference": diff["relative"] if diff else None,
            "message_vi": vi.format(**fmt), "message_en": en.format(**fmt)}


def _as_record(r: OfficialRecord | Mapping) -> OfficialRecord:
    if isinstance(r, OfficialRecord):
        return r
    known = OfficialRecord.__dataclass_fields__.keys()
    return OfficialRecord(**{k: v for k, v in r.items() if k in known})


def reconcile(ours_score_document: Mapping, official_records: Iterable[OfficialRecord | Mapping],
              threshold: float = 0.05, catalogue: Catalogue | None = None) -> dict:
    """Compare, per unit and indicator, our numerator/denominator/score with the official ones.

    Rows cover every official record, plus ours-only rows for indicators the official side publishes for other
    units (a unit missing from the portal). Flags are raised where ``|relative difference| > threshold``:
    a denominator gap names the direction (missing events here / dossiers not synced there); a numerator gap is
    flagged when the denominators agree; a score gap when it exceeds ``threshold`` of the indicator's maximum and
    ours is complete for it. The score document is not modified.
    """
    if not (isinstance(threshold, (int, float)) and 0 <= threshold < 10):
        raise ReconcileError(f"threshold {threshold!r} must be a fraction such as 0.05 / ngưỡng phải là tỷ lệ, "
                             "ví dụ 0.05")
    catalogue = catalogue or load_catalogue()
    period = ours_score_document.get("period")
    records = [_as_record(r) for r in official_records]
    other = sorted({r.period for r in records if r.period and r.period != period})
    if other:
        raise ReconcileError(f"official figures of {', '.join(other)} cannot be compared with ours of {period} / "
                             f"số liệu chính thức kỳ {', '.join(other)} không so được với kỳ {period}")
    # A province's code names its whole index on the portal; a handling unit coded like its province (the
    # province's own dossiers) is not what the portal publishes under that code, so the province block wins.
    blocks: dict[str, Mapping] = {**ours_score_document.get("units", {}), **ours_score_document.get("provinces", {})}
    names = {i.id: (i.name_vi, i.name_en) for i in catalogue.indicators}
    names.update({g.code: (g.name_vi, g.name_en) for g in catalogue.groups})
    names["total"] = ("Tổng điểm Bộ chỉ số 766", "766 index total")
    group_ids = {g.code: g.id for g in catalogue.groups}

    official: dict[tuple[str, str], OfficialRecord] = {}
    duplicates = 0
    for r in records:
        key = (r.unit, r.indicator)
        if key in official:
            duplicates += 1
            continue
        official[key] = r

    rows: list[dict] = []
    flags: list[dict] = []
    covered = {ind for _u, ind in official}
    flagged_units: set[str] = set()

    def ours_of(unit: str, ind: str) -> tuple[dict | None, bool]:
        """(our figures, comparable score) for an indicator, a group code or the total."""
        block = blocks.get(unit)
        if block is None:
            return None, False
        if ind == "total":
            return {"numerator": None, "denominator": None, "ratio": None, "score": block.get("total"),
                    "max_points": catalogue.max_points}, bool(block.get("complete"))
        if ind in group_ids:
            g = block.get("groups", {}).get(str(group_ids[ind]))
            if g is None:
                return None, False
            return ({"numerator": None, "denominator": None, "ratio": None, "score": g.get("score"),
                     "max_points": g.get("max_points")}, g.get("max_points_known") == g.get("max_points"))
        i = block.get("indicators", {}).get(ind)
        if i is None:
            return None, False
        return ({k: i.get(k) for k in ("numerator", "denominator", "ratio", "score", "max_points", "applicable")},
                bool(i.get("computable")) and i.get("source") == "events")

    for (unit, ind), off in sorted(official.items()):
        ours, comparable = ours_of(unit, ind)
        row_flags: list[dict] = []
        diff_num = diff_den = diff_score = None
        if unit not in blocks:
            status = "official_only"
            if unit not in flagged_units:
                flagged_units.add(unit)
                row_flags.append(_flag("unit_not_in_ours", unit, ind, None, None, threshold))
        elif ours is None or (ours["numerator"] is None and ours["denominator"] is None and ours["score"] is None):
            status = "not_applicable_here" if ours is not None and ours.get("applicable") is False else "not_computable_here"
        else:
            diff_num = _difference(ours["numerator"], off.numerator)
            diff_den = _difference(ours["denominator"], off.denominator)
            diff_score = _difference(ours["score"], off.score)
            if _exceeds(diff_den, threshold):
                fewer = diff_den["relative"] is not None and diff_den["absolute"] < 0
                row_flags.append(_flag("fewer_dossiers_than_portal" if fewer else "more_dossiers_than_portal",
                                       unit, ind, "denominator", diff_den, threshold))
            elif _exceeds(diff_num, threshold):
                row_flags.append(_flag("numerator_differs", unit, ind, "numerator", diff_num, threshold))
            max_points = off.max_points or ours.get("max_points")
            if (comparable and diff_score is not None and max_points and ind not in GROUP_SCORE_IS
                    and abs(diff_score["absolute"]) > threshold * max_points):
                row_flags.append(_flag("score_differs", unit, ind, "score", diff_score, threshold, max_points))
            status = "differs" if row_flags else "match"
            if ours["numerator"] is None and ours["denominator"] is None and not comparable:
                status = "partial_here"  # e.g. a group of which we compute only some indicators
        flags.extend(row_flags)
        rows.append({
            "unit": unit,
            "unit_name": off.unit_name,
            "level": blocks.get(unit, {}).get("level"),
            "indicator": ind,
            "name_vi": names.get(ind, (ind, ind))[0],
            "name_en": names.get(ind, (ind, ind))[1],
            "ours": ours,
            "official": {"numerator": off.numerator, "denominator": off.denominator, "ratio": off.ratio,
                         "score": off.score, "max_points": off.max_points, "source": off.source},
            "difference": {"numerator": diff_num, "denominator": diff_den, "score": diff_score},
            "status": status,
            "flags": [f["code"] for f in row_flags],
        })

    # Indicators the portal publishes for some units but not for a unit we have dossiers of.
    official_units = {u for u, _i in official}
    for unit in sorted(blocks):
        for ind in sorted(covered):
            if (unit, ind) in official or ind not in names or ind in group_ids or ind == "total":
                continue
            ours, _c = ours_of(unit, ind)
            if ours is None or ours["denominator"] in (None, 0):
                continue
            row_flags = []
            if unit not in official_units and unit not in flagged_units:
                flagged_units.add(unit)
                row_flags.append(_flag("unit_not_on_portal", unit, ind, None, None, threshold))
            flags.extend(row_flags)
            rows.append({"unit": unit, "unit_name": None, "level": blocks[unit].get("level"), "indicator": ind,
                         "name_vi": names[ind][0], "name_en": names[ind][1], "ours": ours, "official": None,
                         "difference": {"numerator": None, "denominator": None, "score": None},
                         "status": "ours_only", "flags": [f["code"] for f in row_flags]})

    rows.sort(key=lambda r: (r["unit"], _indicator_order(r["indicator"])))
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    by_flag: dict[str, int] = {}
    for f in flags:
        by_flag[f["code"]] = by_flag.get(f["code"], 0) + 1
    return {
        "period": period,
        "threshold": threshold,
        "ours": {"at": ours_score_document.get("at"), "catalogue": ours_score_document.get("catalogue")},
        "official": {"records": len(records), "duplicates_ignored": duplicates,
                     "sources": sorted({r.source.split("#")[0].split(":")[0] for r in records}),
                     "fetched_at": max((r.fetched_at for r in records if r.fetched_at), default=None)},
        "rows": rows,
        "flags": flags,
        "summary": {"rows": len(rows), "by_status": dict(sorted(by_status.items())),
                    "flags": len(flags), "by_flag": dict(sorted(by_flag.items()))},
    }


def _indicator_order(ind: str) -> tuple:
    m = re.match(r"^(\d+)\.(\d+)([a-z]?)$", ind)
    if m:
        return (0, int(m.group(1)), int(m.group(2)), m.group(3))
    return (1, ind)


def records_as_dicts(records: Iterable[OfficialRecord]) -> list[dict]:
    return [asdict(r) for r in records]
