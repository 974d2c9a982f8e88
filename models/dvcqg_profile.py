"""Sender profiles for the national-portal converter (``models.dvcqg``): how one sender fills its sync records.

Vendors rewrite statuses, name units by display name and leave fields out (domain reference §4.5); a profile
states this per sender, as a YAML file an operator edits (samples/dvcqg/profile-example.yaml), so that the
converter itself has no per-vendor code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from msgspec import Meta, Struct

from .dvcqg_fields import absent, as_code, normalize_name
from .events import TIME_LIMIT_VALUE_MAX

Code = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")]
Source = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/\-]*$")]
Level = Literal["ministry", "province", "agency", "district_legacy", "commune"]
LimitUnit = Literal["hour", "day", "working_day", "month"]


class Limit(Struct, forbid_unknown_fields=True):
    value: Annotated[float, Meta(gt=0, le=TIME_LIMIT_VALUE_MAX)]
    unit: LimitUnit


DEFAULT_LIMIT_UNITS = {
    "ngay lam viec": "working_day", "ngày làm việc": "working_day", "working_day": "working_day", "nlv": "working_day",
    "ngay": "day", "ngày": "day", "day": "day", "ngày lịch": "day",
    "gio": "hour", "giờ": "hour", "gio lam viec": "hour", "giờ làm việc": "hour", "hour": "hour",
    "thang": "month", "tháng": "month", "month": "month",
}
"""``DonViTinh`` / ``LoaiThoiGianThucHien`` spellings seen in catalogues (compared case- and space-insensitively)."""


class SenderProfile(Struct, frozen=True, forbid_unknown_fields=True):
    """How one sender fills the sync records: its status table, unit names, defaults, and our ``source``."""

    source: Source = "dvcqg.default"
    """CloudEvents ``source`` of the converted events (with the event id, the idempotency key)."""
    province_code: Code | None = None
    default_channel: Literal["direct", "online", "postal"] = "direct"
    """Channel when ``KenhThucHien`` is missing: the national formula counts a missing channel as direct."""
    status_map: dict[str, Annotated[int, Meta(ge=1, le=10)]] = {}
    """Sender code -> national status 1-10, over the identity table (vendors rewrite statuses, §4.5)."""
    progress_status_map: dict[str, Annotated[int, Meta(ge=1, le=10)]] | None = None
    """Same for progress steps' ``TrangThai``, when the sender codes them otherwise (default: ``status_map``)."""
    units: dict[str, Code] = {}
    """``DonViXuLy`` display name -> unit code."""
    handling_unit_from_name: bool = False
    """True: a mapped ``DonViXuLy`` is the handling unit even when the dossier code has a unit prefix (for
    reception regardless of boundary, where receiving and handling units differ). False: the prefix wins."""
    default_unit: Code | None = None
    """Unit when neither the dossier code, ``DonViXuLy``, the query string nor ``madonvi`` gives one."""
    unit_levels: dict[str, Level] = {}
    default_unit_level: Level | None = None
    limit_units: dict[str, LimitUnit] = {}
    """Extra ``DonViTinh`` spellings -> unit."""
    procedure_limits: dict[str, Limit] = {}
    """``MaTTHC`` -> time limit, for senders that fill neither ``NgayHenTra`` nor ``ThoiGianThucHien``."""
    end_from_progress: bool = True
    """Whether a progress step with status 9/10/8/7 ends the clock. False for a sender that sends a synthetic
    "9" step at a supplement request."""
    supplements_from_progress: bool = False
    """Whether a progress step with status 5 is a supplement request (for senders that never fill
    ``DanhSachHoSoBoSung``). Its completion is then unknown, so the supplement time is not removed."""

    def national_status(self, raw: Any, progress: bool = False) -> int | None:
        code = as_code(raw)
        if code is None:
            return None
        table = self.progress_status_map if progress and self.progress_status_map is not None else self.status_map
        if code in table:
            return table[code]
        return int(code) if code.isascii() and code.isdigit() and 1 <= int(code) <= 10 else None

    def unit_for_name(self, name: Any) -> str | None:
        if not isinstance(name, str) or absent(name):
            return None
        return _name_table(self).get(normalize_name(name))

    def limit_unit(self, raw: Any) -> str | None:
        if not isinstance(raw, str) or absent(raw):
            return None
        key = normalize_name(raw)
        extra = {normalize_name(k): v for k, v in self.limit_units.items()}
        return extra.get(key) or DEFAULT_LIMIT_UNITS.get(key)


_NAME_TABLES: dict[int, tuple[SenderProfile, dict[str, str]]] = {}


def _name_table(profile: SenderProfile) -> dict[str, str]:
    """The profile's unit names, normalized once per profile (the entry keeps the profile, so its id stays its own)."""
    entry = _NAME_TABLES.get(id(profile))
    if entry is None or entry[0] is not profile:
        entry = _NAME_TABLES[id(profile)] = (profile, {normalize_name(k): v for k, v in profile.units.items()})
    return entry[1]


DEFAULT_PROFILE = SenderProfile()


class ProfileError(ValueError):
    pass


def load_profile(path: str | Path | None) -> SenderProfile:
    """A sender profile from YAML (see samples/dvcqg/profile-example.yaml); None gives the default profile."""
    if path is None:
        return DEFAULT_PROFILE
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if isinstance(raw, dict):  # YAML reads unquoted 10 as an int; the tables are keyed by the code as text
            for key in ("status_map", "progress_status_map"):
                if isinstance(raw.get(key), dict):
                    raw[key] = {str(k): v for k, v in raw[key].items()}
        return msgspec.convert(raw, SenderProfile)
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(f"{path}: cannot read sender profile: {exc}") from None
    except msgspec.ValidationError as exc:
        raise ProfileError(f"{path}: {exc}") from None
