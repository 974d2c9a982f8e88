"""The 766 indicator catalogue: groups, indicators, bands, loaded from versioned data and checked strictly.

DVCQG keeps changing how the index is measured (new indicators, thresholds, levels) without a new decision, so the
rules are data (``catalogue/index766.yaml``, versioned). Loading is strict: a catalogue that would silently mis-score
(maxima not adding up, an unknown policy, a typo in a field name) is refused with a message naming the indicator and
the rule. The scoring over a catalogue lives in ``models.index766``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

__all__ = [
    "BUNDLED_CATALOGUE",
    "KINDS",
    "LEVELS",
    "PERIOD_FILTERS",
    "ZERO_DEN_POLICIES",
    "Band",
    "Catalogue",
    "CatalogueError",
    "Group",
    "Indicator",
    "load_catalogue",
    "parse_catalogue",
]

BUNDLED_CATALOGUE = Path(__file__).resolve().parent / "catalogue" / "index766.yaml"

LEVELS = frozenset({"province", "ministry", "agency", "commune", "district_legacy"})
# None = report "no data"; see the catalogue header for what each policy yields.
ZERO_DEN_POLICIES = frozenset({None, "zero_ratio", "zero_score", "full_points"})
KINDS = frozenset({"scored", "monitoring"})
PERIOD_FILTERS = frozenset(
    {"reception_date", "population", "processing_start", "qdcb_date", "snapshot", "petition_date"}
)
# Bands are on a 100-point scale; a catalogue whose groups add up to anything else would mis-band every unit.
SCALE = 100.0

# Float sums of indicator scores can land a hair below a band edge that the exact arithmetic reaches (e.g. 89.99999999
# for a published 90.00); the tolerance is far below the two published decimals, so it never moves a real total.
SUM_TOLERANCE = 1e-9

_ID_RE = re.compile(r"^[0-9]+\.[0-9]+[a-z]?$")
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_CONF_RE = re.compile(r"^(H|M|L|DEFAULT)(/(H|M|L|DEFAULT))*$")


class CatalogueError(ValueError):
    """A catalogue file that cannot be trusted to score units; the message lists every problem found."""


@dataclass(frozen=True)
class Group:
    id: int
    code: str
    name_vi: str
    name_en: str
    max_points: float


@dataclass(frozen=True)
class Indicator:
    id: str
    api_code: str | None
    group: int
    name_vi: str
    name_en: str
    max_points: float
    threshold: float
    zero_den_policy: str | None
    levels: frozenset[str]
    computable_from_events: bool
    # Read-only views; left out of the hash because mappings are unhashable and the id/version already identify a row.
    numerator: Mapping[str, int] | None = field(hash=False)
    denominator: Mapping[str, int] | None = field(hash=False)
    period_filter: str
    valid_from: date
    valid_to: date | None
    source: str
    confidence: str
    kind: str

    @property
    def scored(self) -> bool:
        return self.kind == "scored"

    def valid_on(self, d: date) -> bool:
        # valid_to is exclusive so that a successor row can start exactly where its predecessor stops.
        return self.valid_from <= d and (self.valid_to is None or d < self.valid_to)

    def applies_to(self, level: str | None) -> bool:
        return level is None or level in self.levels


@dataclass(frozen=True)
class Band:
    code: str
    name_vi: str
    min_total: float
    number: int


@dataclass(frozen=True)
class Catalogue:
    catalogue_id: str
    version: str
    valid_from: date
    groups: tuple[Group, ...]
    indicators: tuple[Indicator, ...]
    bands: tuple[Band, ...]  # highest min_total first

    @property
    def max_points(self) -> float:
        return math.fsum(g.max_points for g in self.groups)

    def indicators_valid_on(self, d: date) -> tuple[Indicator, ...]:
        # Before the catalogue's own start its rules say nothing: an older catalogue must score that period.
        if d < self.valid_from:
            return ()
        return tuple(i for i in self.indicators if i.valid_on(d))

    def tally_keys(self) -> frozenset[str]:
        keys: set[str] = set()
        for ind in self.indicators:
            for coeffs in (ind.numerator, ind.denominator):
                if coeffs:
                    keys.update(coeffs)
        return frozenset(keys)

    def indicator(self, indicator_id: str, on: date | None = None) -> Indicator:
        """An id can have successive rows over time; without a date the latest-starting row is meant."""
        rows = [i for i in self.indicators if i.id == indicator_id and (on is None or i.valid_on(on))]
        if not rows:
            when = f" valid on {on.isoformat()}" if on is not None else ""
            raise KeyError(f"indicator {indicator_id!r}{when} is not in catalogue {self.catalogue_id} {self.version}")
        return max(rows, key=lambda i: i.valid_from)

    def group(self, group_id: int) -> Group:
        for g in self.groups:
            if g.id == group_id:
                return g
        raise KeyError(f"group {group_id!r} is not in catalogue {self.catalogue_id} {self.version}")


# --------------------------------------------------------------------------------------------------- loading

_TOP_REQUIRED = ("catalogue_id", "version", "valid_from", "groups", "indicators", "bands")
_GROUP_REQUIRED = ("id", "code", "name_vi", "max")
_GROUP_OPTIONAL = ("name_en",)
_INDICATOR_REQUIRED = (
    "id", "api_code", "group", "name_vi", "name_en", "max_points", "threshold", "zero_den_policy", "levels",
    "computable_from_events", "numerator", "denominator", "period_filter", "valid_from", "valid_to", "source",
    "confidence", "kind",
)
_BAND_REQUIRED = ("code", "name_vi", "min_total", "number")

_BAD = object()  # a field that failed validation (None is a legitimate value for several fields)


class _Fields:
    """Reads one mapping of the YAML, recording every problem instead of stopping at the first.

    Operators edit this file by hand; reporting all mistakes at once saves a fix-reload cycle per typo.
    """

    def __init__(
        self, raw: Any, where: str, problems: list[str], required: Iterable[str], optional: Iterable[str] = ()
    ) -> None:
        self.where = where
        self.problems = problems
        self._start = len(problems)
        if not isinstance(raw, Mapping):
            self.raw: Mapping[str, Any] = {}
            self.fail(f"expected a mapping, got {type(raw).__name__}")
            return
        self.raw = raw
        required, optional = tuple(required), tuple(optional)
        missing = [k for k in required if k not in raw]
        if missing:
            self.fail("missing field(s) " + ", ".join(missing) + " (write `null` for an empty value)")
        unknown = sorted(str(k) for k in raw if k not in required and k not in optional)
        if unknown:
            self.fail("unknown field(s) " + ", ".join(unknown))

    @property
    def ok(self) -> bool:
        return len(self.problems) == self._start

    def fail(self, message: str) -> Any:
        self.problems.append(f"{self.where}: {message}")
        return _BAD

    def _get(self, key: str) -> Any:
        return self.raw.get(key, _BAD)

    def text(self, key: str, nullable: bool = False) -> Any:
        v = self._get(key)
        if v is _BAD:
            return _BAD
        if v is None and nullable:
            return None
        if not isinstance(v, str) or not v.strip():
            return self.fail(f"{key} must be a non-empty string (quote it in YAML), got {v!r}")
        return v

    def number(self, key: str) -> Any:
        v = self._get(key)
        if v is _BAD:
            return _BAD
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return self.fail(f"{key} must be a finite number, got {v!r}")
        return float(v)

    def integer(self, key: str) -> Any:
        v = self._get(key)
        if v is _BAD:
            return _BAD
        if isinstance(v, bool) or not isinstance(v, int):
            return self.fail(f"{key} must be an integer, got {v!r}")
        return v

    def boolean(self, key: str) -> Any:
        v = self._get(key)
        if v is _BAD:
            return _BAD
        if not isinstance(v, bool):
            return self.fail(f"{key} must be true or false, got {v!r}")
        return v

    def day(self, key: str, nullable: bool = False) -> Any:
        v = self._get(key)
        if v is _BAD:
            return _BAD
        if v is None and nullable:
            return None
        if isinstance(v, datetime):
            return self.fail(f"{key} must be a date (YYYY-MM-DD), not a timestamp: {v!r}")
        if isinstance(v, date):
            return v
        if isinstance(v, str):
            try:
                return date.fromisoformat(v)
            except ValueError:
                pass
        return self.fail(f"{key} must be a date (YYYY-MM-DD){' or null' if nullable else ''}, got {v!r}")

    def coefficients(self, key: str) -> Any:
        v = self._get(key)
        if v is _BAD or v is None:
            return v
        if not isinstance(v, Mapping) or not v:
            return self.fail(f"{key} must be a non-empty mapping tally_key: integer coefficient, or null; got {v!r}")
        out: dict[str, int] = {}
        for k, c in v.items():
            if not isinstance(k, str) or not _KEY_RE.match(k):
                return self.fail(f"{key}: {k!r} is not a tally metric key (lower_snake_case)")
            if isinstance(c, bool) or not isinstance(c, int) or c == 0:
                return self.fail(f"{key}: coefficient of {k} must be a non-zero integer, got {c!r}")
            out[k] = c
        return MappingProxyType(out)


def _parse_group(raw: Any, n: int, problems: list[str]) -> Group | None:
    label = f"groups[{n}]"
    if isinstance(raw, Mapping) and "id" in raw:
        label = f"group {raw['id']!r}"
    f = _Fields(raw, label, problems, _GROUP_REQUIRED, _GROUP_OPTIONAL)
    gid, code, name_vi = f.integer("id"), f.text("code"), f.text("name_vi")
    name_en = f.text("name_en") if "name_en" in f.raw else ""
    max_points = f.number("max")
    if max_points is not _BAD and max_points < 0:
        f.fail(f"max must not be negative, got {max_points:g}")
    if not f.ok:
        return None
    return Group(id=gid, code=code, name_vi=name_vi, name_en=name_en, max_points=max_points)


def _parse_indicator(raw: Any, n: int, problems: list[str]) -> Indicator | None:
    label = f"indicators[{n}]"
    if isinstance(raw, Mapping) and "id" in raw:
        label = f"indicator {raw['id']!r}" if isinstance(raw["id"], str) else f"indicators[{n}] (id {raw['id']!r})"
    f = _Fields(raw, label, problems, _INDICATOR_REQUIRED)

    raw_id = f.raw.get("id")
    if isinstance(raw_id, (int, float)) and not isinstance(raw_id, bool):
        ind_id = f.fail(
            f"id {raw_id!r} must be a quoted string such as \"{raw_id}\" (YAML reads an unquoted {raw_id} as a number)"
        )
    else:
        ind_id = f.text("id")
        if ind_id is not _BAD and not _ID_RE.match(ind_id):
            ind_id = f.fail(f"id {ind_id!r} must look like \"2.1\" or \"3.5b\"")

    api_code = f.text("api_code", nullable=True)
    group = f.integer("group")
    name_vi, name_en = f.text("name_vi"), f.text("name_en")
    max_points, threshold = f.number("max_points"), f.number("threshold")

    policy = f._get("zero_den_policy")
    if policy is not _BAD and (not isinstance(policy, (str, type(None))) or policy not in ZERO_DEN_POLICIES):
        allowed = ", ".join(["null"] + sorted(p for p in ZERO_DEN_POLICIES if p))
        policy = f.fail(f"zero_den_policy {policy!r} is not one of {allowed}")

    levels = f._get("levels")
    if levels is not _BAD:
        if not isinstance(levels, list) or not levels or not all(isinstance(x, str) for x in levels):
            levels = f.fail(f"levels must be a non-empty list of level names, got {levels!r}")
        elif unknown := sorted(set(levels) - LEVELS):
            levels = f.fail(f"unknown level(s) {', '.join(unknown)}; known: {', '.join(sorted(LEVELS))}")
        elif len(set(levels)) != len(levels):
            levels = f.fail("levels lists a level twice")
        else:
            levels = frozenset(levels)

    computable = f.boolean("computable_from_events")
    numerator, denominator = f.coefficients("numerator"), f.coefficients("denominator")

    period_filter = f.text("period_filter")
    if period_filter is not _BAD and period_filter not in PERIOD_FILTERS:
        period_filter = f.fail(f"period_filter {period_filter!r} is not one of {', '.join(sorted(PERIOD_FILTERS))}")

    valid_from, valid_to = f.day("valid_from"), f.day("valid_to", nullable=True)
    source = f.text("source")
    confidence = f.text("confidence")
    if confidence is not _BAD and not _CONF_RE.match(confidence):
        f.fail(f"confidence {confidence!r} must be H, M, L or DEFAULT (or two joined by '/')")

    kind = f.text("kind")
    if kind is not _BAD and kind not in KINDS:
        kind = f.fail(f"kind {kind!r} is not one of {', '.join(sorted(KINDS))}")

    # Rules between fields: each one, broken, would make scoring quietly wrong rather than fail.
    if kind == "monitoring" and max_points is not _BAD and max_points != 0:
        f.fail(f"a monitoring indicator carries no points, but max_points is {max_points:g}")
    if kind == "scored" and max_points is not _BAD and max_points <= 0:
        f.fail(f"a scored indicator needs max_points > 0, got {max_points:g} (use kind: monitoring)")
    if threshold is not _BAD and not 0 < threshold <= 1:
        f.fail(f"threshold must be in (0, 1] (1.0 = linear), got {threshold:g}")
    if computable is True and (numerator is None or denominator is None):
        f.fail("computable_from_events is true but numerator and denominator are not both given")
    if computable is False and (numerator is not None or denominator is not None):
        f.fail("computable_from_events is false, so numerator and denominator must be null")
    if valid_from is not _BAD and valid_to not in (_BAD, None) and valid_to <= valid_from:
        f.fail(f"valid_to {valid_to} must be after valid_from {valid_from} (valid_to is exclusive)")

    if not f.ok:
        return None
    return Indicator(
        id=ind_id, api_code=api_code, group=group, name_vi=name_vi, name_en=name_en, max_points=max_points,
        threshold=threshold, zero_den_policy=policy, levels=levels, computable_from_events=computable,
        numerator=numerator, denominator=denominator, period_filter=period_filter, valid_from=valid_from,
        valid_to=valid_to, source=source, confidence=confidence, kind=kind,
    )


def _parse_band(raw: Any, n: int, problems: list[str]) -> Band | None:
    label = f"band {raw['code']!r}" if isinstance(raw, Mapping) and "code" in raw else f"bands[{n}]"
    f = _Fields(raw, label, problems, _BAND_REQUIRED)
    code, name_vi, min_total, number = f.text("code"), f.text("name_vi"), f.number("min_total"), f.integer("number")
    if not f.ok:
        return None
    return Band(code=code, name_vi=name_vi, min_total=min_total, number=number)


def _check_groups(groups: list[Group], problems: list[str]) -> None:
    for attr in ("id", "code"):
        seen: set[Any] = set()
        for g in groups:
            v = getattr(g, attr)
            if v in seen:
                problems.append(f"groups: {attr} {v!r} appears twice")
            seen.add(v)
    total = math.fsum(g.max_points for g in groups)
    if groups and abs(total - SCALE) > SUM_TOLERANCE:
        detail = " + ".join(f"{g.code} {g.max_points:g}" for g in groups)
        problems.append(f"groups: maxima add up to {total:g} ({detail}), but the index is on a {SCALE:g}-point scale")


def _check_bands(bands: list[Band], problems: list[str]) -> None:
    if not bands:
        problems.append("bands: at least one band is needed")
        return
    for attr in ("code", "number", "min_total"):
        values = [getattr(b, attr) for b in bands]
        for v in sorted({v for v in values if values.count(v) > 1}, key=str):
            problems.append(f"bands: {attr} {v!r} appears twice")
    ordered = sorted(bands, key=lambda b: b.min_total, reverse=True)
    if [b.number for b in ordered] != sorted((b.number for b in bands), reverse=True):
        problems.append("bands: a higher min_total must have a higher number (the exported value is ordinal)")
    if ordered[-1].min_total > 0:
        problems.append(
            f"bands: the lowest band {ordered[-1].code!r} starts at {ordered[-1].min_total:g}, so low totals would "
            "have no band; set its min_total to 0"
        )


def _check_indicators(
    indicators: list[Indicator], groups: list[Group], valid_from: date, problems: list[str]
) -> None:
    group_ids = {g.id for g in groups}
    for ind in indicators:
        if ind.group not in group_ids:
            problems.append(f"indicator {ind.id!r}: group {ind.group} is not among the groups {sorted(group_ids)}")
        if ind.valid_from < valid_from:
            problems.append(
                f"indicator {ind.id!r}: valid_from {ind.valid_from} is before the catalogue's valid_from {valid_from}"
            )
    by_id: dict[str, list[Indicator]] = {}
    for ind in indicators:
        by_id.setdefault(ind.id, []).append(ind)
    for ind_id, rows in by_id.items():
        rows.sort(key=lambda i: i.valid_from)
        for a, b in zip(rows, rows[1:]):
            if a.valid_to is None or a.valid_to > b.valid_from:
                problems.append(
                    f"indicator {ind_id!r}: rows valid from {a.valid_from} and {b.valid_from} overlap "
                    "(close the earlier one with valid_to)"
                )

    # The maxima must add up on every date the catalogue covers; they can only change where a row starts or stops.
    change_points = {valid_from}
    for ind in indicators:
        change_points.add(ind.valid_from)
        if ind.valid_to is not None:
            change_points.add(ind.valid_to)
    for d in sorted(p for p in change_points if p >= valid_from):
        live = [i for i in indicators if i.valid_on(d) and i.scored]
        for g in groups:
            members = [i for i in live if i.group == g.id]
            total = math.fsum(i.max_points for i in members)
            if abs(total - g.max_points) > SUM_TOLERANCE:
                detail = " + ".join(f"{i.id}={i.max_points:g}" for i in members) or "none"
                problems.append(
                    f"group {g.id} ({g.code}): scored indicators valid on {d} have maxima {detail} = {total:g}, "
                    f"but the group maximum is {g.max_points:g}"
                )


def parse_catalogue(doc: Any, origin: str = "<catalogue>") -> Catalogue:
    """Validate an already-parsed YAML document; separate from the file so tests and tools can build variants."""
    problems: list[str] = []
    top = _Fields(doc, "catalogue", problems, _TOP_REQUIRED)
    catalogue_id, valid_from = top.text("catalogue_id"), top.day("valid_from")
    if isinstance(top.raw.get("version"), (int, float)):
        version = top.fail(f"version {top.raw['version']!r} must be a quoted string (\"2026.1\"), not a number")
    else:
        version = top.text("version")

    def items(key: str) -> list[Any]:
        v = top.raw.get(key)
        if v is None or v is _BAD:
            return []
        if not isinstance(v, list):
            top.fail(f"{key} must be a list")
            return []
        return v

    group_rows = items("groups")
    groups = [g for n, raw in enumerate(group_rows) if (g := _parse_group(raw, n, problems))]
    if "groups" in top.raw and not group_rows:
        problems.append("groups: at least one group is needed")
    bad_indicator_rows = len(problems)
    indicators = [i for n, raw in enumerate(items("indicators")) if (i := _parse_indicator(raw, n, problems))]
    indicators_parsed = len(problems) == bad_indicator_rows
    bands = [b for n, raw in enumerate(items("bands")) if (b := _parse_band(raw, n, problems))]

    _check_groups(groups, problems)
    if "bands" in top.raw:
        _check_bands(bands, problems)
    # Sums over a partly parsed indicator list would only repeat the row errors as misleading sum errors.
    if indicators_parsed and isinstance(valid_from, date):
        _check_indicators(indicators, groups, valid_from, problems)

    if problems:
        raise CatalogueError(
            f"{origin}: the 766 catalogue is refused ({len(problems)} problem(s)):\n  - " + "\n  - ".join(problems)
        )
    return Catalogue(
        catalogue_id=catalogue_id,
        version=version,
        valid_from=valid_from,
        groups=tuple(sorted(groups, key=lambda g: g.id)),
        indicators=tuple(indicators),
        bands=tuple(sorted(bands, key=lambda b: b.min_total, reverse=True)),
    )


@lru_cache(maxsize=16)
def _load_cached(path: str, mtime_ns: int, size: int) -> Catalogue:
    # mtime and size are part of the key so that an operator's edit is picked up without a restart.
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError(f"{path}: cannot read the 766 catalogue: {exc}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{path}: not valid YAML: {exc}") from exc
    return parse_catalogue(doc, origin=path)


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    p = Path(path) if path is not None else BUNDLED_CATALOGUE
    try:
        st = p.stat()
    except OSError as exc:
        raise CatalogueError(f"{p}: cannot read the 766 catalogue: {exc.strerror or exc}") from exc
    return _load_cached(str(p.resolve()), st.st_mtime_ns, st.st_size)
