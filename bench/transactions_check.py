"""What Kafka transactions give on the embedded broker, and what Faust's ``exactly_once`` puts inside them.

The design note of docs/reliability.md section 5 rests on these checks; run them again after a broker or client
upgrade:

    .venv/bin/python bench/transactions_check.py            # broker checks (~10 s)
    .venv/bin/python bench/transactions_check.py --faust    # + Faust's processing_guarantee="exactly_once" (~40 s)
    .venv/bin/python bench/transactions_check.py --cost     # + the cost of one transaction per batch (~30 s)

Broker checks (aiokafka's transactional producer): commit and abort; a read_committed consumer hides aborted
records and those of a transaction still open; ``send_offsets_to_transaction`` commits the group's offsets with the
transaction and not on abort; a second producer with the same transactional id fences the first (a zombie's
commit fails); a producer killed with SIGKILL inside a transaction leaves nothing visible, and the next producer
with its id aborts it; commit and abort markers survive a broker restart.

The Faust probe runs a worker with ``processing_guarantee="exactly_once"`` and a 30 s commit interval whose agent
writes a table key and sends two records to an output topic per event, and reads both topics back while the
transaction is open and after a ``kill -9``: whatever a read_committed consumer already sees was sent outside the
transaction.

Everything binds to 127.0.0.1; the broker and the worker are started here and ended by their PIDs; every wait is
bounded. Prints one line per check and a JSON summary; exit status 1 if a broker check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from streams.tools.broker import EmbeddedBroker, free_port  # noqa: E402


async def read_all(bootstrap: str, topic: str, isolation: str, seconds: float = 1.5) -> list[bytes]:
    """Every value of ``topic`` from the start that a consumer with ``isolation`` sees within ``seconds``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, isolation_level=isolation, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[bytes] = []
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                out += [r.value for r in records]
    finally:
        await consumer.stop()
    return out


async def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, n, 1) for t, n in topics.items()])
    finally:
        await admin.close()


async def _producer(bootstrap: str, transactional_id: str | None = None) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id)
    await producer.start()
    return producer


async def broker_checks(bootstrap: str) -> dict[str, Any]:
    """The checks that need no process of their own; the kill and restart checks follow in ``main``."""
    await create_topics(bootstrap, {"src": 2, "out": 2, "fence": 1})
    checks: dict[str, Any] = {}
    p = await _producer(bootstrap, "check-a")
    try:
        async with p.transaction():
            await p.send_and_wait("out", b"committed-1", partition=0)
        await p.begin_transaction()
        await p.send_and_wait("out", b"aborted-1", partition=0)
        await p.abort_transaction()
        rc, ru = await read_all(bootstrap, "out", "read_committed"), await read_all(bootstrap, "out", "read_uncommitted")
        checks["read_committed_hides_aborted"] = rc == [b"committed-1"] and b"aborted-1" in ru

        await p.begin_transaction()
        await p.send_and_wait("out", b"open-1", partition=1)
        hidden = b"open-1" not in await read_all(bootstrap, "out", "read_committed")
        await p.commit_transaction()
        shown = b"open-1" in await read_all(bootstrap, "out", "read_committed")
        checks["read_committed_hides_open_transaction"] = hidden and shown

        plain = await _producer(bootstrap)
        for i in range(10):
            await plain.send_and_wait("src", str(i).encode(), partition=0)
        await plain.stop()
        tp = TopicPartition("src", 0)
        await p.begin_transaction()
        await p.send_and_wait("out", b"with-offsets-aborted", partition=0)
        await p.send_offsets_to_transaction({tp: 4}, "check-group")
        await p.abort_transaction()
        after_abort = await _committed(bootstrap, "check-group", tp)
        await p.begin_transaction()
        await p.send_offsets_to_transaction({tp: 7}, "check-group")
        await p.commit_transaction()
        after_commit = await _committed(bootstrap, "check-group", tp)
        checks["offsets_commit_with_the_transaction"] = after_abort is None and after_commit == 7
        checks["_offsets"] = {"after_abort": after_abort, "after_commit": after_commit}
    finally:
        await p.stop()

    zombie, successor = await _producer(bootstrap, "check-fence"), None
    try:
        await zombie.begin_transaction()
        await zombie.send_and_wait("fence", b"zombie", partition=0)
        successor = await _producer(bootstrap, "check-fence")
        try:
            await zombie.send_and_wait("fence", b"zombie-2", partition=0)
            await zombie.commit_transaction()
            checks["zombie_fenced"] = False
        except Exception as exc:  # ProducerFenced (or its send failing first)
            checks["zombie_fenced"] = type(exc).__name__
        async with successor.transaction():
            await successor.send_and_wait("fence", b"successor", partition=0)
        seen = await read_all(bootstrap, "fence", "read_committed")
        checks["zombie_fenced"] = bool(checks["zombie_fenced"]) and seen == [b"successor"]
    finally:
        for prod in (zombie, successor):
            if prod is not None:
                try:
                    await prod.stop()
                except Exception:  # a fenced producer may refuse its own stop
                    pass
    return checks


async def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


async def _open_transaction_then_wait(bootstrap: str) -> None:
    """Child process: a transaction left open, then killed from outside."""
    p = await _producer(bootstrap, "check-killed")
    await p.begin_transaction()
    await p.send_and_wait("fence", b"killed-inside", partition=0)
    print("READY", flush=True)
    await asyncio.sleep(300)


async def after_kill(bootstrap: str) -> dict[str, Any]:
    before = b"killed-inside" not in await read_all(bootstrap, "fence", "read_committed")
    p = await _producer(bootstrap, "check-killed")  # init aborts what the killed producer left open
    try:
        async with p.transaction():
            await p.send_and_wait("fence", b"after-kill", partition=0)
        await p.begin_transaction()
        await p.send_and_wait("out", b"aborted-before-restart", partition=0)
        await p.abort_transaction()
    finally:
        await p.stop()
    seen = await read_all(bootstrap, "fence", "read_committed")
    return {"killed_transaction_invisible": before and b"killed-inside" not in seen and b"after-kill" in seen}


async def after_restart(bootstrap: str) -> dict[str, Any]:
    rc = await read_all(bootstrap, "out", "read_committed")
    ru = await read_all(bootstrap, "out", "read_uncommitted")
    p = await _producer(bootstrap, "check-killed")
    try:
        async with p.transaction():
            await p.send_and_wait("out", b"after-restart", partition=0)
    finally:
        await p.stop()
    rc2 = await read_all(bootstrap, "out", "read_committed")
    return {"markers_survive_broker_restart": (sorted(rc) == [b"committed-1", b"open-1"]
                                               and b"aborted-before-restart" in ru and b"after-restart" in rc2)}


def run_broker_checks(workdir: Path) -> dict[str, Any]:
    """Every broker check on a broker of its own in ``workdir`` (started and stopped here)."""
    broker = EmbeddedBroker(workdir / "broker").start()
    try:
        checks = asyncio.run(broker_checks(broker.bootstrap))
        child = subprocess.Popen([sys.executable, __file__, "--child", broker.bootstrap], stdout=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            ready = child.stdout.readline() == b"READY\n" if child.stdout else False
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        checks.update(asyncio.run(after_kill(broker.bootstrap)))
        checks["killed_transaction_invisible"] = ready and checks["killed_transaction_invisible"]
        port = broker.port
        broker.stop()
        broker = EmbeddedBroker(workdir / "broker", port=port).start()
        checks.update(asyncio.run(after_restart(broker.bootstrap)))
    finally:
        broker.stop()
    return checks


FAUST_APP = textwrap.dedent('''
    import os
    import faust
    app = faust.App("eoscheck", broker="kafka://" + os.environ["CHECK_BOOTSTRAP"], store="rocksdb://",
                    datadir=os.environ["CHECK_DATADIR"], processing_guarantee="exactly_once",
                    broker_commit_interval=30.0, topic_partitions=2, topic_disable_leader=True,
                    web_port=int(os.environ["CHECK_WEB_PORT"]), web_bind="127.0.0.1", broker_session_timeout=6)
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    src, out = app.topic("fsrc", partitions=2, **raw), app.topic("fout", **raw)
    table = app.Table("ft", key_type=str, value_type=bytes, partitions=2)

    @app.agent(src)
    async def process(stream):
        async for event in stream.events():
            table[event.key.decode()] = event.value                     # the table's changelog record
            await out.send(key=event.key, value=b"keyed-" + event.value)  # an alert, say
            await out.send(key=None, value=b"keyless-" + event.value)     # a dead letter of a record without key
''')


async def _faust_publish(bootstrap: str, n: int) -> None:
    p = await _producer(bootstrap)
    try:
        for i in range(n):
            await p.send_and_wait("fsrc", b"v%d" % i, key=b"k%d" % i)
    finally:
        await p.stop()


async def _faust_look(bootstrap: str) -> dict[str, dict[str, int]]:
    out = {}
    for topic in ("fout", "eoscheck-ft-changelog"):
        out[topic] = {"read_uncommitted": len(await read_all(bootstrap, topic, "read_uncommitted")),
                      "read_committed": len(await read_all(bootstrap, topic, "read_committed"))}
    return out


def run_faust_probe(workdir: Path, events: int = 6, timeout: float = 60.0) -> dict[str, Any]:
    """What of a Faust ``exactly_once`` worker's output a read_committed reader sees before any commit."""
    (workdir / "faust_eos_app.py").write_text(FAUST_APP)
    broker = EmbeddedBroker(workdir / "fbroker").start()
    worker = None
    try:
        asyncio.run(create_topics(broker.bootstrap, {"fsrc": 2, "fout": 3}))
        env = {**os.environ, "CHECK_BOOTSTRAP": broker.bootstrap, "CHECK_DATADIR": str(workdir / "fdata"),
               "CHECK_WEB_PORT": str(free_port()), "PYTHONPATH": str(workdir)}
        log = open(workdir / "faust_eos.log", "wb")
        worker = subprocess.Popen([sys.executable, "-m", "faust", "-A", "faust_eos_app", "worker", "-l", "info"],
                                  cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while b"transactional producers" not in (workdir / "faust_eos.log").read_bytes():
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the Faust worker did not start its transactional producers")
            time.sleep(0.5)
        time.sleep(2.0)
        asyncio.run(_faust_publish(broker.bootstrap, events))
        time.sleep(5.0)  # processed, the 30 s commit still ahead: the transaction is open
        open_txn = asyncio.run(_faust_look(broker.bootstrap))
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        killed = asyncio.run(_faust_look(broker.bootstrap))
        log.close()
    finally:
        if worker is not None and worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        broker.stop()
    return {"events": events, "outputs_per_event": 2, "while_transaction_open": open_txn, "after_kill_9": killed}


async def _cost(bootstrap: str, batches: int, per_batch: int, partitions: int) -> dict[str, float]:
    """Seconds per batch of ``per_batch`` records per partition: plain sends awaited together, against one
    transaction per partition per batch (begin, the sends, the consumed offsets, commit), partitions in parallel."""
    await create_topics(bootstrap, {"cost-out": partitions, "cost-src": partitions})
    value = b"x" * 400
    plain = await _producer(bootstrap)
    txns = [await _producer(bootstrap, f"cost-{p}") for p in range(partitions)]
    try:
        started = time.perf_counter()
        for _ in range(batches):
            futs = [await plain.send("cost-out", value, partition=p) for p in range(partitions) for _ in range(per_batch)]
            await asyncio.gather(*futs)
        plain_s = (time.perf_counter() - started) / batches

        async def one(p: int, producer: AIOKafkaProducer, n: int) -> None:
            await producer.begin_transaction()
            futs = [await producer.send("cost-out", value, partition=p) for _ in range(per_batch)]
            await asyncio.gather(*futs)
            await producer.send_offsets_to_transaction({TopicPartition("cost-src", p): n}, "cost-group")
            await producer.commit_transaction()

        started = time.perf_counter()
        for n in range(batches):
            await asyncio.gather(*(one(p, txns[p], n + 1) for p in range(partitions)))
        txn_s = (time.perf_counter() - started) / batches
    finally:
        for producer in (plain, *txns):
            await producer.stop()
    return {"batches": batches, "records_per_partition_per_batch": per_batch, "partitions": partitions,
            "plain_ms_per_batch": round(plain_s * 1000, 2), "transactional_ms_per_batch": round(txn_s * 1000, 2)}


def run_cost(workdir: Path, batches: int = 200, per_batch: int = 50, partitions: int = 4) -> list[dict[str, float]]:
    broker = EmbeddedBroker(workdir / "cbroker").start()
    try:
        return [asyncio.run(_cost(broker.bootstrap, batches, n, partitions)) for n in (1, per_batch)]
    finally:
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faust", action="store_true", help="also probe Faust's processing_guarantee=exactly_once")
    ap.add_argument("--cost", action="store_true", help="also time one transaction per batch against plain sends")
    ap.add_argument("--child", metavar="BOOTSTRAP", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        asyncio.run(_open_transaction_then_wait(args.child))
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="txn-check-"))
    try:
        checks = run_broker_checks(workdir)
        for name, ok in checks.items():
            if not name.startswith("_"):
                print(f"{'OK  ' if ok else 'FAIL'} {name}", flush=True)
        summary: dict[str, Any] = {"broker": checks}
        if args.faust:
            summary["faust_exactly_once"] = run_faust_probe(workdir)
            print("faust exactly_once:", json.dumps(summary["faust_exactly_once"]), flush=True)
        if args.cost:
            summary["cost"] = run_cost(workdir)
            for row in summary["cost"]:
                print("cost:", json.dumps(row), flush=True)
        print(json.dumps(summary, default=str))
        return 0 if all(v for k, v in checks.items() if not k.startswith("_")) else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
