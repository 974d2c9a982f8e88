"""Reading national-portal (Cổng DVCQG) sync records: field values as senders put them on the wire, and the
allow-list of the fields this product reads.

Senders send every key, with ``""``, ``null`` or ``[]`` for "no value", codes and flags as strings or numbers,
and dates in three spellings (domain reference §4.5). These helpers turn such values into Python values or
raise ``FieldError`` naming the field, never quoting the value: a mis-filled field may hold personal data.

The allow-list is the privacy boundary. ``redact_body`` keeps only the fields listed here, so a body can be
dead-lettered or logged without the applicant's name, identity number, contact details or file names.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

VN = timezone(timedelta(hours=7))
"""Asia/Ho_Chi_Minh: UTC+7 without DST. Dates without an offset are Vietnam wall-clock time."""

EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
PLACEHOLDER_YEAR = 1900
"""A date in or before this year is a sender's "no date" placeholder (C# ``DateTime.MinValue`` is 0001-01-01)."""

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
"""The contract's code pattern (models.events.Code): what a unit, procedure or dossier code may contain."""


class FieldError(ValueError):
    """A field that cannot be read. ``reason`` is ``dvcqg_bad_date`` / ``dvcqg_bad_value``; ``field`` its path."""

    def __init__(self, reason: str, field: str, vi: str, en: str):
        self.reason = reason
        self.field = field
        self.message = f"`{field}` {vi} / `{field}` {en}"
        super().__init__(f"{reason}: {self.message}")


def absent(value: Any) -> bool:
    """``""``, ``null``, ``[]``, ``{}`` and blank strings all mean "not sent"."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == "" or value.strip().lower() in ("null", "none")
    if isinstance(value, (list, dict)):
        return len(value) == 0
    return False


# ---------------------------------------------------------------------------------------------------------------
# dates

_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?$")
_DMY = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?$")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$", re.IGNORECASE)


def parse_date(value: Any, field: str) -> datetime | None:
    """A date-time in Vietnam time, or None when absent.

    Accepts ``yyyyMMddHHmmss`` (also ``yyyyMMddHHmm`` and ``yyyyMMdd``), ``dd/MM/yyyy HH:mm:ss`` (also without
    seconds or time), and ISO 8601 with or without an offset (no offset means Vietnam time). Numbers are read as
    the compact form. A year up to 1900 is a placeholder and counts as absent.
    """
    if absent(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FieldError("dvcqg_bad_date", field, f"là {type(value).__name__}, không phải ngày giờ",
                         f"is a {type(value).__name__}, not a date")
    text = str(value).strip()
    try:
        dt = _parse_text(text)
    except ValueError:
        dt = None
    if dt is None:
        raise FieldError("dvcqg_bad_date", field, "không phải ngày giờ (yyyyMMddHHmmss, dd/MM/yyyy HH:mm:ss "
                         "hoặc ISO 8601)", "is not a date (yyyyMMddHHmmss, dd/MM/yyyy HH:mm:ss or ISO 8601)")
    if dt.year <= PLACEHOLDER_YEAR:
        return None
    if not EARLIEST <= dt < LATEST:
        raise FieldError("dvcqg_bad_date", field, "nằm ngoài các năm 2000-2099", "is outside the years 2000-2099")
    return dt.astimezone(VN)


def _parse_text(text: str) -> datetime | None:
    m = _COMPACT.match(text)
    if m:
        y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
        return datetime(y, mo, d, h, mi, s, tzinfo=VN)
    m = _DMY.match(text)
    if m:
        d, mo, y, h, mi, s = (int(g) if g else 0 for g in m.groups())
        return datetime(y, mo, d, h, mi, s, tzinfo=VN)
    if _ISO.match(text):
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "zZ" else text)
        return dt if dt.tzinfo is not None else dt.replace(tzinfo=VN)
    return None


def date_segment(segment: str) -> date | None:
    """The date of a dossier-code segment (``20260609`` or ``260609``), else None."""
    try:
        if len(segment) == 8 and segment.isdigit():
            d = date(int(segment[:4]), int(segment[4:6]), int(segment[6:]))
            return d if 2000 <= d.year <= 2099 else None
        if len(segment) == 6 and segment.isdigit():
            return date(2000 + int(segment[:2]), int(segment[2:4]), int(segment[4:]))
    except ValueError:
        return None
    return None


# ---------------------------------------------------------------------------------------------------------------
# codes, flags, numbers

def as_code(value: Any) -> str | None:
    """A code sent as a string or a number (``"10"``, ``10``, ``10.0``, ``" 09 "``): digits lose leading zeros."""
    if absent(value) or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return "<not-finite>"  # 1e400 parses as infinity: a code nobody maps, counted as unknown
        if value == int(value):
            value = int(value)
    text = str(value).strip()
    if text.isascii() and text.isdigit():  # "²" is a digit to str.isdigit, not to int()
        text = str(int(text))
    return text


def as_bool(value: Any, field: str) -> bool | None:
    """``true``/``"True"``/``1``/``"1"``/``"x"`` and their negatives; None when absent."""
    if absent(value):
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "x", "co", "có"):
        return True
    if text in ("false", "0", "no", "n", "khong", "không"):
        return False
    raise FieldError("dvcqg_bad_value", field, "không phải giá trị đúng/sai (True/False, 1/0)", "is not a flag (True/False, 1/0)")


def as_number(value: Any, field: str) -> float | None:
    """A number sent as a string or a number; ``"1.500.000"`` / ``"1,5"`` are read the Vietnamese way."""
    if absent(value):
        return None
    if isinstance(value, bool):
        raise FieldError("dvcqg_bad_value", field, "là giá trị đúng/sai, không phải số", "is a flag, not a number")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().replace(" ", "")
    if re.fullmatch(r"\d{1,3}(\.\d{3})+", text):
        text = text.replace(".", "")
    text = text.replace(",", ".")
    try:
        return float(text)
    except ValueError:
        raise FieldError("dvcqg_bad_value", field, "không phải số", "is not a number") from None


def safe_code(value: Any) -> str | None:
    """The value as a contract code, or None if it is not one (never raises: for optional codes)."""
    code = as_code(value)
    return code if code is not None and CODE_RE.match(code) else None


def counter_label(value: Any) -> str:
    """A raw code as it may appear in the unknown-code counter: short codes as sent, anything longer (which could
    be a misplaced phone or identity number) as ``<long>``, anything that is not a code as ``<invalid>``."""
    code = as_code(value)
    if code is None:
        return "<absent>"
    if len(code) > 8:
        return "<long>"
    return code if CODE_RE.match(code) else "<invalid>"


def normalize_name(name: str) -> str:
    """A display name for table lookup: case, spacing and Unicode composition do not matter."""
    import unicodedata
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


# ---------------------------------------------------------------------------------------------------------------
# the allow-list

ENVELOPE_FIELDS = ("madonvi", "service", "isUpdating", "data")
"""The OpenCPS envelope; ``session`` (a credential) is never kept."""

DOSSIER_FIELDS: dict[str, tuple[str, ...] | None] = {
    "MaHoSo": None, "MaTTHC": None, "TrangThaiHoSo": None, "KenhThucHien": None, "DonViXuLy": None,
    "NgayNopHoSo": None, "NgayTiepNhan": None, "NgayHenTra": None, "NgayKetThucXuLy": None, "NgayTra": None,
    "NgayTuChoi": None, "DuocThanhToanTrucTuyen": None, "HoSoCoThanhPhanSoHoa": None,
    "TaiKhoanDuocXacThucVoiVNeID": None, "MaCSDL": None, "ThoiGianThucHien": None, "DonViTinh": None,
    "LoaiThoiGianThucHien": None,
    "TaiLieuNop": ("MaThanhPhanHoSo", "DuocSoHoa", "DuocLayTuKhoDMQG", "DuocTaiSuDung", "IsDeleted"),
    "DanhSachLePhi": ("MaPhiLePhi", "Gia"),
    "DanhSachHoSoBoSung": ("HoSoBoSungId", "NgayBoSung", "NgayTiepNhanBoSung", "TrangThaiBoSung",
                           "NgayHenTraTruoc", "NgayHenTraMoi"),
    "DanhSachGiayToKetQua": ("MaGiayToKetQua", "MaKetQua", "MaThanhPhanHoSo"),
    "DSKetNoiCSDL": ("MaCSDL",),
}
"""DongBoHoSoMC: every field read, and for lists the sub-fields read. Everything else is dropped unread."""

PROGRESS_FIELDS: dict[str, tuple[str, ...] | None] = {
    "MaHoSo": None, "TrangThai": None, "ThoiDiemXuLy": None, "NgayBatDau": None, "NgayKetThucTheoQuyDinh": None,
}
"""CapNhatTienDoHoSoMC: the step's dossier, status and times; the handler, title, department and note are not."""


DATE_FIELDS = frozenset({"NgayNopHoSo", "NgayTiepNhan", "NgayHenTra", "NgayKetThucXuLy", "NgayTra", "NgayTuChoi",
                         "NgayBoSung", "NgayTiepNhanBoSung", "NgayHenTraTruoc", "NgayHenTraMoi", "ThoiDiemXuLy",
                         "NgayBatDau", "NgayKetThucTheoQuyDinh"})
SHORT_CODE_FIELDS = frozenset({"TrangThaiHoSo", "TrangThai", "KenhThucHien", "DuocThanhToanTrucTuyen", "DonViTinh",
                               "LoaiThoiGianThucHien", "ThoiGianThucHien", "Gia", "HoSoCoThanhPhanSoHoa",
                               "TaiKhoanDuocXacThucVoiVNeID", "DuocSoHoa", "DuocLayTuKhoDMQG", "DuocTaiSuDung",
                               "IsDeleted", "TrangThaiBoSung", "HoSoBoSungId"})
UNREADABLE = "<unreadable>"


def _redact_value(key: str, value: Any) -> Any:
    """An allow-listed value as kept in a redacted body: a value that is not what its field holds (a phone number
    typed into a date field) is replaced, since it may be personal data."""
    if value is None or isinstance(value, bool) or absent(value):
        return value
    if not isinstance(value, (str, int, float)):
        return UNREADABLE
    if key in DATE_FIELDS:
        try:
            # Kept only when it reads as a date; a placeholder year (0001-01-01, but also an identity number such
            # as 001305121530 read as year 13) becomes "", which converts the same (absent) and keeps nothing.
            return value if parse_date(value, key) is not None else ""
        except FieldError:
            return UNREADABLE
    if key in SHORT_CODE_FIELDS:
        text = str(value).strip()
        return value if len(text) <= 16 and re.fullmatch(r"[\w.,:\- ]+", text) else UNREADABLE
    if key == "DonViXuLy":
        return value if isinstance(value, str) and len(value) <= 200 and not re.search(r"\d{6,}|@", value) \
            else UNREADABLE
    return value if CODE_RE.match(str(value).strip()) else UNREADABLE


def redact_record(record: Any, fields: dict[str, tuple[str, ...] | None]) -> dict:
    """The record with only allow-listed fields, each holding what such a field holds; list items keep only
    their allow-listed sub-fields."""
    if not isinstance(record, dict):
        return {}
    out: dict = {}
    for key, sub in fields.items():
        if key not in record:
            continue
        value = record[key]
        if sub is None:
            out[key] = _redact_value(key, value)
        elif isinstance(value, list):
            out[key] = [{k: _redact_value(k, v) for k, v in item.items() if k in sub}
                        for item in value if isinstance(item, dict)]
        else:
            out[key] = []
    return out


def redact_body(obj: Any) -> Any:
    """A request body with only the fields this product reads: for dead-lettering a body without personal data.

    Records are redacted with the union of both services' allow-lists (a body whose service is unknown may be
    either). The envelope keeps ``madonvi``, ``service``, ``isUpdating`` and ``data``.
    """
    fields = {**PROGRESS_FIELDS, **DOSSIER_FIELDS}
    if isinstance(obj, list):
        return [redact_record(r, fields) for r in obj]
    if isinstance(obj, dict):
        if "data" in obj or "session" in obj or "madonvi" in obj:
            out = {k: (obj[k] if isinstance(obj[k], bool) or CODE_RE.match(str(obj[k])) else UNREADABLE)
                   for k in ENVELOPE_FIELDS[:3] if k in obj and isinstance(obj[k], (str, int, bool))}
            data = obj.get("data")
            out["data"] = [redact_record(r, fields) for r in data] if isinstance(data, list) else []
            return out
        return redact_record(obj, fields)
    return None
