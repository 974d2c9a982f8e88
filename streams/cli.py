"""The ``onestop`` command: batch audit commands (no broker needed) and the runtime (worker, demo, simulator)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Real-time monitoring of one-stop-shop dossiers and the 766 index.")


def _parse_at(at: Optional[str]) -> datetime:
    from models.calendar import TZ

    if at is None:
        return datetime.now(TZ)
    try:
        t = datetime.fromisoformat(at)
    except ValueError:
        raise typer.BadParameter(f"{at!r} is not an ISO 8601 date-time (e.g. 2026-03-10T16:00:00+07:00)") from None
    return t if t.tzinfo else t.replace(tzinfo=TZ)


def _context(at: datetime, rules: Optional[Path], calendar_files: list[Path]):
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


@app.command()
def schema(write: bool = typer.Option(False, help="Write the committed copy under models/schema/ instead of printing.")):
    """Print the JSON Schema (2020-12) of the event contract."""
    from models.schema import SCHEMA_PATH, schema_json, write_schema

    if write:
        write_schema()
        typer.echo(f"wrote {SCHEMA_PATH}")
    else:
        sys.stdout.write(schema_json())


@app.command()
def validate(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON-lines file of events.")):
    """Check every line of an event file against the contract; exit 1 listing line numbers and reasons."""
    from models.events import EventError, decode_event
    from models.figures import iter_lines

    bad = total = 0
    for n, raw in iter_lines(str(file)):
        total += 1
        try:
            decode_event(raw)
        except EventError as exc:
            bad += 1
            typer.echo(f"{file}:{n}: {exc.reason}: {exc.message}")
    typer.echo(f"{total} events, {total - bad} valid, {bad} invalid", err=True)
    raise typer.Exit(1 if bad else 0)


@app.command()
def score(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON-lines file of events."),
    at: Optional[str] = typer.Option(None, help="Evaluate as of this instant (ISO 8601; default: now). Later events are left out."),
    period: Optional[str] = typer.Option(None, help="month:2026-03, quarter:2026-Q1 or year:2026 (default: the month of --at)."),
    rules: Optional[Path] = typer.Option(None, exists=True, help="YAML file overriding the default domain rules."),
    calendar: list[Path] = typer.Option([], help="Operator calendar file(s) to load over the bundled ones."),
):
    """Replay an event file through the domain core alone and print the figures and 766 scores as JSON."""
    from models.figures import iter_lines, replay, score_document, to_json
    from models.tally import parse_period, period_key

    when = _parse_at(at)
    period = period or period_key("month", when)
    try:
        parse_period(period)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    ctx = _context(when, rules, calendar)
    replayed = replay(iter_lines(str(file)), ctx)
    sys.stdout.buffer.write(to_json(score_document(replayed, period, ctx)) + b"\n")
    if replayed.rejections:
        typer.echo(f"{len(replayed.rejections)} of {replayed.lines} lines rejected (see input.rejections)", err=True)


@app.command()
def simulate(
    out: Path = typer.Option(..., help="Where to write the JSON-lines event history."),
    seed: int = typer.Option(2026),
    agencies: int = typer.Option(20),
    communes: int = typer.Option(100),
    start: str = typer.Option("2026-01-05", help="First day (YYYY-MM-DD)."),
    end: str = typer.Option("2026-03-10T16:00:00+07:00", help="Last instant; later events are not written."),
    dossiers_per_day: float = typer.Option(400.0),
    lateness: float = typer.Option(0.06),
    online_share: float = typer.Option(0.55),
    sample: bool = typer.Option(False, help="Write the bundled sample instead (fixed settings)."),
):
    """Write a realistic, seeded event history of one province."""
    from datetime import date

    from models.events import event_to_json
    from streams.simulator import SAMPLE, SimulationConfig, Simulator

    if sample:
        cfg = SAMPLE
    else:
        cfg = SimulationConfig(seed=seed, agencies=agencies, communes=communes, start=date.fromisoformat(start),
                               end=_parse_at(end), dossiers_per_day=dossiers_per_day, lateness=lateness,
                               online_share=online_share)
    n = 0
    with open(out, "wb") as fh:
        for env in Simulator(cfg).events():
            fh.write(event_to_json(env) + b"\n")
            n += 1
    typer.echo(f"wrote {n} events to {out}", err=True)


@app.command()
def worker(
    broker: Optional[str] = typer.Option(None, help="Kafka bootstrap HOST:PORT (env ONESTOP_BROKER)."),
    web_port: Optional[int] = typer.Option(None, help="Loopback port for /metrics and the read API (env ONESTOP_WEB_PORT)."),
    data_dir: Optional[Path] = typer.Option(None, help="This worker's own state folder (env ONESTOP_DATA_DIR)."),
):
    """Run one stream worker (Faust) against a Kafka broker."""
    from streams.settings import WorkerSettings
    from streams.worker import run_worker

    run_worker(WorkerSettings.from_env(broker=broker, web_port=web_port, data_dir=data_dir))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
