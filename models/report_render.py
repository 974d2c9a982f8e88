"""The renderers of a 766 report (``models.report.Report``): Markdown, CSV, an Excel workbook and the scorecard chart.

Texts come from the message catalogue (``models.i18n``), Vietnamese by default; numbers and dates are written the
way the reader's language writes them. openpyxl and matplotlib are imported only when the xlsx or the chart is
asked for. ``models.report`` re-exports every public name here.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from .i18n import (
    DEFAULT_LANG,
    NO_VALUE,
    VN,
    csv_bytes,
    format_date,
    format_datetime,
    format_number,
    format_percent,
    has,
    month_name,
    t,
)
from .report import BAND_COLOURS, IndicatorLine, Report, ReportDependencyError

__all__ = ["CSV_TABLES", "MAX_LATE_PER_UNIT", "period_label", "scorecard_chart", "to_csv", "to_markdown", "to_xlsx"]

MAX_LATE_PER_UNIT = 50  # a Markdown report lists at most this many overdue dossiers per unit (the CSV lists all)


# ----------------------------------------------------------------------------------------------- labels


_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV"}


def period_label(period: str, lang: str = DEFAULT_LANG) -> str:
    """``month:2026-03`` -> ``tháng 03/2026`` / ``March 2026``; ``quarter:2026-Q1`` -> ``quý I/2026`` / ``Q1 2026``."""
    kind, _, value = period.partition(":")
    try:
        if kind == "month":
            y, m = value.split("-")
            month = f"{int(m):02d}" if lang == "vi" else month_name(int(m), "en")
            return t("report.period.month", lang, month=month, year=int(y))
        if kind == "quarter":
            y, q = value.split("-Q")
            quarter = _ROMAN[int(q)] if lang == "vi" else str(int(q))
            return t("report.period.quarter", lang, quarter=quarter, year=int(y))
        if kind == "year":
            return t("report.period.year", lang, year=int(value))
    except (ValueError, KeyError):
        pass
    return period


def _band_name(code: str | None, lang: str) -> str:
    return t(f"band.{code}", lang) if code else t("band.none", lang)


def _band_text(code: str | None, basis: str | None, lang: str) -> str:
    name = _band_name(code, lang)
    return f"{name} ({t('common.estimate', lang)})" if code and basis == "estimate" else name


def _level_name(level: str | None, lang: str) -> str:
    return t(f"level.{level}", lang) if level and has(f"level.{level}") else (level or NO_VALUE)


def _num(x: float | None, lang: str, decimals: int = 2) -> str:
    return format_number(x, lang, decimals)


def _count(x: float | None, lang: str) -> str:
    if x is None:
        return NO_VALUE
    return format_number(x, lang, 0) if float(x).is_integer() else format_number(x, lang, 2)


def _fraction(ind: IndicatorLine, lang: str) -> str:
    if not ind.applicable:
        return t("report.not_applicable", lang)
    if not ind.computable:
        return t("report.not_from_events", lang)
    if ind.duration:
        return f"{_num((ind.numerator or 0) / 3600, lang)} {t('report.hours_unit', lang)} / {_count(ind.denominator, lang)}"
    return f"{_count(ind.numerator, lang)} / {_count(ind.denominator, lang)}"


def _ratio(ind: IndicatorLine, lang: str) -> str:
    if ind.ratio is None:
        return NO_VALUE
    if ind.duration:
        return f"{_num(ind.ratio / 3600, lang)} {t('report.hours_unit', lang)}"
    return format_percent(ind.ratio, lang)


def _score(ind: IndicatorLine, lang: str) -> str:
    if ind.monitoring:
        return t("report.monitoring_only", lang)
    return _num(ind.score, lang)


# --------------------------------------------------------------------------------------------- Markdown


def _md_cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[Any]], align: str) -> list[str]:
    """``align``: one letter per column, l or r."""
    sep = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return out


def to_markdown(report: Report, lang: str | None = None, chart: str | None = None) -> str:
    """The report as Markdown; ``chart`` is the path (relative to the Markdown file) of the PNG that
    ``scorecard_chart`` wrote, embedded as an image under the ranking."""
    lang = lang or report.lang
    r = report
    plabel = period_label(r.period, lang)
    last_day = (r.period_end - timedelta(microseconds=1))
    out = [f"# {t('report.title', lang, province=r.province_name(lang))}", ""]
    if r.kind == "daily":
        out.append(f"**{t('report.kind.daily', lang, date=format_date(r.at, lang), period=plabel)}**")
    else:
        out.append(f"**{t('report.kind.period_end', lang, period=plabel)}**")
    out += ["", t("report.period_line", lang, period=plabel, start=format_date(r.period_start, lang),
                   end=format_date(last_day, lang), at=format_datetime(r.at, lang)),
            "", t("report.sources_line", lang, catalogue=r.catalogue, calendar=r.calendar), ""]

    out += [f"## {t('report.summary', lang)}", ""]
    known = f"{_num(r.total, lang)} / {format_number(r.max_points_known, lang, 2, strip_zeros=True)}"
    rows = [[t("report.total_known", lang), known],
            [t("report.total_estimated", lang), _num(r.total_estimated, lang)],
            [t("report.band", lang), _band_text(r.band, r.band_basis, lang)]]
    for key in ("on_time_ratio", "online_submission_share", "online_payment_share", "satisfied_share",
                "digitized_share"):
        rows.append([t(f"share.{key}", lang), format_percent(r.shares.get(key), lang)])
    for key in ("received", "population", "on_time", "open_due_soon", "open_overdue", "late_without_apology"):
        rows.append([t(f"count.{key}", lang), _count(r.counts.get(key), lang)])
    out += _md_table([t("report.col.item", lang), t("report.col.value", lang)], rows, "lr")
    if not r.complete:
        out += ["", f"_{t('report.incomplete_note', lang)}_"]
    out.append("")

    out += [f"## {t('report.groups', lang)}", ""]
    rows = [[f"{g.id}. {t(f'group.{g.code}', lang)}", _num(g.score, lang),
             format_number(g.max_points, lang, 2, strip_zeros=True),
             format_number(g.max_points_known, lang, 2, strip_zeros=True)] for g in r.groups]
    rows.append([f"**{t('common.total', lang)}**", f"**{_num(r.total, lang)}**",
                 format_number(sum(g.max_points for g in r.groups), lang, 2, strip_zeros=True),
                 format_number(r.max_points_known, lang, 2, strip_zeros=True)])
    out += _md_table([t("report.col.group", lang), t("report.col.score", lang), t("report.col.max", lang),
                      t("report.col.max_known", lang)], rows, "lrrr")
    out.append("")

    out += [f"## {t('report.table766', lang)}", ""]
    rows = [[i.id, i.name(lang), _fraction(i, lang), _ratio(i, lang), _score(i, lang),
             format_number(i.max_points, lang, 2, strip_zeros=True)] for i in r.indicators]
    out += _md_table([t("report.col.indicator", lang), t("report.col.name", lang), t("report.col.fraction", lang),
                      t("report.col.ratio", lang), t("report.col.score", lang), t("report.col.max", lang)],
                     rows, "llrrrr")
    out.append("")

    out += [f"## {t('report.ranking', lang)}", "", t("report.ranking_note", lang), ""]
    if chart:
        out += [f"![{t('report.chart_alt', lang)}]({chart})", ""]
    for level in _levels(r):
        members = [u for u in r.units if u.level == level]
        out += [f"### {t('report.ranking_level', lang, level=_level_name(level, lang))}", ""]
        rows = [[u.rank, u.name(lang), u.code, _num(u.total, lang), _num(u.total_estimated, lang),
                 _band_text(u.band, u.band_basis, lang), format_percent(u.on_time_ratio, lang),
                 u.open_overdue] for u in members]
        out += _md_table([t("report.col.rank", lang), t("report.col.unit", lang), t("report.col.code", lang),
                          t("report.col.total", lang), t("report.col.estimate", lang), t("report.col.band", lang),
                          t("report.col.on_time", lang), t("report.col.overdue_now", lang)], rows, "rllrrlrr")
        out.append("")

    out += [f"## {t('report.late', lang)}", ""]
    if not any(r.late.values()):
        out += [t("report.late_none", lang), ""]
    for code in _late_order(r):
        ds = r.late[code]
        out += [f"### {t('report.late_unit', lang, unit=r.unit_name(code, lang) + f' ({code})', count=len(ds))}", ""]
        rows = [[d.code, d.procedure, format_datetime(d.due_at, lang), _num(d.hours_overdue, lang)]
                for d in ds[:MAX_LATE_PER_UNIT]]
        out += _md_table([t("report.col.dossier", lang), t("report.col.procedure", lang), t("report.col.due", lang),
                          t("report.col.hours_overdue", lang)], rows, "llrr")
        if len(ds) > MAX_LATE_PER_UNIT:
            out += ["", t("report.late_more", lang, count=len(ds) - MAX_LATE_PER_UNIT)]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _levels(r: Report) -> list[str | None]:
    seen: list[str | None] = []
    for u in r.units:
        if u.level not in seen:
            seen.append(u.level)
    return seen


def _late_order(r: Report) -> list[str]:
    """Units with the most overdue hours first: where to act first."""
    return sorted((c for c, ds in r.late.items() if ds),
                  key=lambda c: (-sum(d.hours_overdue for d in r.late[c]), c))


# -------------------------------------------------------------------------------------------------- CSV

CSV_TABLES = ("units", "indicators", "late")


def _r2(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def _csv_rows(report: Report, lang: str, table: str) -> tuple[list[str], list[list[Any]]]:
    r = report
    if table == "units":
        keys = ["csv.rank", "csv.unit_code", "csv.unit_name", "csv.level", "csv.total", "csv.max_points_known",
                "csv.total_estimated", "csv.band", "csv.band_basis", "csv.on_time_ratio", "csv.open_overdue",
                "csv.late_listed"]
        group_keys = [str(g.id) for g in r.groups]
        headers = keys + [f"group.{g.code}" for g in r.groups]
        rows = [[u.rank, u.code, u.name(lang), _level_name(u.level, lang), _r2(u.total), _r2(u.max_points_known),
                 _r2(u.total_estimated), _band_name(u.band, lang),
                 t(f"band.basis.{u.band_basis}", lang) if u.band_basis else None,
                 None if u.on_time_ratio is None else round(u.on_time_ratio, 4), u.open_overdue, u.late_listed]
                + [_r2(u.groups.get(g)) for g in group_keys] for u in r.units]
        return headers, rows
    if table == "indicators":
        headers = ["csv.indicator", "csv.indicator_name", "csv.group", "csv.numerator", "csv.denominator",
                   "csv.ratio", "csv.score", "csv.max_points", "csv.source"]
        rows = []
        for i in r.indicators:
            src = (t("report.not_applicable", lang) if not i.applicable else
                   t("report.not_from_events", lang) if not i.computable else None)
            num, ratio = i.numerator, i.ratio
            if i.duration:  # a mean time: in working hours, not seconds
                num = None if num is None else round(num / 3600, 2)
                ratio = None if ratio is None else ratio / 3600
                src = src or t("report.mean_working_hours", lang)
            group = next((t(f"group.{g.code}", lang) for g in r.groups if g.id == i.group), i.group)
            rows.append([i.id, i.name(lang), group, num, i.denominator,
                         None if ratio is None else round(ratio, 6), _r2(i.score), i.max_points, src])
        return headers, rows
    if table == "late":
        headers = ["csv.unit_code", "csv.unit_name", "csv.dossier_code", "csv.procedure_code", "csv.due_at",
                   "csv.overdue_working_hours", "csv.state"]
        rows = [[c, r.unit_name(c, lang), d.code, d.procedure, d.due_at.isoformat(timespec="seconds") if d.due_at else None,
                 _r2(d.hours_overdue), t(f"state.{d.state}", lang)] for c in _late_order(r) for d in r.late[c]]
        return headers, rows
    raise ValueError(f"unknown CSV table {table!r}; one of {', '.join(CSV_TABLES)}")


def to_csv(report: Report, lang: str | None = None, table: str = "units") -> bytes:
    """One table of the report as CSV (UTF-8 with BOM, headers in ``lang``): ``units`` (the ranking with group
    scores), ``indicators`` (the province's 766 table) or ``late`` (every overdue dossier)."""
    lang = lang or report.lang
    headers, rows = _csv_rows(report, lang, table)
    return csv_bytes(headers, rows, lang)


# ------------------------------------------------------------------------------------------------- xlsx


def _require(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ReportDependencyError(
            f"{what} needs the Python package {module.split('.')[0]!r}, which is not installed: "
            f"pip install {module.split('.')[0]} (the project lists it in pyproject.toml)") from None


def to_xlsx(report: Report, lang: str | None = None, path: str | Path | None = None) -> Path:
    """The report as an Excel workbook (summary, 766 indicators, ranking, overdue dossiers); needs openpyxl."""
    openpyxl = _require("openpyxl", "to_xlsx")
    styles = _require("openpyxl.styles", "to_xlsx")
    utils = _require("openpyxl.utils", "to_xlsx")
    lang = lang or report.lang
    if path is None:
        raise ValueError("to_xlsx needs the path of the workbook to write")
    r = report
    bold = styles.Font(bold=True)
    head_fill = styles.PatternFill("solid", fgColor="DDEBF7")
    wb = openpyxl.Workbook()

    def sheet(title_key: str, first: bool = False):
        ws = wb.active if first else wb.create_sheet()
        ws.title = _sheet_title(t(title_key, lang))
        return ws

    def header(ws, cells: list[str], row: int = 1) -> None:
        for col, text in enumerate(cells, 1):
            c = ws.cell(row=row, column=col, value=text)
            c.font, c.fill = bold, head_fill
            c.alignment = styles.Alignment(wrap_text=True, vertical="top")
        ws.freeze_panes = f"A{row + 1}"  # a string: a cell object would create row 2 and push data below it

    def widths(ws, values: list[int]) -> None:
        for col, w in enumerate(values, 1):
            ws.column_dimensions[utils.get_column_letter(col)].width = w

    ws = sheet("report.sheet.summary", first=True)
    ws["A1"] = t("report.title", lang, province=r.province_name(lang))
    ws["A1"].font = styles.Font(bold=True, size=14)
    plabel = period_label(r.period, lang)
    ws["A2"] = (t("report.kind.daily", lang, date=format_date(r.at, lang), period=plabel) if r.kind == "daily"
                else t("report.kind.period_end", lang, period=plabel))
    ws["A3"] = t("report.period_line", lang, period=plabel, start=format_date(r.period_start, lang),
                 end=format_date(r.period_end - timedelta(microseconds=1), lang), at=format_datetime(r.at, lang))
    ws["A4"] = t("report.sources_line", lang, catalogue=r.catalogue, calendar=r.calendar)
    rows: list[tuple[str, Any, str | None]] = [
        (t("report.total_known", lang), _r2(r.total), "0.00"),
        (t("csv.max_points_known", lang), r.max_points_known, "0.##"),
        (t("report.total_estimated", lang), _r2(r.total_estimated), "0.00"),
        (t("report.band", lang), _band_text(r.band, r.band_basis, lang), None),
    ]
    for key in ("on_time_ratio", "online_submission_share", "online_payment_share", "satisfied_share",
                "digitized_share"):
        rows.append((t(f"share.{key}", lang), r.shares.get(key), "0.00%"))
    for key in ("received", "population", "on_time", "open_due_soon", "open_overdue", "late_without_apology"):
        rows.append((t(f"count.{key}", lang), r.counts.get(key), "0"))
    for i, (label, value, fmt) in enumerate(rows, 6):
        ws.cell(row=i, column=1, value=label).font = bold
        c = ws.cell(row=i, column=2, value=value)
        if fmt:
            c.number_format = fmt
        if label == t("report.band", lang):
            c.fill = styles.PatternFill("solid", fgColor=BAND_COLOURS.get(r.band, BAND_COLOURS[None])[1:])
    g0 = 6 + len(rows) + 1
    header(ws, [t("report.col.group", lang), t("report.col.score", lang), t("report.col.max", lang),
                t("report.col.max_known", lang)], row=g0)
    ws.freeze_panes = None
    for i, g in enumerate(r.groups, g0 + 1):
        ws.cell(row=i, column=1, value=f"{g.id}. {t(f'group.{g.code}', lang)}")
        ws.cell(row=i, column=2, value=_r2(g.score)).number_format = "0.00"
        ws.cell(row=i, column=3, value=g.max_points)
        ws.cell(row=i, column=4, value=g.max_points_known)
    widths(ws, [48, 22, 12, 14])

    ws = sheet("report.sheet.indicators")
    headers, rows2 = _csv_rows(r, lang, "indicators")
    header(ws, [t(k, lang) for k in headers])
    for row in rows2:
        ws.append(row)
    for ind, row in zip(r.indicators, ws.iter_rows(min_row=2, min_col=6, max_col=6)):
        for c in row:
            c.number_format = "0.00" if ind.duration else "0.00%"
    widths(ws, [9, 60, 28, 12, 12, 10, 10, 10, 24])

    ws = sheet("report.sheet.ranking")
    headers, rows2 = _csv_rows(r, lang, "units")
    header(ws, [t(k, lang) for k in headers])
    for u, row in zip(r.units, rows2):
        ws.append(row)
        ws.cell(row=ws.max_row, column=8).fill = styles.PatternFill(
            "solid", fgColor=BAND_COLOURS.get(u.band, BAND_COLOURS[None])[1:])
        ws.cell(row=ws.max_row, column=10).number_format = "0.00%"
    widths(ws, [7, 14, 44, 16, 10, 12, 12, 14, 18, 12, 12, 12] + [14] * len(r.groups))

    ws = sheet("report.sheet.late")
    headers, rows2 = _csv_rows(r, lang, "late")
    header(ws, [t(k, lang) for k in headers])
    late_rows = [d for c in _late_order(r) for d in r.late[c]]
    for d, row in zip(late_rows, rows2):
        # Excel has no time zones: the due date goes in as Vietnam wall-clock time, formatted as such.
        row[4] = d.due_at.astimezone(VN).replace(tzinfo=None, microsecond=0) if d.due_at else None
        ws.append(row)
        ws.cell(row=ws.max_row, column=5).number_format = "dd/mm/yyyy hh:mm" if lang == "vi" else "yyyy-mm-dd hh:mm"
    widths(ws, [14, 44, 28, 14, 26, 14, 16])

    out = Path(path)
    wb.save(out)
    return out


def _sheet_title(text: str) -> str:
    for ch in "[]:*?/\\":
        text = text.replace(ch, " ")
    return text[:31]


# ------------------------------------------------------------------------------------------------ chart


def scorecard_chart(report: Report, path: str | Path, lang: str | None = None, dpi: int = 110) -> Path:
    """A PNG bar chart of the units' scores (the value each band is based on), coloured by band, with the band
    cut-offs as lines; needs matplotlib (used through its Agg canvas, never pyplot, so no display is touched)."""
    figure = _require("matplotlib.figure", "scorecard_chart")
    agg = _require("matplotlib.backends.backend_agg", "scorecard_chart")
    patches = _require("matplotlib.patches", "scorecard_chart")
    lang = lang or report.lang
    r = report
    units = sorted(r.units, key=lambda u: (u.value is None, u.value or 0.0, u.code))
    labels = [f"{u.name(lang)} ({u.code})" for u in units]
    values = [u.value or 0.0 for u in units]
    colours = [BAND_COLOURS.get(u.band, BAND_COLOURS[None]) for u in units]
    height = max(3.0, 0.6 + 0.24 * len(units))
    fig = figure.Figure(figsize=(10, height), dpi=dpi)
    agg.FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(range(len(units)), values, color=colours, edgecolor="#444444", linewidth=0.4)
    ax.set_yticks(range(len(units)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlim(0, 100)
    for cut in (50, 70, 80, 90):
        ax.axvline(cut, color="#777777", linestyle="--", linewidth=0.6)
    for y, (u, v) in enumerate(zip(units, values)):
        ax.text(min(v + 0.8, 92), y, _num(u.value, lang), va="center", fontsize=6)
    ax.set_xlabel(t("report.chart_axis", lang))
    ax.set_title(f"{r.province_name(lang)} — " + t("report.chart_title", lang, period=period_label(r.period, lang)),
                 fontsize=10)
    legend = [patches.Patch(color=BAND_COLOURS[c], label=t(f"band.{c}", lang))
              for c in ("xuat_sac", "tot", "kha", "trung_binh", "yeu")]
    ax.legend(handles=legend, loc="lower right", fontsize=7, framealpha=0.9)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png", metadata={"Software": None})
    return out
