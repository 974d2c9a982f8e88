"""Worker settings: one dataclass fed by defaults, then ``ONESTOP_*`` environment variables, then CLI flags.

Compose files and systemd units configure through the environment, developers and tests through flags; both
must land in the same typed object so the rest of the runtime never reads ``os.environ`` itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from models.i18n import DEFAULT_LANG, LANGS
from streams.runtime.security import PROTOCOLS as KAFKA_PROTOCOLS
from streams.runtime.security import SASL_MECHANISMS

__all__ = ["WorkerSettings", "add_arguments", "settings_from_args", "ENV_PREFIX"]

ENV_PREFIX = "ONESTOP_"
STORES = ("rocksdb", "memory")
GUARANTEES = ("exactly_once", "at_least_once")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker needs to know; topic names are given without the prefix."""

    broker: str = "127.0.0.1:9092"
    web_port: int = 6066
    # Loopback by default: the read API and /metrics must never be exposed by accident. A container that is
    # scraped from another host sets ONESTOP_WEB_BIND=0.0.0.0 knowingly.
    web_bind: str = "127.0.0.1"
    # The URL other workers and the group metadata know this worker by; derived from web_bind when empty.
    web_host: str | None = None
    data_dir: Path = Path(".onestop-data")
    store: str = "rocksdb"
    # RocksDB memory per partition's database (Faust opens one per owned partition). Faust's own defaults are a
    # 2 GiB block cache and three 64 MiB memtables per database: at four partitions that lets RSS grow by gigabytes
    # with the dossiers held, although the state needs no cache to be correct (docs/benchmarks.md, memory). A read
    # that misses this cache is served from the OS page cache, which is not the worker's RSS: 4 MiB and two 4 MiB
    # memtables held 1 M dossiers in ~50 MiB less than 16 and 2 x 8, for a throughput 2-4 % lower in two
    # interleaved runs, within this machine's noise.
    rocksdb_block_cache_mib: int = 4
    rocksdb_write_buffer_mib: int = 4
    rocksdb_write_buffers: int = 2
    # Where each partition's deadline schedule (every open dossier's next check) lives: "rocksdb" keeps it in a
    # scratch database beside the table (streams.runtime.stored_schedule), "memory" in Python objects (~215-440 bytes per
    # open dossier). Only a RocksDB table store uses "rocksdb"; the memory store keeps the schedule in memory. The
    # alerts the worker announced (one entry per dossier with an active alert) follow the same setting.
    schedule_store: str = "rocksdb"
    # Faust standby replicas: copies of other workers' table partitions kept up to date from the changelog, for a
    # faster takeover. Off by default, as in Kafka Streams: tallies are rebuilt from the table on takeover anyway,
    # and a standby whose local store is ahead of a changelog the broker lost stops Faust with ConsistencyError,
    # which the active-side repair (streams.compat.repairs) does not cover.
    standby_replicas: int = 0
    # "exactly_once": the changelog records, alerts, dead letters and consumed offsets of each batch and clock tick
    # are committed in one Kafka transaction per source partition (streams.runtime.transactions; readers use
    # isolation.level=read_committed). "at_least_once": the path for brokers without transactions (InitProducerId
    # refused): outputs may repeat after a crash or a rebalance, as documented in docs/reliability.md 5. The memory
    # store always runs at least once (its table writes go through Faust's table).
    processing_guarantee: str = "exactly_once"
    partitions: int = 4
    reference_partitions: int = 1
    replication_factor: int = 1
    topic_prefix: str = ""
    events_topic: str = "dossier-events"
    dlq_topic: str = "dossier-events-dlq"
    alerts_topic: str = "dossier-alerts"
    units_topic: str = "unit-registry"
    calendar_topic: str = "work-calendar"
    # National-portal sync bodies forwarded as records by an integration platform (streams.runtime.sync_agent).
    sync_topic: str = "dvcqg-sync"
    # Sender profile (YAML, docs/dvcqg.md) applied to the sync bodies of both entry points; none = the defaults.
    dvcqg_profile: Path | None = None
    app_id: str = "onestop-monitor"
    session_timeout: float = 10.0
    clock_interval: float = 1.0
    # Seconds the agent may receive nothing while owned source partitions hold unread records before the worker
    # resumes and re-seeks them (streams.compat.repairs.watch_stalled_source).
    stall_seconds: float = 20.0
    # Garbage collector (streams.runtime.heap): seconds between freezes of what survived into the permanent
    # generation (0: CPython's own policy), and between full collections of everything (0: never after start-up).
    gc_freeze_seconds: float = 1.0
    gc_full_seconds: float = 3600.0
    # Largest share of the worker's time the background at-risk scan may take (streams.serve.risk): a scan that took
    # s seconds is reused by scrapes for max(15 s, s * (1 - share) / share).
    risk_scan_share: float = 0.2
    # Deterministic time for tests and demos: an ISO-8601 instant (frozen clock) or a file holding one.
    fake_now: str | None = None
    clock_file: Path | None = None
    # Enables POST /test/clock so a test process can move a frozen clock; refused unless the clock is fake.
    test_mode: bool = False
    # "module:attribute" of a processor factory; empty means streams.runtime.processor.default_processor.
    processor: str | None = None
    # The national portal's published figures (docs/reconcile.md): a saved response or CSV, or a directory of them,
    # exported apart from ours as onestop_official_* (streams.serve.risk); re-read when a file's mtime changes.
    official_figures: Path | None = None
    # Language of what the worker writes for people when a request does not ask (`?lang=`): CSV headers, states and
    # unit names in the read API and /figures. "vi" (the default) or "en" (models/catalogue/messages.yaml).
    lang: str = DEFAULT_LANG
    log_level: str = "info"
    # Remove group members that advertise this worker's own URL before joining (see streams.worker).
    evict_stale_members: bool = True
    loop: str = "uvloop"
    # -- security (streams/runtime/security.py; docs/reliability.md). Secrets are left out of repr so a logged settings
    # object cannot leak them; the *_file variants read them from a mounted secret instead of the environment.
    # Bearer token required on the read API and /figures (and /metrics with metrics_require_token); none = open.
    api_token: str | None = field(default=None, repr=False)
    api_token_file: Path | None = None
    metrics_require_token: bool = False
    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; SASL mechanisms PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        if self.store not in STORES:
            raise ValueError(f"store must be one of {STORES}, got {self.store!r}")
        if self.schedule_store not in STORES:
            raise ValueError(f"schedule_store must be one of {STORES}, got {self.schedule_store!r}")
        if self.processing_guarantee not in GUARANTEES:
            raise ValueError(f"processing_guarantee must be one of {GUARANTEES}, got {self.processing_guarantee!r}")
        if self.lang not in LANGS:
            raise ValueError(f"lang must be one of {LANGS}, got {self.lang!r}")
        if self.partitions < 1 or self.reference_partitions < 1:
            raise ValueError("partition counts must be >= 1")
        if self.standby_replicas < 0:
            raise ValueError("standby_replicas must be >= 0")
        if min(self.rocksdb_block_cache_mib, self.rocksdb_write_buffer_mib, self.rocksdb_write_buffers) < 1:
            raise ValueError("rocksdb_block_cache_mib, rocksdb_write_buffer_mib and rocksdb_write_buffers must be >= 1")
        if self.session_timeout <= 0 or self.clock_interval <= 0 or self.stall_seconds <= 0:
            raise ValueError("session_timeout, clock_interval and stall_seconds must be > 0")
        if self.gc_freeze_seconds < 0 or self.gc_full_seconds < 0:
            raise ValueError("gc_freeze_seconds and gc_full_seconds must be >= 0")
        if not 0 < self.risk_scan_share <= 1:
            raise ValueError("risk_scan_share must be > 0 and <= 1")
        if self.kafka_security_protocol.upper() not in KAFKA_PROTOCOLS:
            raise ValueError(f"kafka_security_protocol must be one of {KAFKA_PROTOCOLS}, got {self.kafka_security_protocol!r}")
        if self.kafka_sasl_mechanism.upper() not in SASL_MECHANISMS:
            raise ValueError(f"kafka_sasl_mechanism must be one of {SASL_MECHANISMS}, got {self.kafka_sasl_mechanism!r}")

    # -- derived names -------------------------------------------------------------------------------------------
    def topic(self, base: str) -> str:
        return f"{self.topic_prefix}{base}"

    @property
    def events(self) -> str:
        return self.topic(self.events_topic)

    @property
    def dlq(self) -> str:
        return self.topic(self.dlq_topic)

    @property
    def alerts(self) -> str:
        return self.topic(self.alerts_topic)

    @property
    def units(self) -> str:
        return self.topic(self.units_topic)

    @property
    def calendar(self) -> str:
        return self.topic(self.calendar_topic)

    @property
    def sync(self) -> str:
        return self.topic(self.sync_topic)

    @property
    def table_name(self) -> str:
        return "dossiers"

    @property
    def changelog(self) -> str:
        """Faust names changelogs ``{app_id}-{table}-changelog``; we pre-create it with the same partitions."""
        return f"{self.app_id}-{self.table_name}-changelog"

    @property
    def exactly_once(self) -> bool:
        """Whether outputs are written in transactions: asked for, and a store the runtime writes itself."""
        return self.processing_guarantee == "exactly_once" and self.store == "rocksdb"

    @property
    def store_url(self) -> str:
        return "rocksdb://" if self.store == "rocksdb" else "memory://"

    @property
    def store_options(self) -> dict[str, int]:
        """Options for the table's store (Faust passes them to ``RocksDBOptions``); none for the memory store."""
        if self.store != "rocksdb":
            return {}
        mib = 1024 * 1024
        return {"block_cache_size": self.rocksdb_block_cache_mib * mib,
                "write_buffer_size": self.rocksdb_write_buffer_mib * mib,
                "max_write_buffer_number": self.rocksdb_write_buffers}

    @property
    def advertised_host(self) -> str:
        if self.web_host:
            return self.web_host
        if self.web_bind in ("0.0.0.0", "::", ""):
            return socket.gethostname()
        return self.web_bind

    @property
    def web_url(self) -> str:
        return f"http://{self.advertised_host}:{self.web_port}"

    def replace(self, **changes: Any) -> "WorkerSettings":
        return dataclasses.replace(self, **changes)

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "WorkerSettings":
        """Defaults, then ``ONESTOP_<FIELD>`` variables, then explicit keyword overrides (``None`` = not given)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, raw)
        # Short aliases documented for operators.
        for alias, name in (("ONESTOP_BROKER", "broker"), ("ONESTOP_STORE", "store")):
            if env.get(alias):
                values[name] = _coerce(name, env[alias])
        values.update({k: _coerce(k, v) for k, v in overrides.items() if v is not None})
        return cls(**values)


_BOOL_TRUE = {"1", "true", "yes", "on"}


def _coerce(name: str, value: Any) -> Any:
    kind = _FIELD_TYPES[name]
    if not isinstance(value, str):
        return Path(value) if kind is Path else value
    if kind is bool:
        return value.strip().lower() in _BOOL_TRUE
    if kind is int:
        return int(value)
    if kind is float:
        return float(value)
    if kind is Path:
        return Path(value)
    return value


def _field_type(f: dataclasses.Field[Any]) -> type:
    text = str(f.type)
    for kind, names in ((bool, ("bool",)), (int, ("int",)), (float, ("float",)), (Path, ("Path", "Path | None"))):
        if text in names:
            return kind
    return str


_FIELD_TYPES = {f.name: _field_type(f) for f in fields(WorkerSettings)}


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one ``--flag`` per setting, all defaulting to ``None`` so the environment still applies."""
    for name, kind in _FIELD_TYPES.items():
        if kind is bool:
            parser.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction, default=None)
        else:
            parser.add_argument(_flag(name), dest=name, type=kind, default=None, metavar=name.upper())
    return parser


def settings_from_args(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> WorkerSettings:
    parser = add_arguments(argparse.ArgumentParser(prog="python -m streams.worker", description=__doc__))
    args = parser.parse_args(argv)
    return WorkerSettings.from_env(env, **{k: v for k, v in vars(args).items()})
