"""streams/serve/risk.py without a broker: the scan, its cache for scrapes, and the official figures' files."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime

import pytest

from models.at_risk import at_risk_from_replay
from models.calendar import WorkCalendar
from models.dossier import Context, encode_state
from models.figures import iter_lines, replay, tallies_of
from streams.runtime.processor import Processor
from streams.serve.risk import OfficialFigures, RiskCollector, RiskService
from tests.builders import ROOT, SAMPLE_AT, SAMPLE_FILE

NOW = datetime.fromisoformat(SAMPLE_AT)
PERIOD = "month:2026-03"
SAVED_JSON = ROOT / "samples" / "reconcile" / "dvcqg-evaluation-2026-03.json"


class _Health:
    collector_errors = 0


class FakeRuntime:
    """What the risk service reads from the runtime: now, the processor, the tallies and a table scan."""

    def __init__(self, rep, ctx) -> None:
        self.processor = Processor()
        for s in rep.states.values():
            if s.reception is not None:
                self.processor._learn_unit(s.reception.handling_unit_code, s.reception.province_code,
                                           s.reception.unit_level)
        self.stored = [encode_state(s) for s in reversed(list(rep.states.values()))]  # not in replay order
        self.tallies = tallies_of(rep.states.values(), ctx)
        self.health = _Health()
        self.scans = 0

    def now(self) -> datetime:
        return NOW

    def all_tallies(self) -> dict:
        return self.tallies

    async def views(self, keep, make):
        self.scans += 1
        out = []
        for raw in self.stored:
            v = make(raw, NOW)
            if v is not None and keep(v):
                out.append(v)
        return out


def replayed_sample():
    ctx = Context(now=NOW, calendar=WorkCalendar.default())
    return replay(iter_lines(str(SAMPLE_FILE)), ctx), ctx


@pytest.fixture(scope="module")
def replayed():
    return replayed_sample()


def test_unit_records_equal_the_batch_records(replayed):
    rep, ctx = replayed
    oracle = at_risk_from_replay(rep, ctx, PERIOD)
    service = RiskService(FakeRuntime(rep, ctx))
    for unit in sorted({r["unit"] for r in oracle}):
        at, records = asyncio.run(service.unit_records(unit, PERIOD))
        assert at == NOW and records == [r for r in oracle if r["unit"] == unit]


def test_a_scrape_reuses_the_last_scan_until_it_is_old(replayed):
    rep, ctx = replayed
    clock = [0.0]
    runtime = FakeRuntime(rep, ctx)
    service = RiskService(runtime, max_age=15.0, monotonic=lambda: clock[0])
    collector = RiskCollector(service, OfficialFigures(None))

    async def scrape() -> dict:
        families = {f.name: f for f in collector.collect()}
        await asyncio.sleep(0.01)  # let a started scan finish
        return families

    async def run() -> None:
        first = await scrape()  # nothing scanned yet: the families are there, empty; a scan starts
        assert first["onestop_dossiers_at_risk"].samples == [] and runtime.scans == 1
        second = await scrape()
        assert second["onestop_dossiers_at_risk"].samples and runtime.scans == 1
        assert first["onestop_at_risk_scan_timestamp_seconds"].samples == []  # no scan yet: no age to tell
        assert second["onestop_at_risk_scan_timestamp_seconds"].samples[0].value == NOW.timestamp()
        assert second["onestop_at_risk_scan_duration_seconds"].samples[0].value == 0.0  # the injected clock stood
        clock[0] = 10.0
        await scrape()
        assert runtime.scans == 1  # within 15 s: the table is not scanned again
        clock[0] = 16.0
        await scrape()
        assert runtime.scans == 2

    asyncio.run(run())


def test_a_long_scan_is_reused_longer_so_scans_take_at_most_their_share():
    """A scan that took 10 s (a large table) with share 0.2 is reused for 40 s, not 15: scans then take at most a
    fifth of the worker's time, however many dossiers it holds."""
    rep, ctx = replayed_sample()
    clock = [0.0]
    runtime = FakeRuntime(rep, ctx)
    scan_views = runtime.views

    async def slow_views(keep, make):
        clock[0] += 10.0
        return await scan_views(keep, make)

    runtime.views = slow_views
    service = RiskService(runtime, max_age=15.0, monotonic=lambda: clock[0], share=0.2)

    async def run() -> None:
        scan = await service.scan()
        assert scan.seconds == 10.0 and service.interval(scan) == 40.0
        assert scan.summary.counts and scan.summary.dossiers == len(runtime.stored)
        for at, scans in ((scan.taken + 39.0, 1), (scan.taken + 40.0, 2)):
            clock[0] = at
            service.cached()
            await asyncio.sleep(0.01)
            assert runtime.scans == scans, at

    asyncio.run(run())


def test_the_scan_share_is_a_setting():
    from streams.runtime.settings import WorkerSettings

    assert WorkerSettings.from_env({"ONESTOP_RISK_SCAN_SHARE": "0.5"}).risk_scan_share == 0.5
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="risk_scan_share"):
            WorkerSettings(risk_scan_share=bad)


def test_official_figures_are_read_again_when_the_file_changes(tmp_path):
    f = tmp_path / "saved.json"
    f.write_bytes(SAVED_JSON.read_bytes())
    official = OfficialFigures(tmp_path)
    assert official.refresh() and official.loaded_at is not None
    n = len(official.records)
    assert not official.refresh()  # unchanged: not read again
    (tmp_path / "extra.csv").write_text("unit_code,indicator,numerator,denominator\nT99.X100,2.1,3,4\n",
                                        encoding="utf-8")
    assert official.refresh() and len(official.records) == n + 1
    (tmp_path / "extra.csv").write_text("not,a,portal,file\n", encoding="utf-8")
    os.utime(tmp_path / "extra.csv", ns=(1, 1))
    assert not official.refresh() and len(official.records) == n + 1  # a broken file keeps what was loaded
    (tmp_path / "extra.csv").write_bytes("Mã đơn vị;Chỉ số;Tử số\nT99;2.1;3\n".encode("cp1258", errors="replace"))
    assert not official.refresh() and len(official.records) == n + 1  # not UTF-8: the same, and no exception
    assert not official.refresh()  # and not read again until it changes


def test_official_families_never_carry_our_figures(tmp_path):
    official = OfficialFigures(SAVED_JSON)
    official.refresh()
    def exported(now: str) -> dict:
        collector = RiskCollector(RiskService(None), official, now=lambda: datetime.fromisoformat(now))
        families = {f.name: f for f in collector._official()}
        assert families["onestop_official_figures_loaded_timestamp_seconds"].samples
        return {(s.labels["unit"], s.labels["indicator"], s.labels["period"]): s.value
                for s in families["onestop_official_denominator"].samples}

    # March's figures are the current month's in March: period="month", as on our own families
    assert exported(SAMPLE_AT)[("T99.S02", "2.1", "month")] == 23
    # in April they are no longer the current month's: not exported (they stay in the file for onestop reconcile)
    assert exported("2026-04-02T09:00:00+07:00") == {}
