"""The domain's configurable rules: every DEFAULT of the domain reference lives here, nowhere else.

The figures an official compares with the national portal depend on these choices, so they are explicit, validated,
printed in every score document, and loadable from a YAML file (``onestop score --config rules.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
import yaml
from msgspec import Meta, Struct


class ConfigError(ValueError):
    pass


class MonitorConfig(Struct, frozen=True, forbid_unknown_fields=True):
    due_soon_min_working_days: Annotated[float, Meta(ge=0, le=30)] = 1.0
    """An open dossier is "due soon" when the working time left is at most max(this many working days, ...)."""
    due_soon_fraction: Annotated[float, Meta(ge=0, le=1)] = 0.2
    """... and this fraction of its time limit (spec §2.7: max(1 WD, 20 % of the limit))."""
    repeated_supplement_is_late: bool = True
    """DVCQG counts a dossier with more than one supplement request as late (spec §2.5)."""
    carry_over_open_dossiers: bool = True
    """A dossier received before a period and still open at its start belongs to that period's 2.1 population."""
    judge_against: Literal["original", "rescheduled"] = "original"
    """Which due date decides timeliness after an apology slip reschedules it (spec §2.8: keep the original)."""
    pause_on_payment_request: bool = False
    """Whether waiting for the applicant's payment pauses the clock, unless the received event says otherwise."""
    apology_notice_working_days: Annotated[float, Meta(ge=0, le=30)] = 1.0
    """An apology slip counts as issued in time when issued at least this long before the original due time."""
    max_events_per_dossier: Annotated[int, Meta(ge=10, le=100_000)] = 1000
    """Bound on one dossier's remembered event ids, so a hostile publisher cannot grow one state without limit."""
    future_tolerance_seconds: Annotated[int, Meta(ge=0)] = 86_400
    """Events dated further than this past the processing clock are refused as future events."""
    alert_catch_up_seconds: Annotated[int, Meta(ge=0)] = 3_600
    """An event older than this (replayed history, a backlog) raises no alert by itself: a dossier that is overdue
    for a moment between two replayed steps is not news. Its alerts are announced once it has been quiet for
    ``alert_settle_seconds``."""
    alert_settle_seconds: Annotated[int, Meta(ge=0, le=3600)] = 10


DEFAULT_CONFIG = MonitorConfig()


def load_config(path: str | Path | None) -> MonitorConfig:
    if path is None:
        return DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return msgspec.convert(raw, MonitorConfig)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read rules file: {exc}") from None
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_as_dict(config: MonitorConfig) -> dict:
    return msgspec.structs.asdict(config)
