"""Texts a person reads, in Vietnamese (the default) and English, and the number and date formats that go with them.

The users are provincial and commune officials: headings, statuses, band names and CSV headers are Vietnamese unless
English is asked for. The texts live in one data file (``catalogue/messages.yaml``) so that a translator edits one
place and a test can check that every key has both languages.
"""

from __future__ import annotations

import csv
import io
import string
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import yaml

__all__ = [
    "both",
    "DEFAULT_LANG",
    "LANGS",
    "MESSAGES_FILE",
    "csv_bytes",
    "format_date",
    "format_datetime",
    "format_number",
    "format_percent",
    "has",
    "load_messages",
    "messages",
    "month_name",
    "placeholders",
    "t",
]

LANGS = ("vi", "en")
DEFAULT_LANG = "vi"
MESSAGES_FILE = Path(__file__).resolve().parent / "catalogue" / "messages.yaml"
VN = ZoneInfo("Asia/Ho_Chi_Minh")
NO_VALUE = "–"  # shown for a figure that is null (no data); never 0, as in the score document

_MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December")


class MessagesError(ValueError):
    """A message catalogue with a missing language, an empty text or mismatched placeholders."""


def placeholders(text: str) -> set[str]:
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(text) if name}


def load_messages(path: str | Path = MESSAGES_FILE) -> Mapping[str, Mapping[str, str]]:
    """key -> {lang: text}; strict, so that a broken catalogue fails at load, not in front of a user."""
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(raw, Mapping):
        raise MessagesError(f"{path}: expected a mapping of message keys")
    problems, out = [], {}
    for key, entry in raw.items():
        if not isinstance(entry, Mapping):
            problems.append(f"{key}: expected {{vi: ..., en: ...}}")
            continue
        unknown = set(entry) - set(LANGS) - {"same"}
        if unknown:
            problems.append(f"{key}: unknown field(s) {', '.join(sorted(unknown))}")
        texts = {}
        for lang in LANGS:
            v = entry.get(lang)
            if not isinstance(v, str) or not v.strip():
                problems.append(f"{key}: {lang} text missing or empty")
            else:
                texts[lang] = v
        if len(texts) == len(LANGS):
            if len({frozenset(placeholders(v)) for v in texts.values()}) != 1:
                problems.append(f"{key}: placeholders differ between languages: "
                                + "; ".join(f"{lang} {sorted(placeholders(v))}" for lang, v in texts.items()))
            if bool(entry.get("same")) != (texts["vi"] == texts["en"]):
                problems.append(f"{key}: vi and en are {'different' if entry.get('same') else 'identical'}"
                                f"{' but marked same: true' if entry.get('same') else ' (mark it same: true if meant)'}")
        out[str(key)] = MappingProxyType(texts)
    if problems:
        raise MessagesError(f"{path}:\n  " + "\n  ".join(problems))
    return MappingProxyType(out)


@lru_cache(maxsize=1)
def messages() -> Mapping[str, Mapping[str, str]]:
    return load_messages()


def _lang(lang: str | None) -> str:
    lang = lang or DEFAULT_LANG
    if lang not in LANGS:
        raise ValueError(f"language {lang!r} is not one of {', '.join(LANGS)}")
    return lang


def has(key: str) -> bool:
    return key in messages()


def t(key: str, lang: str = DEFAULT_LANG, **fmt: Any) -> str:
    """The text of ``key`` in ``lang``, formatted with ``fmt`` (str.format). An unknown key is a KeyError."""
    try:
        text = messages()[key][_lang(lang)]
    except KeyError:
        raise KeyError(f"no message {key!r} in {MESSAGES_FILE.name}") from None
    return text.format(**fmt) if fmt else text


def both(key: str, **fmt: Any) -> str:
    """``key`` in Vietnamese, then in English: for texts that go to a machine and then to whoever reads its log
    (a sender's refusal, a dead letter), where the reader's language is not known."""
    return f"{t(key, 'vi', **fmt)} / {t(key, 'en', **fmt)}"


# ----------------------------------------------------------------------------------------------- formatting


def _decimal(x: float | int | Decimal, decimals: int) -> Decimal:
    # Through str(): the shortest repr rounds as a person expects (2.675 -> 2.68), which binary rounding does not.
    q = Decimal(1).scaleb(-decimals)
    return Decimal(str(x)).quantize(q, rounding=ROUND_HALF_UP)


def format_number(x: float | int | None, lang: str = DEFAULT_LANG, decimals: int = 2,
                  strip_zeros: bool = False) -> str:
    """``1234.5`` -> ``1.234,50`` in Vietnamese, ``1,234.50`` in English; None -> ``–``."""
    lang = _lang(lang)
    if x is None:
        return NO_VALUE
    try:
        d = _decimal(x, decimals)
    except (InvalidOperation, ValueError):
        return str(x)
    text = f"{d:,.{decimals}f}"
    if strip_zeros and "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", "-0." + "0" * decimals):
        text = text[1:]
    if lang == "vi":
        text = text.translate(str.maketrans({",": ".", ".": ","}))
    return text


def format_percent(ratio: float | None, lang: str = DEFAULT_LANG, decimals: int = 2) -> str:
    """A ratio in [0, 1] as a percentage: ``0.9345`` -> ``93,45 %`` (vi, with a space) or ``93.45%`` (en)."""
    lang = _lang(lang)
    if ratio is None:
        return NO_VALUE
    n = format_number(Decimal(str(ratio)) * 100, lang, decimals)
    return f"{n} %" if lang == "vi" else f"{n}%"


def _local(dt: datetime) -> datetime:
    return dt.astimezone(VN) if dt.tzinfo else dt


def format_datetime(dt: datetime | str | None, lang: str = DEFAULT_LANG) -> str:
    """Vietnam time, to the minute: ``07/12/2026 14:05`` (vi) or ``2026-12-07 14:05`` (en)."""
    lang = _lang(lang)
    if dt is None:
        return NO_VALUE
    if isinstance(dt, str):
        dt = datetime.fromisoformat(dt)
    dt = _local(dt)
    return dt.strftime("%d/%m/%Y %H:%M") if lang == "vi" else dt.strftime("%Y-%m-%d %H:%M")


def format_date(d: date | datetime | str | None, lang: str = DEFAULT_LANG) -> str:
    """``07/12/2026`` (vi) or ``2026-12-07`` (en); an instant is taken in Vietnam time."""
    lang = _lang(lang)
    if d is None:
        return NO_VALUE
    if isinstance(d, str):
        d = datetime.fromisoformat(d) if "T" in d else date.fromisoformat(d)
    if isinstance(d, datetime):
        d = _local(d).date()
    return d.strftime("%d/%m/%Y") if lang == "vi" else d.isoformat()


def month_name(month: int, lang: str = DEFAULT_LANG) -> str:
    return f"tháng {month}" if _lang(lang) == "vi" else _MONTHS_EN[month - 1]


# ----------------------------------------------------------------------------------------------------- CSV


def csv_bytes(header_keys: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]],
              lang: str = DEFAULT_LANG, delimiter: str = ",") -> bytes:
    """CSV with headers translated from message keys, UTF-8 with a BOM and CRLF line ends, which is what Excel needs
    to show Vietnamese letters right. A row is a sequence in header order, or a mapping by header key; None is an
    empty cell. Numbers are written as Python writes them (``93.45``) so that spreadsheets compute with them."""
    lang = _lang(lang)
    out = io.StringIO()
    w = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    w.writerow([t(k, lang) for k in header_keys])
    for row in rows:
        cells = [row.get(k) for k in header_keys] if isinstance(row, Mapping) else list(row)
        if len(cells) != len(header_keys):
            raise ValueError(f"row has {len(cells)} cells for {len(header_keys)} columns: {cells!r}")
        w.writerow(["" if c is None else c for c in cells])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
