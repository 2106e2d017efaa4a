"""The otel consumer's insert path (`_insert`, `_isolate`, `_await_table`) into a real chdb
store, without Kafka: a batch as the loop builds it (`_add`), decoded (`_settle`), then
inserted. Fast enough (seconds) to judge every mutant of that path (`make mutation
MUTATION_ARGS=--staged`); the same path on real Kafka is in tests/integration/.

A record's rows that the table refuses (a CHECK constraint on a real table) are
dead-lettered only on evidence that the table takes other rows; when it takes none, the
store is at fault: nothing is dead-lettered and the batch waits, then lands once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from consumers.dlq import DeadLetterQueue, header
from consumers.otel.backend import BackendError, ChdbBackend
from consumers.otel.consumer import OtelConsumer, OtelSettings, _Partition, batch_digest
from consumers.otel.ddl import OTEL_SCHEMA, Table
from consumers.samples import span, traces_request
from tests.consumer_faults import FAST, KINDS, Counting, stored, wait_for
from tests.unit.test_consumers_lineage_unit import FakeProducer

KIND = KINDS["otel"]
TOPIC = "otel-spans-unit"
TP = TopicPartition(TOPIC, 0)
POISON = traces_request([span(os.urandom(16), os.urandom(8), "poison")]).SerializeToString()
NO_POISON = "ALTER TABLE otel.otel_traces ADD CONSTRAINT no_poison CHECK SpanName != 'poison'"


@dataclass
class Rig:
    otel: OtelConsumer
    store: Counting
    chdb: ChdbBackend
    dlq: FakeProducer
    next_offset: int = 0

    def batch(self, values: list[bytes]) -> _Partition:
        """The partition with `values` added as the loop adds fetched records."""
        for value in values:
            record = ConsumerRecord(
                TOPIC, 0, self.next_offset, 1_700_000_000_000, 0, b"k", value, None, 1, 0, []
            )
            self.otel._add(TP, record)
            self.next_offset += 1
        return self.otel._parts[TP]

    async def insert(self, part: _Partition) -> None:
        """Flush the partition's batch as `_flush` does, less Kafka's commits."""
        batch, part.batch = part.batch, type(part.batch)(TP)
        batch.digest = batch_digest([m.record for m in batch.messages])
        await self.otel._settle(batch)
        await self.otel._insert(part, batch, self.otel._token(batch))

    def dead(self) -> list[tuple[int, bytes | None, bytes | None]]:
        """Each dead letter's source offset, reason and error."""
        return [
            (int(header(h, "dlq.offset") or -1), header(h, "dlq.reason"), header(h, "dlq.error"))
            for _, _, _, h in self.dlq.sent
        ]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    chdb = ChdbBackend(str(tmp_path / "chdb"))
    await chdb.setup(OTEL_SCHEMA.create(chdb.database, 0))
    store = Counting(chdb)
    settings = OtelSettings(
        bootstrap="unused:9092", group="g", topics=(TOPIC,), backoff=FAST, max_batch_wait=3600
    )
    otel = OtelConsumer(settings, store, decoders={TOPIC: KIND.decoder}, schema=KIND.schema)
    producer = FakeProducer()
    otel._dlq = DeadLetterQueue(producer, settings.name)
    otel.health.started = True
    yield Rig(otel, store, chdb, producer)
    await chdb.close()


def good(n: int) -> list[bytes]:
    return [value for _, value in KIND.records(n) if value is not None]


async def test_a_refused_record_among_accepted_ones_is_dead_lettered_alone(rig: Rig) -> None:
    await rig.chdb.query(NO_POISON)
    part = rig.batch([*good(3), POISON, *good(3)])
    await rig.insert(part)
    assert await stored(rig.chdb, KIND) == (6 * KIND.rows, 6 * KIND.rows)
    [(offset, reason, error)] = rig.dead()
    assert (offset, reason) == (3, b"insert_failed")
    assert error is not None and b"VIOLATED_CONSTRAINT" in error
    assert rig.otel.stats.get("dead_lettered", topic=TOPIC, reason="insert_failed") == 1
    # Each good record went in alone, under the batch's token and its own offset.
    alone = [t for t in rig.store.tokens if "/otel_traces/" in t]
    assert sorted(t.rsplit("/", 1)[1] for t in alone) == ["0", "1", "2", "4", "5", "6"]
    assert all(t.startswith(f"g/{TOPIC}/0/0-6/") for t in alone)
    # Every table the batch decodes into gets its rows, not only the first one refused.
    assert {t.split("/")[5] for t in rig.store.tokens} == {"otel_traces", "pipeline_runs"}


async def test_two_refused_records_in_one_batch_are_both_dead_lettered(rig: Rig) -> None:
    await rig.chdb.query(NO_POISON)
    await rig.insert(rig.batch([POISON, *good(2), POISON, *good(2)]))
    assert sorted(o for o, _, _ in rig.dead()) == [0, 3]
    assert await stored(rig.chdb, KIND) == (4 * KIND.rows, 4 * KIND.rows)


async def test_a_table_refusing_every_row_from_the_start_dead_letters_nothing(rig: Rig) -> None:
    """No insert into the table was ever accepted (no probe): the records' own retries
    are the probe, and their failing again is no evidence against them."""
    await rig.chdb.query("ALTER TABLE otel.otel_traces ADD CONSTRAINT outage CHECK 0")
    task = asyncio.create_task(rig.insert(rig.batch(good(3))))
    try:
        await wait_for(lambda: rig.store.failures["otel_traces"] > 20, "the fault was never hit")
        assert not task.done(), "the batch gave up while the store refused everything"
        assert rig.dead() == []
        await rig.chdb.query("ALTER TABLE otel.otel_traces DROP CONSTRAINT outage")
        await asyncio.wait_for(task, 30)
    finally:
        task.cancel()
    assert rig.dead() == []
    assert await stored(rig.chdb, KIND) == (3 * KIND.rows, 3 * KIND.rows)


async def test_a_refused_record_alone_waits_for_the_tables_probe_then_is_dead_lettered(
    rig: Rig,
) -> None:
    """Alone in its batch, nothing of the batch says the table takes rows: the last
    accepted insert, sent again (dropped by its token), is the evidence."""
    await rig.insert(rig.batch(good(2)))
    # A batch the store takes whole: one insert per table it decodes into, all of them.
    assert sorted(t.split("/")[5] for t in rig.store.tokens) == ["otel_traces", "pipeline_runs"]
    await rig.chdb.query(NO_POISON)
    await rig.insert(rig.batch([POISON]))
    assert [(o, r) for o, r, _ in rig.dead()] == [(2, b"insert_failed")]
    # The batch, the record alone; after the probe was accepted, the batch, alone: decided.
    assert rig.store.failures["otel_traces"] == 4
    assert rig.otel.stats.get("retried", cause="clickhouse") == 1
    assert await stored(rig.chdb, KIND) == (2 * KIND.rows, 2 * KIND.rows)


async def test_a_table_refusing_every_row_dead_letters_nothing_and_the_batch_lands_once(
    rig: Rig,
) -> None:
    await rig.insert(rig.batch(good(1)))
    await rig.chdb.query("ALTER TABLE otel.otel_traces ADD CONSTRAINT outage CHECK 0")
    part = rig.batch(good(4))
    task = asyncio.create_task(rig.insert(part))
    try:
        await wait_for(lambda: rig.store.failures["otel_traces"] > 20, "the fault was never hit")
        assert not task.done(), "the batch gave up while the store refused everything"
        assert rig.dead() == []
        status, body = rig.otel.health.body()
        assert (status, body["status"]) == (200, "degraded"), body
        assert "refuses inserts into otel_traces" in str(body)
        assert "VIOLATED_CONSTRAINT" in str(body), "the store's own error is shown"
        await rig.chdb.query("ALTER TABLE otel.otel_traces DROP CONSTRAINT outage")
        await asyncio.wait_for(task, 30)
    finally:
        task.cancel()
    assert rig.dead() == []
    assert await stored(rig.chdb, KIND) == (5 * KIND.rows, 5 * KIND.rows)
    assert rig.otel.stats.get("inserted_rows", table="otel_traces") == 5 * KIND.rows


async def test_a_replayed_batch_adds_no_rows(rig: Rig) -> None:
    """The same records at the same offsets give the same tokens: ClickHouse drops them."""
    values = [*good(3), POISON, *good(2)]
    await rig.chdb.query(NO_POISON)
    first = rig.batch(values)
    await rig.insert(first)
    rig.otel._parts.clear()  # another consumer: the partition read again from offset 0
    rig.next_offset = 0
    await rig.insert(rig.batch(values))
    assert await stored(rig.chdb, KIND) == (5 * KIND.rows, 5 * KIND.rows)
    assert [o for o, _, _ in rig.dead()] == [3, 3]


READ_ONLY = "ALTER TABLE otel.otel_traces MODIFY SETTING table_readonly = {}"


async def waited_out(rig: Rig, task: asyncio.Task[None], failures: int) -> None:
    """The store refused `failures` inserts and the batch still waits (no error out of
    `_insert`: `_flush` turns one into a rewind of the partition), showing the store's own
    error; then the table takes inserts again and the batch lands."""
    await wait_for(
        lambda: rig.store.failures["otel_traces"] >= failures or task.done(),
        "the fault was never hit",
    )
    assert not task.done(), f"the batch stopped waiting: {task.exception()!r}"
    assert rig.dead() == []
    status, body = rig.otel.health.body()
    assert (status, body["status"]) == (200, "degraded"), body
    assert "clickhouse refuses inserts into otel_traces" in str(body), body
    assert "TABLE_IS_PERMANENTLY_READ_ONLY" in str(body), "the store's own error is shown"
    assert rig.otel.stats.get("retried", cause="clickhouse") >= failures - 1
    await rig.chdb.query(READ_ONLY.format(0))
    await asyncio.wait_for(task, 30)


async def test_a_store_refusing_for_a_while_is_waited_out_in_place(rig: Rig) -> None:
    """A read-only table: ClickHouse says the fault is its own (code 774), so the batch
    retries where it is, however long the store takes."""
    await rig.insert(rig.batch(good(1)))
    await rig.chdb.query(READ_ONLY.format(1))
    task = asyncio.create_task(rig.insert(rig.batch(good(3))))
    try:
        await waited_out(rig, task, failures=4)
    finally:
        task.cancel()
    assert rig.dead() == []
    assert await stored(rig.chdb, KIND) == (4 * KIND.rows, 4 * KIND.rows)


@dataclass
class ReadOnlyOnFirstRefusal(Counting):
    """The real store; the table turns read-only as it refuses its first insert (a
    record's row): the records then inserted one by one meet an outage."""

    async def insert(self, table: Table, rows: Any, token: str) -> None:
        try:
            await super().insert(table, rows, token)
        except BackendError:
            if sum(self.failures.values()) == 1:
                await self.inner.query(READ_ONLY.format(1))
            raise


async def test_a_store_going_away_while_records_are_tried_one_by_one_is_waited_out(
    rig: Rig,
) -> None:
    """The batch is refused for one record's row, and while its records are tried one by
    one the store itself fails: the records wait for it (none is dead-lettered for the
    store's fault), then the refused record alone is dead-lettered."""
    store = ReadOnlyOnFirstRefusal(rig.chdb)
    rig.otel.backend, rig.store = store, store
    await rig.insert(rig.batch(good(1)))
    await rig.chdb.query(NO_POISON)
    task = asyncio.create_task(rig.insert(rig.batch([*good(2), POISON, good(1)[0]])))
    try:
        await waited_out(rig, task, failures=4)
    finally:
        task.cancel()
    assert [(o, r) for o, r, _ in rig.dead()] == [(3, b"insert_failed")]
    assert await stored(rig.chdb, KIND) == (4 * KIND.rows, 4 * KIND.rows)
