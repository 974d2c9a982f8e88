"""The ``onestop`` command: batch audit commands (no broker needed) and the runtime (worker, demo, simulator)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from streams.tools.cli_common import (CAFILE_OPT, MECHANISM_OPT, PASSWORD_FILE_OPT, PROTOCOL_OPT, USERNAME_OPT, batch_gc,
                                       context, kafka_security, parse_at)

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Giám sát theo thời gian thực hồ sơ một cửa và Bộ chỉ số 766 / Real-time monitoring of "
                       "one-stop-shop dossiers and the 766 index.")

_FILE_HELP = "Tệp sự kiện JSON-lines / JSON-lines file of events."
_BROKER_HELP = "Máy chủ Kafka HOST:PORT / Kafka bootstrap HOST:PORT."
_AGENCIES_HELP = "Số sở, ngành cấp tỉnh / Number of province agencies (sở, ngành)."
_COMMUNES_HELP = "Số xã, phường / Number of communes and wards (xã, phường)."
_PER_DAY_HELP = ("Số hồ sơ tiếp nhận mỗi ngày làm việc trong tỉnh / Dossiers received per working day in the "
                 "province.")


@app.command()
def schema(write: bool = typer.Option(False, help=("Ghi bản lưu trong kho dưới models/schema/ thay vì in ra / Write the "
                                                  "committed copy under models/schema/ instead of printing."))):
    """In JSON Schema (2020-12) của hợp đồng sự kiện / Print the JSON Schema (2020-12) of the event contract."""
    from models.schema import SCHEMA_PATH, schema_json, write_schema

    if write:
        write_schema()
        typer.echo(f"wrote {SCHEMA_PATH}")
    else:
        sys.stdout.write(schema_json())


@app.command()
def validate(file: Path = typer.Argument(..., exists=True, dir_okay=False, help=_FILE_HELP)):
    """Kiểm tra từng dòng của tệp sự kiện theo hợp đồng; thoát mã 1, liệt kê số dòng và lý do / Check every line of \
an event file against the contract; exit 1 listing line numbers and reasons."""
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
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help=_FILE_HELP),
    at: Optional[str] = typer.Option(None, help=(
        "Thời điểm tính (ISO 8601; mặc định: bây giờ); sự kiện sau đó bị bỏ qua / Evaluate as of this instant "
        "(ISO 8601; default: now). Later events are left out.")),
    period: Optional[str] = typer.Option(None, help=(
        "Kỳ: month:2026-03, quarter:2026-Q1 hoặc year:2026 (mặc định: tháng của --at) / month:2026-03, "
        "quarter:2026-Q1 or year:2026 (default: the month of --at).")),
    rules: Optional[Path] = typer.Option(None, exists=True, help=(
        "Tệp YAML thay quy tắc mặc định / YAML file overriding the default domain rules.")),
    calendar: list[Path] = typer.Option([], help=(
        "Tệp lịch làm việc của đơn vị vận hành, nạp thêm lên lịch có sẵn / Operator calendar file(s) to load over "
        "the bundled ones.")),
    jobs: int = typer.Option(1, min=0, help=(
        "Số tiến trình chạy song song, mỗi tiến trình một phần hồ sơ; 0 = mọi nhân CPU; kết quả như nhau / Processes "
        "replaying in parallel, a share of the dossiers each; 0 = every CPU core; the same result.")),
):
    """Chạy lại tệp sự kiện chỉ qua lõi nghiệp vụ, in số liệu và điểm 766 dạng JSON / Replay an event file through \
the domain core alone and print the figures and 766 scores as JSON."""
    from models.figures import iter_lines, replay, score_document, to_json
    from models.replay_shares import merged_document
    from models.tally import parse_period, period_key
    from streams.tools.score_jobs import available_cores, replay_in_shares

    when = parse_at(at)
    period = period or period_key("month", when)
    try:
        parse_period(period)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    ctx = context(when, rules, calendar)
    jobs = jobs or available_cores()
    with batch_gc():
        if jobs == 1:
            replayed = replay(iter_lines(str(file)), ctx)
            doc = score_document(replayed, period, ctx)
        else:
            doc = merged_document(replay_in_shares(file, ctx, jobs), period, ctx.now, ctx)
        sys.stdout.buffer.write(to_json(doc) + b"\n")
    report = doc["input"]
    if report["rejected"]:
        typer.echo(f"{report['rejected']} of {report['lines']} lines rejected (see input.rejections)", err=True)


@app.command()
def simulate(
    out: Path = typer.Option(..., help=("Nơi ghi lịch sử sự kiện JSON-lines / Where to write the JSON-lines event "
                                        "history.")),
    seed: int = typer.Option(2026, help=("Hạt giống ngẫu nhiên: cùng hạt giống, cùng lịch sử / Random seed: the same "
                                         "seed gives the same history.")),
    agencies: int = typer.Option(20, help=_AGENCIES_HELP),
    communes: int = typer.Option(100, help=_COMMUNES_HELP),
    start: str = typer.Option("2026-01-05", help="Ngày đầu (YYYY-MM-DD) / First day (YYYY-MM-DD)."),
    end: str = typer.Option("2026-03-10T16:00:00+07:00", help=("Thời điểm cuối; sự kiện sau đó không được ghi / Last "
                                                                "instant; later events are not written.")),
    dossiers_per_day: float = typer.Option(400.0, help=_PER_DAY_HELP),
    lateness: float = typer.Option(0.06, help=("Mức trễ hạn chung (tỷ lệ, ví dụ 0.06); mỗi đơn vị có thêm mức riêng / "
                                               "Overall lateness (a share, e.g. 0.06); each unit adds its own.")),
    online_share: float = typer.Option(0.55, help=("Tỷ lệ hồ sơ nộp trực tuyến (0.55 = 55 %) / Share of dossiers "
                                                   "submitted online (0.55 = 55 %).")),
    sample: bool = typer.Option(False, help=("Ghi bộ dữ liệu mẫu có sẵn thay vào đó (thiết lập cố định) / Write the "
                                             "bundled sample instead (fixed settings).")),
    units_out: Optional[Path] = typer.Option(None, help=("Ghi thêm tên các đơn vị của tỉnh (danh mục đơn vị .yaml hoặc "
                                                         ".csv) / Also write the province's unit names (.yaml or .csv "
                                                         "registry).")),
):
    """Ghi lịch sử sự kiện sát thực tế, theo hạt giống, của một tỉnh / Write a realistic, seeded event history of \
one province."""
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
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help=("Lịch sử sự kiện JSON-lines (hoặc .csv) / "
                                                                        "JSON-lines (or .csv) event history.")),
    broker: str = typer.Option("127.0.0.1:9092", envvar="ONESTOP_BROKER", help=_BROKER_HELP),
    topic: str = typer.Option("dossier-events", help="Chủ đề sự kiện / Events topic."),
    dlq_topic: str = typer.Option("dossier-events-dlq", help=("Hàng đợi lỗi nhận các dòng không gửi được, kèm lý do / "
                                                              "Where lines that cannot be published go, with the "
                                                              "reason.")),
    resume: bool = typer.Option(False, help=("Bỏ qua những gì lần chạy trước với cùng tệp đã gửi / Skip what an "
                                             "earlier run of the same file already sent.")),
    quiet: bool = typer.Option(False, help="Không hiện thanh tiến độ / No progress bar."),
    kafka_security_protocol: Optional[str] = PROTOCOL_OPT,
    kafka_sasl_mechanism: Optional[str] = MECHANISM_OPT,
    kafka_sasl_username: Optional[str] = USERNAME_OPT,
    kafka_sasl_password_file: Optional[Path] = PASSWORD_FILE_OPT,
    kafka_ssl_cafile: Optional[Path] = CAFILE_OPT,
):
    """Gửi lịch sử sự kiện theo thứ tự thời gian sự kiện (nạp bù), có tiến độ, tốc độ và thời gian còn lại; chạy \
tiếp được / Publish an event history in event-time order (backfill), with progress, rate and ETA; resumable."""
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
    broker: str = typer.Option("127.0.0.1:9092", envvar="ONESTOP_BROKER", help=_BROKER_HELP),
    partitions: Optional[int] = typer.Option(None, help=("Số phân vùng của chủ đề sự kiện và changelog của nó (env "
                                                         "ONESTOP_PARTITIONS) / Partitions of the events topic and its "
                                                         "changelog (env ONESTOP_PARTITIONS).")),
    kafka_security_protocol: Optional[str] = PROTOCOL_OPT,
    kafka_sasl_mechanism: Optional[str] = MECHANISM_OPT,
    kafka_sasl_username: Optional[str] = USERNAME_OPT,
    kafka_sasl_password_file: Optional[Path] = PASSWORD_FILE_OPT,
    kafka_ssl_cafile: Optional[Path] = CAFILE_OPT,
):
    """Tạo các chủ đề với số phân vùng và cấu hình (lũy đẳng; kiểm tra chủ đề đã có) / Create the topics with \
their partition counts and configs (idempotent; checks existing ones)."""
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
app.add_typer(reference_app, name="reference", help=("Gửi dữ liệu tham chiếu (lịch làm việc, danh mục đơn vị) tới mọi "
                                                     "worker / Publish reference data (work calendar, unit registry) "
                                                     "to every worker."))


@reference_app.command("calendar")
def publish_calendar(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help=("Tài liệu lịch làm việc của đơn vị vận hành "
                                                                        "(YAML hoặc JSON) / Operator calendar document "
                                                                        "(YAML or JSON).")),
    broker: str = typer.Option("127.0.0.1:9092", envvar="ONESTOP_BROKER", help=_BROKER_HELP),
    topic: str = typer.Option("work-calendar", help="Chủ đề lịch làm việc (compacted) / The compacted calendar topic."),
    kafka_security_protocol: Optional[str] = PROTOCOL_OPT,
    kafka_sasl_mechanism: Optional[str] = MECHANISM_OPT,
    kafka_sasl_username: Optional[str] = USERNAME_OPT,
    kafka_sasl_password_file: Optional[Path] = PASSWORD_FILE_OPT,
    kafka_ssl_cafile: Optional[Path] = CAFILE_OPT,
):
    """Kiểm tra tài liệu lịch làm việc rồi gửi đi; worker áp dụng nếu phiên bản mới hơn / Validate a calendar \
document and publish it; workers apply it if its version is newer."""
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
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help=(
        "Danh mục đơn vị (YAML hoặc CSV: code, name_vi, name_en, level, parent, valid_from, valid_to, merged_into), "
        "hoặc danh sách YAML/JSON kiểu cũ gồm unit_code, name, level, province_code, parent_unit_code / Unit registry "
        "(YAML or CSV: code, name_vi, name_en, level, parent, valid_from, valid_to, merged_into), or the older "
        "YAML/JSON list of unit_code, name, level, province_code, parent_unit_code.")),
    broker: str = typer.Option("127.0.0.1:9092", envvar="ONESTOP_BROKER", help=_BROKER_HELP),
    topic: str = typer.Option("unit-registry", help=("Chủ đề danh mục đơn vị (compacted) / The compacted unit registry "
                                                     "topic.")),
    kafka_security_protocol: Optional[str] = PROTOCOL_OPT,
    kafka_sasl_mechanism: Optional[str] = MECHANISM_OPT,
    kafka_sasl_username: Optional[str] = USERNAME_OPT,
    kafka_sasl_password_file: Optional[Path] = PASSWORD_FILE_OPT,
    kafka_ssl_cafile: Optional[Path] = CAFILE_OPT,
):
    """Kiểm tra danh mục đơn vị và gửi mỗi đơn vị một bản ghi (tên bằng hai thứ tiếng và lịch sử) / Validate a \
unit registry and publish one record per unit (names in both languages and their history)."""
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
    broker: Optional[str] = typer.Option(None, help=("Máy chủ Kafka HOST:PORT (env ONESTOP_BROKER) / Kafka bootstrap "
                                                     "HOST:PORT (env ONESTOP_BROKER).")),
    web_port: Optional[int] = typer.Option(None, help=("Cổng loopback cho /metrics và API đọc (env ONESTOP_WEB_PORT) / "
                                                       "Loopback port for /metrics and the read API (env "
                                                       "ONESTOP_WEB_PORT).")),
    data_dir: Optional[Path] = typer.Option(None, help=("Thư mục trạng thái riêng của worker này (env ONESTOP_DATA_DIR) "
                                                        "/ This worker's own state folder (env ONESTOP_DATA_DIR).")),
):
    """Chạy một worker xử lý luồng (Faust) với một broker Kafka / Run one stream worker (Faust) against a Kafka \
broker."""
    from streams.runtime.settings import WorkerSettings
    from streams.worker import run_worker

    run_worker(WorkerSettings.from_env(broker=broker, web_port=web_port, data_dir=data_dir))


@app.command()
def demo(
    duration: Optional[float] = typer.Option(None, help=("Tự dừng sau số giây này (mặc định: đến khi bấm Ctrl-C) / "
                                                         "Stop by itself after this many seconds (default: until "
                                                         "Ctrl-C).")),
    speed: float = typer.Option(60.0, help="Số giây mô phỏng cho mỗi giây thực / Simulated seconds per real second."),
    history_days: int = typer.Option(24, help="Số ngày lịch sử gần đây nạp trước / Days of recent history loaded first."),
    dossiers_per_day: float = typer.Option(300.0, help=_PER_DAY_HELP),
    agencies: int = typer.Option(20, help=_AGENCIES_HELP),
    communes: int = typer.Option(100, help=_COMMUNES_HELP),
    web_port: Optional[int] = typer.Option(None, help=("Cổng loopback cho /metrics và API đọc của worker (mặc định: một "
                                                       "cổng còn trống) / Loopback port of the worker's /metrics and "
                                                       "read API (default: a free one).")),
    live: bool = typer.Option(True, help=("Màn hình theo dõi trực tiếp (--no-live in mỗi giây một dòng) / Live terminal "
                                          "view (--no-live prints one line per second).")),
    prometheus: bool = typer.Option(True, help=("Chạy cả Prometheus và Alertmanager nếu đã cài / Also run Prometheus "
                                                "and Alertmanager when installed.")),
    data_dir: Path = typer.Option(Path("var/demo"), help=("Nơi bản demo giữ broker, worker và nhật ký / Where the demo "
                                                          "keeps its broker, worker and logs.")),
    lang: str = typer.Option("vi", envvar="ONESTOP_LANG", help=("Ngôn ngữ của màn hình trực tiếp: vi (tiếng Việt) hoặc "
                                                                "en / Language of the live view: vi (Vietnamese) or "
                                                                "en.")),
):
    """Chạy mọi thứ trên máy này: broker nhúng, worker, tỉnh mô phỏng, màn hình trực tiếp / Run everything on \
this machine: embedded broker, worker, simulated province, live view."""
    from streams.tools.demo import DemoOptions, run_demo

    raise typer.Exit(run_demo(DemoOptions(base_dir=data_dir, duration=duration, speed=speed, history_days=history_days,
                                          dossiers_per_day=dossiers_per_day, agencies=agencies, communes=communes,
                                          web_port=web_port, live_view=live, prometheus=prometheus, lang=lang)))


from monitoring.cli import dashboards_app, mixin_app  # noqa: E402  (light: no runtime imports)
from streams.tools.notify import notify_command  # noqa: E402

# The command's own docstring (streams/tools/notify.py) stays the English part, after the Vietnamese.
app.command("notify", help=("Chuyển cảnh báo theo từng hồ sơ của các worker (dossier-alerts) tới Alertmanager, gom "
                            "theo đơn vị / " + (notify_command.__doc__ or "")))(notify_command)

app.add_typer(mixin_app, name="mixin", help=("Sinh và kiểm tra quy tắc, cảnh báo, cấu hình Alertmanager và dashboard / "
                                             "Generate and check the rules, alerts, Alertmanager config and "
                                             "dashboards."))
app.add_typer(dashboards_app, name="dashboards", help=("Đẩy dashboard lên Grafana qua HTTP API / Push the dashboards "
                                                       "to a Grafana through its HTTP API."))

from streams.tools.cli_risk import register as _register_risk  # noqa: E402  (at-risk, reconcile)

_register_risk(app)

from streams.tools.cli_import import import_app  # noqa: E402  (light: no runtime imports)

app.add_typer(import_app, name="import", help=("Nhập dữ liệu hệ thống một cửa đã có (đồng bộ DVCQG) / import what "
                                               "one-stop systems already send (DVCQG sync)."))

from streams.tools.cli_report import report_command  # noqa: E402  (light: imports models when run)

app.command("report")(report_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
