"""The ``onestop`` command: batch audit commands (no broker needed) and the runtime (worker, demo, simulator)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from streams.tools.cli_common import (CAFILE_OPT, MECHANISM_OPT, PASSWORD_FILE_OPT, PROTOCOL_OPT, USERNAME_OPT, batch_gc,
                                       context, kafka_security, parse_at)

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Real-time monitoring of one-stop-shop dossiers and the 766 index.")


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

    when = parse_at(at)
    period = period or period_key("month", when)
    try:
        parse_period(period)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    ctx = context(when, rules, calendar)
    with batch_gc():
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
    units_out: Optional[Path] = typer.Option(None, help="Also write the province's unit names (.yaml or .csv registry)."),
):
    """Write a realistic, seeded event history of one province."""
    from datetime import date

    from models.events import event_to_json
    from streams.tools.simulator import SAMPLE, SimulationConfig, Simulator

    if sample:
        cfg = SAMPLE
    else:
        cfg = SimulationConfig(seed=seed, agencies=agencies, communes=communes, start=date.fromisoformat(start),
                               end=parse_at(end), dossiers_per_day=dossiers_per_day, lateness=lateness,
                               online_share=online_share)
    n = 0
    with open(out, "wb") as fh:
        for env in Simulator(cfg).events():
            fh.write(event_to_json(env) + b"\n")
            n += 1
    typer.echo(f"wrote {n} events to {out}", err=True)
    if units_out is not None:
        from streams.tools.simulator import unit_registry

        reg = unit_registry(cfg)
        units_out.write_bytes(reg.to_csv() if units_out.suffix.lower() == ".csv" else reg.to_yaml().encode())
        typer.echo(f"wrote {len(reg)} units to {units_out}", err=True)


@app.command()
def replay(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON-lines (or .csv) event history."),
    broker: str = typer.Option("127.0.0.1:9092", envvar="ONESTOP_BROKER", help="Kafka bootstrap HOST:PORT."),
    topic: str = typer.Option("dossier-events", help="Events topic."),
    dlq_topic: str = typer.Option("dossier-events-dlq", help="Where lines that cannot be published go, with the reason."),
    resume: bool = typer.Option(False, help="Skip what an earlier run of the same file already sent."),
    quiet: bool = typer.Option(False, help="No progress bar."),
    kafka_security_protocol: Optional[str] = PROTOCOL_OPT,
    kafka_sasl_mechanism: Optional[str] = MECHANISM_OPT,
    kafka_sasl_username: Optional[str] = USERNAME_OPT,
    kafka_sasl_password_file: Optional[Path] = PASSWORD_FILE_OPT,
    kafka_ssl_cafile: Optional[Path] = CAFILE_OPT,
):
    """Publish an event history in event-time order (backfill), with progress, rate and ETA; resumable."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from streams.tools.publisher import DossierEventPublisher
    from streams.tools.replay import replay_file

    security = kafka_security(kafka_security_protocol, kafka_sasl_mechanism, kafka_sasl_username,
                               kafka_sasl_password_file, kafka_ssl_cafile)
    with DossierEventPublisher(broker, topic, dlq_topic=dlq_topic, **security) as pub:
        if quiet:
            stats = replay_file(file, pub, resume=resume)
        else:
            columns = [TextColumn("replay"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]:>8.0f} ev/s"), TimeRemainingColumn()]
            with Progress(*columns, transient=False) as bar:
                task = bar.add_task("replay", total=None, rate=0.0)

                def tick(done: int, total: int) -> None:
                    if done % 500 == 0 or done == total:
                        elapsed = bar.tasks[task].elapsed or 1e-9
                        bar.update(task, completed=done, total=total, rate=done / elapsed)

                stats = replay_file(file, pub, resume=resume, progress=tick)
    for n, reason, message in stats.invalid[:50]:
        typer.echo(f"{file}:{n}: {reason}: {message}", err=True)
    typer.echo(f"{stats.sent} events published, {stats.skipped} skipped (already sent), "
               f"{len(stats.invalid)} invalid (sent to {dlq_topic})", err=True)
    raise typer.Exit(1 if stats.invalid else 0)


@app.command()
def topics(
    broker: str = typer.Option("127.0.0.1:9092", envvar="ONESTOP_BROKER", help="Kafka bootstrap HOST:PORT."),
    partitions: Optional[int] = typer.Option(None, help="Partitions of the events topic and its changelog (env ONESTOP_PARTITIONS)."),
    kafka_security_protocol: Optional[str] = PROTOCOL_OPT,
    kafka_sasl_mechanism: Optional[str] = MECHANISM_OPT,
    kafka_sasl_username: Optional[str] = USERNAME_OPT,
    kafka_sasl_password_file: Optional[Path] = PASSWORD_FILE_OPT,
    kafka_ssl_cafile: Optional[Path] = CAFILE_OPT,
):
    """Create the topics with their partition counts and configs (idempotent; checks existing ones)."""
    from streams.runtime.settings import WorkerSettings
    from streams.runtime.topics import ensure_topics

    kafka_security(kafka_security_protocol, kafka_sasl_mechanism, kafka_sasl_username, kafka_sasl_password_file,
                    kafka_ssl_cafile)  # refuse a broken configuration before connecting
    settings = WorkerSettings.from_env(broker=broker, partitions=partitions,
                                       kafka_security_protocol=kafka_security_protocol,
                                       kafka_sasl_mechanism=kafka_sasl_mechanism,
                                       kafka_sasl_username=kafka_sasl_username,
                                       kafka_sasl_password_file=kafka_sasl_password_file,
                                       kafka_ssl_cafile=kafka_ssl_cafile)
    for name, what in ensure_topics(broker, settings).items():
        typer.echo(f"{name}: {what}")


reference_app = typer.Typer(add_completion=False, no_args_is_help=True)
app.add_typer(reference_app, name="reference", help="Publish reference data (work calendar, unit registry) to every worker.")


@reference_app.command("calendar")
def publish_calendar(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Operator calendar document (YAML or JSON)."),
    broker: str = typer.Option("127.0.0.1:9092", envvar="ONESTOP_BROKER"),
    topic: str = typer.Option("work-calendar", help="The compacted calendar topic."),
    kafka_security_protocol: Optional[str] = PROTOCOL_OPT,
    kafka_sasl_mechanism: Optional[str] = MECHANISM_OPT,
    kafka_sasl_username: Optional[str] = USERNAME_OPT,
    kafka_sasl_password_file: Optional[Path] = PASSWORD_FILE_OPT,
    kafka_ssl_cafile: Optional[Path] = CAFILE_OPT,
):
    """Validate a calendar document and publish it; workers apply it if its version is newer."""
    from kafka import KafkaProducer

    from models.calendar import CalendarError, load_calendar_file

    try:
        doc = load_calendar_file(file)
    except CalendarError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    security = kafka_security(kafka_security_protocol, kafka_sasl_mechanism, kafka_sasl_username,
                               kafka_sasl_password_file, kafka_ssl_cafile)
    producer = KafkaProducer(bootstrap_servers=broker, acks="all", **security)
    producer.send(topic, key=f"{doc.calendar_id}:{doc.year}".encode(), value=file.read_bytes()).get(timeout=30)
    producer.close()
    typer.echo(f"published {doc.calendar_id}:{doc.year} version {doc.version} to {topic}")


@reference_app.command("units")
def publish_units(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Unit registry (YAML or CSV: code, name_vi, name_en, level, parent, valid_from, valid_to, merged_into), or the older YAML/JSON list of unit_code, name, level, province_code, parent_unit_code."),
    broker: str = typer.Option("127.0.0.1:9092", envvar="ONESTOP_BROKER"),
    topic: str = typer.Option("unit-registry", help="The compacted unit registry topic."),
    kafka_security_protocol: Optional[str] = PROTOCOL_OPT,
    kafka_sasl_mechanism: Optional[str] = MECHANISM_OPT,
    kafka_sasl_username: Optional[str] = USERNAME_OPT,
    kafka_sasl_password_file: Optional[Path] = PASSWORD_FILE_OPT,
    kafka_ssl_cafile: Optional[Path] = CAFILE_OPT,
):
    """Validate a unit registry and publish one record per unit (names in both languages and their history)."""
    from streams.tools.units_ref import UnitFileError, publish_unit_records, unit_file_records

    try:
        records = unit_file_records(file)
    except UnitFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    security = kafka_security(kafka_security_protocol, kafka_sasl_mechanism, kafka_sasl_username,
                               kafka_sasl_password_file, kafka_ssl_cafile)
    n = publish_unit_records(broker, topic, records, **security)
    typer.echo(f"published {n} units to {topic}")


@app.command()
def worker(
    broker: Optional[str] = typer.Option(None, help="Kafka bootstrap HOST:PORT (env ONESTOP_BROKER)."),
    web_port: Optional[int] = typer.Option(None, help="Loopback port for /metrics and the read API (env ONESTOP_WEB_PORT)."),
    data_dir: Optional[Path] = typer.Option(None, help="This worker's own state folder (env ONESTOP_DATA_DIR)."),
):
    """Run one stream worker (Faust) against a Kafka broker."""
    from streams.runtime.settings import WorkerSettings
    from streams.worker import run_worker

    run_worker(WorkerSettings.from_env(broker=broker, web_port=web_port, data_dir=data_dir))


@app.command()
def demo(
    duration: Optional[float] = typer.Option(None, help="Stop by itself after this many seconds (default: until Ctrl-C)."),
    speed: float = typer.Option(60.0, help="Simulated seconds per real second."),
    history_days: int = typer.Option(24, help="Days of recent history loaded first."),
    dossiers_per_day: float = typer.Option(300.0, help="Dossiers received per working day in the province."),
    agencies: int = typer.Option(20),
    communes: int = typer.Option(100),
    web_port: Optional[int] = typer.Option(None, help="Loopback port of the worker's /metrics and read API (default: a free one)."),
    live: bool = typer.Option(True, help="Live terminal view (--no-live prints one line per second)."),
    prometheus: bool = typer.Option(True, help="Also run Prometheus and Alertmanager when installed."),
    data_dir: Path = typer.Option(Path("var/demo"), help="Where the demo keeps its broker, worker and logs."),
    lang: str = typer.Option("vi", envvar="ONESTOP_LANG", help="Language of the live view: vi (Vietnamese) or en."),
):
    """Run everything on this machine: embedded broker, worker, simulated province, live view."""
    from streams.tools.demo import DemoOptions, run_demo

    raise typer.Exit(run_demo(DemoOptions(base_dir=data_dir, duration=duration, speed=speed, history_days=history_days,
                                          dossiers_per_day=dossiers_per_day, agencies=agencies, communes=communes,
                                          web_port=web_port, live_view=live, prometheus=prometheus, lang=lang)))


from monitoring.cli import dashboards_app, mixin_app  # noqa: E402  (light: no runtime imports)
from streams.tools.notify import notify_command  # noqa: E402

app.command("notify")(notify_command)

app.add_typer(mixin_app, name="mixin", help="Generate and check the rules, alerts, Alertmanager config and dashboards.")
app.add_typer(dashboards_app, name="dashboards", help="Push the dashboards to a Grafana through its HTTP API.")

from streams.tools.cli_risk import register as _register_risk  # noqa: E402  (at-risk, reconcile)

_register_risk(app)

from streams.tools.cli_import import import_app  # noqa: E402  (light: no runtime imports)

app.add_typer(import_app, name="import", help="Nhập dữ liệu hệ thống một cửa đã có (đồng bộ DVCQG) / import what one-stop systems already send (DVCQG sync).")

from streams.tools.cli_report import report_command  # noqa: E402  (light: imports models when run)

app.command("report")(report_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
