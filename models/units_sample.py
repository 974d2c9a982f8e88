"""Realistic names for the simulated province of the demo, the simulator and the bundled sample.

The simulator numbers its units ``<P>.S01``.. (agencies) and ``<P>.X001``.. (communes and wards); this module gives
each code a Vietnamese and an English name in the style of a real province after the 2025 reforms, with the history
those reforms left: agencies renamed or dissolved on 1 March 2025, districts abolished on 1 July 2025. The province
and every place name in it are fictional. ``models.units`` re-exports ``simulated_registry`` and friends.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from datetime import date

from .units import UnitRecord, UnitRegistry

__all__ = ["ascii_fold", "simulated_records", "simulated_registry"]


def ascii_fold(text: str) -> str:
    """Vietnamese without diacritics ("Mường Hum" -> "Muong Hum"), the usual spelling in English names."""
    text = text.replace("Đ", "D").replace("đ", "d")
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


SAMPLE_PROVINCE_VI = "Tỉnh Sơn Nguyên"
SAMPLE_PROVINCE_EN = "Son Nguyen Province"

# The 2025 restructuring took effect on 1 March 2025; the two-tier local government on 1 July 2025.
MERGER_DATE = date(2025, 3, 1)
TWO_TIER_DATE = date(2025, 7, 1)

# Agencies in the order the simulator numbers them (S01 first): the six of the bundled sample are the agencies
# handling most one-stop procedures. Codes after the list are land-registration branch offices.
AGENCIES: tuple[tuple[str, str], ...] = (
    ("Sở Tài chính", "Department of Finance"),
    ("Sở Xây dựng", "Department of Construction"),
    ("Sở Nông nghiệp và Môi trường", "Department of Agriculture and Environment"),
    ("Sở Tư pháp", "Department of Justice"),
    ("Sở Nội vụ", "Department of Home Affairs"),
    ("Sở Khoa học và Công nghệ", "Department of Science and Technology"),
    ("Sở Công Thương", "Department of Industry and Trade"),
    ("Sở Y tế", "Department of Health"),
    ("Sở Giáo dục và Đào tạo", "Department of Education and Training"),
    ("Sở Văn hóa, Thể thao và Du lịch", "Department of Culture, Sports and Tourism"),
    ("Sở Dân tộc và Tôn giáo", "Department of Ethnic Minority and Religious Affairs"),
    ("Thanh tra tỉnh", "Provincial Inspectorate"),
    ("Văn phòng UBND tỉnh", "Office of the Provincial People's Committee"),
    ("Ban Quản lý các khu công nghiệp tỉnh", "Industrial Parks Management Board"),
    ("Văn phòng Đăng ký đất đai tỉnh", "Provincial Land Registration Office"),
    ("Công an tỉnh", "Provincial Police"),
    ("Bảo hiểm xã hội tỉnh", "Provincial Social Security"),
    ("Thuế tỉnh", "Provincial Tax Office"),
)

# Agencies whose name changed in the March 2025 merger (index in AGENCIES -> name before).
RENAMED_2025 = {2: ("Sở Nông nghiệp và Phát triển nông thôn", "Department of Agriculture and Rural Development")}

# Agencies dissolved into another on 1 March 2025: (code suffix, vi, en, index in AGENCIES of the successor).
# Numbered from S91 so that they never collide with the simulator's S01.. codes.
DISSOLVED_2025 = (
    ("S91", "Sở Tài nguyên và Môi trường", "Department of Natural Resources and Environment", 2),
    ("S92", "Sở Kế hoạch và Đầu tư", "Department of Planning and Investment", 0),
    ("S93", "Sở Giao thông vận tải", "Department of Transport", 1),
    ("S94", "Sở Thông tin và Truyền thông", "Department of Information and Communications", 5),
    ("S95", "Sở Lao động - Thương binh và Xã hội", "Department of Labour, Invalids and Social Affairs", 4),
)

# Districts abolished by the two-tier reform; the communes of the sample belonged to them until 30 June 2025.
DISTRICTS = (
    ("H01", "UBND thành phố Sơn Nguyên", "Son Nguyen City People's Committee"),
    ("H02", "UBND huyện Bát Sơn", "Bat Son District People's Committee"),
    ("H03", "UBND huyện Tân Lạc", "Tan Lac District People's Committee"),
)

# The first communes by hand (the ten of the bundled sample), then wards, highland communes and lowland
# communes formed from the Sino-Vietnamese words Vietnamese place names are made of.
_FIRST_COMMUNES = (
    ("phường", "Sơn Nguyên"), ("phường", "Tân Phong"), ("phường", "Hòa Bình"), ("phường", "Quang Trung"),
    ("xã", "Mường Hum"), ("xã", "Tả Phìn"), ("xã", "Bản Lầu"), ("xã", "Yên Hưng"), ("xã", "Phú Thịnh"),
    ("xã", "Tân Lập"),
)
_WARDS = ("Đông Sơn", "Bắc Thành", "Nam Hà", "Kim Tân", "Minh Khai", "Thống Nhất", "Bình Minh", "An Phú",
          "Hưng Lợi", "Trung Tâm", "Phú Lâm", "Đồng Tâm")
_HIGHLAND = ("Nậm Pung", "Sà Phìn", "Khe Mo", "Pắc Ngà", "Nà Khoang", "Mường Lạn", "Tà Xùa", "Bản Vược",
             "Nậm Chày", "Pà Cò", "Lũng Cú", "Mường Vi", "Nà Tấu", "Tả Van", "Sán Chải", "Bản Mế")
_WORD1 = ("An", "Bình", "Hòa", "Tân", "Phú", "Thạnh", "Long", "Mỹ", "Thanh", "Quảng", "Hưng", "Vĩnh", "Phước",
          "Xuân", "Đức", "Trung", "Thái", "Kim", "Ngọc", "Hồng", "Cẩm", "Gia", "Minh", "Quang", "Định", "Thuận",
          "Lạc", "Yên", "Hiệp", "Đại")
_WORD2 = ("Sơn", "Lâm", "Hà", "Thủy", "Phong", "Lộc", "Thịnh", "Khánh", "Điền", "Lợi", "Tiến", "Thành", "Bình",
          "Hòa", "Phú", "An", "Hưng", "Long", "Xuân", "Trung", "Tân", "Đông", "Tây", "Nam", "Bắc", "Mỹ", "Hải",
          "Châu", "Lương", "Cường")
# Pre-reform names of merged communes, to show history in the sample (commune number -> old name).
_BEFORE_2025 = {1: ("phường", "Đông Thành"), 3: ("phường", "Hòa Lạc"), 6: ("xã", "Tả Phìn Hồ"), 9: ("xã", "Phú Hưng")}

def _commune_sequence() -> Iterator[tuple[str, str]]:
    """(kind, name) of communes 1, 2, ... without end; deterministic and unique within the province."""
    yield from _FIRST_COMMUNES
    used = {name for _, name in _FIRST_COMMUNES} | {name for _, name in _BEFORE_2025.values()}
    wards, highland = iter(_WARDS), iter(_HIGHLAND)
    n1, n2 = len(_WORD1), len(_WORD2)
    pairs = (f"{_WORD1[(s * 7) % n1]} {_WORD2[(s * 11 + s // n1) % n2]}" for s in range(n1 * n2))
    k = len(_FIRST_COMMUNES)
    while True:
        k += 1
        name = next(wards, None) if k % 8 == 0 else next(highland, None) if k % 5 == 0 else None
        kind = "phường" if k % 8 == 0 else "xã"
        if name is None:
            kind = "xã"
            name = next((p for p in pairs if p not in used and len(set(p.split())) == 2), f"Số {k}")
        used.add(name)
        yield kind, name


_COMMUNE_CACHE: list[tuple[str, str]] = []
_COMMUNE_SOURCE = _commune_sequence()


def _communes(n: int) -> list[tuple[str, str]]:
    while len(_COMMUNE_CACHE) < n:
        _COMMUNE_CACHE.append(next(_COMMUNE_SOURCE))
    return _COMMUNE_CACHE[:n]


def _commune_names(kind: str, name: str) -> tuple[str, str]:
    en_kind = "Ward" if kind == "phường" else "Commune"
    return f"UBND {kind} {name}", f"{ascii_fold(name)} {en_kind} People's Committee"


def _agency_names(i: int) -> tuple[str, str]:
    if i < len(AGENCIES):
        return AGENCIES[i]
    n = i - len(AGENCIES) + 1
    return (f"Chi nhánh Văn phòng Đăng ký đất đai khu vực {n}", f"Land Registration Office, Branch {n}")


def simulated_records(province_code: str = "T99", agencies: int = 20, communes: int = 100,
                      history: bool = True) -> list[UnitRecord]:
    """Realistic names for every code the simulator numbers (``<P>.S01``.., ``<P>.X001``..), with the 2025
    renames, dissolved agencies and abolished districts when ``history`` is true."""
    p = province_code
    recs = [UnitRecord(p, SAMPLE_PROVINCE_VI, SAMPLE_PROVINCE_EN, "province")]
    for i in range(agencies):
        code = f"{p}.S{i + 1:02d}"
        vi, en = _agency_names(i)
        if history and i in RENAMED_2025:
            old_vi, old_en = RENAMED_2025[i]
            recs.append(UnitRecord(code, old_vi, old_en, "agency", p, None, MERGER_DATE))
            recs.append(UnitRecord(code, vi, en, "agency", p, MERGER_DATE, None))
        else:
            recs.append(UnitRecord(code, vi, en, "agency", p))
    if history:
        taken = {f"{p}.S{i + 1:02d}" for i in range(agencies)}
        for suffix, vi, en, successor in DISSOLVED_2025:
            code, succ = f"{p}.{suffix}", f"{p}.S{successor + 1:02d}"
            if code not in taken and successor < agencies:
                recs.append(UnitRecord(code, vi, en, "agency", p, None, MERGER_DATE, merged_into=succ))
        for suffix, vi, en in DISTRICTS:
            recs.append(UnitRecord(f"{p}.{suffix}", vi, en, "district_legacy", p, None, TWO_TIER_DATE))
    for n, (kind, name) in enumerate(_communes(communes), 1):
        code = f"{p}.X{n:03d}"
        vi, en = _commune_names(kind, name)
        if history:
            district = f"{p}.{DISTRICTS[0 if kind == 'phường' else 1 + n % (len(DISTRICTS) - 1)][0]}"
            old_vi, old_en = _commune_names(*_BEFORE_2025.get(n, (kind, name)))
            recs.append(UnitRecord(code, old_vi, old_en, "commune", district, None, TWO_TIER_DATE))
            recs.append(UnitRecord(code, vi, en, "commune", p, TWO_TIER_DATE, None))
        else:
            recs.append(UnitRecord(code, vi, en, "commune", p))
    return recs


def simulated_registry(province_code: str = "T99", agencies: int = 20, communes: int = 100,
                       history: bool = True) -> UnitRegistry:
    """The registry of the simulated province (the demo's default is 20 agencies and 100 communes)."""
    return UnitRegistry.from_records(simulated_records(province_code, agencies, communes, history),
                                     source=f"simulated {province_code}")
