"""``onestop report``: a province's 766 report for the people who answer for it, from an event file.

The figures are exactly those of ``onestop score`` on the same file (``models.figures``); the report adds the
ranking of units, the overdue dossiers to chase by unit and the unit names of a registry file, in Vietnamese by
default (``models.report``). Two kinds, chosen by ``--at``:

- daily (``--at`` inside the period, e.g. today): month-to-date figures as of ``--at`` and the dossiers overdue then;
- end of period (``--at`` at or after the period's end, the default for a past period): the figures of the whole
  period, judged at its end, with the dossiers still overdue then and those that ended late during it.

Formats: Markdown with the scorecard chart (a PNG written next to it and embedded), CSV (one table: the ranking,
the 766 indicators or the overdue dossiers; UTF-8 with a BOM for spreadsheets) and an Excel workbook.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Optional

import typer

from streams.tools.cli_common import batch_gc, parse_at

__all__ = ["report_command"]

FORMATS = ("md", "csv", "xlsx")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def default_out(period: str, fmt: str, table: str = "units") -> Path:
    """``bao-cao-766-month-2026-03.md`` (a CSV names its table too): a name that sorts by period in a folder."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", period).strip("-")
    return Path(f"bao-cao-766-{slug}{'-' + table if fmt == 'csv' else ''}.{fmt}")


def report_command(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Tệp sự kiện JSON-lines / JSON-lines file of events."),
    period: str = typer.Option(..., help="Kỳ báo cáo / Period: month:2026-03, quarter:2026-Q1, year:2026."),
    at: Optional[str] = typer.Option(None, help="Tính đến thời điểm (ISO 8601; mặc định: bây giờ): trong kỳ là báo cáo lũy "
                                     "kế, từ cuối kỳ là báo cáo cả kỳ / As of this instant (ISO 8601; default now): "
                                     "inside the period the period-to-date report, at or after its end the end-of-period one."),
    fmt: str = typer.Option("md", "--format", help="md (kèm biểu đồ), csv hoặc xlsx / md (with the scorecard chart), csv or xlsx."),
    lang: str = typer.Option("vi", envvar="ONESTOP_LANG", help="vi (tiếng Việt, mặc định) hoặc en / vi (Vietnamese, the default) or en."),
    units: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, envvar="ONESTOP_UNITS_FILE",
                                         help="Danh mục đơn vị (YAML hoặc CSV) cho tên đơn vị / Unit registry (YAML or CSV) giving the units' names."),
    out: Optional[Path] = typer.Option(None, help="Tệp ghi ra (mặc định bao-cao-766-<kỳ>.<định dạng>); '-' ghi csv hoặc md ra "
                                       "màn hình (md khi đó không có biểu đồ) / File to write (default bao-cao-766-<period>.<format>); "
                                       "'-' writes csv or md to standard output (md then without the chart)."),
    table: str = typer.Option("units", help="Với csv: units (xếp hạng), indicators (bảng 766) hoặc late (quá hạn) / For csv: units (ranking), "
                       "indicators (766 table) or late (overdue)."),
    province: Optional[str] = typer.Option(None, help="Tỉnh cần báo cáo khi tệp có nhiều tỉnh / The province to report on when the file has several."),
    rules: Optional[Path] = typer.Option(None, exists=True, help="Tệp YAML thay quy tắc mặc định / YAML file overriding the default domain rules."),
    calendar: list[Path] = typer.Option([], help="Tệp lịch làm việc bổ sung / Operator calendar file(s) to load over the bundled ones."),
    jobs: int = typer.Option(1, min=0, help="Số tiến trình chạy song song (0 = mọi nhân CPU), như onestop score --jobs; báo cáo như "
                             "nhau / Processes replaying in parallel (0 = every CPU core), as onestop score --jobs; the same report."),
):
    """Báo cáo Bộ chỉ số 766 của một tỉnh trong một kỳ: bảng chỉ số, xếp hạng đơn vị và hồ sơ quá hạn theo đơn vị,
    bằng tiếng Việt (hoặc tiếng Anh), dạng Markdown kèm biểu đồ, CSV hoặc Excel / Write the 766 report of a province
    for a period: the indicator table, the ranking of units and the overdue dossiers by unit, in Vietnamese (or
    English), as Markdown with a chart, CSV or Excel."""
    from models.calendar import CalendarError, WorkCalendar, load_calendar_file
    from models.config import ConfigError, load_config
    from models.dossier import Context
    from models.figures import iter_lines, replay, score_document, views
    from models.i18n import LANGS
    from models.report import ReportDependencyError, build_reports, late_dossiers_from_views
    from models.replay_shares import merged_document
    from models.report_render import CSV_TABLES, scorecard_chart, to_csv, to_markdown, to_xlsx
    from models.tally import parse_period
    from models.units import UnitRegistry, UnitRegistryError
    from streams.tools.score_jobs import available_cores, replay_in_shares

    if fmt not in FORMATS:
        raise _fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if lang not in LANGS:
        raise _fail(f"--lang must be one of {', '.join(LANGS)}, not {lang!r}")
    if table not in CSV_TABLES:
        raise _fail(f"--table must be one of {', '.join(CSV_TABLES)}, not {table!r}")
    if str(out) == "-" and fmt == "xlsx":
        raise _fail("an xlsx workbook cannot go to standard output; give --out FILE.xlsx")
    try:
        start, end = parse_period(period)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    when = parse_at(at)
    if when <= start:
        raise _fail(f"{period} has not started at {when.isoformat()}: nothing to report yet")
    judged = min(when, end)  # an end-of-period report judges the open dossiers at the period's end
    try:
        registry = UnitRegistry.load(units) if units else None
        cal = WorkCalendar.default()
        for f in calendar:
            cal = cal.with_document(load_calendar_file(f))
        ctx = Context(now=judged, calendar=cal, config=load_config(rules))
    except (UnitRegistryError, CalendarError, ConfigError) as exc:
        raise _fail(str(exc)) from None

    ended_since = start if judged >= end else None
    jobs = jobs or available_cores()
    with batch_gc():
        if jobs == 1:
            replayed = replay(iter_lines(str(file)), ctx)
            doc = score_document(replayed, period, ctx)
            late = late_dossiers_from_views(views(replayed.states.values(), ctx), judged, ended_since=ended_since)
        else:
            merged = replay_in_shares(file, ctx, jobs, late=True, ended_since=ended_since)
            doc, late = merged_document(merged, period, ctx.now, ctx), merged.late
    reports = build_reports(doc, late, registry, period, lang)
    if province is not None:
        reports = [r for r in reports if r.province == province]
    if len(reports) != 1:
        found = ", ".join(sorted((doc.get("provinces") or {}))) or "none"
        raise _fail(f"the events hold {len(reports)} matching provinces ({found}); choose one with --province"
                    if reports or province is None else f"province {province!r} is not in the events ({found})")
    report = reports[0]

    target = out or default_out(period, fmt, table)
    try:
        if fmt == "md":
            if str(target) == "-":
                sys.stdout.write(to_markdown(report, lang))
                return
            chart = target.with_name(target.stem + ".png")
            scorecard_chart(report, chart, lang)
            target.write_text(to_markdown(report, lang, chart=chart.name), encoding="utf-8")
            typer.echo(f"wrote {target} and {chart}", err=True)
        elif fmt == "csv":
            data = to_csv(report, lang, table)
            if str(target) == "-":
                sys.stdout.buffer.write(data)
                return
            target.write_bytes(data)
            typer.echo(f"wrote {target}", err=True)
        else:
            to_xlsx(report, lang, target)
            typer.echo(f"wrote {target}", err=True)
    except ReportDependencyError as exc:
        raise _fail(str(exc)) from None
    read = doc["input"]
    if read["rejected"]:
        typer.echo(f"{read['rejected']} of {read['lines']} lines rejected (see onestop validate)", err=True)
