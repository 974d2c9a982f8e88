"""Exactly-once outputs: one transactional producer per owned partition of the events topic (docs/reliability.md 5.3).

Per batch and per clock tick, per partition: the changelog records of the dossiers it changed, its alerts, its dead
letters and (for a batch) the offset after its last record go out in one transaction; the partition's RocksDB
database is written only after the commit. ``Transactions`` owns the producers and the committed offsets;
``TransactionalPath`` (mixed into ``streams.runtime.runtime.Runtime``) stages a batch's or a tick's writes, commits
them and, when a transaction fails, drops them, rebuilds the partition from its table and reads again from the
committed offset.

Fencing: aiokafka 0.14 commits offsets in a transaction without the consumer group's generation, so it comes from
the transactional id ``{app_id}-{partition}``. The partition's new owner starts its producer (``InitProducerId``),
which fences the previous owner and aborts what it left open, before recovery reads the partition's changelog
(``streams.compat.transactions.read_committed_tables`` calls ``own`` first) and before the committed offset is read.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import ProducerFenced

from streams.runtime.partitions import _table_key

__all__ = ["Failure", "Output", "Transactions", "TransactionalPath", "dead_letter_record"]

log = logging.getLogger(__name__)

#: Linger of the transactional producers: the commit flushes them anyway, so a batch's sends go out together.
TXN_LINGER_MS = 5
#: Longest a partition's catch-up read of its changelog may take after a failed transaction.
CATCH_UP_SECONDS = 60.0
#: Longest the read that looks for a failed transaction's alerts and dead letters may take.
OUTPUTS_CHECK_SECONDS = 30.0


class Output(NamedTuple):
    """An alert or dead letter of a transaction as the broker acknowledged it: where it went and what it was."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


class Failure(NamedTuple):
    """What a partition's failed transaction leaves for its restoration: the committed offset known before it,
    whether it carried changelog records, and its alerts and dead letters if the broker had acknowledged them all
    before the commit failed (None if not: it cannot have committed them)."""

    offset: int | None
    had_changelog: bool
    outputs: tuple[Output, ...] | None = None


class Fenced(Exception):
    """Another producer with this partition's transactional id started: the partition belongs to another worker."""


class Transactions:
    """The transactional producers of the owned partitions, and the offsets committed through them."""

    def __init__(self, settings: Any, client_config: dict[str, Any], changelog_topic: str) -> None:
        self.settings = settings
        self.client_config = dict(client_config)
        self.changelog_topic = changelog_topic
        self.producers: dict[int, AIOKafkaProducer] = {}
        #: The next source offset to apply per owned partition (the one committed); None: nothing committed yet, the
        #: first record read is taken.
        self.committed: dict[int, int | None] = {}
        #: One batch or tick at a time: a tick never reads a state a batch has staged and not committed.
        self.lock = asyncio.Lock()
        #: Owned partitions whose transaction failed and whose producer could not be started again yet (the broker
        #: away, say): their records wait, and each batch and tick tries again. Fenced ones wait for the next
        #: assignment instead: another worker has them.
        self.broken: set[int] = set()
        self.fenced: set[int] = set()
        #: Per partition whose transaction failed and that waits in ``broken``: the committed offset known then,
        #: whether that transaction carried changelog records, and its acknowledged outputs (see ``_restore_broken``).
        #: Forgotten once the partition is restored, fenced or no longer assigned here.
        self.before_failure: dict[int, Failure] = {}
        #: Per partition, the alerts and dead letters of its last transaction once the broker acknowledged them all;
        #: kept only while that transaction has not committed as far as this worker knows.
        self.acknowledged: dict[int, tuple[Output, ...]] = {}
        self._owning = asyncio.Lock()

    def transactional_id(self, partition: int) -> str:
        return f"{self.settings.app_id}-{partition}"

    async def own(self, partitions: set[int]) -> None:
        """Start the producers of these partitions that have none (each start fences the previous owner and aborts
        what it left open); the committed offset of a partition is read again after its producer started."""
        async with self._owning:
            for p in sorted(partitions - set(self.producers)):
                producer = AIOKafkaProducer(bootstrap_servers=self.settings.broker, acks="all",
                                            enable_idempotence=True, linger_ms=TXN_LINGER_MS,
                                            transactional_id=self.transactional_id(p),
                                            client_id=f"onestop-txn-{p}", **self.client_config)
                try:
                    await producer.start()  # InitProducerId: fences the previous owner, aborts its open transaction
                except BaseException:
                    await producer.stop()
                    raise
                self.producers[p] = producer
                self.committed.pop(p, None)
                self.broken.discard(p)
                self.fenced.discard(p)
                log.info("partition %s: transactional producer %s started", p, self.transactional_id(p))

    async def release(self, partitions: set[int]) -> None:
        """Stop the producers of partitions no longer owned."""
        async with self._owning:
            for p in sorted(partitions & set(self.producers)):
                await self._close(p)

    async def _close(self, partition: int) -> None:
        producer = self.producers.pop(partition, None)  # its committed offset is read again when the next starts
        if producer is not None:
            try:
                await producer.stop()
            except Exception as exc:  # a fenced or broken producer: nothing of it is needed any more
                log.info("partition %s: stopping its producer: %r", partition, exc)

    async def load_committed(self, partitions: set[int]) -> None:
        """Read the group's committed offsets of owned partitions whose offset is not known since their producer
        started (so no earlier owner can commit after the read)."""
        todo = sorted(p for p in partitions if p in self.producers and p not in self.committed)
        if not todo:
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.broker, **self.client_config)
        await admin.start()
        try:
            tps = [TopicPartition(self.settings.events, p) for p in todo]
            found = await admin.list_consumer_group_offsets(self.settings.app_id, partitions=tps)
        finally:
            await admin.close()
        for tp in tps:
            meta = found.get(tp)
            offset = meta.offset if meta is not None else -1
            self.committed[tp.partition] = offset if offset is not None and offset >= 0 else None
        log.info("committed offsets of partition(s) %s: %s", todo, {p: self.committed[p] for p in todo})

    async def commit(self, partition: int, changelog: list[tuple[bytes, bytes]], alerts: list[tuple[bytes | None, bytes]],
                     dead: list[tuple[bytes | None, bytes | None, list]], offset: int | None) -> int | None:
        """One transaction: the changelog records (to the partition's changelog partition), alerts, dead letters
        and, if given, the source offset to commit. Returns the offset of the last changelog record (None if none).
        Raises ``Fenced`` if another owner took the partition; any other failure leaves the producer closed (its
        open transaction is aborted when the next producer with its id starts)."""
        producer = self.producers.get(partition)
        if producer is None:
            raise Fenced(f"partition {partition} has no transactional producer")
        s = self.settings
        self.acknowledged.pop(partition, None)
        try:
            await producer.begin_transaction()
            sent = [await producer.send(self.changelog_topic, value, key=key, partition=partition)
                    for key, value in changelog]
            outputs = [await producer.send(s.alerts, value, key=key) for key, value in alerts]
            outputs += [await producer.send(s.dlq, value, key=key, headers=headers) for key, value, headers in dead]
            # Every record acknowledged before the commit: aiokafka commits a transaction even when the broker
            # refused one of its records for good (too large, not authorised), which would lose that output.
            metas = await asyncio.gather(*sent, *outputs)
            records = [(k, v, ()) for k, v in alerts] + [(k, v, tuple(map(tuple, h))) for k, v, h in dead]
            self.acknowledged[partition] = tuple(Output(m.topic, m.partition, m.offset, *record)
                                                 for m, record in zip(metas[len(sent):], records))
            metas = metas[:len(sent)]
            if offset is not None:
                await producer.send_offsets_to_transaction({TopicPartition(s.events, partition): offset}, s.app_id)
            await producer.commit_transaction()
            self.acknowledged.pop(partition, None)
        except ProducerFenced as exc:
            await self._close(partition)
            raise Fenced(str(exc)) from exc
        except BaseException:
            await self._close(partition)
            raise
        return max(m.offset for m in metas) if metas else None

    async def changelog_tail(self, partition: int, after: int | None) -> list[tuple[int, bytes, bytes | None]]:
        """The committed changelog records of ``partition`` after offset ``after`` (None: from the start), as
        (offset, key, value), read with read_committed up to the partition's end."""
        from aiokafka import AIOKafkaConsumer

        tp = TopicPartition(self.changelog_topic, partition)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.broker, group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed", client_id=f"onestop-catch-up-{partition}",
                                    **self.client_config)
        await consumer.start()
        out: list[tuple[int, bytes, bytes | None]] = []
        try:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            start = 0 if after is None else after + 1
            if start >= end:
                return out
            consumer.seek(tp, start)
            deadline = asyncio.get_running_loop().time() + CATCH_UP_SECONDS
            while await consumer.position(tp) < end:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"changelog partition {partition} not read to offset {end}")
                for records in (await consumer.getmany(tp, timeout_ms=200)).values():
                    out.extend((r.offset, r.key, r.value) for r in records)
        finally:
            await consumer.stop()
        return out

    async def outputs_committed(self, outputs: tuple[Output, ...]) -> bool:
        """Whether a read_committed reader finds every one of these acknowledged records where the broker put it,
        byte for byte (key, value, headers): the transaction that wrote them committed, and the broker kept them.
        Call it after the partition's producer started again, so that the transaction is settled one way or the
        other. False when any is missing or the read does not finish in time."""
        if not outputs:
            return True
        wanted: dict[TopicPartition, dict[int, tuple]] = {}
        for o in outputs:
            wanted.setdefault(TopicPartition(o.topic, o.partition), {})[o.offset] = (o.key, o.value, o.headers)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.broker, group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed", client_id="onestop-outputs-check",
                                    **self.client_config)
        found: dict[TopicPartition, dict[int, tuple]] = {tp: {} for tp in wanted}
        try:
            await consumer.start()
            consumer.assign(list(wanted))
            ends = await consumer.end_offsets(list(wanted))  # the last stable offsets, under read_committed
            if any(max(offsets) >= ends[tp] for tp, offsets in wanted.items()):
                return False
            for tp, offsets in wanted.items():
                consumer.seek(tp, min(offsets))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + OUTPUTS_CHECK_SECONDS
            while [tp for tp, offsets in wanted.items() if await consumer.position(tp) <= max(offsets)]:
                if loop.time() > deadline:
                    log.warning("the outputs of a failed transaction were not read back in %.0f s",
                                OUTPUTS_CHECK_SECONDS)
                    return False
                for tp, batch in (await consumer.getmany(timeout_ms=200)).items():
                    for r in batch:
                        if r.offset in wanted[tp]:
                            found[tp][r.offset] = (r.key, r.value, tuple(map(tuple, r.headers or ())))
        finally:
            await consumer.stop()
        return found == wanted

    async def close(self) -> None:
        async with self._owning:
            for p in sorted(self.producers):
                await self._close(p)


def dead_letter_record(key: bytes | None, value: bytes | None, headers: dict[str, bytes]) -> tuple:
    return key, value, list(headers.items())


class TransactionalPath:
    """The runtime's exactly-once batch and tick (``Runtime`` sets ``txn`` and ``_staged``)."""

    # -- staging ---------------------------------------------------------------------------------------------------
    def _stage(self, partition: int, code: str, value: bytes) -> None:
        self._staged[partition][code] = value

    async def own_transactions(self, partitions: set[int]) -> None:
        """Fence and take over these partitions' transactional ids (recovery calls it before reading changelogs)."""
        await self.txn.own(partitions)

    # -- a batch ---------------------------------------------------------------------------------------------------
    async def _on_events_in_transactions(self, events: list[Any]) -> None:
        async with self.txn.lock:
            await self._batch_in_transactions(events)

    async def _batch_in_transactions(self, events: list[Any]) -> None:
        self.records_received += len(events)
        await self._restore_broken()
        by_partition: dict[int, list[Any]] = {}
        for event in events:
            by_partition.setdefault(event.message.partition, []).append(event)
        work: dict[int, tuple[Any, list[Any], int]] = {}
        for p, evs in by_partition.items():
            if p in self.txn.broken or p in self.txn.fenced or p not in self.txn.producers:
                continue  # read again from the committed offset once its producer runs (or by its new owner)
            state = await self._ensure_partition(p)
            if state is None or p not in self.txn.producers:
                continue  # left to the partition's owner
            if p not in self.txn.committed:
                await self.txn.load_committed({p})
            expected = self.txn.committed.get(p)
            keep = []
            for event in evs:
                offset = event.message.offset
                if expected is not None and offset < expected:
                    continue  # committed already, with its outputs: never applied or dead-lettered twice
                if expected is not None and offset > expected:
                    log.warning("partition %s: record %s read while %s is the next to apply; reading from %s again",
                                p, offset, expected, expected)
                    await self._seek_source(p, expected)
                    break
                keep.append(event)
                expected = offset + 1
            if keep:
                work[p] = (state, keep, expected)
        if not work:
            return
        clock_now = self.now()
        self._staged = {p: {} for p in work}
        outputs: dict[int, tuple[list[dict], list[tuple]]] = {p: ([], []) for p in work}
        for p, (state, keep, _end) in work.items():
            alerts, dead = outputs[p]
            now = self._advance(state, clock_now, alerts)
            for event in keep:
                self._apply_record(state, event, now, alerts, dead)
        for _p, (_alerts, dead) in outputs.items():
            for record in dead:
                self.health.reject(record[3])
        await asyncio.gather(*(self._commit_partition(p, *outputs[p], work[p][2]) for p in work))
        await self._restore_broken()

    def _apply_record(self, state: Any, event: Any, now: Any, alerts: list[dict], dead: list[tuple]) -> None:
        from streams.runtime.partitions import _decode_key

        msg = event.message
        raw_key, value = event.key, event.value
        code = _decode_key(raw_key)
        if code is None:
            dead.append((msg, raw_key, value, "missing_key", "record has no UTF-8 dossier code as key"))
            return
        if value is None:
            dead.append((msg, raw_key, value, "missing_value", "record has no value (tombstone)"))
            return
        stored = self._get(state.partition, code)
        outcome = self._run_processor(msg, code, value, stored, now)
        if outcome.dead_letter is None:
            self._apply(state, code, outcome, existed=stored is not None, alerts=alerts, reschedule=False)
            self.health.record(source=outcome.source, event_time=outcome.event_time, now=now,
                               duplicate=outcome.duplicate, late=outcome.late_arrival)
        else:
            reason, message = outcome.dead_letter
            dead.append((msg, raw_key, value, reason, message))

    # -- the deadline clock ----------------------------------------------------------------------------------------
    async def _tick_in_transactions(self) -> None:
        async with self.txn.lock:
            if not self.ready:
                return
            await self._restore_broken()
            now = self.now()
            states = {p: s for p, s in self.partitions.items() if p in self.txn.producers}
            self._staged = {p: {} for p in states}
            outputs: dict[int, tuple[list[dict], list[tuple]]] = {p: ([], []) for p in states}
            for p, state in states.items():
                self._advance(state, now, outputs[p][0])
            for p, state in states.items():  # after every partition's own deadlines: those come first
                self._announce_rebuilt(state, now, outputs[p][0])
            await asyncio.gather(*(self._commit_partition(p, *outputs[p], None) for p in states))
            await self._restore_broken()

    # -- commit and roll back --------------------------------------------------------------------------------------
    async def _commit_partition(self, p: int, alerts: list[dict], dead: list[tuple], offset: int | None) -> None:
        staged = self._staged.pop(p, {})
        if not staged and not alerts and not dead and offset is None:
            return
        generation = self.generation
        changelog = [(_table_key(code), value) for code, value in staged.items()]
        alert_records = [self._alert_record(a) for a in alerts]
        dead_records = [self._dead_letter_record(*d) for d in dead]
        try:
            last = await self.txn.commit(p, changelog, alert_records, dead_records, offset)
        except Fenced as exc:
            log.warning("partition %s: fenced by another owner (%s); its uncommitted work is dropped", p, exc)
            await self._roll_back(p, reown=False)
            return
        except Exception as exc:
            log.warning("partition %s: transaction failed (%r): dropped its staged writes; rebuilding the partition "
                        "and reading again from the committed offset", p, exc)
            await self._roll_back(p, reown=True, had_changelog=bool(changelog))
            return
        except BaseException:  # cancelled mid-commit (the worker stopping): the producer is closed already
            self._drop_failed(p, reown=True, had_changelog=bool(changelog))
            raise
        # Committed: the local store follows, never before (after a crash here, recovery reads the changelog's tail).
        store = self.table.data
        db = store._db_for_partition(p)
        for key, value in changelog:
            db.put(key, value)
        if last is not None:
            store.set_persisted_offset(TopicPartition(self.txn.changelog_topic, p), last)
        if offset is not None and p in self.txn.committed:
            self.txn.committed[p] = offset
        for alert in alerts:
            self.health.alert(alert.get("kind"))
        if generation != self.generation:
            log.info("partition %s: committed across a rebalance", p)

    async def _roll_back(self, p: int, *, reown: bool, had_changelog: bool = False) -> None:
        """A transaction of ``p`` did not commit: nothing of it reached the table. The partition's tallies and
        schedule (moved by the batch) are dropped; unless another owner fenced it, the partition is rebuilt from
        the table and read again from the committed offset once its producer runs again (``_restore_broken``)."""
        await self.txn.release({p})
        self._drop_failed(p, reown=reown, had_changelog=had_changelog)

    def _drop_failed(self, p: int, *, reown: bool, had_changelog: bool) -> None:
        self._staged.pop(p, None)
        old = self.partitions.pop(p, None)
        if old is not None:
            self._release(old)
        outputs = self.txn.acknowledged.pop(p, None)
        if reown:  # the first failure's offset counts: the partition applies nothing more until it is restored
            self.txn.before_failure.setdefault(p, Failure(self.txn.committed.get(p), had_changelog, outputs))
        else:  # another worker has it: what it commits is its own
            self.txn.before_failure.pop(p, None)
        (self.txn.broken if reown else self.txn.fenced).add(p)

    def _assigned_here(self, p: int) -> bool:
        return any(tp.topic == self.settings.events and tp.partition == p
                   for tp in (self.app.consumer.assignment() if self.app is not None else ()))

    async def _restore_broken(self) -> None:
        """Start the producers of partitions whose transaction failed again (each start aborts what the failed one
        left open), rebuild them from the table and read them again from the committed offset."""
        for p in sorted(self.txn.broken):
            if not self._assigned_here(p):
                self.txn.broken.discard(p)
                self.txn.before_failure.pop(p, None)
                continue
            try:
                await self.txn.own({p})
                await self.txn.load_committed({p})
                caught_up = await self._catch_up_table(p)
            except Exception as exc:
                await self.txn.release({p})
                self.txn.broken.add(p)
                log.warning("partition %s: its producer did not start again (%r); trying again", p, exc)
                continue
            failure, now = self.txn.before_failure.pop(p, Failure(None, False)), self.txn.committed.get(p)
            before, had_changelog = failure.offset, failure.had_changelog
            if caught_up:
                log.warning("partition %s: a transaction the worker saw fail had committed: its %s changelog "
                            "record(s) were written to the local table", p, caught_up)
            elif before is not None and now is not None and now > before:
                # The group's offset moved to the failed transaction's while the table holds none of its changelog
                # records. With changelog records that is the broker's fault (seen on the embedded broker restarted
                # under a transaction in flight). Without, the transaction may well have committed: it did if every
                # alert and dead letter the broker acknowledged is there for a read_committed reader, and then
                # nothing is read again. Otherwise (some missing: such a broker may lose them too) its records are
                # applied again from the offset before it (figures stay exact; an output among them may repeat,
                # none is lost).
                if had_changelog:
                    log.error("partition %s: the broker committed offset %s of a transaction whose changelog records "
                              "it does not hold; reading again from %s", p, now, before)
                    self.txn.committed[p] = before
                elif await self._outputs_committed(p, failure.outputs):
                    log.warning("partition %s: a failed transaction without changelog records had committed, with "
                                "its %s alert(s) and dead letter(s): not read again", p, len(failure.outputs or ()))
                else:
                    log.warning("partition %s: a failed transaction without changelog records moved the offset to "
                                "%s and not all of its outputs are there; reading again from %s so that none of "
                                "them can be lost", p, now, before)
                    self.txn.committed[p] = before
            old = self.partitions.pop(p, None)
            if old is not None:
                self._release(old)
            self.partitions[p] = await self._rebuild(p)
            committed = self.txn.committed.get(p)
            if committed is None:
                tp = TopicPartition(self.settings.events, p)
                committed = (await self.app.consumer.earliest_offsets(tp)).get(tp) or 0
            await self._seek_source(p, committed)
            log.info("partition %s: producer started again, rebuilt, reading again from offset %s", p, committed)

    async def _outputs_committed(self, p: int, outputs: tuple[Output, ...] | None) -> bool:
        if outputs is None:  # not all acknowledged: the transaction cannot have committed them
            return False
        try:
            return await self.txn.outputs_committed(outputs)
        except Exception as exc:  # the broker away again: read the records again rather than risk losing one
            log.warning("partition %s: could not read back a failed transaction's outputs (%r)", p, exc)
            return False

    async def _catch_up_table(self, p: int) -> int:
        """Write into the partition's table what its changelog committed after the table's persisted offset: a
        transaction the worker saw fail (the broker away at the commit, say) may have committed all the same, and
        its committed offset then skips its records. Returns how many records were written."""
        store = self.table.data
        tp = TopicPartition(self.txn.changelog_topic, p)
        tail = await self.txn.changelog_tail(p, store.persisted_offset(tp))
        if not tail:
            return 0
        db = store._db_for_partition(p)
        for _offset, key, value in tail:
            if value is None:
                db.delete(key)
            else:
                db.put(key, value)
        store.set_persisted_offset(tp, tail[-1][0])
        return len(tail)

    async def _seek_source(self, p: int, offset: int) -> None:
        from faust.types import TP

        await self.app.consumer.seek(TP(self.settings.events, p), offset)

    # -- records ---------------------------------------------------------------------------------------------------
    def _alert_record(self, alert: dict) -> tuple[bytes | None, bytes]:
        from streams.runtime.runtime import encode_alert

        alert_id = str(alert.get("alert_id") or "")
        return alert_id.encode() or None, encode_alert(alert)

    def _dead_letter_record(self, msg: Any, key: bytes | None, value: bytes | None, reason: str, error: str) -> tuple:
        key, value, headers = self._dead_letter_parts(msg, key, value, reason, error)
        return dead_letter_record(key, value, headers)
