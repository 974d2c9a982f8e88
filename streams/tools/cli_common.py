"""What the ``onestop`` commands share: reading an instant, building the domain context, Kafka security options.

Kept apart from ``streams.tools.cli`` so the sub-command modules (import, report, at-risk, reconcile) can use it
without importing the whole CLI.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

__all__ = ["CAFILE_OPT", "MECHANISM_OPT", "PASSWORD_FILE_OPT", "PROTOCOL_OPT", "USERNAME_OPT", "batch_gc", "context",
           "kafka_security", "parse_at"]


@contextmanager
def batch_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a command replays a file. A replay builds an object per
    dossier and per fact that lives until the command ends and forms no cycle, and the collector traversed them
    all again at every full collection: a fifth of a 290 k-event ``onestop score`` (docs/benchmarks.md, run 18).
    Reference counting still frees everything else; the command ends soon after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_at(at: Optional[str]) -> datetime:
    from models.calendar import TZ

    if at is None:
        return datetime.now(TZ)
    try:
        t = datetime.fromisoformat(at)
    except ValueError:
        raise typer.BadParameter(f"{at!r} is not an ISO 8601 date-time (e.g. 2026-03-10T16:00:00+07:00)") from None
    return t if t.tzinfo else t.replace(tzinfo=TZ)


def context(at: datetime, rules: Optional[Path], calendar_files: list[Path]):
    from models.calendar import CalendarError, WorkCalendar, load_calendar_file
    from models.config import ConfigError, load_config
    from models.dossier import Context

    try:
        cal = WorkCalendar.default()
        for f in calendar_files:
            cal = cal.with_document(load_calendar_file(f))
        return Context(now=at, calendar=cal, config=load_config(rules))
    except (CalendarError, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


SECURITY_HELP = "Kafka security; every ONESTOP_KAFKA_* variable of the worker applies too (docs/reliability.md)."
SECURITY_HELP_VI = "Bảo mật Kafka; mọi biến ONESTOP_KAFKA_* của worker cũng được áp dụng (docs/reliability.md)"


def kafka_security(protocol: Optional[str], mechanism: Optional[str], username: Optional[str],
                    password_file: Optional[Path], cafile: Optional[Path]) -> dict:
    """kafka-python options from the flags, then the worker's ONESTOP_KAFKA_* environment (passwords: file or env)."""
    from streams.runtime.security import SecurityConfigError, kafka_client_config
    from streams.runtime.settings import WorkerSettings

    try:
        settings = WorkerSettings.from_env(kafka_security_protocol=protocol, kafka_sasl_mechanism=mechanism,
                                           kafka_sasl_username=username, kafka_sasl_password_file=password_file,
                                           kafka_ssl_cafile=cafile)
        return kafka_client_config(settings)
    except (SecurityConfigError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


PROTOCOL_OPT = typer.Option(None, "--kafka-security-protocol", help=(
    "PLAINTEXT, SSL, SASL_PLAINTEXT hoặc SASL_SSL. " + SECURITY_HELP_VI
    + " / PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL. " + SECURITY_HELP))
MECHANISM_OPT = typer.Option(None, "--kafka-sasl-mechanism", help=(
    "PLAIN, SCRAM-SHA-256 hoặc SCRAM-SHA-512 / PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."))
USERNAME_OPT = typer.Option(None, "--kafka-sasl-username", help="Tên người dùng SASL / SASL user name.")
PASSWORD_FILE_OPT = typer.Option(None, "--kafka-sasl-password-file", help=(
    "Tệp chứa mật khẩu SASL (hoặc env ONESTOP_KAFKA_SASL_PASSWORD) / File holding the SASL password (or env "
    "ONESTOP_KAFKA_SASL_PASSWORD)."))
CAFILE_OPT = typer.Option(None, "--kafka-ssl-cafile", help=(
    "Bộ chứng chỉ CA đã ký chứng chỉ của broker / CA bundle that signed the broker's certificate."))
