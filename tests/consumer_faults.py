"""The consumers as the fault tests build them (tests/integration/test_consumer_outages.py,
test_consumer_kafka_faults.py): the otel consumer and the lineage warehouse writer (one
batch loop, other tables), the lineage consumer against a Marquez stand-in, records of
each kind, starting and stopping them, and what the stores and DLQs hold."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from confluent_kafka import KafkaException

from consumers.health import Health
from consumers.librdkafka_consumer import CommitFailed, LibrdkafkaConsumer
from consumers.lineage.consumer import LineageConsumer, LineageSettings
from consumers.otel.arrow_spans import decode_trace_requests
from consumers.otel.backend import Backend, ChdbBackend
from consumers.otel.consumer import Decoder, OtelConsumer, OtelSettings
from consumers.otel.ddl import OTEL_SCHEMA, Schema, Table
from consumers.retry import Backoff
from consumers.samples import lineage_bytes, run_trace
from consumers.testkit import end_offsets
from consumers.warehouse.ddl import LINEAGE_SCHEMA
from consumers.warehouse.decode import decode_lineage
from lineagehub.topics import dlq
from tests.crashing import CrashingBackend
from tests.marquez_standin import MarquezStandin

FAST = Backoff(base=0.02, factor=2.0, cap=0.1)
Pairs = list[tuple[bytes | None, bytes | None]]


@dataclass(frozen=True)
class Kind:
    """The otel consumer or the lineage warehouse writer: same loop, other tables."""

    name: str
    table: str
    identity: str  # a column that is unique per row
    rows: int  # rows per record in `table`
    schema: Schema
    decoder: Decoder

    def record(self) -> bytes:
        if self.name == "otel":
            return run_trace(str(uuid.uuid4()), children=0).SerializeToString()
        return lineage_bytes(str(uuid.uuid4()), "START", namespace="outage", job="outage.job")

    def records(self, n: int) -> Pairs:
        return [(os.urandom(8), self.record()) for _ in range(n)]


KINDS = {
    "otel": Kind("otel", "otel_traces", "SpanId", 4, OTEL_SCHEMA, decode_trace_requests),
    "warehouse": Kind(
        "warehouse", "lineage_events", "EventHash", 1, LINEAGE_SCHEMA, decode_lineage
    ),
}


@dataclass
class StoreInFront:
    """The real store (`inner`) with every call passed through; subclasses put something
    in front of `insert` (a count, a hold) without standing in for the store."""

    inner: Backend

    @property
    def database(self) -> str:
        return self.inner.database

    async def setup(self, statements: Sequence[str] | None = None) -> None:
        await self.inner.setup(statements)

    async def insert(self, table: Table, rows: Any, token: str) -> None:
        await self.inner.insert(table, rows, token)

    async def query(self, sql: str) -> list[dict[str, Any]]:
        return await self.inner.query(sql)

    async def ping(self) -> bool:
        return await self.inner.ping()

    async def close(self) -> None:
        pass  # the fixture closes the inner store


@dataclass
class Counting(StoreInFront):
    """The real store; counts each table's refused inserts (the sign that a fault is being
    hit, and how often, without looking at the clock) and keeps the accepted tokens."""

    failures: Counter[str] = field(default_factory=Counter)
    tokens: list[str] = field(default_factory=list)

    async def insert(self, table: Table, rows: Any, token: str) -> None:
        try:
            await self.inner.insert(table, rows, token)
        except BaseException:
            self.failures[table.name] += 1
            raise
        self.tokens.append(token)


def batch_consumer(
    env: dict[str, str],
    kind: Kind,
    topic: str,
    group: str,
    backend: Backend,
    health: Health | None = None,
    **kw: Any,
) -> OtelConsumer:
    settings = OtelSettings(
        bootstrap=env["KAFKA_BOOTSTRAP"],
        group=group,
        topics=(topic,),
        name=kind.name,
        **{"client_id": f"test-{kind.name}", "max_batch_wait": 0.3, "backoff": FAST, **kw},
    )
    return OtelConsumer(
        settings, backend, health=health, decoders={topic: kind.decoder}, schema=kind.schema
    )


def lineage_consumer(
    env: dict[str, str],
    standin: MarquezStandin,
    topic: str,
    group: str,
    health: Health | None = None,
    **kw: Any,
) -> LineageConsumer:
    settings = LineageSettings(
        bootstrap=env["KAFKA_BOOTSTRAP"],
        marquez_url=standin.url,
        group=group,
        topic=topic,
        **{"backoff": FAST, "max_server_error_attempts": 3, **kw},
    )
    return LineageConsumer(settings, health=health)


def start(consumer: OtelConsumer | LineageConsumer) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(consumer.run(stop))


async def finish(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, 60)


async def crash_after_first_insert(
    env: dict[str, str], kind: Kind, topic: str, group: str, chdb: ChdbBackend, **kw: Any
) -> CrashingBackend:
    """A consumer inserts its first batch and dies before it commits the batch's end, as a
    killed process does: the group's commit is the batch's `pending:` marker."""
    crashing = CrashingBackend(chdb, crash_after=1)
    first = batch_consumer(env, kind, topic, group, crashing, **kw)
    stop, task = start(first)
    try:
        await asyncio.wait_for(crashing.crashed.wait(), 60)
        first.abort()
    finally:
        await finish(stop, task)
    return crashing


def refuse_first_commit(otel: OtelConsumer) -> list[object]:
    """The started consumer's next commit is refused as when the group's coordinator goes
    away (`CommitFailed`, what librdkafka's refusal becomes); the ones after go to Kafka.
    What was refused is listed."""
    kafka = otel._consumer
    assert kafka is not None, "the consumer has not started"
    real = kafka.commit
    refused: list[object] = []

    async def commit(offsets: Any = None) -> Any:
        if not refused:
            refused.append(offsets)
            raise CommitFailed("the group's coordinator went away")
        return await real(offsets)

    kafka.commit = commit  # type: ignore[method-assign]
    return refused


def watch_fetches(
    monkeypatch: pytest.MonkeyPatch, topic: str, partitions: int = 1
) -> asyncio.Event:
    """An event set whenever the consumers' (real) `getmany` hands out records of `topic`,
    once records of `partitions` of its partitions have been handed out."""
    fetched = asyncio.Event()
    seen: set[int] = set()
    real = LibrdkafkaConsumer.getmany

    async def getmany(self: LibrdkafkaConsumer, *a: Any, **kw: Any) -> Any:
        out = await real(self, *a, **kw)
        now = {tp.partition for tp, records in out.items() if tp.topic == topic and records}
        seen.update(now)
        if now and len(seen) >= partitions:
            fetched.set()
        return out

    monkeypatch.setattr(LibrdkafkaConsumer, "getmany", getmany)
    return fetched


def offsets_read_after(
    monkeypatch: pytest.MonkeyPatch,
    group: str,
    event: asyncio.Event,
    within: float = 30,
    asked: asyncio.Event | None = None,
) -> None:
    """The admin client's reads of `group`'s committed offsets get Kafka's answer only once
    `event` is set (`asked` is set while one waits): an assignment listener's read held."""
    real = AIOKafkaAdminClient.list_consumer_group_offsets

    async def list_offsets(self: AIOKafkaAdminClient, group_id: str, *a: Any, **kw: Any) -> Any:
        if group_id == group:
            if asked is not None:
                asked.set()
            await asyncio.wait_for(event.wait(), within)
        return await real(self, group_id, *a, **kw)

    monkeypatch.setattr(AIOKafkaAdminClient, "list_consumer_group_offsets", list_offsets)


async def position(kafka: LibrdkafkaConsumer, tp: TopicPartition) -> int:
    """The partition's position, or -1 before its first record was handed out."""
    try:
        return await kafka.position(tp)
    except KafkaException:
        return -1


async def wait_for(check: Callable[[], bool], what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.02)


async def stored(b: Backend, kind: Kind) -> tuple[int, int]:
    """Rows in the kind's table, and distinct rows (equal: nothing stored twice)."""
    (row,) = await b.query(
        f"SELECT count() AS n, uniqExact({kind.identity}) AS d FROM otel.{kind.table}"
    )
    return int(row["n"]), int(row["d"])


async def dead_letters(bootstrap: str, topic: str) -> int:
    """How many records the DLQ holds (its end offsets: no waiting, no guessing)."""
    return sum((await end_offsets(bootstrap, [dlq(topic)])).values())


def runs_in_other_lanes(than: str, count: int, lanes: int = 8) -> list[str]:
    """Run ids whose events go to another lane than `than`'s."""
    lane = zlib.crc32(than.encode()) % lanes
    out: list[str] = []
    while len(out) < count:
        run_id = str(uuid.uuid4())
        if zlib.crc32(run_id.encode()) % lanes != lane:
            out.append(run_id)
    return out


def lineage_events(runs: list[str]) -> Pairs:
    return [(r.encode(), lineage_bytes(r, "START", namespace="outage", job="j")) for r in runs]
