"""National-portal (Cổng DVCQG) sync bodies -> this product's CloudEvents.

One-stop systems already post every dossier to the national portal, as ``DongBoHoSoMC`` (the whole dossier
record, re-sent on every action) and ``CapNhatTienDoHoSoMC`` (one processing step). Accepting those bodies lets a
province monitor its dossiers without writing a publisher (domain reference §4).

Design: a ``DongBoHoSoMC`` record is a full snapshot each time, and it is converted into one event per *fact* it
states (received, supplement requested / received, paid online, digitized, processed, returned, stopped, withdrawn,
refused, e-result issued) rather than into one ``snapshot`` event. Each fact event's id is a UUID v5 over the
source, the dossier, the kind, the time and the whole ``data`` of the event, so:

- a body sent twice, or a record re-sent unchanged by the next action, gives the same events: duplicates that
  change nothing, never ``conflicting_duplicate`` (the id covers everything the event says);
- a re-send that adds a fact (the result was returned) adds exactly that event, dated when the fact happened, so
  figures "as of" an instant and late-arrival detection follow event time, which one snapshot dated at its newest
  fact could not (its reception would vanish from any earlier ``--at``);
- the state machine merges facts idempotently and commutatively (earliest time wins, supplements keyed by id), so
  bodies replayed in any order and repetition give the same figures;
- records that have no reception (status 1, refused with status 3) and progress steps convert too, which a
  ``snapshot`` (a received event with more fields) cannot express.

Facts that may change between re-sends are kept out of the ``received`` event, whose winner the state machine
picks by reception time: digitization goes to ``component_digitized``, online payment to ``payment_completed``.
The due date is the *original* one: the earliest of ``NgayHenTra`` and the supplement records' ``NgayHenTraTruoc``
/ ``NgayHenTraMoi``, since a source extends ``NgayHenTra`` after a supplement (§2.5) and DVCQG judges against
the original. A supplement's request id is its request day (``BS20260604``), so the same request reported by a
supplement record and by a progress step is one request.

Personal data never passes: only the allow-listed fields of ``models.dvcqg_fields`` are read, events carry codes,
dates and flags only, and messages name fields, never values.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import parse_qsl

from .dvcqg_fields import (CODE_RE, VN, FieldError, absent, as_bool, as_code, as_number, counter_label,
                           date_segment, parse_date, redact_body, safe_code)
from .dvcqg_profile import DEFAULT_PROFILE, ProfileError, SenderProfile, load_profile
from .i18n import both
from .events import MAX_DEADLINE_SPAN, MAX_TIME_LIMIT, TIMELINE_TOLERANCE, make_envelope

__all__ = ["SERVICES", "REASONS", "body_records", "code_prefix", "supplement_request_id", "SenderProfile", "DEFAULT_PROFILE", "load_profile", "ProfileError", "BodyError",
           "Conversion", "convert_body", "convert_lines", "redact_body", "event_id"]

SERVICES = ("DongBoHoSoMC", "CapNhatTienDoHoSoMC")
REASONS = ("dvcqg_bad_body", "dvcqg_missing_field", "dvcqg_bad_date", "dvcqg_bad_value")
"""Every reason a body or record is refused with (a metric label and a dead-letter header)."""
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:onestop-monitor:dvcqg")
MAX_RECORDS = 1000
"""Records per body; a sync sends one or a few, a bulk re-sync a few hundred."""

class BodyError(ValueError):
    """A body that is not a sync request at all (not JSON, no records, unknown service): nothing converts."""

    def __init__(self, message: str):
        super().__init__(f"dvcqg_bad_body: {message}")
        self.reason = "dvcqg_bad_body"
        self.message = message


class RecordError(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass
class Conversion:
    """What one body gave: events to publish, records refused (index, reason, message), codes outside the
    national tables (kept and counted, never fatal), and per-record warnings (index, message)."""

    service: str
    records: int = 0
    events: list[dict] = field(default_factory=list)
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    unknown_codes: Counter = field(default_factory=Counter)
    warnings: list[tuple[int, str]] = field(default_factory=list)
    is_updating: bool | None = None

    def report(self) -> dict:
        return {"service": self.service, "records": self.records, "events": len(self.events),
                "rejected": [list(r) for r in self.rejected], "unknown_codes": dict(sorted(self.unknown_codes.items())),
                "warnings": [list(w) for w in self.warnings]}


# ---------------------------------------------------------------------------------------------------------------
# the body

def convert_body(body: bytes | str | Any, *, service: str | None = None,
                 query: Mapping[str, str] | str | None = None, profile: SenderProfile = DEFAULT_PROFILE) -> Conversion:
    """Convert one sync request body. ``service`` comes from the URL path when the body has none; without either,
    it is told from the records' fields. Raises ``BodyError`` for a body with nothing to convert."""
    obj = _parse_json(body)
    if isinstance(query, str):
        query = dict(parse_qsl(query.lstrip("?"), keep_blank_values=True))
    query = {k.lower(): v for k, v in (query or {}).items()}
    madonvi = None
    updating = query.get("isupdating")
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        madonvi = obj.get("madonvi")
        body_service = obj.get("service")
        if body_service is not None and not absent(body_service):
            if service is not None and str(body_service) != service:
                raise BodyError(both("dvcqg.refusal.service_mismatch", service=service))
            service = str(body_service)
        if "isUpdating" in obj:
            updating = obj.get("isUpdating")
        records = obj["data"]
    elif isinstance(obj, list):
        records = obj
    elif isinstance(obj, dict) and "MaHoSo" in obj:
        records = [obj]
    else:
        raise BodyError(both("dvcqg.refusal.not_envelope"))
    if len(records) > MAX_RECORDS:
        raise BodyError(both("dvcqg.refusal.too_many", count=len(records), limit=MAX_RECORDS))
    if service is None:
        service = _guess_service(records)
    if service not in SERVICES:
        raise BodyError(f"`service` không thuộc {', '.join(SERVICES)} / `service` is not one of {', '.join(SERVICES)}")
    try:
        is_updating = as_bool(updating, "isUpdating")
    except FieldError:
        is_updating = None
    fallback_unit = safe_code(query.get("madinhdanhdv")) or safe_code(madonvi)
    out = Conversion(service=service, records=len(records), is_updating=is_updating)
    convert = _convert_dossier if service == "DongBoHoSoMC" else _convert_progress
    for i, record in enumerate(records):
        rec = _Record(i, profile, fallback_unit, out)
        try:
            if not isinstance(record, dict):
                raise RecordError("dvcqg_bad_body", "bản ghi không phải đối tượng JSON / the record is not a JSON object")
            events = convert(record, rec)
        except FieldError as exc:
            out.rejected.append((i, exc.reason, exc.message))
            continue
        except RecordError as exc:
            out.rejected.append((i, exc.reason, exc.message))
            continue
        except (ValueError, OverflowError, TypeError) as exc:  # a value no field rule foresaw: this record only
            out.rejected.append((i, "dvcqg_bad_value", f"a value could not be read ({type(exc).__name__})"))
            continue
        out.events.extend(events)
    return out


def body_records(obj: Any) -> list:
    """The records of a parsed body, indexed as ``convert_body`` indexes them (the envelope's ``data``, a bare
    array, or one record): what a caller needs to redact or dead-letter a record by its index."""
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        return obj["data"]
    if isinstance(obj, list):
        return obj
    return [obj] if isinstance(obj, dict) else []


def _parse_json(body: Any) -> Any:
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            body = bytes(body).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise BodyError("thân yêu cầu không phải UTF-8 / the body is not UTF-8") from None
    if isinstance(body, str):
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise BodyError("thân yêu cầu không phải JSON / the body is not JSON") from None
    return body


def _guess_service(records: list) -> str:
    for r in records:
        if isinstance(r, dict):
            if "TrangThaiHoSo" in r or "NgayTiepNhan" in r or "NgayHenTra" in r:
                return "DongBoHoSoMC"
            if "ThoiDiemXuLy" in r or "TrangThai" in r:
                return "CapNhatTienDoHoSoMC"
    raise BodyError(both("dvcqg.refusal.no_service"))


def convert_lines(lines: Iterable[tuple[int, bytes]], profile: SenderProfile = DEFAULT_PROFILE, *,
                  service: str | None = None, query: Mapping[str, str] | str | None = None
                  ) -> Iterator[tuple[int, Conversion | BodyError]]:
    """For ``onestop import dvcqg FILE``: one request body per line (as ``models.figures.iter_lines`` reads them);
    yields each line's conversion, or the ``BodyError`` of a line with nothing to convert."""
    for lineno, raw in lines:
        try:
            yield lineno, convert_body(raw, service=service, query=query, profile=profile)
        except BodyError as exc:
            yield lineno, exc


# ---------------------------------------------------------------------------------------------------------------
# one record

def event_id(source: str, subject: str, kind: str, time: datetime, data: dict) -> str:
    """Deterministic from everything the event says: equal ids <=> equal events."""
    canon = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(uuid.uuid5(ID_NAMESPACE, "\x1f".join((source, subject, kind, time.isoformat(), canon))))


class _Record:
    """The converter's view of one record: its index, the profile, and where its events and notes go."""

    def __init__(self, index: int, profile: SenderProfile, fallback_unit: str | None, out: Conversion):
        self.index, self.profile, self.fallback_unit, self.out = index, profile, fallback_unit, out
        self.code = ""
        self.events: list[dict] = []

    def warn(self, message: str) -> None:
        self.out.warnings.append((self.index, message))

    def unknown(self, field_name: str, raw: Any) -> None:
        self.out.unknown_codes[f"{field_name}:{counter_label(raw)}"] += 1

    def flag(self, value: Any, path: str) -> bool:
        """An optional flag; a value that is no flag counts as false and is counted, never fatal."""
        try:
            return bool(as_bool(value, path))
        except FieldError:
            self.unknown(path.split(".")[-1], value)
            return False

    def number(self, value: Any, path: str) -> float | None:
        """An optional number (fee, time limit); an unreadable one is absent and counted, never fatal."""
        try:
            return as_number(value, path)
        except FieldError:
            self.unknown(path.split(".")[-1], value)
            return None

    def unmapped_name(self, name: str) -> None:
        """An agency display name missing from the profile's table, counted by name so the operator can add it."""
        self.out.unknown_codes[f"DonViXuLy:{' '.join(name.split())[:80]}"] += 1

    def emit(self, kind: str, time: datetime, data: dict) -> None:
        src = self.profile.source
        self.events.append(make_envelope(kind, event_id=event_id(src, self.code, kind, time, data), source=src,
                                         subject=self.code, time=time, data=data))


def _iso(t: datetime) -> str:
    return t.astimezone(VN).isoformat()


def _dossier_code(record: dict) -> str:
    raw = record.get("MaHoSo")
    if absent(raw):
        raise RecordError("dvcqg_missing_field", "thiếu `MaHoSo` / `MaHoSo` is missing")
    code = str(raw).strip()
    if not CODE_RE.match(code):
        raise RecordError("dvcqg_bad_value", both("dvcqg.refusal.bad_code"))
    return code


def code_prefix(code: str) -> str | None:
    """The unit prefix of a dossier code: the segments before its date (``G09.20-20260609-0092637`` -> ``G09.20``)."""
    parts = code.split("-")
    for i in range(1, len(parts)):
        if date_segment(parts[i]) is not None:
            prefix = "-".join(parts[:i])
            return prefix if CODE_RE.match(prefix) else None
    return None


def _units(record: dict, rec: _Record) -> tuple[str, str]:
    """(receiving unit, handling unit), spec §4.5: the dossier-code prefix, else the mapped ``DonViXuLy``, else the
    query-string unit, else ``madonvi``, else the profile's default."""
    p = rec.profile
    prefix = code_prefix(rec.code)
    name = record.get("DonViXuLy")
    named = p.unit_for_name(name)
    if named is None and isinstance(name, str) and not absent(name) and (prefix is None or p.handling_unit_from_name):
        rec.unmapped_name(name)
    receiving = prefix or named or rec.fallback_unit or p.default_unit
    if receiving is None:
        raise RecordError("dvcqg_missing_field", both("dvcqg.refusal.no_unit"))
    handling = named if (named is not None and (p.handling_unit_from_name or prefix is None)) else receiving
    return receiving, handling


def _date(record: dict, name: str, path: str | None = None) -> datetime | None:
    return parse_date(record.get(name), path or name)


def _convert_dossier(record: dict, rec: _Record) -> list[dict]:
    p = rec.profile
    rec.code = _dossier_code(record)
    raw_status = record.get("TrangThaiHoSo")
    status = p.national_status(raw_status)
    if status is None and not absent(raw_status):
        rec.unknown("TrangThaiHoSo", raw_status)
    submitted_at = _date(record, "NgayNopHoSo")
    received_at = _date(record, "NgayTiepNhan")
    due_at = _date(record, "NgayHenTra")
    ended_at = _date(record, "NgayKetThucXuLy")
    returned_at = _date(record, "NgayTra")
    refused_at = _date(record, "NgayTuChoi")
    supplements = _supplements(record, rec)
    if status == 3 or (refused_at is not None and received_at is None):
        when = refused_at or received_at or submitted_at
        if when is None:
            rec.warn("status 3 (not received) without `NgayTuChoi`: the refusal is not recorded")
        else:
            rec.emit("reception_refused", when, {"refused_at": _iso(when)})
        return rec.events
    procedure = safe_code(record.get("MaTTHC"))
    if procedure is None and status != 1:
        raise RecordError("dvcqg_missing_field" if absent(record.get("MaTTHC")) else "dvcqg_bad_value",
                          both("dvcqg.refusal.no_procedure"))
    receiving, handling = _units(record, rec)
    channel = _channel(record, rec)
    if submitted_at is not None and procedure is not None:
        rec.emit("submitted", submitted_at, {"procedure_code": procedure, "channel": channel,
                                             "submitted_at": _iso(submitted_at), "receiving_unit_code": receiving})
    if status == 1:
        return rec.events
    if received_at is None:
        if status is not None:
            raise RecordError("dvcqg_missing_field", both("dvcqg.refusal.no_reception", status=status))
        rec.warn("no `NgayTiepNhan`: the dossier is not received yet")
        return rec.events

    # the reception, with the original due date (a source moves NgayHenTra after a supplement)
    dues = [d for d in [due_at] + [s[2] for s in supplements] + [s[3] for s in supplements] if d is not None]
    original_due = min(dues) if dues else None
    if original_due is not None and not received_at < original_due <= received_at + MAX_DEADLINE_SPAN:
        rec.warn("`NgayHenTra` is not after `NgayTiepNhan` or is more than ten years later: the due date is "
                 "computed from the time limit")
        original_due = None
    limit = _limit(record, rec, procedure)
    if original_due is None and limit is None:
        raise RecordError("dvcqg_missing_field", both("dvcqg.refusal.no_due"))
    fees = _fees(record, rec)
    paid = _payment(record, rec)
    data: dict[str, Any] = {"procedure_code": procedure, "handling_unit_code": handling,
                            "receiving_unit_code": receiving, "channel": channel, "received_at": _iso(received_at)}
    if original_due is not None:
        data["due_at"] = _iso(original_due)
    if limit is not None:
        data["time_limit"] = limit
    if p.province_code:
        data["province_code"] = p.province_code
    level = p.unit_levels.get(handling) or p.default_unit_level
    if level:
        data["unit_level"] = level
    data["has_fee"] = fees or paid is not None
    if submitted_at is not None:
        if submitted_at <= received_at + TIMELINE_TOLERANCE:
            data["submitted_at"] = _iso(submitted_at)
        else:
            rec.warn("`NgayNopHoSo` is after `NgayTiepNhan`: left out of the reception")
    if rec.flag(record.get("TaiKhoanDuocXacThucVoiVNeID"), "TaiKhoanDuocXacThucVoiVNeID"):
        data["vneid_authenticated"] = True
    rec.emit("received", received_at, data)

    facts = _Facts(rec, received_at)
    if paid is not None:
        facts.add("payment_completed", received_at, {"paid_online": True, "payment_channel": paid})
    components = _components(record, rec)
    if components:
        facts.add("component_digitized", received_at, {"components": components})
    for request_id, requested, _before, new_due, completed in supplements:
        facts.add("supplement_requested", requested,
                  {"supplement": {"request_id": request_id, "requested_at": _iso(requested)}})
        if completed is not None:
            done: dict[str, Any] = {"supplement": {"request_id": request_id, "completed_at": _iso(completed)}}
            if new_due is not None and new_due > received_at:
                done["due_at"] = _iso(new_due)
            if completed + TIMELINE_TOLERANCE < requested:
                rec.warn("a supplement's `NgayTiepNhanBoSung` is before its `NgayBoSung`: the completion is left out")
            else:
                facts.add("supplement_received", completed, done)
    # the end of processing: NgayKetThucXuLy (kind by status), never the status alone
    if ended_at is not None:
        kind, field_name = {7: ("withdrawn", "withdrawn_at"), 8: ("stopped", "stopped_at")}.get(
            status or 0, ("processed", "processing_ended_at"))
        facts.add(kind, ended_at, {field_name: _iso(ended_at)} if kind != "processed"
                  else {"processing_ended_at": _iso(ended_at), "results": []})
    elif status == 8 and refused_at is not None:
        facts.add("stopped", refused_at, {"stopped_at": _iso(refused_at)})
    elif status in (7, 8, 9):
        rec.warn(f"status {status} without `NgayKetThucXuLy`: the end of processing is not recorded")
    if returned_at is not None:
        facts.add("result_returned", returned_at, {"returned_at": _iso(returned_at)})
    elif status == 10:
        rec.warn("status 10 without `NgayTra`: the return is not recorded")
    results = _results(record)
    if results:
        facts.add("result_issued", ended_at or returned_at or received_at, {"results": results})
    return rec.events


class _Facts:
    """Emits the facts after a reception, leaving out any dated before it: the pipeline would refuse them, and
    which of the two it refused would depend on the order they arrive in."""

    def __init__(self, rec: _Record, received_at: datetime):
        self.rec, self.received_at = rec, received_at

    def add(self, kind: str, time: datetime, data: dict) -> None:
        if time + TIMELINE_TOLERANCE < self.received_at:
            self.rec.warn(f"the {kind} fact is dated before `NgayTiepNhan`: left out")
            return
        self.rec.emit(kind, time, data)


def _channel(record: dict, rec: _Record) -> str:
    raw = record.get("KenhThucHien")
    code = as_code(raw)
    if code is None:
        return rec.profile.default_channel
    channel = {"1": "direct", "2": "online", "3": "postal"}.get(code)
    if channel is None:
        rec.unknown("KenhThucHien", raw)
        return rec.profile.default_channel
    return channel


def _payment(record: dict, rec: _Record) -> str | None:
    """``DuocThanhToanTrucTuyen``: 1 national payment platform, 2 ministry/province gateway, 0 not online; any
    other value counts as not paid online and is counted."""
    raw = record.get("DuocThanhToanTrucTuyen")
    code = as_code(raw)
    if code is None or code == "0":
        return None
    if code in ("1", "2"):
        return "national_portal" if code == "1" else "local_gateway"
    rec.unknown("DuocThanhToanTrucTuyen", raw)
    return None


def _fees(record: dict, rec: _Record) -> bool:
    fees = record.get("DanhSachLePhi")
    if not isinstance(fees, list):
        return False
    for i, fee in enumerate(fees):
        if isinstance(fee, dict):
            amount = rec.number(fee.get("Gia"), f"DanhSachLePhi[{i}].Gia")
            if amount is not None and amount > 0:
                return True
    return False


def _limit(record: dict, rec: _Record, procedure: str | None) -> dict | None:
    value = rec.number(record.get("ThoiGianThucHien"), "ThoiGianThucHien")
    raw_unit = record.get("DonViTinh")
    if absent(raw_unit):
        raw_unit = record.get("LoaiThoiGianThucHien")
    if value is not None and value > 0:
        unit = rec.profile.limit_unit(raw_unit)
        if unit is None:
            if not absent(raw_unit):
                rec.unknown("DonViTinh", "<unmapped>")
        elif value <= MAX_TIME_LIMIT[unit] and (unit not in ("day", "month") or value == int(value)):
            return {"value": int(value) if value == int(value) else value, "unit": unit}
        else:
            rec.warn("`ThoiGianThucHien` is not a usable time limit for its unit")
    fallback = rec.profile.procedure_limits.get(procedure or "")
    if fallback is not None:
        v = fallback.value
        return {"value": int(v) if v == int(v) else v, "unit": fallback.unit}
    return None


def _items(record: dict, name: str) -> list[tuple[int, dict]]:
    value = record.get(name)
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)] if isinstance(value, list) else []


def _supplements(record: dict, rec: _Record) -> list[tuple[str, datetime, datetime | None, datetime | None, datetime | None]]:
    """(request id, requested at, due before, new due, completed at) per ``DanhSachHoSoBoSung`` record: the
    request is ``NgayBoSung`` (when the supplement slip was issued), the completion ``NgayTiepNhanBoSung`` (when
    the one-stop received the supplement), with the due date before and after it."""
    out = []
    for i, item in _items(record, "DanhSachHoSoBoSung"):
        path = f"DanhSachHoSoBoSung[{i}]."
        requested = parse_date(item.get("NgayBoSung"), path + "NgayBoSung")
        completed = parse_date(item.get("NgayTiepNhanBoSung"), path + "NgayTiepNhanBoSung")
        before = parse_date(item.get("NgayHenTraTruoc"), path + "NgayHenTraTruoc")
        new_due = parse_date(item.get("NgayHenTraMoi"), path + "NgayHenTraMoi")
        if requested is None:
            rec.warn(f"`{path}NgayBoSung` is missing: the supplement is left out")
            continue
        out.append((supplement_request_id(requested), requested, before, new_due, completed))
    return sorted(out, key=lambda s: s[1])


def supplement_request_id(requested: datetime) -> str:
    """A supplement request's id is its day (Vietnam time): the same request reported twice is one request."""
    return "BS" + requested.astimezone(VN).strftime("%Y%m%d")


def _components(record: dict, rec: _Record) -> list[dict]:
    comps: dict[tuple, dict] = {}
    for i, item in _items(record, "TaiLieuNop"):
        path = f"TaiLieuNop[{i}]."
        if rec.flag(item.get("IsDeleted"), path + "IsDeleted"):
            continue
        c = {"digitized": rec.flag(item.get("DuocSoHoa"), path + "DuocSoHoa"),
             "reused_digitized_data": rec.flag(item.get("DuocTaiSuDung"), path + "DuocTaiSuDung"),
             "from_personal_data_store": rec.flag(item.get("DuocLayTuKhoDMQG"), path + "DuocLayTuKhoDMQG")}
        if not any(c.values()):
            continue
        code = safe_code(item.get("MaThanhPhanHoSo"))
        if code:
            c["component_code"] = code
        comps[tuple(sorted(c.items()))] = c
    if rec.flag(record.get("HoSoCoThanhPhanSoHoa"), "HoSoCoThanhPhanSoHoa") and not any(
            c["digitized"] for c in comps.values()):
        c = {"digitized": True, "reused_digitized_data": False, "from_personal_data_store": False}
        comps[tuple(sorted(c.items()))] = c
    dbs = [record.get("MaCSDL")] + [item.get("MaCSDL") for _i, item in _items(record, "DSKetNoiCSDL")]
    for raw in dbs:
        if absent(raw):
            continue
        code = safe_code(raw)
        if code is None:
            rec.unknown("MaCSDL", raw)
            continue
        c = {"digitized": False, "reused_digitized_data": True, "from_personal_data_store": False,
             "national_db_code": code}
        comps[tuple(sorted(c.items()))] = c
    return [comps[k] for k in sorted(comps)]


def _results(record: dict) -> list[dict]:
    out = {}
    for _i, item in _items(record, "DanhSachGiayToKetQua"):
        code = safe_code(item.get("MaGiayToKetQua")) or safe_code(item.get("MaKetQua")) or \
            safe_code(item.get("MaThanhPhanHoSo"))
        r: dict[str, Any] = {"electronic": True}
        if code:
            r["result_code"] = code
        out[code or ""] = r
    return [out[k] for k in sorted(out)]


# ---------------------------------------------------------------------------------------------------------------
# progress steps

_PROGRESS_ENDS = {7: ("withdrawn", "withdrawn_at"), 8: ("stopped", "stopped_at"), 9: ("processed", "processing_ended_at"),
                  10: ("result_returned", "returned_at")}


def _convert_progress(record: dict, rec: _Record) -> list[dict]:
    """A step: ``step_changed`` from status 4 on, and the end of processing when the step is status 7-10 (and the
    profile trusts its progress steps), a refusal for status 3, a supplement request for 5 if the profile says so."""
    p = rec.profile
    rec.code = _dossier_code(record)
    raw = record.get("TrangThai")
    status = p.national_status(raw, progress=True)
    if status is None:
        if absent(raw):
            raise RecordError("dvcqg_missing_field", "thiếu `TrangThai` / `TrangThai` is missing")
        rec.unknown("TrangThai", raw)
    at = _date(record, "ThoiDiemXuLy")
    if at is None:
        raise RecordError("dvcqg_missing_field", "thiếu `ThoiDiemXuLy` / `ThoiDiemXuLy` is missing")
    started = _date(record, "NgayBatDau")
    step_due = _date(record, "NgayKetThucTheoQuyDinh")
    if status == 3:
        rec.emit("reception_refused", at, {"refused_at": _iso(at)})
        return rec.events
    if status in (1, 2):  # before or at the reception: a DongBoHoSoMC record states it with its fields
        return rec.events
    step: dict[str, Any] = {}
    if status is not None:
        step["step_code"] = f"TT{status}"
    if started is not None:
        step["started_at"] = _iso(started)
    if step_due is not None:
        step["step_due_at"] = _iso(step_due)
    rec.emit("step_changed", at, {"step": step})
    if status == 5 and p.supplements_from_progress:
        rec.emit("supplement_requested", at, {"supplement": {"request_id": supplement_request_id(at),
                                                             "requested_at": _iso(at)}})
    if status in _PROGRESS_ENDS and p.end_from_progress:
        kind, name = _PROGRESS_ENDS[status]
        data: dict[str, Any] = {name: _iso(at)}
        if kind == "processed":
            data |= {"results": [], "from_step": True}  # the last step 9 counts, unless NgayKetThucXuLy says
        rec.emit(kind, at, data)
    return rec.events
