"""``onestop at-risk`` and ``onestop reconcile``: points at risk of the open dossiers, the period-end forecast, and the
comparison with the national portal's published figures, from files alone (no broker).

Registered on the ``onestop`` application by ``streams/tools/cli.py`` (``register``); the domain work is
``models/at_risk.py`` and ``models/reconcile.py``.
"""

from __future__ import annotations

import sys
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import NoReturn, Optional

import typer

__all__ = ["at_risk", "reconcile", "register", "reconcile_table"]

FORMATS = ("json", "table")


def _fail(message: str) -> NoReturn:
    typer.echo(f"lỗi / error: {message}", err=True)
    raise typer.Exit(2)


def _when(at: Optional[str]) -> datetime:
    from streams.tools.cli_common import parse_at

    try:
        return parse_at(at)
    except typer.BadParameter as exc:
        _fail(f"--at: {exc.message} / thời điểm không đúng định dạng ISO 8601")


def _period(period: Optional[str], when: datetime) -> str:
    from models.tally import parse_period, period_key

    period = period or period_key("month", when)
    try:
        parse_period(period)
    except ValueError as exc:
        _fail(f"--period: {exc} / kỳ phải có dạng month:YYYY-MM, quarter:YYYY-Qn hoặc year:YYYY")
    return period


def _ctx(when: datetime, rules: Optional[Path], calendar: list[Path]):
    from streams.tools.cli_common import context

    return context(when, rules, calendar)


_FILE_HELP = "Tệp sự kiện JSON-lines / JSON-lines file of events."
_AT_HELP = ("Thời điểm tính (ISO 8601; mặc định: bây giờ); sự kiện sau đó bị bỏ qua / Evaluate as of this instant "
            "(ISO 8601; default: now); later events are left out.")
_PERIOD_HELP = ("Kỳ: month:2026-03, quarter:2026-Q1 hoặc year:2026 (mặc định: tháng của --at) / Period (default: the "
                "month of --at).")
_RULES_HELP = "Tệp YAML thay quy tắc mặc định / YAML file overriding the default domain rules."
_CALENDAR_HELP = "Tệp lịch làm việc của đơn vị vận hành / Operator calendar file(s) loaded over the bundled ones."


def at_risk(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help=_FILE_HELP),
    period: Optional[str] = typer.Option(None, help=_PERIOD_HELP),
    at: Optional[str] = typer.Option(None, help=_AT_HELP),
    rules: Optional[Path] = typer.Option(None, exists=True, help=_RULES_HELP),
    calendar: list[Path] = typer.Option([], help=_CALENDAR_HELP),
    forecast: bool = typer.Option(False, "--forecast", help=(
        "In dự báo cuối kỳ (JSON) thay cho danh sách / Print the period-end forecast (one JSON document) instead "
        "of the list.")),
):
    """Điểm có nguy cơ mất của từng hồ sơ đang trong hạn, mỗi hồ sơ một dòng JSON, điểm cao trước / Points at risk
    of each open dossier within its due, one JSON line each, highest first (docs/at-risk.md)."""
    from models.at_risk import at_risk_from_replay, at_risk_lines, forecast_from_replay
    from models.figures import iter_lines, replay, to_json
    from streams.tools.cli_common import batch_gc

    when = _when(at)
    period = _period(period, when)
    ctx = _ctx(when, rules, calendar)
    with batch_gc():
        replayed = replay(iter_lines(str(file)), ctx)
    out = sys.stdout.buffer
    if forecast:
        out.write(to_json(forecast_from_replay(replayed, ctx, period, when)) + b"\n")
    else:
        records = at_risk_from_replay(replayed, ctx, period, when)
        for line in at_risk_lines(records):
            out.write(line)
        typer.echo(f"{len(records)} hồ sơ có nguy cơ / dossier(s) at risk, {period}, {when.isoformat()}", err=True)
    if replayed.rejections:
        typer.echo(f"{len(replayed.rejections)} / {replayed.lines} dòng bị từ chối / lines rejected "
                   "(onestop validate)", err=True)


def reconcile(
    ours: Path = typer.Option(..., exists=True, dir_okay=False, help=(
        "Số liệu của hệ thống: tệp sự kiện hoặc tài liệu của onestop score / Ours: an event file or a document "
        "written by onestop score.")),
    official: Path = typer.Option(..., exists=True, dir_okay=False, help=(
        "Số liệu Cổng DVCQG: phản hồi API đã lưu (.json) hoặc CSV / The portal's figures: a saved API response "
        "(.json) or a CSV.")),
    period: str = typer.Option(..., help="Kỳ đối chiếu, ví dụ month:2026-03 / Period compared, e.g. month:2026-03."),
    threshold: float = typer.Option(0.05, help=(
        "Ngưỡng chênh lệch tương đối (0.05 = 5 %) / Relative difference flagged above this (0.05 = 5 %).")),
    at: Optional[str] = typer.Option(None, help=(
        "Thời điểm tính số liệu của hệ thống khi --ours là tệp sự kiện (mặc định: lúc tải số liệu chính thức, "
        "nếu không có thì bây giờ) / Instant our events are judged at (default: when the official figures were "
        "fetched, else now).")),
    rules: Optional[Path] = typer.Option(None, exists=True, help=_RULES_HELP),
    calendar: list[Path] = typer.Option([], help=_CALENDAR_HELP),
    format: str = typer.Option("json", "--format", help="json hoặc table (bảng dễ đọc) / json or table (readable)."),
    lang: str = typer.Option("vi", "--lang", help="Ngôn ngữ của bảng: vi hoặc en / Language of the table: vi or en."),
):
    """Đối chiếu tử số, mẫu số, điểm của hệ thống với số liệu Cổng DVCQG công bố, theo đơn vị và chỉ số / Compare
    our numerators, denominators and scores with the national portal's, per unit and indicator (docs/reconcile.md)."""
    from models.figures import to_json
    from models.i18n import LANGS
    from models.reconcile import ReconcileError, load_official, official_fetched_at, ours_document
    from models.reconcile import reconcile as compare

    if format not in FORMATS:
        _fail(f"--format {format!r}: json | table")
    if lang not in LANGS:
        _fail(f"--lang {lang!r}: {' | '.join(LANGS)}")
    if not 0 <= threshold < 10:
        _fail(f"--threshold {threshold!r}: một tỷ lệ như 0.05 / a fraction such as 0.05")
    try:
        records = load_official(official)
        when = _when(at) if at else (official_fetched_at(records) or _when(None))
        period = _period(period, when)
        doc = ours_document(ours, period, _ctx(when, rules, calendar))
        result = compare(doc, records, threshold)
    except ReconcileError as exc:
        _fail(str(exc))
    except (UnicodeDecodeError, OSError) as exc:
        _fail(f"{exc} / không đọc được tệp")
    if format == "table":
        sys.stdout.write(reconcile_table(result, lang))
    else:
        sys.stdout.buffer.write(to_json(result) + b"\n")
    summary = result["summary"]
    typer.echo(f"{summary['rows']} dòng / rows, {summary['flags']} cảnh báo / flags", err=True)


# --------------------------------------------------------------------------------------------------- the table


def _num(x: float | None, lang: str) -> str:
    from models.i18n import format_number

    return format_number(x, lang, decimals=2, strip_zeros=True)


def _pair(block: dict | None, lang: str) -> str:
    if not block:
        return "–"
    return f"{_num(block.get('numerator'), lang)} / {_num(block.get('denominator'), lang)}"


def _gap(diff: dict | None, lang: str) -> str:
    from models.i18n import format_percent

    if not diff:
        return "–"
    rel = "∞" if diff["relative"] is None else format_percent(diff["relative"], lang, 1)
    sign = "+" if diff["absolute"] > 0 else ""
    return f"{sign}{_num(diff['absolute'], lang)} ({rel})"


def _score(row: dict, lang: str) -> str:
    ours = (row.get("ours") or {}).get("score")
    official = (row.get("official") or {}).get("score")
    if ours is None and official is None:
        return "–"
    return f"{_num(ours, lang)} / {_num(official, lang)}"


def _width(text: str) -> int:
    return sum(0 if unicodedata.combining(ch) else 1 for ch in unicodedata.normalize("NFC", text))


def reconcile_table(result: dict, lang: str = "vi") -> str:
    """The comparison as a plain-text table (Vietnamese by default), then every flag with its message."""
    from models.i18n import format_datetime, format_percent, t

    cols = ["reconcile.col.unit", "reconcile.col.indicator", "reconcile.col.ours", "reconcile.col.official",
            "reconcile.col.diff_denominator", "reconcile.col.diff_numerator", "reconcile.col.score",
            "reconcile.col.status"]
    rows = [[t(c, lang) for c in cols]]
    for r in result["rows"]:
        diff = r.get("difference") or {}
        status = t(f"reconcile.status.{r['status']}", lang)
        if r["flags"]:
            status += " !"
        rows.append([r["unit"], r["indicator"], _pair(r.get("ours"), lang), _pair(r.get("official"), lang),
                     _gap(diff.get("denominator"), lang), _gap(diff.get("numerator"), lang), _score(r, lang), status])
    widths = [max(_width(row[i]) for row in rows) for i in range(len(cols))]

    def line(cells: list[str]) -> str:
        return "  ".join(c + " " * (w - _width(c)) for c, w in zip(cells, widths)).rstrip()

    ours_at = result.get("ours", {}).get("at")
    out = [t("reconcile.title", lang, period=result["period"]),
           t("reconcile.threshold_line", lang, threshold=format_percent(result["threshold"], lang, 1),
             at=format_datetime(ours_at, lang) if ours_at else "–",
             sources=", ".join(result.get("official", {}).get("sources") or []) or "–"),
           "", line(rows[0]), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in rows[1:]]
    flags = result.get("flags") or []
    out += ["", f"{t('reconcile.flags', lang)} ({len(flags)}):" if flags else t("reconcile.no_flags", lang)]
    msg = "message_vi" if lang == "vi" else "message_en"
    for f in flags:
        out.append(f"- {f['unit']} {f['indicator']}: {f[msg]}")
    s = result["summary"]
    out += ["", t("reconcile.summary", lang, rows=s["rows"], flags=s["flags"])]
    return "\n".join(out) + "\n"


def register(app: typer.Typer) -> None:
    """Add ``at-risk`` and ``reconcile`` to the ``onestop`` application."""
    app.command("at-risk")(at_risk)
    app.command("reconcile")(reconcile)
