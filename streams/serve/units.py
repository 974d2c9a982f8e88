"""Unit names where a person reads what a worker serves: the ``onestop_unit_info`` metric and the read API.

Figures carry unit codes only (``unit="T99.X065"``); a name on every series would multiply nothing but bytes and
would change every series of a unit when it is renamed. Instead one info series per known unit,

    onestop_unit_info{unit, name, name_en, level, province, parent} 1

lets dashboards and alerts join the name on in PromQL (docs/metrics.md). Names come from the unit registry the
worker follows on the ``unit-registry`` topic (``streams.runtime.reference``, records of ``models.units``), as in
force at the worker's clock; a unit the worker has figures for but the registry does not name still gets a series,
named by its code, so that a join never drops it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from models.i18n import DEFAULT_LANG, LANGS, csv_bytes, has, t
from models.units import UnitRegistry

__all__ = ["INFO_LABELS", "LISTING_COLUMNS", "UnitInfoCollector", "info_rows", "listing_csv",
           "name_figures", "parse_lang", "unit_name", "unit_registry"]

log = logging.getLogger(__name__)

INFO_METRIC = "onestop_unit_info"
INFO_LABELS = ("unit", "name", "name_en", "level", "province", "parent")
_EMPTY = UnitRegistry()


def unit_registry(runtime: Any) -> UnitRegistry:
    """The names the worker knows now (empty without a reference follower, e.g. in tests)."""
    follower = getattr(runtime, "reference", None)
    if follower is None or not hasattr(follower, "unit_registry"):
        return _EMPTY
    try:
        return follower.unit_registry()
    except Exception:  # names are a convenience; never let them break a scrape or a listing
        log.exception("unit registry unavailable; showing unit codes")
        return _EMPTY


def _known_units(runtime: Any) -> Mapping[str, Mapping[str, Any]]:
    meta = getattr(getattr(runtime, "processor", None), "unit_meta", None)
    return dict(meta) if isinstance(meta, Mapping) else {}


def _may_have_figures(registry: UnitRegistry, code: str, when: datetime) -> bool:
    """A unit the registry knows but that is not in force on ``when`` can still have figures in the current year
    (the longest period the worker exports) if it ended this year; one that ended earlier has none."""
    records = registry.records(code)
    if not records:
        return True
    ended = records[-1].valid_to
    return ended is None or ended.year >= when.year


def info_rows(registry: UnitRegistry, known: Mapping[str, Mapping[str, Any]], when: datetime) -> list[dict[str, str]]:
    """One label set per unit: every unit of the registry in force on ``when``, then every other unit the worker
    knows (its last name if the registry has it and it ended this year, its code if the registry does not name
    it), sorted by code."""
    rows = {r["unit"]: r for r in registry.info_rows(when, "vi")}
    for code, meta in known.items():
        if code in rows or not code or not _may_have_figures(registry, code, when):
            continue
        rec = registry.nearest(code, when)
        rows[code] = {
            "unit": code, "name": rec.name_vi if rec else code, "name_en": (rec.name_en if rec else None) or code,
            "level": (rec.level if rec else None) or str(meta.get("level") or ""),
            "province": (rec.province if rec else None) or str(meta.get("province") or ""),
            "parent": (rec.parent if rec else None) or "",
        }
    return [rows[c] for c in sorted(rows)]


class UnitInfoCollector:
    """``onestop_unit_info``, computed at scrape time from the registry in force and the units with figures."""

    FAMILIES = frozenset({INFO_METRIC})  # a scrape by name skips this collector unless it names it

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(INFO_METRIC, "Names and place of each known unit (always 1): join on `unit` to "
                                   "show names, e.g. `* on (unit) group_left (name) onestop_unit_info`.",
                                   labels=list(INFO_LABELS))
        try:
            now = self.runtime.clock.now()
            rows = info_rows(unit_registry(self.runtime), _known_units(self.runtime), now)
        except Exception:
            log.exception("onestop_unit_info left out of this scrape")
            rows = []
        for row in rows:
            family.add_metric([row[k] for k in INFO_LABELS], 1)
        yield family


def name_figures(doc: dict, registry: UnitRegistry, when: datetime | str | None, lang: str = DEFAULT_LANG) -> dict:
    """Add ``name`` (in ``lang``) to every unit and province block of a score document the registry names; blocks
    of unnamed units are left as they are, so the document stays what ``onestop score`` computes."""
    if not len(registry):
        return doc
    for key in ("units", "provinces"):
        for code, block in (doc.get(key) or {}).items():
            rec = registry.nearest(code, when)
            if rec is not None and isinstance(block, dict):
                block["name"] = rec.name(lang)
    return doc


#: Columns of ``/api/units/<unit>/dossiers.csv`` (message keys of ``models/catalogue/messages.yaml``).
LISTING_COLUMNS = (("dossier_code", "csv.dossier_code"), ("procedure_code", "csv.procedure_code"),
                   ("unit_code", "csv.unit_code"), ("unit_name", "csv.unit_name"), ("due_at", "csv.due_at"),
                   ("overdue_working_hours", "csv.overdue_working_hours"), ("state", "csv.state"))


def parse_lang(raw: str | None, default: str = DEFAULT_LANG) -> str:
    """``?lang=`` of a request: ``vi`` or ``en``, else the worker's default (setting ``lang``, ``ONESTOP_LANG``);
    ValueError for any other value."""
    if not raw:
        return default
    if raw not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}; got {raw!r}")
    return raw


def unit_name(registry: UnitRegistry, code: str, when: datetime | str | None, lang: str) -> str | None:
    rec = registry.nearest(code, when)
    return rec.name(lang) if rec is not None else None


def listing_csv(unit: str, items: list[dict], lang: str) -> bytes:
    """A unit's dossier listing as CSV for a spreadsheet: headers and states in ``lang``, UTF-8 with a BOM."""
    rows = []
    for item in items:
        row = {**item, "unit_code": unit}
        state = item.get("state")
        row["state"] = t(f"state.open_{state}", lang) if state and has(f"state.open_{state}") else state
        rows.append([row.get(field) for field, _ in LISTING_COLUMNS])
    return csv_bytes([key for _, key in LISTING_COLUMNS], rows, lang)
