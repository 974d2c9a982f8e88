"""Daily and end-of-period 766 reports of a province, for the people who answer for the figures.

A report is built from the score document (``models.figures.score_document`` or the worker's ``/figures``), so it
shows exactly the figures ``onestop score`` recomputes, plus the overdue dossiers to chase and the unit names of the
registry. It is Vietnamese by default. ``build_report`` is pure; the renderers (``models/report_render.py``,
re-exported here) return text or bytes (Markdown, CSV) or write a file (xlsx with openpyxl, PNG chart with
matplotlib), importing those libraries only when called, so the domain core keeps running without them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .i18n import DEFAULT_LANG, VN, t
from .index766 import Catalogue, load_catalogue
from .units import UnitRegistry

__all__ = [
    "BAND_COLOURS",
    "GroupLine",
    "IndicatorLine",
    "LateDossier",
    "Report",
    "ReportDependencyError",
    "UnitLine",
    "build_report",
    "build_reports",
    "late_dossiers_from_views",
]

#: Band colours (red = Yếu ... green = Xuất sắc), shared by the chart and the spreadsheet; dashboards can reuse them.
BAND_COLOURS = {"xuat_sac": "#1a9850", "tot": "#91cf60", "kha": "#fee08b", "trung_binh": "#fc8d59", "yeu": "#d73027",
                None: "#bdbdbd"}
LEVEL_ORDER = ("province", "ministry", "agency", "commune", "district_legacy")


class ReportDependencyError(ImportError):
    """A renderer needs an optional library (openpyxl, matplotlib) that is not installed."""


# ---------------------------------------------------------------------------------------------- input rows


class _Bilingual:
    """A line with a Vietnamese and an English name (the dataclasses below hold the two fields)."""

    name_vi: str
    name_en: str

    def name(self, lang: str) -> str:
        return self.name_en if lang == "en" else self.name_vi


@dataclass(frozen=True)
class LateDossier:
    """An overdue dossier to chase: codes and time only, never anything about the applicant."""

    code: str
    procedure: str
    unit: str
    hours_overdue: float
    due_at: datetime | None = None
    state: str = "open_overdue"  # or "ended_late"

    _ALIASES = {"code": ("code", "dossier_code"), "procedure": ("procedure", "procedure_code"),
                "unit": ("unit", "unit_code"), "hours_overdue": ("hours_overdue", "overdue_working_hours"),
                "due_at": ("due_at",), "state": ("state",)}

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> "LateDossier":
        """From a read-API item or an alert (``dossier_code``, ``procedure_code``, ``unit_code``,
        ``overdue_working_hours``, ``due_at``) or the short names of this class."""
        got: dict[str, Any] = {}
        for name, keys in cls._ALIASES.items():
            got[name] = next((m[k] for k in keys if m.get(k) is not None), None)
        missing = [n for n in ("code", "unit") if not got[n]]
        if missing:
            raise ValueError(f"late dossier {dict(m)!r}: missing {', '.join(missing)}")
        due = got["due_at"]
        if isinstance(due, str):
            due = datetime.fromisoformat(due)
        state = got["state"] or "open_overdue"
        if state in ("overdue", "late"):
            state = "open_overdue" if state == "overdue" else "ended_late"
        return cls(str(got["code"]), str(got["procedure"] or ""), str(got["unit"]),
                   float(got["hours_overdue"] or 0.0), due, state)


def late_dossiers_from_views(views: Iterable[Any], now: datetime,
                             ended_since: datetime | None = None) -> list[LateDossier]:
    """Overdue dossiers from ``models.figures.views(...)``: open and past their due at ``now``, and, with
    ``ended_since``, those that ended late since that instant (the period start, for an end-of-period report)."""
    out = []
    for v in views:
        if v.is_open:
            if v.judge(now).bucket == "open_overdue":
                out.append(LateDossier(v.code, v.procedure_code, v.unit_code,
                                       round(v.overdue_working_seconds(now) / 3600, 2), v.judged_due_at))
        elif ended_since is not None and v.end_at >= ended_since and v.end_at <= now \
                and v.judge(now).bucket == "ended_late":
            due = v.effective_due_at(v.end_at)
            hours = max(0.0, v.calendar.working_seconds_between(due, v.end_at)) / 3600 if v.end_at > due else 0.0
            out.append(LateDossier(v.code, v.procedure_code, v.unit_code, round(hours, 2), v.judged_due_at,
                                   "ended_late"))
    return out


# ------------------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class GroupLine:
    id: int
    code: str
    name_vi: str
    name_en: str
    score: float | None
    max_points: float
    max_points_known: float


@dataclass(frozen=True)
class IndicatorLine(_Bilingual):
    id: str
    group: int
    name_vi: str
    name_en: str
    numerator: float | None
    denominator: float | None
    ratio: float | None
    score: float | None
    max_points: float
    computable: bool
    applicable: bool
    monitoring: bool
    duration: bool  # ratio is a mean time in working seconds (2.2), not a share


@dataclass(frozen=True)
class UnitLine(_Bilingual):
    rank: int
    code: str
    name_vi: str
    name_en: str
    level: str | None
    total: float | None
    max_points_known: float
    total_estimated: float | None
    complete: bool
    band: str | None
    band_basis: str | None
    on_time_ratio: float | None
    open_overdue: int
    late_listed: int
    groups: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def value(self) -> float | None:
        """The score the band is based on, and the ranking order."""
        return self.total if self.band_basis == "total" else self.total_estimated


@dataclass(frozen=True)
class Report:
    """One province, one period: everything the renderers show, in both languages."""

    province: str
    province_name_vi: str
    province_name_en: str
    period: str
    period_start: datetime
    period_end: datetime
    at: datetime
    kind: str  # "daily" (the period is still running at ``at``) or "period_end"
    lang: str
    catalogue: str
    calendar: str
    total: float | None
    max_points_known: float
    total_estimated: float | None
    complete: bool
    band: str | None
    band_basis: str | None
    shares: Mapping[str, float | None]
    counts: Mapping[str, int]
    groups: tuple[GroupLine, ...]
    indicators: tuple[IndicatorLine, ...]
    units: tuple[UnitLine, ...]
    late: Mapping[str, tuple[LateDossier, ...]]  # unit code -> overdue dossiers, most hours first
    unit_names: Mapping[str, tuple[str, str]]  # code -> (vi, en), for every unit the report mentions

    def province_name(self, lang: str) -> str:
        return self.province_name_en if lang == "en" else self.province_name_vi

    def unit_name(self, code: str, lang: str) -> str:
        vi_en = self.unit_names.get(code)
        return (vi_en[1] if lang == "en" else vi_en[0]) if vi_en else code

    @property
    def value(self) -> float | None:
        return self.total if self.band_basis == "total" else self.total_estimated


def _dt(x: str | datetime) -> datetime:
    return x if isinstance(x, datetime) else datetime.fromisoformat(x)


def _competition_ranks(values: list[float | None]) -> list[int]:
    """1, 2, 2, 4: equal scores (to the published two decimals) share a rank."""
    ranks, prev, prev_rank = [], object(), 0
    for i, v in enumerate(values, 1):
        key = None if v is None else round(v, 2)
        if key != prev:
            prev, prev_rank = key, i
        ranks.append(prev_rank)
    return ranks


def build_reports(score_document: Mapping[str, Any], late_dossiers: Iterable[LateDossier | Mapping[str, Any]] = (),
                  registry: UnitRegistry | None = None, period: str | None = None, lang: str = DEFAULT_LANG,
                  catalogue: Catalogue | None = None) -> list[Report]:
    """One report per province of the document, in province-code order."""
    late = [d if isinstance(d, LateDossier) else LateDossier.from_mapping(d) for d in late_dossiers]
    return [build_report(score_document, late, registry, period, lang, province=p, catalogue=catalogue)
            for p in sorted(score_document.get("provinces") or {})]


def build_report(score_document: Mapping[str, Any], late_dossiers: Iterable[LateDossier | Mapping[str, Any]] = (),
                 registry: UnitRegistry | None = None, period: str | None = None, lang: str = DEFAULT_LANG,
                 province: str | None = None, catalogue: Catalogue | None = None) -> Report:
    """The report of one province (the only one of the document unless ``province`` is given).

    ``period``, when given, must be the document's period: a report labelled with another period than its figures
    would be wrong in the most damaging way. Names are those in force on the last day the figures cover.
    """
    doc = score_document
    t("common.total", lang)  # refuses an unknown language before any work
    if period is not None and period != doc.get("period"):
        raise ValueError(f"the score document is for {doc.get('period')!r}, not {period!r}; recompute it with "
                         f"--period {period}")
    provinces = doc.get("provinces") or {}
    if province is None:
        if len(provinces) != 1:
            raise ValueError(f"the document has {len(provinces)} provinces ({', '.join(sorted(provinces)) or 'none'});"
                             " name one with province=")
        province = next(iter(provinces))
    if province not in provinces:
        raise ValueError(f"province {province!r} is not in the score document ({', '.join(sorted(provinces))})")
    prov = provinces[province]
    catalogue = catalogue or load_catalogue()
    start, end, at = _dt(doc["period_start"]), _dt(doc["period_end"]), _dt(doc["at"])
    names_on = min(at, end - timedelta(microseconds=1))
    registry = registry or UnitRegistry()

    def names(code: str) -> tuple[str, str]:
        return registry.display(code, "vi", names_on), registry.display(code, "en", names_on)

    late_by_unit: dict[str, list[LateDossier]] = {}
    for d in late_dossiers:
        d = d if isinstance(d, LateDossier) else LateDossier.from_mapping(d)
        late_by_unit.setdefault(d.unit, []).append(d)

    units_doc = {c: u for c, u in (doc.get("units") or {}).items()
                 if u.get("province") == province or (u.get("province") is None and c.startswith(province + "."))}
    late_by_unit = {c: ds for c, ds in late_by_unit.items() if c in units_doc or c.startswith(province + ".")}
    unit_names = {province: names(province)}
    for c in set(units_doc) | set(late_by_unit):
        unit_names[c] = names(c)

    lines: list[UnitLine] = []
    for level in sorted({u.get("level") for u in units_doc.values()},
                        key=lambda lv: LEVEL_ORDER.index(lv) if lv in LEVEL_ORDER else len(LEVEL_ORDER)):
        members = []
        for c, u in units_doc.items():
            if u.get("level") != level:
                continue
            band = u.get("band") or {}
            members.append(dict(
                code=c, name_vi=unit_names[c][0], name_en=unit_names[c][1], level=level, total=u.get("total"),
                max_points_known=u.get("max_points_known") or 0.0, total_estimated=u.get("total_estimated"),
                complete=bool(u.get("complete")), band=band.get("code"), band_basis=band.get("basis"),
                on_time_ratio=(u.get("shares") or {}).get("on_time_ratio"),
                open_overdue=int((u.get("counts") or {}).get("open_overdue", 0)),
                late_listed=len(late_by_unit.get(c, ())),
                groups={g: v.get("score") for g, v in (u.get("groups") or {}).items()}))

        def value(m: dict) -> float | None:
            return m["total"] if m["band_basis"] == "total" else m["total_estimated"]

        members.sort(key=lambda m: (value(m) is None, -(value(m) or 0.0), m["code"]))
        for m, rank in zip(members, _competition_ranks([value(m) for m in members])):
            lines.append(UnitLine(rank=rank, **m))

    on = start.astimezone(VN).date() if start.tzinfo else start.date()
    groups = []
    for g in catalogue.groups:
        gd = (prov.get("groups") or {}).get(str(g.id), {})
        groups.append(GroupLine(g.id, g.code, g.name_vi, g.name_en, gd.get("score"), g.max_points,
                                gd.get("max_points_known") or 0.0))
    indicators = []
    for iid, ind_doc in (prov.get("indicators") or {}).items():
        try:
            ind = catalogue.indicator(iid, on)
            name_vi, name_en, monitoring = ind.name_vi, ind.name_en, not ind.scored
            duration = any(k.endswith("_seconds_sum") for k in (ind.numerator or {}))
        except KeyError:
            name_vi = name_en = iid
            monitoring, duration = not ind_doc.get("max_points"), False
        indicators.append(IndicatorLine(
            iid, int(ind_doc.get("group") or 0), name_vi, name_en, ind_doc.get("numerator"),
            ind_doc.get("denominator"), ind_doc.get("ratio"), ind_doc.get("score"),
            float(ind_doc.get("max_points") or 0.0), bool(ind_doc.get("computable")),
            bool(ind_doc.get("applicable")), monitoring, duration))
    indicators.sort(key=lambda i: (i.group, _id_key(i.id)))

    band = prov.get("band") or {}
    return Report(
        province=province, province_name_vi=unit_names[province][0], province_name_en=unit_names[province][1],
        period=doc["period"], period_start=start, period_end=end, at=at,
        kind="daily" if at < end else "period_end", lang=lang, catalogue=str(doc.get("catalogue", "")),
        calendar=str(doc.get("calendar", "")), total=prov.get("total"),
        max_points_known=prov.get("max_points_known") or 0.0, total_estimated=prov.get("total_estimated"),
        complete=bool(prov.get("complete")), band=band.get("code"), band_basis=band.get("basis"),
        shares=dict(prov.get("shares") or {}), counts=dict(prov.get("counts") or {}), groups=tuple(groups),
        indicators=tuple(indicators), units=tuple(lines),
        late={c: tuple(sorted(ds, key=lambda d: (-d.hours_overdue, d.code))) for c, ds in sorted(late_by_unit.items())},
        unit_names=unit_names,
    )


def _id_key(iid: str) -> tuple:
    major, _, minor = iid.partition(".")
    digits = "".join(ch for ch in minor if ch.isdigit())
    return (int(major) if major.isdigit() else 0, int(digits) if digits else 0, minor)
