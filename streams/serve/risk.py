"""Points at risk, the period-end forecast and the national portal's published figures, served by a worker.

- ``GET /api/units/{unit}/at-risk`` (JSON, paginated) and ``/api/units/{unit}/at-risk.csv``: the records of
  ``models.at_risk.risk_records`` for the unit's open dossiers held here, scored on this worker's tallies.
- The ``forecast`` block of ``GET /figures`` (``figures_forecast``, called by the ``/figures`` view of
  ``streams.serve.readapi`` with the tallies that view has just scored).
- Scrape-time families (``RiskCollector``): ``onestop_dossiers_at_risk``, ``onestop_forecast_late_dossiers`` and
  ``onestop_official_numerator`` / ``_denominator`` / ``onestop_official_figures_loaded_timestamp_seconds``
  (docs/metrics.md). A scrape never scans the table itself: it reads the last scan (at most ``SCAN_MAX_AGE``
  seconds old) and, when that is older, starts the next one in the background.

Per-dossier points use the counts this worker holds (docs/at-risk.md); dossier counts are exact when Prometheus
sums them across workers. Labels are units, provinces, levels and small enums: never a dossier.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp.web import Response
from faust import web
from prometheus_client.core import GaugeMetricFamily, Metric

from models.at_risk import risk_records, risk_sums
from models.at_risk_pass import HORIZONS, RiskPass, RiskSummary
from models.dossier import decode_state
from models.evaluation import View, evaluate
from models.i18n import DEFAULT_LANG, csv_bytes, t
from models.reconcile import OfficialRecord, load_official
from models.tally import parse_period, unit_period_tallies
from streams.runtime.security import UNAUTHORIZED, api_token, bearer_ok
from streams.runtime.tallies import current_periods
from streams.serve.readapi import MAX_PAGE_SIZE, BadRequest, parse_int
from streams.serve.units import parse_lang

__all__ = ["CSV_COLUMNS", "SCAN_MAX_AGE", "SCAN_SHARE", "OfficialFigures", "RiskCollector", "RiskService", "register"]

log = logging.getLogger(__name__)

#: Seconds a scrape reuses the last scan of the table.
SCAN_MAX_AGE = 15.0
#: At most this share of the worker's time goes to scans: a scan that took s seconds is reused for at least
#: s * (1 - SCAN_SHARE) / SCAN_SHARE seconds (setting ``risk_scan_share``).
SCAN_SHARE = 0.2
SCENARIOS = ("due_soon_late", "current_rate")
OFFICIAL_SUFFIXES = (".json", ".csv")

#: (record key, message key of the header) of the CSV, in column order.
CSV_COLUMNS = (
    ("dossier", "csv.dossier_code"), ("unit", "csv.unit_code"), ("province", "csv.province_code"),
    ("level", "csv.level"), ("procedure", "csv.procedure_code"), ("period", "csv.period"), ("state", "csv.state"),
    ("due_at", "csv.due_at"), ("working_hours_left", "csv.working_hours_left"), ("clock", "csv.clock"),
    ("due_soon", "csv.due_soon"), ("due_within_next_working_day", "csv.due_within_next_working_day"),
    ("points", "csv.points_at_risk"), ("province_points", "csv.province_points_at_risk"),
    ("indicators", "csv.indicators_at_risk"),
)


@dataclass
class Scan:
    """One scan of the table: the current month's at-risk counts and forecast at ``at``."""

    at: datetime
    period: str
    summary: RiskSummary
    taken: float  # monotonic seconds, when it ended
    seconds: float  # how long it took


class RiskService:
    """Scans the owned dossiers and scores them with ``models.at_risk`` on this worker's tallies: the records of
    one unit when the read API asks, the counts of all (``models.at_risk_pass``) for scrapes and ``/figures``."""

    def __init__(self, runtime: Any, max_age: float = SCAN_MAX_AGE,
                 monotonic: Callable[[], float] = time.monotonic, share: float = SCAN_SHARE) -> None:
        self.runtime = runtime
        self.max_age = max_age
        self.share = share
        self.monotonic = monotonic
        self.last: Scan | None = None
        self._task: asyncio.Task | None = None

    @property
    def supported(self) -> bool:
        """Points at risk need the product's domain processor; a worker run with another one (``--processor``)
        serves its figures without them."""
        processor = self.runtime.processor
        return hasattr(processor, "context") and hasattr(processor, "catalogue")

    # -- scanning -----------------------------------------------------------------------------------------------
    def _meta(self) -> dict[str, tuple[str | None, str | None]]:
        meta = getattr(self.runtime.processor, "unit_meta", {}) or {}
        return {u: (m.get("level"), m.get("province")) for u, m in meta.items()}

    async def unit_records(self, unit: str, period: str) -> tuple[datetime, list[dict]]:
        """The at-risk records of one unit's open dossiers held here, at the worker's now (only that unit's
        dossiers are evaluated and kept)."""
        at = self.runtime.now()
        if not self.supported:
            return at, []
        processor = self.runtime.processor
        ctx = processor.context(at)

        def make(stored: bytes, _now: datetime) -> View | None:
            state = decode_state(stored)
            if state.reception is None or state.reception.handling_unit_code != unit:
                return None  # not this unit's: not evaluated
            return evaluate(state, ctx)

        views = await self.runtime.views(lambda v: v.is_open, make)
        records = risk_records(views, unit_period_tallies(self.runtime.all_tallies(), period), self._meta(), period,
                               at, processor.catalogue, ctx=ctx)
        return at, [r for r in records if r["unit"] == unit]

    async def _pass(self, period: str, at: datetime) -> RiskPass:
        """Every owned dossier through a ``RiskPass``, one at a time (no list of views is kept)."""
        ctx = self.runtime.processor.context(at)
        counted = RiskPass(period, at)

        def add(stored: bytes, _now: datetime) -> None:
            view = evaluate(decode_state(stored), ctx)
            if view is not None:
                counted.add(view)

        await self.runtime.views(lambda _v: False, add)
        return counted

    async def figures_forecast(self, doc: dict, tallies: dict, period: str, at: datetime) -> None:
        """Add the ``forecast`` block to a ``/figures`` document scored from ``tallies`` at ``at``."""
        if not self.supported:
            return
        counted = await self._pass(period, at)
        summary = counted.summary(unit_period_tallies(tallies, period), self._meta(), self.runtime.processor.catalogue)
        doc["forecast"] = summary.forecast

    async def scan(self) -> Scan:
        started = self.monotonic()
        at = self.runtime.now()
        period = current_periods(at)["month"]
        counted = await self._pass(period, at)
        summary = counted.summary(unit_period_tallies(self.runtime.all_tallies(), period), self._meta(),
                                  self.runtime.processor.catalogue)
        ended = self.monotonic()
        self.last = Scan(at, period, summary, ended, ended - started)
        if self.last.seconds > self.max_age * self.share:
            log.info("the at-risk scan of %d dossiers took %.1f s; the next one in %.0f s at the earliest",
                     summary.dossiers, self.last.seconds, self.interval(self.last))
        return self.last

    def interval(self, last: Scan) -> float:
        """Seconds from the end of a scan to the next: ``max_age``, or longer when scans take more than ``share``
        of the worker's time (a scan of a million dossiers takes about a minute)."""
        return max(self.max_age, last.seconds * (1 - self.share) / self.share)

    # -- for the scrape -----------------------------------------------------------------------------------------
    def cached(self) -> Scan | None:
        """The last scan; starts the next one in the background when it is older than ``interval``."""
        last = self.last
        if not self.supported:
            return None
        if last is None or self.monotonic() - last.taken >= self.interval(last):
            self._refresh()
        return self.last

    def _refresh(self) -> None:
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a scrape outside the worker's loop (a test): nothing to schedule on
            return
        self._task = loop.create_task(self._scan_logged())

    async def _scan_logged(self) -> None:
        try:
            await self.scan()
        except Exception:
            self.runtime.health.collector_errors += 1
            log.exception("the at-risk scan failed; the last one is kept")


# --------------------------------------------------------------------------------------------------- official


@dataclass
class OfficialFigures:
    """The portal's published figures from a file or a directory of saved responses and CSVs (setting
    ``official_figures``), read at start and again whenever a file's modification time or size changes. A file
    that cannot be read is logged and leaves the figures already loaded in place."""

    path: Path | None
    records: list[OfficialRecord] = field(default_factory=list)
    loaded_at: float | None = None
    _signature: tuple = ()

    def files(self) -> list[Path]:
        p = self.path
        if p is None or not p.exists():
            return []
        if p.is_dir():
            return sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in OFFICIAL_SUFFIXES)
        return [p]

    def refresh(self) -> bool:
        """Read the files again if any changed; True when new figures were loaded."""
        if self.path is None:
            return False
        try:
            files = self.files()
            signature = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        except OSError as exc:
            log.warning("official figures %s: %s", self.path, exc)
            return False
        if signature == self._signature:
            return False
        records: list[OfficialRecord] = []
        try:
            for f in files:
                records += load_official(f)
        except Exception as exc:  # ReconcileError, or a defect: never let a file break the scrape or the start
            log.warning("official figures not (re)loaded / số liệu chính thức không được nạp: %s", exc)
            self._signature = signature  # retried once the file changes again
            return False
        self.records, self._signature, self.loaded_at = records, signature, time.time()
        log.info("official figures: %d records from %d file(s) in %s", len(records), len(files), self.path)
        return True


# --------------------------------------------------------------------------------------------------- the scrape


class RiskCollector:
    """The at-risk, forecast and official families, from the last scan and the official files."""

    #: What ``collect`` can export (a scrape by name skips this collector when it names none of them).
    FAMILIES = frozenset({"onestop_dossiers_at_risk", "onestop_forecast_late_dossiers",
                          "onestop_at_risk_scan_timestamp_seconds", "onestop_at_risk_scan_duration_seconds",
                          "onestop_official_numerator",
                          "onestop_official_denominator", "onestop_official_figures_loaded_timestamp_seconds"})

    def __init__(self, service: RiskService, official: OfficialFigures,
                 now: Callable[[], datetime] | None = None) -> None:
        self.service = service
        self.official = official
        self.now = now or (lambda: service.runtime.now())

    def describe(self) -> list[Metric]:
        return []

    def _labels(self, unit: str, cache: dict[str, list[str]]) -> list[str]:
        labels = cache.get(unit)
        if labels is None:
            try:
                info = self.service.runtime.processor.unit_info(unit) or {}
            except Exception:
                info = {}
            labels = cache[unit] = [unit, str(info.get("province") or ""), str(info.get("level") or "")]
        return labels

    def collect(self) -> Iterator[Metric]:
        scan = self.service.cached()
        cache: dict[str, list[str]] = {}
        at_risk = GaugeMetricFamily(
            "onestop_dossiers_at_risk",
            "Open dossiers of the current month's population, within due and counted on time, whose ending late "
            "would take them out of the indicator's numerator; horizon all or next_working_day.",
            labels=["unit", "province", "level", "indicator", "horizon"])
        late = GaugeMetricFamily(
            "onestop_forecast_late_dossiers",
            "Dossiers that would end late by the end of the current month beyond those already late, the open "
            "due-soon ones (due_soon_late) or the expected number at each procedure's lateness rate (current_rate), "
            "counted per indicator as those their late end takes out of its numerator (for 5.4: not already "
            "dissatisfied).",
            labels=["unit", "province", "level", "indicator", "scenario"])
        if scan is not None:
            counts = dict(scan.summary.counts)
            by_level = scan.summary.indicators_by_level
            for unit, block in scan.summary.forecast["units"].items():
                labels = self._labels(unit, cache)
                for ind in sorted(by_level.get(str(block.get("level") or ""), ())):
                    for horizon in HORIZONS:
                        at_risk.add_metric([*labels, ind, horizon], counts.pop((unit, ind, horizon), 0))
                for scenario in SCENARIOS:
                    for ind, n in sorted(block[scenario]["numerator_removed"].items()):
                        late.add_metric([*labels, ind, scenario], float(n))
            for (unit, ind, horizon), n in sorted(counts.items()):  # a unit without tallies here (not expected)
                at_risk.add_metric([*self._labels(unit, cache), ind, horizon], n)
        yield at_risk
        yield late
        yield from self._scan_families(scan)
        yield from self._official()

    @staticmethod
    def _scan_families(scan: Scan | None) -> Iterator[Metric]:
        """When the at-risk families were computed and how long that took: on a large table scans are paced to
        minutes apart (``RiskService.interval``), and a reader of the gauges should see how old they are."""
        at = GaugeMetricFamily("onestop_at_risk_scan_timestamp_seconds",
                               "The instant the at-risk and forecast families were computed for (the last scan).")
        took = GaugeMetricFamily("onestop_at_risk_scan_duration_seconds", "How long the last at-risk scan took.")
        if scan is not None:
            at.add_metric([], scan.at.timestamp())
            took.add_metric([], scan.seconds)
        yield at
        yield took

    def _official(self) -> Iterator[Metric]:
        off = self.official
        off.refresh()
        labels = ["unit", "indicator", "period"]
        num = GaugeMetricFamily("onestop_official_numerator",
                                "Numerator the national portal publishes for the unit's indicator (kept apart from "
                                "ours; every worker exports the same value).", labels=labels)
        den = GaugeMetricFamily("onestop_official_denominator",
                                "Denominator the national portal publishes for the unit's indicator (kept apart "
                                "from ours; every worker exports the same value).", labels=labels)
        # The ``period`` label means what it means on our families: the current month, quarter or year. Figures of
        # another period stay in the files (``onestop reconcile``); figures whose file states no period are
        # exported with an empty ``period``, so that no rule compares them with ours.
        current = {pk: g for g, pk in current_periods(self.now()).items()}
        seen: set[tuple[str, str, str]] = set()
        for r in off.records:
            if r.period and r.period not in current:
                continue
            key = (r.unit, r.indicator, current.get(r.period or "", ""))
            if key in seen:  # the first file (by name) wins, as in models.reconcile
                continue
            seen.add(key)
            if r.numerator is not None and math.isfinite(r.numerator):
                num.add_metric(list(key), r.numerator)
            if r.denominator is not None and math.isfinite(r.denominator):
                den.add_metric(list(key), r.denominator)
        yield num
        yield den
        loaded = GaugeMetricFamily("onestop_official_figures_loaded_timestamp_seconds",
                                   "When the official figures were last read from their files (Unix seconds).")
        if off.loaded_at is not None:
            loaded.add_metric([], off.loaded_at)
        yield loaded


# --------------------------------------------------------------------------------------------------- the views


def _json(value: Any, status: int = 200) -> Response:
    body = json.dumps(value, ensure_ascii=False, default=str).encode()
    return Response(body=body, status=status, headers={"Content-Type": "application/json; charset=utf-8"})


def _unauthorized() -> Response:
    return Response(body=json.dumps({"error": UNAUTHORIZED}, ensure_ascii=False).encode(), status=401,
                    headers={"Content-Type": "application/json; charset=utf-8",
                             "WWW-Authenticate": 'Bearer realm="onestop"'})


def _period(raw: str | None, at: datetime) -> str:
    period = raw or current_periods(at)["month"]
    try:
        parse_period(period)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return period


def csv_rows(records: list[dict], lang: str) -> Iterator[list]:
    """CSV cells of the records: states, clocks and yes/no in ``lang``; numbers as numbers."""
    yes, no = t("common.yes", lang), t("common.no", lang)
    for r in records:
        row = []
        for key, _header in CSV_COLUMNS:
            v = r.get(key)
            if key == "state":
                v = t(f"state.{v}", lang)
            elif key == "clock":
                v = t(f"risk.clock.{v}", lang)
            elif isinstance(v, bool):
                v = yes if v else no
            elif key == "indicators":
                v = "; ".join(f"{i}={p:.2f}" for i, p in sorted(v.items()))
            elif isinstance(v, float):
                v = round(v, 4)
            row.append(v)
        yield row


def register(app: Any, runtime: Any, registry: Any) -> RiskService:
    """Attach the at-risk views and add the scrape-time collector to ``registry``; returns the service, whose
    ``figures_forecast`` the ``/figures`` view calls."""
    service = RiskService(runtime, share=getattr(runtime.settings, "risk_scan_share", SCAN_SHARE))
    official = OfficialFigures(getattr(runtime.settings, "official_figures", None))
    official.refresh()
    registry.register(RiskCollector(service, official))
    token = api_token(runtime.settings)
    default_lang = getattr(runtime.settings, "lang", DEFAULT_LANG)

    def refused(request: web.Request) -> Response | None:
        return None if bearer_ok(request.headers.get("Authorization"), token) else _unauthorized()

    @app.page("/api/units/{unit}/at-risk")
    async def at_risk(self: web.View, request: web.Request, unit: str) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        q = request.query
        try:
            period = _period(q.get("period"), runtime.now())
            page = parse_int(q.get("page"), "page", 1, 1, 10**6)
            size = parse_int(q.get("page_size"), "page_size", 100, 1, MAX_PAGE_SIZE)
        except BadRequest as exc:
            return _json({"error": str(exc)}, 400)
        at, records = await service.unit_records(unit, period)
        start = (page - 1) * size
        sums = risk_sums(records)["units"].get(unit, {"dossiers": 0, "points": 0.0, "dossiers_next_working_day": 0,
                                                      "points_next_working_day": 0.0})
        return _json({"unit": unit, "period": period, "at": at.isoformat(), "items": records[start:start + size],
                      "page": page, "page_size": size, "total": len(records), "sums": sums})

    @app.page("/api/units/{unit}/at-risk.csv")
    async def at_risk_csv(self: web.View, request: web.Request, unit: str) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        try:
            period = _period(request.query.get("period"), runtime.now())
            lang = parse_lang(request.query.get("lang"), default_lang)
        except ValueError as exc:  # BadRequest is a ValueError
            return _json({"error": str(exc)}, 400)
        _at, records = await service.unit_records(unit, period)
        body = csv_bytes([h for _k, h in CSV_COLUMNS], csv_rows(records, lang), lang)
        return Response(body=body, headers={"Content-Type": "text/csv; charset=utf-8"})

    return service
