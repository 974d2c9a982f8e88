"""A seeded simulator of one province's one-stop systems, publishing through the public event contract only.

It exists so that a newcomer sees realistic figures at once (the demo), so that the tests have a varied, repeatable
event log (the bundled sample), and so that benchmarks can replay a year of a province. Nothing in it is private to
the product: every record it writes is a CloudEvent any one-stop system could send, validated by ``models.events``.

The province follows the 2025 two-tier reform: agencies (sở, ngành) and communes/wards (xã, phường). Lateness is
skewed by unit, so rankings differ; calendar effects (Tết, swapped Saturdays, office hours) come from the calendar.
Events carry unit codes only, as the contract says; the names a person reads ("Sở Tư pháp", "UBND xã Mường Hum")
come from the province's unit registry, ``unit_registry(cfg)`` (``models.units_sample.simulated_registry``), which the demo
publishes to the unit-registry topic and ``onestop simulate --units-out`` writes next to the events.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Iterator

from models.calendar import TZ, WorkCalendar
from models.events import make_envelope
from models.units import UnitRegistry
from models.units_sample import simulated_registry

SOURCE = "igate.sample-province"


@dataclass(frozen=True)
class Procedure:
    code: str
    level: str  # agency | commune
    limit_value: float
    limit_unit: str
    has_fee: bool
    paper_result: bool
    online_level: str  # full | partial | none


PROCEDURES = (
    Procedure("1.001612", "agency", 15, "working_day", True, True, "partial"),    # business registration change
    Procedure("1.004227", "agency", 30, "working_day", True, True, "partial"),    # land-use certificate
    Procedure("2.000815", "agency", 10, "working_day", False, True, "full"),      # practice certificate
    Procedure("1.010733", "agency", 5, "working_day", True, False, "full"),       # license re-issue
    Procedure("1.005129", "agency", 20, "day", True, True, "partial"),            # construction permit (calendar days)
    Procedure("1.000894", "agency", 1, "month", False, True, "none"),             # appraisal
    Procedure("1.001193", "commune", 3, "working_day", False, True, "full"),      # birth registration
    Procedure("1.004837", "commune", 5, "working_day", True, True, "partial"),    # marriage registration
    Procedure("2.000635", "commune", 8, "hour", True, False, "full"),             # certified copy
    Procedure("1.003583", "commune", 2, "working_day", False, False, "full"),     # residence confirmation
    Procedure("2.001255", "commune", 10, "working_day", True, True, "partial"),   # land-use transfer (commune step)
)


@dataclass(frozen=True)
class Unit:
    code: str
    level: str
    lateness: float  # probability a dossier of this unit ends late


@dataclass
class SimulationConfig:
    seed: int = 2026
    province_code: str = "T99"
    agencies: int = 20
    communes: int = 100
    start: date = date(2026, 1, 5)
    end: datetime = datetime(2026, 3, 10, 16, 0, tzinfo=TZ)
    dossiers_per_day: float = 400.0
    online_share: float = 0.55
    postal_share: float = 0.05
    lateness: float = 0.06
    supplement_rate: float = 0.12
    withdrawal_rate: float = 0.02
    stop_rate: float = 0.01
    rating_rate: float = 0.45
    source: str = SOURCE
    units: list[Unit] = field(default_factory=list)


def make_units(cfg: SimulationConfig, rng: random.Random) -> list[Unit]:
    units = []
    for i in range(1, cfg.agencies + 1):
        units.append(Unit(f"{cfg.province_code}.S{i:02d}", "agency", min(0.5, rng.betavariate(1.2, 12) + cfg.lateness / 2)))
    for i in range(1, cfg.communes + 1):
        units.append(Unit(f"{cfg.province_code}.X{i:03d}", "commune", min(0.5, rng.betavariate(1.2, 14) + cfg.lateness / 2)))
    return units


def unit_registry(cfg: SimulationConfig) -> UnitRegistry:
    """The names (Vietnamese and English, with the 2025 history) of every unit ``make_units`` numbers for ``cfg``."""
    return simulated_registry(cfg.province_code, cfg.agencies, cfg.communes)


class _Dossier:
    """Accumulates one dossier's events; the simulator sorts every dossier's events by time at the end."""

    def __init__(self, sim: "Simulator", code: str):
        self.sim, self.code, self.seq, self.events = sim, code, 0, []

    def emit(self, kind: str, t: datetime, data: dict) -> None:
        if t > self.sim.cfg.end:
            return
        self.seq += 1
        event_id = str(uuid.UUID(int=self.sim.rng.getrandbits(128), version=4))
        self.events.append(make_envelope(kind, event_id=event_id, source=self.sim.cfg.source, subject=self.code,
                                         time=t, data=data, sequence=self.seq))


def _iso(t: datetime) -> str:
    return t.astimezone(TZ).isoformat()


class Simulator:
    def __init__(self, cfg: SimulationConfig, calendar: WorkCalendar | None = None):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.cal = calendar or WorkCalendar.default()
        self.units = cfg.units or make_units(cfg, self.rng)
        self.registry = unit_registry(cfg)
        self.weights = [3.0 if u.level == "agency" else 1.0 for u in self.units]

    def events(self) -> Iterator[dict]:
        """Every event up to ``cfg.end``, in event-time order."""
        out: list[tuple[str, int, dict]] = []
        for d in self._days():
            if not self.cal.is_working_day(d):
                continue  # one-stops receive on working days; online submissions wait for the next one
            n = self._poisson(self.cfg.dossiers_per_day)
            for i in range(n):
                unit = self.rng.choices(self.units, self.weights)[0]
                for env in self._dossier(unit, d, i):
                    out.append((env["time"], len(out), env))
        out.sort(key=lambda x: (datetime.fromisoformat(x[0]), x[1]))
        for _, _, env in out:
            yield env

    def _days(self) -> Iterator[date]:
        d = self.cfg.start
        while d <= self.cfg.end.astimezone(TZ).date():
            yield d
            d += timedelta(days=1)

    def _poisson(self, lam: float) -> int:
        # Normal approximation is plenty for daily volumes; keeps the simulator free of numpy.
        if lam <= 0:
            return 0
        return max(0, round(self.rng.gauss(lam, lam ** 0.5)))

    def _reception_time(self, d: date) -> datetime:
        periods = self.cal.working_periods(d)
        start, end = self.rng.choice(periods)
        return start + timedelta(seconds=self.rng.uniform(0, (end - start).total_seconds() - 60))

    def _dossier(self, unit: Unit, d: date, i: int) -> list[dict]:
        rng, cfg, cal = self.rng, self.cfg, self.cal
        proc = rng.choice([p for p in PROCEDURES if p.level == unit.level])
        received_at = self._reception_time(d)
        code = f"{unit.code}-{d:%Y%m%d}-{i:05d}"
        x = _Dossier(self, code)
        r = rng.random()
        channel = "online" if r < cfg.online_share else ("postal" if r < cfg.online_share + cfg.postal_share else "direct")
        if proc.online_level == "none" and channel == "online":
            channel = "direct"
        if channel != "direct":
            submitted = received_at - timedelta(hours=rng.uniform(0.2, 30))
            x.emit("submitted", submitted, {"procedure_code": proc.code, "channel": channel,
                                            "submitted_at": _iso(submitted), "receiving_unit_code": unit.code})
        due = cal.due_from_limit(received_at, proc.limit_value, proc.limit_unit)
        received = {
            "procedure_code": proc.code, "handling_unit_code": unit.code, "receiving_unit_code": unit.code,
            "channel": channel, "received_at": _iso(received_at),
            "time_limit": {"value": proc.limit_value, "unit": proc.limit_unit},
            "province_code": cfg.province_code, "unit_level": unit.level, "has_fee": proc.has_fee,
            "result_is_paper_document": proc.paper_result, "online_service_level": proc.online_level,
            "has_digitized_components": rng.random() < 0.85, "vneid_authenticated": channel == "online" and rng.random() < 0.6,
            "components": [{"component_code": "TP1", "digitized": True, "reused_digitized_data": rng.random() < 0.6,
                            "from_personal_data_store": rng.random() < 0.3}],
        }
        if rng.random() < 0.8:  # most systems print the appointment on the receipt slip; some send only the limit
            received["due_at"] = _iso(due)
        x.emit("received", received_at, received)
        limit_ws = cal.working_seconds_between(received_at, due)
        t = received_at
        if rng.random() < 0.3:
            t = cal.add_working_seconds(t, rng.uniform(600, 14400))
            x.emit("transferred", t, {"from_unit_code": unit.code, "to_unit_code": f"{unit.code}.P1",
                                      "step": {"step_code": "THAM_DINH", "unit_code": unit.code}})
        paused = 0.0
        n_supp = (1 + (rng.random() < 0.08)) if rng.random() < cfg.supplement_rate else 0
        for k in range(n_supp):
            req = cal.add_working_seconds(t, rng.uniform(0.05, 0.3) * limit_ws)
            x.emit("supplement_requested", req, {"supplement": {"request_id": f"BS{k + 1}", "requested_at": _iso(req),
                                                                "reason": "Thiếu giấy tờ"}})
            if rng.random() < 0.9:
                done = req + timedelta(days=rng.uniform(0.5, 6))
                x.emit("supplement_received", done, {"supplement": {"request_id": f"BS{k + 1}", "completed_at": _iso(done)}})
                paused += (done - req).total_seconds()
                t = done
            else:
                return x.events  # the applicant never came back: the dossier waits
        if rng.random() < cfg.withdrawal_rate:
            w = cal.add_working_seconds(t, rng.uniform(0.1, 0.5) * limit_ws)
            x.emit("withdrawal_requested", w, {})
            x.emit("withdrawn", w + timedelta(hours=2), {})
            return x.events
        if rng.random() < cfg.stop_rate:
            s = cal.add_working_seconds(t, rng.uniform(0.2, 0.8) * limit_ws)
            x.emit("stopped", s, {"reason": "Không đủ điều kiện"})
            return x.events
        late = rng.random() < unit.lateness
        frac = rng.uniform(1.03, 1.6) if late else rng.betavariate(4, 2) * 0.97
        end = cal.add_working_seconds(received_at, frac * limit_ws) + timedelta(seconds=paused)
        if proc.has_fee:
            pay_req = cal.add_working_seconds(received_at, 0.1 * limit_ws)
            x.emit("payment_requested", pay_req, {"fees": [{"fee_code": "LP1", "amount_vnd": rng.choice([30000, 50000, 100000, 500000])}]})
            paid = pay_req + timedelta(hours=rng.uniform(0.5, 40))
            online = rng.random() < (0.85 if channel == "online" else 0.35)
            x.emit("payment_completed", paid, {"paid_online": online, "paid_at": _iso(paid),
                                               "payment_channel": "national_portal" if online else "cash"})
        if late and rng.random() < 0.6:
            issued = cal.add_working_seconds(received_at, max(0.0, limit_ws - rng.uniform(0.3, 1.5) * 27000))
            new_due = cal.add_working_days(due, rng.choice([2, 3, 5]))
            x.emit("due_rescheduled", issued, {"apology": {"issued_at": _iso(issued), "previous_due_at": _iso(due),
                                                            "new_due_at": _iso(new_due), "reason": "Cần xác minh thêm"}})
        electronic = rng.random() < (0.95 if channel == "online" else 0.75)
        x.emit("processed", end, {"processing_ended_at": _iso(end),
                                  "results": [{"result_code": "KQ1", "electronic": electronic}]})
        if electronic and proc.paper_result:
            x.emit("result_issued", end + timedelta(minutes=20), {"results": [{"result_code": "KQ1", "electronic": True}]})
        ret = end + timedelta(hours=rng.uniform(1, 60))
        x.emit("result_returned", ret, {"returned_at": _iso(ret), "return_method": "online" if channel == "online" else "direct"})
        if rng.random() < cfg.rating_rate:
            satisfied = rng.random() < (0.55 if late else 0.95)
            x.emit("rated", ret + timedelta(hours=rng.uniform(0.1, 48)),
                   {"rating": {"satisfied": satisfied, "score_1_5": rng.choice([4, 5]) if satisfied else rng.choice([1, 2]),
                               "source": "national_portal" if channel == "online" else "kiosk"}})
        return x.events


SAMPLE = SimulationConfig(seed=766, agencies=6, communes=10, start=date(2026, 1, 5),
                          end=datetime(2026, 3, 10, 16, 0, tzinfo=TZ), dossiers_per_day=9.0, lateness=0.08)
"""The bundled sample (samples/sample-events.jsonl): a few hundred dossiers over Tết 2026, ending mid-March."""
SAMPLE_AT = "2026-03-10T16:00:00+07:00"
