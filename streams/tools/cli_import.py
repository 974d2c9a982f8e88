"""``onestop import``: turn what one-stop systems already produce into this product's events.

``onestop import dvcqg FILE`` reads saved national-portal sync bodies (``DongBoHoSoMC`` / ``CapNhatTienDoHoSoMC``,
one request body per line) and prints the CloudEvents they give, or publishes them: the backfill companion of the
live entry points (``POST /api/dvcqg/...`` and the ``dvcqg-sync`` topic, docs/dvcqg.md). Only what the converter
reads is ever printed, sent or dead-lettered: bad lines are reported by line, reason and a message that names
fields, never values.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from streams.tools.cli_common import (CAFILE_OPT, MECHANISM_OPT, PASSWORD_FILE_OPT, PROTOCOL_OPT, USERNAME_OPT,
                                       kafka_security)

__all__ = ["import_app"]

import_app = typer.Typer(add_completion=False, no_args_is_help=True)

PROGRESS_FROM_LINES = 500
"""A file with at least this many lines gets a progress bar (on stderr: stdout may be the events)."""

@import_app.command("dvcqg")
def import_dvcqg(
    file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                help="Tệp JSON lines, mỗi dòng một thân yêu cầu DongBoHoSoMC hoặc CapNhatTienDoHoSoMC "
                                     "/ JSON-lines file, one sync request body per line."),
    profile: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                           help="Hồ sơ bên gửi (YAML, docs/dvcqg.md) / sender profile."),
    service: Optional[str] = typer.Option(None, help="DongBoHoSoMC hoặc/or CapNhatTienDoHoSoMC, khi thân yêu cầu "
                                                     "không ghi / when the bodies do not say."),
    query: Optional[str] = typer.Option(None, help="Chuỗi truy vấn như LGSP gửi / query string as the LGSP sends "
                                                   "it, e.g. 'MaDinhDanhDV=000.00.12.H40&isUpdating=True'."),
    publish: bool = typer.Option(False, help="Gửi sự kiện lên Kafka thay vì in ra / publish instead of printing."),
    broker: str = typer.Option("127.0.0.1:9092", envvar="ONESTOP_BROKER", help="Kafka HOST:PORT (khi có --publish) / "
                                                                                "Kafka HOST:PORT (with --publish)."),
    topic: str = typer.Option("dossier-events", help="Chủ đề sự kiện / events topic."),
    dlq_topic: str = typer.Option("dossier-events-dlq", help="Nơi nhận dòng lỗi, đã lược dữ liệu cá nhân / where "
                                                             "refused lines go, redacted (with --publish)."),
    quiet: bool = typer.Option(False, help="Không hiện thanh tiến độ / no progress bar."),
    kafka_security_protocol: Optional[str] = PROTOCOL_OPT,
    kafka_sasl_mechanism: Optional[str] = MECHANISM_OPT,
    kafka_sasl_username: Optional[str] = USERNAME_OPT,
    kafka_sasl_password_file: Optional[Path] = PASSWORD_FILE_OPT,
    kafka_ssl_cafile: Optional[Path] = CAFILE_OPT,
):
    """Chuyển thân yêu cầu đồng bộ DVCQG thành sự kiện / convert saved DVCQG sync bodies into events.

    In ra stdout, hoặc gửi Kafka với --publish; mã thoát 1 nếu có dòng bị từ chối.

    Prints to stdout, or publishes with --publish; exit 1 if any line or record was refused."""
    from models.dvcqg import (DEFAULT_PROFILE, BodyError, ProfileError, body_records, convert_lines, load_profile,
                              redact_body)
    from models.events import event_to_json
    from models.figures import iter_lines

    try:
        sender = load_profile(profile) if profile else DEFAULT_PROFILE
    except ProfileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    pub = None
    if publish:
        from streams.tools.publisher import DossierEventPublisher

        security = kafka_security(kafka_security_protocol, kafka_sasl_mechanism, kafka_sasl_username,
                                   kafka_sasl_password_file, kafka_ssl_cafile)
        pub = DossierEventPublisher(broker, topic, dlq_topic=dlq_topic, **security)

    def dead_letter(body: object, reason: str, message: str, **headers: object) -> None:
        if pub is not None:
            redacted = redact_body(body)
            value = b"" if redacted is None else json.dumps(redacted, ensure_ascii=False).encode()
            pub.dead_letter(value, reason, message, source_file=file.name, redacted="dvcqg-allow-list", **headers)

    total = sum(1 for _ in iter_lines(str(file)))
    bar = None
    if not quiet and total >= PROGRESS_FROM_LINES:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("dvcqg"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       console=Console(stderr=True))
        bar.start()
        task = bar.add_task("dvcqg", total=total)
    lines = events = bad = 0
    unknown: dict[str, int] = {}
    out = sys.stdout.buffer
    try:
        for n, raw in iter_lines(str(file)):
            [(_, conv)] = convert_lines([(n, raw)], sender, service=service, query=query)
            lines += 1
            if isinstance(conv, BodyError):
                bad += 1
                _report(file, n, conv.reason, conv.message, bar)
                dead_letter(_json_or_none(raw), conv.reason, conv.message, line=n)
            else:
                for event in conv.events:
                    if pub is not None:
                        pub.publish(event)
                    else:
                        out.write(event_to_json(event) + b"\n")
                events += len(conv.events)
                if conv.rejected:
                    bad += 1
                    records = body_records(_json_or_none(raw))
                for index, reason, message in conv.rejected:
                    _report(file, n, reason, f"record {index}: {message}", bar)
                    dead_letter(records[index] if index < len(records) else None, reason, message, line=n,
                                record_index=index)
                for code, count in conv.unknown_codes.items():
                    unknown[code] = unknown.get(code, 0) + count
            if bar is not None:
                bar.update(task, completed=lines)
    finally:
        if bar is not None:
            bar.stop()
        if pub is not None:
            pub.flush()
            pub.close()
    out.flush()
    where = f"published to {topic}" if pub is not None else "printed"
    typer.echo(f"{lines} dòng, {events} sự kiện, {bad} dòng lỗi / {lines} lines, {events} events {where}, "
               f"{bad} with refusals" + (f"; unknown codes {json.dumps(unknown, sort_keys=True)}" if unknown else ""),
               err=True)
    raise typer.Exit(1 if bad else 0)


def _report(file: Path, n: int, reason: str, message: str, bar: object) -> None:
    text = f"{file}:{n}: {reason}: {message}"
    if bar is not None:
        bar.console.print(text, markup=False, highlight=False)  # above the bar, not through it
    else:
        typer.echo(text, err=True)


def _json_or_none(raw: bytes) -> object:
    """A line as JSON (for redaction before dead-lettering), or None when it is not JSON (then nothing is kept)."""
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return None

