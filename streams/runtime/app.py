"""The Faust application of the worker: the dossier table, the agent on the events topic, the timers and the
rebalance hooks, with every client-library patch of ``streams.compat`` installed.

What it serves (``/metrics``, the read API) is attached by the composition root, ``streams.worker.build_app``.
"""

from __future__ import annotations

import os
from typing import Any

import faust

from streams.compat import install_patches
from streams.runtime.clock import Clock
from streams.runtime.journal import WriteJournal
from streams.runtime.reference import attach_reference
from streams.runtime.runtime import Runtime
from streams.runtime.security import faust_broker_settings, kafka_client_config
from streams.runtime.settings import WorkerSettings
from streams.runtime.sync_agent import attach_sync

__all__ = ["BATCH_MAX", "BATCH_WITHIN", "JOURNAL_CHECKPOINT_SECONDS", "JOURNAL_DIR", "build_stream_app"]

#: Records handed to the runtime at once (``stream.take_events``), and how long a partial batch may wait. A batch
#: reads the clock once, writes each touched dossier once and sends its alerts together, which removes part of
#: the per-record overhead that kept the worker at a few hundred events/s (docs/benchmarks.md). A partial batch
#: adds at most 20 ms to produce-to-/metrics latency (50 ms gave a p99 0.2-0.4 s higher at 1,000 ev/s,
#: docs/benchmarks.md). ONESTOP_BATCH_MAX=1 restores one record at a time.
BATCH_MAX = int(os.environ.get("ONESTOP_BATCH_MAX", "1000"))
BATCH_WITHIN = float(os.environ.get("ONESTOP_BATCH_WITHIN", "0.02"))
#: Linger of Faust's producer (changelog, alerts, DLQ) unless PRODUCER_LINGER is set: with Faust's default of 0
#: every changelog record became its own produce request and the producer buffer stalled the agent.
PRODUCER_LINGER_SECONDS = 0.02
#: Where the write journal lives in the data directory (outside Faust's table directory, which a discard removes),
#: and how often its confirmed entries are released: a crash repairs at most this many seconds of writes, plus
#: whatever the producer had not sent.
JOURNAL_DIR = "write-journal"
JOURNAL_CHECKPOINT_SECONDS = float(os.environ.get("ONESTOP_JOURNAL_CHECKPOINT_SECONDS", "5"))


def build_stream_app(settings: WorkerSettings, processor: Any, clock: Clock) -> faust.App:
    """A configured Faust app with the runtime attached as ``app.onestop_runtime`` (no web views yet)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.broker}",
        store=settings.store_url,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_disable_leader=True,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(0.5, min(3.0, settings.session_timeout / 4)),
        broker_rebalance_timeout=max(settings.session_timeout * 3, 30.0),
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        # web_host alone still binds 0.0.0.0; web_bind is what decides the listening interface.
        web_bind=settings.web_bind,
        # Advertised in the group metadata; must be unique per live worker (see streams.worker ghost eviction).
        web_host=settings.advertised_host,
        web_port=settings.web_port,
        # Faust's built-in pages would serve raw table values (/table/dossiers/<code>/) and internals; the only
        # per-dossier surface must be our read API, which exposes a fixed set of non-personal fields.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        autodiscover=False,
        stream_wait_empty=True,
        table_standby_replicas=settings.standby_replicas,
        # SASL/TLS for every consumer and producer Faust opens (streams.runtime.security; PLAINTEXT adds nothing).
        **faust_broker_settings(settings),
    )
    runtime = Runtime(settings, processor, clock)
    runtime.app = app
    if settings.store == "rocksdb":
        runtime.journal = WriteJournal(settings.data_dir / JOURNAL_DIR)
    app.onestop_runtime = runtime  # type: ignore[attr-defined]

    # Raw bytes both ways: value_type=bytes alone still leaves Faust's default JSON codec in place, which would
    # parse the CloudEvent before the processor sees it and re-encode what we dead-letter.
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    events = app.topic(settings.events, partitions=settings.partitions, **raw)
    runtime.dlq_topic = app.topic(settings.dlq, **raw)
    runtime.alerts_topic = app.topic(settings.alerts, **raw)
    table = app.Table(settings.table_name, key_type=str, value_type=bytes, partitions=settings.partitions,
                      options=settings.store_options)
    runtime.table = table
    client_config = kafka_client_config(settings)
    if settings.exactly_once:
        # Outputs in one transaction per source partition and batch (streams.runtime.transactions).
        runtime.use_transactions(client_config, table.changelog_topic.get_topic_name())

    if "PRODUCER_LINGER" not in os.environ:
        app.conf.producer_linger = PRODUCER_LINGER_SECONDS

    @app.agent(events, name="onestop.dossier-events")
    async def process(stream: Any) -> None:
        if BATCH_MAX <= 1:
            async for event in stream.events():
                await runtime.on_event(event)
            return
        async for batch in stream.take_events(BATCH_MAX, within=BATCH_WITHIN):
            await runtime.on_events(batch)

    @app.timer(interval=settings.clock_interval, name="onestop.deadline-clock")
    async def deadline_clock() -> None:
        await runtime.tick()

    @app.timer(interval=JOURNAL_CHECKPOINT_SECONDS, name="onestop.journal-checkpoint")
    async def journal_checkpoint() -> None:
        await runtime.checkpoint_journal()

    @app.on_partitions_revoked.connect
    async def _revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        runtime.on_revoked()
        if runtime.txn is not None:
            # Every assignment starts the partitions' producers afresh: one kept through a rebalance may have been
            # fenced meanwhile (a worker that missed a round while its partitions went elsewhere and came back),
            # and would fail its first commit and leave the partition unprocessed until the next rebalance.
            await runtime.txn.release(set(runtime.txn.producers))

    @app.on_partitions_assigned.connect
    async def _assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        owned = {tp.partition for tp in assigned if tp.topic == settings.events}
        runtime.on_assigned(owned)
        if runtime.txn is not None:  # a partition gone to another worker: its transactional id is that worker's now
            await runtime.txn.release(set(runtime.txn.producers) - owned)

    async def _recovered() -> None:
        actives = app.assignor.assigned_actives()
        await runtime.on_recovered({tp.partition for tp in actives if tp.topic == settings.events})

    table.on_recover(_recovered)

    attach_reference(app, runtime, settings, client_config)  # its consumer needs SASL/TLS too
    attach_sync(app, runtime, settings, events)  # dvcqg-sync records -> events (docs/dvcqg.md)
    install_patches(app, settings.events, runtime, {"bootstrap_servers": settings.broker, **client_config})
    return app
