"""Kafka faults on the real stack, the three consumers running together as in a release:
the otel consumer (spans -> chdb), the lineage warehouse writer (OpenLineage -> chdb) and
the lineage consumer (the same OpenLineage topic -> a Marquez stand-in), each in its
own group. The cells:

* Kafka down ~30 s: the stack's broker stopped, then started again;
* Kafka flapping: several stop/start cycles in a row while the consumers work;
* Kafka slow: byte-rate quotas on the consumers' and the producer's client id;
* Marquez (the stand-in) slow (answering after the consumer's timeout), down, flapping.

Records are produced before, during (by a producer that keeps them until the broker is
back, and by the project's own publisher, whose losses are counted) and after. Each cell
prints, per consumer, produced (acked by the broker) / stored / dead-lettered / lost /
doubled: every acked record is in its store exactly once, nothing is dead-lettered, and
`/healthz` says degraded during the fault and ok after. Kafka is up with its topics at
the end of each cell whatever happens, and the quotas are removed.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from lineagehub_operator.run_telemetry import PUBLISH_TIMEOUT_S as OPERATOR_TIMEOUT

from consumers.health import Health, HealthServer
from consumers.lineage.consumer import LineageConsumer
from consumers.otel.backend import ChdbBackend
from consumers.otel.consumer import OtelConsumer
from consumers.otel.ddl import Table
from consumers.otel.decode import decode_trace_tables
from consumers.samples import lineage_bytes
from consumers.stats import Stats
from consumers.testkit import committed, create_topics, produce, unique, wait_drained
from lineagehub.telemetry.publisher import KafkaPublisher
from pipeline_runner.runner import SEND_TIMEOUT as RUNNER_TIMEOUT
from stack import paths
from tests.conftest import StackHandle
from tests.consumer_faults import (
    KINDS,
    StoreInFront,
    batch_consumer,
    dead_letters,
    finish,
    lineage_consumer,
    lineage_events,
    start,
    wait_for,
)
from tests.marquez_standin import MarquezStandin

pytestmark = pytest.mark.dataplane

KAFKA = "kafka"
CLIENT = "kafka-faults"  # every test client's id: one quota throttles them all
RIDE_OUT_MS = 180_000  # the test producer keeps a record this long while the broker is away


# ---- what was sent, and what the stores hold ------------------------------------------------


@dataclass
class Traffic:
    """Records sent to the spans topic and the lineage topic, and what became of each: acked
    by the broker, or given up by the producer. Identities: a span record's TraceId (its
    rows in otel_traces), a lineage event's run id (its row in lineage_events, its POST)."""

    bootstrap: str
    spans: str
    lineage: str
    acked: dict[str, set[str]] = field(default_factory=lambda: {"otel": set(), "lineage": set()})
    refused: dict[str, set[str]] = field(default_factory=lambda: {"otel": set(), "lineage": set()})
    _producer: AIOKafkaProducer | None = None
    _pending: list[tuple[str, str, Awaitable[object]]] = field(default_factory=list)

    async def open(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=CLIENT,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=RIDE_OUT_MS,
        )
        await self._producer.start()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    def records(self, n: int) -> list[tuple[str, str, bytes]]:
        """n span records and n lineage events: (kind, identity, value)."""
        out = []
        for _ in range(n):
            value = KINDS["otel"].record()
            (trace,) = {row["TraceId"] for row in decode_trace_tables(value)["otel_traces"]}
            out.append(("otel", trace, value))
            run = str(uuid.uuid4())
            out.append(("lineage", run, lineage_bytes(run, "START", namespace="kf", job="kf.j")))
        return out

    def _topic(self, kind: str) -> str:
        return self.spans if kind == "otel" else self.lineage

    async def send(self, n: int) -> None:
        """Hand n records of each kind to the producer; `settle` collects the acks."""
        assert self._producer is not None
        for kind, ident, value in self.records(n):
            ack = await self._producer.send(self._topic(kind), value=value, key=ident.encode())
            self._pending.append((kind, ident, ack))

    async def publish(
        self, publisher: KafkaPublisher, n: int, within: float
    ) -> list[tuple[str, str]]:
        """Send n records of each kind through the project's publisher as the operator and
        the runner do: each send waits for its ack, at most `within` seconds. The records
        given up on (kind, identity)."""
        given_up: list[tuple[str, str]] = []

        async def one(kind: str, ident: str, value: bytes) -> None:
            try:
                await asyncio.wait_for(publisher.send(self._topic(kind), ident, value), within)
            except Exception:
                self.refused[kind].add(ident)
                given_up.append((kind, ident))
            else:
                self.acked[kind].add(ident)

        await asyncio.gather(*(one(*r) for r in self.records(n)))
        return given_up

    async def settle(self) -> None:
        for kind, ident, ack in self._pending:
            try:
                await ack
            except Exception:
                self.refused[kind].add(ident)
            else:
                self.acked[kind].add(ident)
        self._pending.clear()


@dataclass
class Tally:
    consumer: str
    produced: int
    stored: int
    dead_lettered: int
    lost: int
    doubled: int
    refused: int  # sent, but the producer gave up on them (never acked)
    refused_stored: int  # of those, stored all the same (the broker had them)

    def line(self, cell: str) -> str:
        return (
            f"[{cell}] {self.consumer}: produced {self.produced} / stored {self.stored} / "
            f"dead-lettered {self.dead_lettered} / lost {self.lost} / doubled {self.doubled}"
            f" (the producer gave up on {self.refused} more, {self.refused_stored} of them"
            " stored all the same)"
        )


def tally(
    consumer: str,
    acked: set[str],
    refused: set[str],
    held: Counter[str],
    per_record: int,
    dead_lettered: int,
) -> Tally:
    """Compare what a store holds (`held`: rows per identity) with what was sent."""
    unknown = set(held) - acked - refused
    assert not unknown, f"{consumer}: rows of records never sent: {sorted(unknown)[:3]}"
    return Tally(
        consumer,
        produced=len(acked),
        stored=sum(1 for i in acked if held[i] == per_record),
        dead_lettered=dead_lettered,
        lost=sum(1 for i in acked if held[i] < per_record),
        doubled=sum(1 for i in held if held[i] > per_record),
        refused=len(refused),
        refused_stored=sum(1 for i in refused if held[i]),
    )


async def rows_per(chdb: ChdbBackend, table: str, column: str) -> Counter[str]:
    rows = await chdb.query(f"SELECT {column} AS id, count() AS n FROM otel.{table} GROUP BY id")
    return Counter({str(r["id"]): int(r["n"]) for r in rows})


# ---- the three consumers and their health endpoints -------------------------------------------


@dataclass
class HeldInserts(StoreInFront):
    """The chdb store, with the otel consumer's inserts held on command: a batch whose
    `pending:` marker is committed stays in flight while the broker goes away."""

    gate: asyncio.Event | None = None  # set: inserts wait until it fires
    entered: asyncio.Event = field(default_factory=asyncio.Event)  # one is waiting

    async def insert(self, table: Table, rows: Any, token: str) -> None:
        gate = self.gate
        if gate is not None:
            self.entered.set()
            await gate.wait()
        await self.inner.insert(table, rows, token)


async def healthz(port: int) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{port}/healthz")
    body: dict[str, object] = response.json()
    return body


@dataclass
class Rig:
    bootstrap: str
    traffic: Traffic
    otel: OtelConsumer
    warehouse: OtelConsumer
    lineage: LineageConsumer
    ports: list[int]  # /healthz of the otel process (otel + warehouse), of the lineage one
    held: HeldInserts  # the otel consumer's store

    @property
    def groups(self) -> list[tuple[str, list[str]]]:
        t = self.traffic
        return [
            (self.otel.s.group, [t.spans]),
            (self.warehouse.s.group, [t.lineage]),
            (self.lineage.s.group, [t.lineage]),
        ]

    async def statuses(self) -> list[object]:
        return [(await healthz(port))["status"] for port in self.ports]

    async def until_health(self, status: str, within: float = 60) -> None:
        """Poll both /healthz until each says `status` (a real signal, polled)."""
        deadline = time.monotonic() + within
        while (seen := await self.statuses()) != [status] * len(self.ports):
            assert time.monotonic() < deadline, f"/healthz never said {status}: {seen}"
            await asyncio.sleep(0.2)

    def kafka_reasons(self) -> list[str]:
        """Each consumer's own report that Kafka is unreachable, if it made one."""
        reasons = {**self.otel.health.reasons, **self.lineage.health.reasons}
        return [r for r in reasons.values() if "kafka" in r.lower()]

    async def drained(self, within: float = 120) -> None:
        await asyncio.gather(
            *(wait_drained(self.bootstrap, g, topics, within) for g, topics in self.groups)
        )

    async def commits(self) -> list[int]:
        """Per group, the sum of its committed offsets (it moves when the group stores)."""
        return [sum((await committed(self.bootstrap, g)).values()) for g, _topics in self.groups]

    async def verify(
        self, cell: str, chdb: ChdbBackend, standin: MarquezStandin
    ) -> dict[str, Counter[str]]:
        """Print and check each consumer's tally; what each store holds, by identity."""
        t = self.traffic
        traces = await rows_per(chdb, "otel_traces", "TraceId")
        events = await rows_per(chdb, "lineage_events", "RunId")
        posts = Counter({run: n for (run, _type), n in standin.stored_count().items()})
        spans_dlq = await dead_letters(self.bootstrap, t.spans)
        lineage_dlq = await dead_letters(self.bootstrap, t.lineage)
        tallies = [
            tally("otel", t.acked["otel"], t.refused["otel"], traces, 4, spans_dlq),
            tally("warehouse", t.acked["lineage"], t.refused["lineage"], events, 1, lineage_dlq),
            tally("lineage", t.acked["lineage"], t.refused["lineage"], posts, 1, lineage_dlq),
        ]
        for one in tallies:
            print(one.line(cell))
        for one in tallies:
            assert (one.lost, one.doubled, one.dead_lettered) == (0, 0, 0), one.line(cell)
            assert one.stored == one.produced > 0
        return {"otel": traces, "warehouse": events, "lineage": posts}


@pytest.fixture
async def rig(kafka: StackHandle, chdb: ChdbBackend, standin: MarquezStandin) -> AsyncIterator[Rig]:
    bootstrap = kafka.env["KAFKA_BOOTSTRAP"]
    traffic = Traffic(bootstrap, unique("kf-spans"), unique("kf-lineage"))
    await create_topics(bootstrap, [traffic.spans, traffic.lineage], partitions=3)
    await traffic.open()
    shared, alone = Health(), Health()  # the otel process's, the lineage process's
    quick = {"client_id": CLIENT, "shutdown_timeout": 5.0}
    held = HeldInserts(chdb)
    otel = batch_consumer(
        kafka.env, KINDS["otel"], traffic.spans, unique("kf-otel"), held, shared, **quick
    )
    warehouse = batch_consumer(
        kafka.env, KINDS["warehouse"], traffic.lineage, unique("kf-wh"), chdb, shared, **quick
    )
    lineage = lineage_consumer(
        kafka.env, standin, traffic.lineage, unique("kf-lineage"), alone, **quick
    )
    servers = [HealthServer(Stats("otel"), shared), HealthServer(Stats("lineage"), alone)]
    ports = [await s.start() for s in servers]
    running = [start(c) for c in (otel, warehouse, lineage)]
    try:
        yield Rig(bootstrap, traffic, otel, warehouse, lineage, ports, held)
    finally:
        await asyncio.to_thread(kafka.start, KAFKA)  # they commit and leave through it
        for stop, task in running:
            if not task.done():
                await finish(stop, task)
        for server in servers:
            await server.stop()
        await traffic.close()
    for _stop, task in running:
        task.result()  # a consumer that crashed fails the cell


async def warm_up(rig: Rig, chdb: ChdbBackend) -> None:
    """Records before the fault, all stored: the consumers are assigned and consuming."""
    await rig.traffic.send(20)
    await rig.traffic.settle()
    await rig.drained()
    # No merge may hide a row stored twice.
    for table in ("otel_traces", "lineage_events"):
        await chdb.query(f"SYSTEM STOP MERGES otel.{table}")
    await rig.until_health("ok")


async def kafka_stopped(rig: Rig, kafka: StackHandle) -> None:
    """Stop the broker; return once every consumer's /healthz says Kafka is away."""
    await asyncio.to_thread(kafka.stop, KAFKA)
    await rig.until_health("degraded")
    await wait_for(lambda: len(rig.kafka_reasons()) == 3, "not every consumer reported Kafka")


# ---- 1. Kafka down ~30 s ----------------------------------------------------------------------


async def test_kafka_down_loses_nothing_and_stores_each_record_once(
    rig: Rig, kafka: StackHandle, chdb: ChdbBackend, standin: MarquezStandin
) -> None:
    traffic = rig.traffic
    # The operator's and the runner's publisher (one producer each, connected already),
    # each send bounded as they bound it.
    operator = KafkaPublisher(rig.bootstrap, client_id=CLIENT)
    runner = KafkaPublisher(rig.bootstrap, client_id=CLIENT)
    await warm_up(rig, chdb)
    for publisher in (operator, runner):
        assert not await traffic.publish(publisher, 1, OPERATOR_TIMEOUT)
    # An otel batch in flight when the broker goes: its `pending:` marker is committed,
    # its insert lands during the outage, its final commit fails.
    gate = rig.held.gate = asyncio.Event()
    await traffic.send(3)
    await traffic.settle()
    await asyncio.wait_for(rig.held.entered.wait(), 30)
    began = time.monotonic()
    sending: asyncio.Task[None] | None = None
    runner_sends: asyncio.Task[list[tuple[str, str]]] | None = None
    try:
        await kafka_stopped(rig, kafka)
        rig.held.gate = None
        gate.set()
        sending = asyncio.create_task(traffic.send(10))
        runner_sends = asyncio.create_task(traffic.publish(runner, 2, RUNNER_TIMEOUT))
        # The broker stays away until the operator has given up on its events.
        operator_gave_up = await traffic.publish(operator, 2, OPERATOR_TIMEOUT)
        await asyncio.to_thread(kafka.start, KAFKA)
        away = time.monotonic() - began
        await sending
        runner_gave_up = await runner_sends
        await traffic.settle()
        await traffic.send(20)
        await traffic.settle()
        await rig.drained()
        await rig.until_health("ok")
    finally:
        gate.set()
        for task in (sending, runner_sends):
            if task is not None:
                task.cancel()
        for publisher in (operator, runner):
            await publisher.stop()
    held = await rig.verify(f"kafka down {away:.0f} s", chdb, standin)
    for who, gave_up, limit in (
        ("operator", operator_gave_up, OPERATOR_TIMEOUT),
        ("runner", runner_gave_up, RUNNER_TIMEOUT),
    ):
        arrived = sum(1 for kind, i in gave_up if held[kind][i])
        print(
            f"[kafka down] the {who}'s publisher ({limit:.0f} s per send) during the outage: "
            f"4 sent, {len(gave_up)} given up and counted lost by it, {arrived} of those "
            "stored all the same (the producer kept them and delivered them later)"
        )
    assert len(operator_gave_up) == 4, "the outage never outlasted the operator's timeout"


# ---- 2. Kafka flapping -----------------------------------------------------------------------

FLAPS = 2


async def record_health(rig: Rig, seen: list[set[object]]) -> None:
    """Until cancelled: every status each /healthz says (polled: a restart takes seconds)."""
    while True:
        for statuses, status in zip(seen, await rig.statuses(), strict=True):
            statuses.add(status)
        await asyncio.sleep(0.2)


async def test_kafka_flapping_loses_nothing_and_stores_each_record_once(
    rig: Rig, kafka: StackHandle, chdb: ChdbBackend, standin: MarquezStandin
) -> None:
    traffic = rig.traffic
    await warm_up(rig, chdb)
    seen: list[set[object]] = [set() for _ in rig.ports]
    recording = asyncio.create_task(record_health(rig, seen))
    try:
        for _ in range(FLAPS):
            # Back to back: the broker goes again while the consumers are still
            # reconnecting, rejoining their groups and working off what came meanwhile.
            await traffic.send(10)
            await traffic.settle()
            await asyncio.to_thread(kafka.stop, KAFKA)
            await traffic.send(5)  # kept by the producer until the broker is back
            await asyncio.to_thread(kafka.start, KAFKA)
    finally:
        recording.cancel()
    assert all("degraded" in statuses for statuses in seen), seen
    await traffic.settle()
    await traffic.send(10)
    await traffic.settle()
    await rig.drained()
    await rig.until_health("ok")
    await rig.verify(f"kafka flapping x{FLAPS}", chdb, standin)


# ---- 3. Kafka slow: byte-rate quotas ---------------------------------------------------------

RATE = 16 * 1024  # bytes per second, for the consumers' fetches and the producer's sends
RATE_KEYS = "consumer_byte_rate,producer_byte_rate"


def config_command(kafka: StackHandle, *args: str) -> str:
    """Kafka's own ConfigCommand (kafka-configs.sh) against the stack's broker."""
    lib = paths.cache_dir() / "kafka-4.2.0" / "lib"
    bootstrap = kafka.env["KAFKA_BOOTSTRAP"]
    main = ["java", "-cp", f"{lib}/*", "kafka.admin.ConfigCommand"]
    done = subprocess.run(
        [*main, "--bootstrap-server", bootstrap, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def quota(kafka: StackHandle) -> Iterator[str]:
    """Throttle every test client (one client id) on the real broker; removed at the end."""
    entity = ["--entity-type", "clients", "--entity-name", CLIENT]
    rates = f"consumer_byte_rate={RATE},producer_byte_rate={RATE}"
    try:
        config_command(kafka, "--alter", *entity, "--add-config", rates)
        yield config_command(kafka, "--describe", *entity)
    finally:
        kafka.start(KAFKA)
        config_command(
            kafka, "--alter", *entity, "--delete-config", "consumer_byte_rate,producer_byte_rate"
        )


async def test_kafka_slow_loses_nothing_doubles_nothing_and_commits_advance(
    quota: str, rig: Rig, chdb: ChdbBackend, standin: MarquezStandin
) -> None:
    assert f"consumer_byte_rate={RATE}" in quota and f"producer_byte_rate={RATE}" in quota
    traffic = rig.traffic
    await warm_up(rig, chdb)
    seen: list[list[int]] = [await rig.commits()]
    await traffic.send(60)  # some 120 KB: seconds of work at the quota's rate
    began = time.monotonic()
    settled = asyncio.create_task(traffic.settle())
    drained = asyncio.create_task(rig.drained())
    while not drained.done():
        now = await rig.commits()
        if now != seen[-1]:
            seen.append(now)
        await asyncio.wait([drained], timeout=0.2)
    await drained
    # The last commit may land between the last look and the drain: the librdkafka
    # member waits out the broker's throttle and may take the records in one fetch, so
    # one batch and one commit (seen in CI, [0, 2, 2]).
    if (last := await rig.commits()) != seen[-1]:
        seen.append(last)
    await settled
    took = time.monotonic() - began
    # Every group's commit moved while throttled (a stalled commit never drains).
    steps = [len({s[i] for s in seen}) - 1 for i in range(3)]
    print(f"[kafka slow] drained in {took:.1f} s; commit advances per group: {steps}")
    assert all(n >= 1 for n in steps), steps
    await rig.until_health("ok")
    await rig.verify(f"kafka slow ({RATE // 1024} KiB/s)", chdb, standin)


# ---- 4. Marquez slow, down, flapping ---------------------------------------------------------

TIMEOUT = 0.5  # the lineage consumer's HTTP timeout in this cell


async def test_marquez_slow_down_and_flapping_lose_nothing(
    env: dict[str, str], standin: MarquezStandin
) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("kf-marquez"), unique("kf-marquez")
    await create_topics(bootstrap, [topic], partitions=3)
    consumer = lineage_consumer(env, standin, topic, group, http_timeout=TIMEOUT)
    runs: list[str] = []

    async def send(n: int) -> None:
        batch = [str(uuid.uuid4()) for _ in range(n)]
        runs.extend(batch)
        await produce(bootstrap, topic, lineage_events(batch))

    async def gate_closed() -> None:
        await wait_for(lambda: not consumer.gate.is_up, "the gate never closed")
        kafka = consumer._consumer
        assert kafka is not None
        await wait_for(lambda: kafka.paused() == kafka.assignment(), "partitions not paused")
        assert consumer.health.body()[1]["status"] == "degraded"

    async def recovered() -> None:
        await wait_drained(bootstrap, group, [topic], within=60)
        await wait_for(lambda: consumer.health.body()[1]["status"] == "ok", "never ok again")

    def more_than(n: int) -> Callable[[], bool]:
        return lambda: len(standin.stored) > n

    stop, task = start(consumer)
    try:
        await send(9)
        await recovered()
        # Slow: every POST answered after the consumer's timeout, then normal again.
        standin.delay = 2 * TIMEOUT
        await send(9)
        await gate_closed()
        standin.delay = 0
        await recovered()
        # Down: connections refused, until the consumer paused and its prober kept failing.
        refused = consumer.stats.get("retried", cause="network")
        await standin.down()
        await send(9)
        await gate_closed()
        await wait_for(
            lambda: consumer.stats.get("retried", cause="network") > refused,
            "no POST was refused",
        )
        await standin.up()
        await recovered()
        # Flapping: down and up again while events keep coming.
        for _ in range(3):
            await standin.down()
            await send(6)  # their POSTs are refused: the gate closes
            await gate_closed()
            await standin.up()
            await standin.until(more_than(len(standin.stored)))
        await recovered()
    finally:
        if standin.url and not standin._server:
            await standin.up()
        await finish(stop, task)
    answered = standin.stored_count(answered=True)
    every = standin.stored_count()
    abandoned = sum(1 for p in standin.stored if p.abandoned)
    lost = sum(1 for r in runs if every[(r, "START")] == 0)
    doubled = sum(1 for r in runs if answered[(r, "START")] > 1)
    dead = await dead_letters(bootstrap, topic)
    print(
        f"[marquez slow/down/flapping] lineage: produced {len(runs)} / stored "
        f"{sum(1 for r in runs if answered[(r, 'START')] == 1)} / dead-lettered {dead} / "
        f"lost {lost} / doubled {doubled} (+{abandoned} stored after the consumer's "
        "timeout, then sent again: at-least-once)"
    )
    assert (lost, doubled, dead) == (0, 0, 0)
    assert all(answered[(r, "START")] == 1 for r in runs)
    assert sum(every.values()) == len(runs) + abandoned
    assert abandoned > 0, "the slow phase never outlasted the consumer's timeout"
