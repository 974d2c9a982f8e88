"""The one configuration every generated monitoring file comes from: selectors, targets, thresholds, windows,
runbook links, notification routing and dashboard settings.

Defaults live here as code so that a fresh checkout generates the committed files with no input; an operator
changes them with a small YAML file (only the keys that differ). Loading is strict: an unknown key or a wrong type
is refused with its path, because a typo in an alert threshold would otherwise silently keep the default.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "BurnWindow",
    "MixinConfig",
    "MixinConfigError",
    "ProvinceRoute",
    "DEFAULT_CONFIG",
    "config_as_dict",
    "duration_seconds",
    "load_config",
    "parse_config",
    "replace",
]

_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1)
_HHMM_RE = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
_LABEL_VALUE_RE = re.compile(r'^[^"\\\n]*$')
SEVERITIES = ("critical", "warning", "info")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class MixinConfigError(ValueError):
    """A configuration that would generate wrong or invalid monitoring files; the message lists every problem."""


def duration_seconds(text: str) -> int:
    """Seconds in a Prometheus duration such as ``1h30m``; raises ValueError for anything Prometheus would refuse."""
    m = _DURATION_RE.match(text or "")
    if not text or m is None or not any(m.groups()):
        raise ValueError(f"{text!r} is not a Prometheus duration (e.g. 30s, 5m, 1h30m, 3d)")
    return sum(int(g) * unit for g, unit in zip(m.groups(), _DURATION_UNITS) if g)


@dataclass(frozen=True)
class BurnWindow:
    """One multi-window burn-rate alert (Sloth/Pyrra style): both windows must burn faster than ``factor``."""

    long: str
    short: str
    factor: float
    severity: str
    for_: str = "2m"


@dataclass(frozen=True)
class ProvinceRoute:
    """Where a province's notifications go; critical ones may go to a second (on-call) receiver."""

    province: str
    receiver: str
    critical_receiver: str | None = None


@dataclass(frozen=True)
class MixinConfig:
    # -- language -----------------------------------------------------------------------------------------------
    #: Language of alert texts and notifications (``vi`` or ``en``); dashboards are generated in both.
    lang: str = "vi"

    # -- selectors ----------------------------------------------------------------------------------------------
    #: Label matchers that select the stream workers' series (the scrape job of every worker).
    worker_selector: str = 'job="onestop"'
    #: Evaluation interval of every rule group; working-time sums are counted in steps of this length.
    evaluation_interval: str = "1m"

    # -- dossier deadlines (unit level) -------------------------------------------------------------------------
    overdue_threshold: int = 1
    overdue_for: str = "5m"
    due_soon_threshold: int = 5
    due_soon_for: str = "15m"
    #: A late dossier without an apology slip is "new" for this long; the alert then keeps firing for
    #: ``late_without_apology_keep`` so that a weekend or a holiday does not swallow the office-hours notification.
    late_without_apology_window: str = "1h"
    late_without_apology_keep: str = "3d"

    # -- on-time objective (766 indicator 2.1, monthly) ---------------------------------------------------------
    on_time_target: float = 0.95
    on_time_targets_by_province: dict[str, float] = field(default_factory=dict)
    on_time_targets_by_unit: dict[str, float] = field(default_factory=dict)
    #: Below this 2.1 population a unit's ratio swings on single dossiers, so neither ratio nor burn alerts fire.
    on_time_min_volume: int = 20
    on_time_for: str = "1h"
    #: Wall-clock windows; the burn rate divides by the working seconds they contain (see alerts/README.md).
    burn_windows: tuple[BurnWindow, ...] = (
        BurnWindow(long="4h", short="30m", factor=6.0, severity="critical", for_="2m"),
        BurnWindow(long="8h", short="1h", factor=3.0, severity="warning", for_="15m"),
    )

    # -- shares (monthly) ---------------------------------------------------------------------------------------
    online_submission_target: float = 0.5
    online_payment_target: float = 0.5
    satisfaction_threshold: float = 0.9
    share_min_volume: int = 20
    satisfaction_min_ratings: int = 10
    share_for: str = "1h"

    # -- points at risk and reconciliation with the national portal (766) -----------------------------------
    #: Alert when the open dossiers due by the next working day would cost the unit more than this many points.
    at_risk_points_threshold: float = 2.0
    at_risk_for: str = "15m"
    #: Alert when our numerator or denominator differs from the portal's published one by more than this share.
    reconciliation_threshold: float = 0.10
    #: ... for indicators whose official denominator is at least this (tiny samples swing on single dossiers).
    reconciliation_min_count: int = 10
    reconciliation_for: str = "1h"

    # -- pipeline health ----------------------------------------------------------------------------------------
    worker_down_for: str = "2m"
    worker_not_ready_for: str = "10m"
    source_silence_working_hours: float = 4.0
    #: Wall-clock windows tried for the silence alert; the longest must outlast the longest break (Tết).
    silence_windows: tuple[str, ...] = ("4h", "6h", "8h", "12h", "1d", "2d", "3d", "4d", "5d", "7d", "10d")
    dead_letter_ratio: float = 0.05
    dead_letter_min_count: int = 10
    dead_letter_window: str = "10m"
    #: A national-portal sync service whose records are refused at this share or more, over ``dead_letter_window``,
    #: with at least ``sync_refused_min_count`` refused (the one-stop system's records stay out of the figures).
    sync_refused_ratio: float = 0.1
    sync_refused_min_count: int = 5
    sync_refused_for: str = "10m"
    processing_lag_seconds: float = 900.0
    processing_lag_for: str = "10m"
    #: Alert when the at-risk families of a worker (scanned every 15 s, or less often on a very large table) are
    #: older than this by the worker's clock.
    at_risk_stale_after: str = "30m"
    at_risk_stale_for: str = "15m"

    # -- calendar -----------------------------------------------------------------------------------------------
    #: Years whose days off are written into the rules and Alertmanager; empty = the current and the next year.
    calendar_years: tuple[int, ...] = ()
    #: Operator calendar files loaded over the bundled calendar (as ``onestop score --calendar``).
    calendar_files: tuple[str, ...] = ()
    #: Notification hours for non-critical alerts (Vietnam time); holidays come from the calendar.
    office_hours_start: str = "07:30"
    office_hours_end: str = "17:00"
    office_weekdays: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday")

    # -- runbook ------------------------------------------------------------------------------------------------
    runbook_url_pattern: str = "https://github.com/onestop-monitor/onestop-monitor/blob/main/alerts/runbook.md#{anchor}"

    # -- Alertmanager -------------------------------------------------------------------------------------------
    receivers: dict[str, str] = field(default_factory=lambda: {
        "onestop-default": "http://127.0.0.1:9096/notify/default",
        "onestop-oncall": "http://127.0.0.1:9096/notify/oncall",
        "onestop-ops": "http://127.0.0.1:9096/notify/ops",
        "province-T99": "http://127.0.0.1:9096/notify/province/T99",
    })
    default_receiver: str = "onestop-default"
    critical_receiver: str = "onestop-oncall"
    pipeline_receiver: str = "onestop-ops"
    province_routes: tuple[ProvinceRoute, ...] = (
        ProvinceRoute(province="T99", receiver="province-T99", critical_receiver="onestop-oncall"),
    )
    #: Email per receiver (receiver name -> address list, comma separated); empty = no email for it.
    email_to: dict[str, str] = field(default_factory=dict)
    email_from: str = ""
    email_smarthost: str = ""
    email_auth_username: str = ""
    #: A file on the Alertmanager host holding the SMTP password (never the password itself).
    email_auth_password_file: str = ""
    #: Telegram chat per receiver (receiver name -> chat id); empty = no Telegram for it.
    telegram_chat_ids: dict[str, int] = field(default_factory=dict)
    #: A file on the Alertmanager host holding the bot token (``bot_token_file``: Alertmanager >= 0.26).
    telegram_bot_token_file: str = ""
    telegram_api_url: str = "https://api.telegram.org"
    group_wait: str = "30s"
    group_interval: str = "5m"
    repeat_interval: str = "4h"
    resolve_timeout: str = "5m"

    # -- dashboards ---------------------------------------------------------------------------------------------
    datasource_uid: str = "onestop-prometheus"
    #: Prometheus' scrape interval, which Grafana needs to size $__rate_interval.
    scrape_interval: str = "15s"
    #: As Grafana reaches Prometheus in docker-compose.yml (provisioning is how the compose stack gets its data source).
    datasource_url: str = "http://prometheus:9090"
    read_api_base_url: str = "http://127.0.0.1:6066"
    dashboard_refresh: str = "1m"
    dashboard_folder: str = "Một cửa - Bộ chỉ số 766"
    dashboard_folder_uid: str = "onestop"
    dashboards_path: str = "/var/lib/grafana/dashboards/onestop"

    @property
    def interval_seconds(self) -> int:
        return duration_seconds(self.evaluation_interval)


DEFAULT_CONFIG = MixinConfig()


# ------------------------------------------------------------------------------------------------ loading

def _hints() -> dict[type, dict[str, Any]]:
    return {cls: typing.get_type_hints(cls) for cls in (MixinConfig, BurnWindow, ProvinceRoute)}


def _convert(value: Any, hint: Any, path: str, problems: list[str]) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, path, problems)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, problems)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path}: expected a list, got {value!r}")
            return None
        return tuple(_convert(v, args[0], f"{path}[{i}]", problems) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            problems.append(f"{path}: expected a mapping, got {value!r}")
            return None
        return {str(k): _convert(v, args[1], f"{path}.{k}", problems) for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{path}: expected a number, got {value!r}")
            return None
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected an integer, got {value!r}")
            return None
        return value
    if hint is str:
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string (quote it in YAML), got {value!r}")
            return None
        return value
    raise TypeError(f"unsupported config type {hint!r} at {path}")


def _build(cls: type, raw: Any, path: str, problems: list[str]) -> Any:
    if not isinstance(raw, Mapping):
        problems.append(f"{path or 'config'}: expected a mapping, got {raw!r}")
        return None
    hints = _hints()[cls]
    names = {f.name.rstrip("_"): f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in raw if k not in names)
    if unknown:
        problems.append(f"{path or 'config'}: unknown key(s) {', '.join(unknown)}")
    values = {}
    for key, name in names.items():
        if key in raw:
            values[name] = _convert(raw[key], hints[name], f"{path}.{key}" if path else key, problems)
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        problems.append(f"{path or 'config'}: missing key(s) {', '.join(m.rstrip('_') for m in missing)}")
    if problems:
        return None
    return cls(**values)


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v):
        return {f.name.rstrip("_"): _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def config_as_dict(config: MixinConfig) -> dict[str, Any]:
    """The configuration as plain data with YAML key names (``for`` instead of ``for_``)."""
    return _plain(config)


def _validate(c: MixinConfig) -> list[str]:
    problems: list[str] = []

    def duration(name: str, value: str) -> None:
        try:
            duration_seconds(value)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")

    for f in dataclasses.fields(c):
        if f.name.endswith(("_for", "_window", "_keep", "_interval", "_timeout", "_refresh")):
            duration(f.name, getattr(c, f.name))
    for i, w in enumerate(c.silence_windows):
        duration(f"silence_windows[{i}]", w)
    for i, w in enumerate(c.burn_windows):
        for part in ("long", "short", "for_"):
            duration(f"burn_windows[{i}].{part.rstrip('_')}", getattr(w, part))
        if w.severity not in SEVERITIES:
            problems.append(f"burn_windows[{i}].severity: {w.severity!r} is not one of {', '.join(SEVERITIES)}")
        if w.factor <= 0:
            problems.append(f"burn_windows[{i}].factor must be > 0")
        try:
            if duration_seconds(w.short) >= duration_seconds(w.long):
                problems.append(f"burn_windows[{i}]: the short window must be shorter than the long one")
        except ValueError:
            pass
    if problems:
        return problems
    if not c.silence_windows or max(duration_seconds(w) for w in c.silence_windows) < c.source_silence_working_hours * 3600:
        problems.append("silence_windows: the longest window must be at least source_silence_working_hours long")
    for name in ("on_time_target", "online_submission_target", "online_payment_target", "satisfaction_threshold",
                 "dead_letter_ratio", "sync_refused_ratio"):
        if not 0 < getattr(c, name) < 1:
            problems.append(f"{name}: must be a ratio strictly between 0 and 1, got {getattr(c, name)!r}")
    for name, targets in (("on_time_targets_by_province", c.on_time_targets_by_province),
                          ("on_time_targets_by_unit", c.on_time_targets_by_unit)):
        for code, t in targets.items():
            if not 0 < t < 1:
                problems.append(f"{name}.{code}: must be strictly between 0 and 1, got {t!r}")
            if not _LABEL_VALUE_RE.match(code):
                problems.append(f"{name}: {code!r} cannot be used as a label value")
    for name in ("overdue_threshold", "due_soon_threshold", "on_time_min_volume", "share_min_volume",
                 "satisfaction_min_ratings", "dead_letter_min_count", "sync_refused_min_count"):
        if getattr(c, name) < 1:
            problems.append(f"{name}: must be >= 1")
    if c.source_silence_working_hours <= 0 or c.processing_lag_seconds <= 0:
        problems.append("source_silence_working_hours and processing_lag_seconds must be > 0")
    for name in ("office_hours_start", "office_hours_end"):
        if not _HHMM_RE.match(getattr(c, name)):
            problems.append(f"{name}: {getattr(c, name)!r} is not HH:MM")
    if _HHMM_RE.match(c.office_hours_start) and _HHMM_RE.match(c.office_hours_end) \
            and c.office_hours_start >= c.office_hours_end:
        problems.append("office_hours_start must be before office_hours_end")
    bad_days = [d for d in c.office_weekdays if d not in WEEKDAYS]
    if bad_days or not c.office_weekdays:
        problems.append(f"office_weekdays: {bad_days or 'empty'}; use {', '.join(WEEKDAYS)}")
    for y in c.calendar_years:
        if not 1976 <= y <= 2100:
            problems.append(f"calendar_years: {y} is outside 1976..2100")
    if "{anchor}" not in c.runbook_url_pattern:
        problems.append("runbook_url_pattern: must contain {anchor}")
    for name in (c.default_receiver, c.critical_receiver, c.pipeline_receiver,
                 *(r.receiver for r in c.province_routes),
                 *(r.critical_receiver for r in c.province_routes if r.critical_receiver)):
        if name not in c.receivers:
            problems.append(f"receiver {name!r} is used by a route but not defined under receivers")
    if c.lang not in ("vi", "en"):
        problems.append(f"lang: {c.lang!r} is not vi or en")
    if c.at_risk_points_threshold <= 0:
        problems.append("at_risk_points_threshold must be > 0")
    if not 0 < c.reconciliation_threshold < 1:
        problems.append("reconciliation_threshold: must be a ratio strictly between 0 and 1")
    if c.reconciliation_min_count < 1:
        problems.append("reconciliation_min_count: must be >= 1")
    for name, channel in (("email_to", c.email_to), ("telegram_chat_ids", c.telegram_chat_ids)):
        for receiver in channel:
            if receiver not in c.receivers:
                problems.append(f"{name}: receiver {receiver!r} is not defined under receivers")
    if c.email_to and not (c.email_from and c.email_smarthost):
        problems.append("email_to needs email_from and email_smarthost (host:port)")
    if c.telegram_chat_ids and not c.telegram_bot_token_file:
        problems.append("telegram_chat_ids needs telegram_bot_token_file (a file on the Alertmanager host; "
                        "the token never goes into this configuration)")
    provinces = [r.province for r in c.province_routes]
    if len(set(provinces)) != len(provinces):
        problems.append("province_routes: a province is routed twice")
    for url in c.receivers.values():
        if not url.startswith(("http://", "https://")):
            problems.append(f"receivers: {url!r} is not an http(s) URL")
    if not re.match(r'^\s*[a-zA-Z_]\w*\s*(=|!=|=~|!~)\s*"[^"]*"(\s*,\s*[a-zA-Z_]\w*\s*(=|!=|=~|!~)\s*"[^"]*")*\s*$',
                    c.worker_selector):
        problems.append(f"worker_selector: {c.worker_selector!r} is not a list of label matchers like job=\"onestop\"")
    return problems


def parse_config(doc: Any, origin: str = "<config>") -> MixinConfig:
    """Defaults overridden by ``doc`` (a mapping of the keys that differ); refuses anything suspicious."""
    if doc is None:
        doc = {}
    problems: list[str] = []
    merged = {**config_as_dict(DEFAULT_CONFIG), **doc} if isinstance(doc, Mapping) else doc
    config = _build(MixinConfig, merged, "", problems)
    if config is not None:
        problems.extend(_validate(config))
    if problems:
        raise MixinConfigError(f"{origin}: monitoring configuration refused:\n  - " + "\n  - ".join(problems))
    return config


def load_config(path: str | Path | None = None) -> MixinConfig:
    """The defaults, or the defaults overridden by a YAML file."""
    if path is None:
        return DEFAULT_CONFIG
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MixinConfigError(f"{path}: cannot read the monitoring configuration: {exc}") from exc
    return parse_config(doc, origin=str(path))


def replace(config: MixinConfig, **changes: Any) -> MixinConfig:
    """A validated copy with some fields changed (tests and tools build variants this way)."""
    return parse_config({**config_as_dict(config), **{k.rstrip("_"): _plain(v) for k, v in changes.items()}})
