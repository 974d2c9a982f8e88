"""Reading the figures the national portal (DVCQG) publishes: saved responses of its public reporting API and the CSV
an operator downloads, as ``OfficialRecord`` rows (one unit's indicator, group or total).

See docs/reconcile.md for the shapes and the fields read. The records are kept apart from our figures; the
comparison is ``models/reconcile.py``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .calendar import TZ
from .index766 import Catalogue, load_catalogue

__all__ = [
    "CSV_COLUMNS",
    "GROUP_SCORE_IS",
    "OfficialRecord",
    "ReconcileError",
    "load_official",
    "official_fetched_at",
    "parse_official_csv",
    "parse_portal_json",
]


class ReconcileError(ValueError):
    """An official file that cannot be read as published figures, or figures of another period than ours."""


@dataclass(frozen=True)
class OfficialRecord:
    """One published figure: a unit's indicator (``"2.1"``), group (``"TDGQ"``) or ``"total"``."""

    unit: str
    indicator: str
    numerator: float | None = None
    denominator: float | None = None
    ratio: float | None = None  # a fraction (the portal publishes percent; divided by 100 on reading)
    score: float | None = None
    max_points: float | None = None
    period: str | None = None
    unit_name: str | None = None
    department_id: str | None = None
    source: str = ""
    fetched_at: str | None = None


# --------------------------------------------------------------------------------------------------- the portal API

# Tree endpoints (``parent`` + ``children[]``) publish parameters, no metric codes: which fields make which
# indicator. A pair ``(numerator fields, denominator field)``; several numerator fields are added up.
TREE_INDICATORS: dict[str, tuple[tuple[str, ...], str]] = {
    "2.1": (("totalOnTime",), "totalReceived"),
    "3.1": (("partialCount", "fullCount"), "authorityCount"),
    "3.2": (("onlineDossierCount",), "onlineServiceTotal"),
    "3.3": (("channelOnlineSum",), "channelTotalSum"),
    "3.5": (("totalFeeDossierFormality",), "totalFeeFormality"),
    "3.5b": (("totalDossierOnlineFormalityPaymentSuccess",), "totalFeeFormality"),
    "3.6": (("totalDossierOnlinePaymentSuccess",), "totalDossierFinancialObligation"),
}
# Which group a tree response scores, from the endpoint name or, failing that, from a field only it has.
TREE_GROUPS = {
    "dvc-progress-tree": ("TDGQ", "totalOnTime"),
    "provide-online-tree": ("CLGQ", "channelTotalSum"),
    "formality-online-payment-tree": ("TTTT", "totalDossierFinancialObligation"),
}
# Metric endpoints (``overview`` + ``evaluation[]``, each with ``metrics[]``): the group by endpoint name.
METRIC_GROUPS = {"transparency": "CKMB", "dossier-digitized": "MDSH", "handling-satisfaction": "MDHL"}
# The portal scores 2.1 alone in its group (2.2 carries no points), so the group's score is 2.1's.
GROUP_SCORE_IS = {"TDGQ": "2.1"}


def _num(v: Any) -> float | None:
    if v is None or v == "" or isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, str):
        return _parse_number(v)
    return None


def _code_of(node: Mapping, ids: Mapping[str, str], unit_map: Mapping[str, str]) -> str | None:
    for key in ("departmentCode", "agencyCode", "code"):
        code = node.get(key)
        if isinstance(code, str) and code:
            return unit_map.get(code, code)
    dep = node.get("departmentId")
    if isinstance(dep, str) and dep:
        if dep in unit_map:
            return unit_map[dep]
        return ids.get(dep, dep)  # an unmapped id is kept: it shows as a unit we do not know
    return None


def _period_of_request(req: Mapping | None) -> str | None:
    """``{"timeType": "month", "year": 2026, "month": 3}`` or ``{"fromDate": ..., "toDate": ...}`` -> period key."""
    if not isinstance(req, Mapping):
        return None
    kind, year = req.get("timeType"), req.get("year")
    try:
        if kind == "month":
            return f"month:{int(year):04d}-{int(req['month']):02d}"
        if kind == "quarter":
            return f"quarter:{int(year):04d}-Q{int(req['quarter'])}"
        if kind == "year":
            return f"year:{int(year):04d}"
        if req.get("fromDate") and req.get("toDate"):
            a, b = date.fromisoformat(str(req["fromDate"])), date.fromisoformat(str(req["toDate"]))
            if a.day == 1 and a.year == b.year:
                nxt = date(b.year + (b.month == 12), b.month % 12 + 1, 1)
                if (nxt - b).days == 1:  # toDate is a month's last day (inclusive)
                    if a.month == b.month:
                        return f"month:{a.year:04d}-{a.month:02d}"
                    if a.month % 3 == 1 and b.month == a.month + 2:
                        return f"quarter:{a.year:04d}-Q{(a.month - 1) // 3 + 1}"
                    if a.month == 1 and b.month == 12:
                        return f"year:{a.year:04d}"
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _envelopes(doc: Any, where: str) -> list[tuple[Mapping, str | None, Mapping | None, str | None, str]]:
    """(envelope, endpoint, request, fetched_at, location) for a bare envelope, a list, or a saved bundle."""
    if isinstance(doc, Mapping) and "responses" in doc:
        out = []
        for n, item in enumerate(doc["responses"]):
            if not isinstance(item, Mapping) or not isinstance(item.get("response"), Mapping):
                raise ReconcileError(f"{where}: responses[{n}] has no `response` object / không có đối tượng `response`")
            endpoint = item.get("endpoint")
            name = endpoint.rstrip("/").rsplit("/", 1)[-1] if isinstance(endpoint, str) else None
            out.append((item["response"], name, item.get("request"), item.get("fetched_at") or doc.get("fetched_at"),
                        f"{where}#responses[{n}]"))
        return out
    if isinstance(doc, list):
        return [(e, None, None, None, f"{where}#[{n}]") for n, e in enumerate(doc)]
    if isinstance(doc, Mapping):
        return [(doc, None, None, None, where)]
    raise ReconcileError(f"{where}: not a portal response / không phải phản hồi của Cổng DVCQG")


def parse_portal_json(doc: Any, source: str = "<json>", unit_map: Mapping[str, str] | None = None,
                      catalogue: Catalogue | None = None) -> list[OfficialRecord]:
    """Records from saved responses of the reporting API: one envelope ``{"code": "OK", "data": ...}``, a list of
    them, or a bundle ``{"fetched_at", "responses": [{"endpoint", "request", "fetched_at", "response"}]}``.

    Units are named by ``departmentCode`` (mapped through ``unit_map`` when given); a node with only a
    ``departmentId`` takes the code another response of the same file gives that id.
    """
    catalogue = catalogue or load_catalogue()
    unit_map = dict(unit_map or {})
    by_api = {i.api_code: i.id for i in catalogue.indicators if i.api_code}
    envs = _envelopes(doc, source)
    ids: dict[str, str] = {}
    for env, *_ in envs:  # first pass: every departmentId -> departmentCode the file states
        for node in _nodes(env.get("data") if isinstance(env, Mapping) else None):
            dep, code = node.get("departmentId"), node.get("departmentCode")
            if isinstance(dep, str) and isinstance(code, str) and code:
                ids[dep] = unit_map.get(code, code)
    out: list[OfficialRecord] = []
    for env, endpoint, request, fetched_at, where in envs:
        if not isinstance(env, Mapping) or env.get("code") != "OK" or not isinstance(env.get("data"), Mapping):
            code = env.get("code") if isinstance(env, Mapping) else None
            raise ReconcileError(f"{where}: the portal did not answer OK (code {code!r}) / Cổng DVCQG không trả về "
                                 f"OK (mã {code!r})")
        data = env["data"]
        period = _period_of_request(request)
        common = {"period": period, "fetched_at": fetched_at}
        if "parent" in data or "children" in data:
            out += _tree_records(data, endpoint, ids, unit_map, where, common)
        elif "overview" in data or "evaluation" in data:
            out += _metric_records(data, endpoint, ids, unit_map, by_api, catalogue, where, common)
        else:
            raise ReconcileError(f"{where}: data has neither parent/children nor overview/evaluation / dữ liệu "
                                 "không có parent/children hay overview/evaluation")
    return out


def _nodes(data: Any) -> list[Mapping]:
    if not isinstance(data, Mapping):
        return []
    nodes = [data.get("parent"), data.get("overview")] + list(data.get("children") or []) + list(data.get("evaluation") or [])
    return [n for n in nodes if isinstance(n, Mapping)]


def _labelled(data: Mapping, where: str) -> list[tuple[Mapping, str]]:
    out = []
    for key in ("parent", "overview"):
        if isinstance(data.get(key), Mapping):
            out.append((data[key], f"{where}.data.{key}"))
    for key in ("children", "evaluation"):
        for n, node in enumerate(data.get(key) or []):
            if isinstance(node, Mapping):
                out.append((node, f"{where}.data.{key}[{n}]"))
    return out


def _ratio(v: Any) -> float | None:
    r = _num(v)
    return None if r is None else r / 100.0


def _tree_records(data: Mapping, endpoint: str | None, ids, unit_map, where: str, common: dict) -> list[OfficialRecord]:
    out = []
    for node, loc in _labelled(data, where):
        unit = _code_of(node, ids, unit_map)
        if unit is None:
            continue
        meta = {"unit_name": node.get("departmentName"), "department_id": node.get("departmentId"), "source": loc,
                **common}
        group = None
        if endpoint in TREE_GROUPS:
            group = TREE_GROUPS[endpoint][0]
        else:
            group = next((g for g, field in TREE_GROUPS.values() if field in node), None)
        score = _num(node.get("score", node.get("totalScore")))
        max_points = _num(node.get("maxScore", node.get("totalMaxScore")))
        for ind, (num_fields, den_field) in TREE_INDICATORS.items():
            if den_field not in node or not all(f in node for f in num_fields):
                continue
            parts = [_num(node.get(f)) for f in num_fields]
            num = None if any(p is None for p in parts) else math.fsum(parts)
            den = _num(node.get(den_field))
            own = GROUP_SCORE_IS.get(group) == ind
            out.append(OfficialRecord(unit=unit, indicator=ind, numerator=num, denominator=den,
                                      ratio=_ratio(node.get("ratio")) if own else None,
                                      score=score if own else None, max_points=max_points if own else None, **meta))
        if group is not None and (score is not None or max_points is not None):
            out.append(OfficialRecord(unit=unit, indicator=group, score=score, max_points=max_points,
                                      ratio=_ratio(node.get("ratio")), **meta))
    return out


def _metric_records(data: Mapping, endpoint: str | None, ids, unit_map, by_api, catalogue: Catalogue, where: str,
                    common: dict) -> list[OfficialRecord]:
    out = []
    for node, loc in _labelled(data, where):
        unit = _code_of(node, ids, unit_map)
        if unit is None:
            continue
        meta = {"unit_name": node.get("departmentName"), "department_id": node.get("departmentId"), **common}
        groups = set()
        for n, m in enumerate(node.get("metrics") or []):
            if not isinstance(m, Mapping) or not m.get("code"):
                continue
            ind = by_api.get(m["code"], m["code"])  # an unknown code is kept under its own name
            if ind in {i.id for i in catalogue.indicators}:
                groups.add(catalogue.indicator(ind).group)
            out.append(OfficialRecord(unit=unit, indicator=ind, numerator=_num(m.get("numerator")),
                                      denominator=_num(m.get("denominator")), ratio=_ratio(m.get("ratio")),
                                      score=_num(m.get("score")), max_points=_num(m.get("maxScore")),
                                      source=f"{loc}.metrics[{n}]", **meta))
        group = METRIC_GROUPS.get(endpoint or "")
        if group is None and len(groups) == 1:
            group = catalogue.group(groups.pop()).code
        if group is not None and ("totalScore" in node or "totalMaxScore" in node):
            out.append(OfficialRecord(unit=unit, indicator=group, score=_num(node.get("totalScore")),
                                      max_points=_num(node.get("totalMaxScore")), ratio=_ratio(node.get("ratio")),
                                      source=loc, **meta))
    return out


# --------------------------------------------------------------------------------------------------- CSV

#: Accepted headers (compared without case, accents or punctuation), Vietnamese or English.
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "unit": ("unit_code", "unit", "department_code", "ma_don_vi", "ma_co_quan", "ma_dinh_danh", "don_vi"),
    "indicator": ("indicator", "indicator_id", "indicator_code", "chi_so", "ma_chi_so", "chi_tieu", "ma_chi_tieu"),
    "numerator": ("numerator", "tu_so"),
    "denominator": ("denominator", "mau_so"),
    "score": ("score", "diem", "diem_so"),
    "max_points": ("max_points", "max_score", "diem_toi_da"),
    "ratio": ("ratio", "ratio_percent", "ty_le", "ty_le_phan_tram"),  # percent, as the portal shows it
    "unit_name": ("unit_name", "department_name", "ten_don_vi", "ten_co_quan"),
    "period": ("period", "ky", "ky_bao_cao"),
}


def _fold(text: str) -> str:
    t = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    t = "".join(ch for ch in t if not unicodedata.combining(ch)).lower()
    return re.sub(r"[^a-z0-9]+", "_", t).strip("_")


def _parse_number(text: str, count: bool = False) -> float | None:
    """``1234``, ``1,234.5``, ``1.234,5``, ``93,45`` (Vietnamese decimal comma), ``93.45 %``; empty -> None.

    A count (numerator, denominator) is a whole number, so ``184.513`` or ``184,513`` in such a column is read
    with a thousands separator, as a Vietnamese or an English spreadsheet writes it.
    """
    s = text.strip().replace("\u00a0", "").replace(" ", "").rstrip("%")
    if s in ("", "-", "—", "null", "None", "N/A", "n/a"):
        return None
    if count and re.fullmatch(r"-?\d{1,3}([.,]\d{3})+", s) and len(set(re.findall(r"[.,]", s))) == 1:
        s = s.replace(".", "").replace(",", "")
    elif "," in s and "." in s:
        s = s.replace(".", "").replace(",", ".") if s.rfind(",") > s.rfind(".") else s.replace(",", "")
    elif "," in s:
        s = s.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3}){2,}", s) else s.replace(",", ".")
    try:
        v = float(s)
    except ValueError:
        raise ReconcileError(f"{text!r} is not a number / không phải là số") from None
    return v if math.isfinite(v) else None


def _indicator_name(value: str, catalogue: Catalogue) -> str:
    v = value.strip()
    ids = {i.id for i in catalogue.indicators}
    m = re.search(r"\b(\d+\.\d+[a-z]?)\b", v)
    if m and m.group(1) in ids:
        return m.group(1)
    by_api = {i.api_code: i.id for i in catalogue.indicators if i.api_code}
    if v.upper() in by_api:
        return by_api[v.upper()]
    codes = {g.code for g in catalogue.groups}
    if v.upper() in codes:
        return v.upper()
    if _fold(v) in ("total", "tong", "tong_diem", "tong_so"):
        return "total"
    return v


def parse_official_csv(text: str, source: str = "<csv>", catalogue: Catalogue | None = None,
                       unit_map: Mapping[str, str] | None = None) -> list[OfficialRecord]:
    """Rows of ``unit code, indicator, numerator, denominator, score`` (see ``CSV_COLUMNS``); ``,``, ``;`` or tab
    separated, UTF-8 with or without BOM. The indicator may be an id (``2.1``), an API code
    (``DOSSIER_RECEIVING_SATISFACTION``), a group code (``TDGQ``) or ``total``/``Tổng``."""
    catalogue = catalogue or load_catalogue()
    unit_map = dict(unit_map or {})
    text = text.lstrip("\ufeff")
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise ReconcileError(f"{source}: empty file / tệp rỗng") from None
    folded = [_fold(h) for h in header]
    cols: dict[str, int] = {}
    for name, accepted in CSV_COLUMNS.items():
        # By the order of the accepted names, not of the columns: "Mã đơn vị" is the code even when a "Đơn vị"
        # column (the name, in the portal's exports) comes first.
        for wanted in accepted:
            if wanted in folded and folded.index(wanted) not in cols.values():
                cols[name] = folded.index(wanted)
                break
    if "unit_name" not in cols and "don_vi" in folded and cols.get("unit") != folded.index("don_vi"):
        cols["unit_name"] = folded.index("don_vi")  # a bare "Đơn vị" beside a code column is the unit's name
    missing = [c for c in ("unit", "indicator") if c not in cols]
    if missing or not {"numerator", "denominator", "score"} & cols.keys():
        raise ReconcileError(
            f"{source}: the header must name the unit code, the indicator and at least one of numerator, "
            f"denominator, score (got {header}) / dòng tiêu đề phải có mã đơn vị, chỉ số và ít nhất một trong tử "
            "số, mẫu số, điểm")
    out = []
    for line, row in enumerate(reader, 2):
        if not any(cell.strip() for cell in row):
            continue

        def cell(name: str) -> str | None:
            i = cols.get(name)
            return row[i].strip() if i is not None and i < len(row) else None

        try:
            values = {k: (_parse_number(cell(k), k in ("numerator", "denominator")) if cell(k) is not None else None)
                      for k in ("numerator", "denominator", "score", "max_points", "ratio")}
        except ReconcileError as exc:
            raise ReconcileError(f"{source}:{line}: {exc}") from None
        unit = cell("unit")
        if not unit:
            raise ReconcileError(f"{source}:{line}: no unit code / thiếu mã đơn vị")
        ratio = values.pop("ratio")
        out.append(OfficialRecord(unit=unit_map.get(unit, unit), indicator=_indicator_name(cell("indicator") or "", catalogue),
                                  ratio=None if ratio is None else ratio / 100.0, period=cell("period") or None,
                                  unit_name=cell("unit_name") or None, source=f"{source}:{line}", **values))
    return out


# --------------------------------------------------------------------------------------------------- loading


def load_official(path: str | Path, unit_map: Mapping[str, str] | None = None,
                  catalogue: Catalogue | None = None) -> list[OfficialRecord]:
    """A saved portal response (``.json``) or an operator's CSV (any other name)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ReconcileError(f"{p}: cannot read / không đọc được: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig", errors="strict") if raw else ""
    except UnicodeDecodeError as exc:
        raise ReconcileError(f"{p}: not UTF-8 (byte {exc.start}); save it as UTF-8 / không phải UTF-8 (byte "
                             f"{exc.start}); hãy lưu tệp với mã hóa UTF-8") from None
    if p.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReconcileError(f"{p}: not JSON / không phải JSON: {exc}") from None
        return parse_portal_json(doc, p.name, unit_map, catalogue)
    return parse_official_csv(text, p.name, catalogue, unit_map)


def official_fetched_at(records: Iterable[OfficialRecord]) -> datetime | None:
    """The latest instant the saved responses were fetched at: the instant our figures should be judged at."""
    times = []
    for r in records:
        if not r.fetched_at:
            continue
        try:
            t = datetime.fromisoformat(r.fetched_at)
        except (TypeError, ValueError):
            raise ReconcileError(f"{r.source}: fetched_at {str(r.fetched_at)[:40]!r} is not an ISO 8601 instant / "
                                 "fetched_at không phải thời điểm ISO 8601") from None
        times.append(t if t.tzinfo else t.replace(tzinfo=TZ))  # a saved time without an offset is Vietnam time
    return max(times) if times else None
