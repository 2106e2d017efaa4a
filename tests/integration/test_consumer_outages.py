"""Outages against poison, on real Kafka with real stores: ClickHouse (chdb) made
read-only, full, over its parts limit or refusing every row; Marquez (a stand-in on
loopback, tests/marquez_standin.py) failing every POST while its probe answers.

A store that fails every record dead-letters nothing and commits nothing past what it
stored, and once it recovers every record is stored exactly once. A record that fails
while other records are stored is dead-lettered alone. Also: the race between fetching
and installing an assignment, deduplication tokens across recreated topics and
releases, and the consumers' shutdown against the pod's grace period.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from clickhouse_driver import Client
from clickhouse_driver.bufferedwriter import BufferedSocketWriter
from clickhouse_driver.columns.service import write_column
from clickhouse_driver.connection import ServerInfo

from consumers import cli
from consumers.dlq import header
from consumers.health import Health
from consumers.lineage.consumer import LineageSettings
from consumers.otel.backend import Backend, ChdbBackend, NativeBackend
from consumers.otel.consumer import OtelConsumer, OtelSettings
from consumers.otel.ddl import OTEL_SCHEMA
from consumers.otel.decode import Row
from consumers.samples import span, traces_request
from consumers.stats import Stats
from consumers.testkit import (
    committed,
    create_topics,
    end_offsets,
    produce,
    read_all,
    unique,
    wait_drained,
)
from consumers.warehouse.ddl import LINEAGE_SCHEMA
from consumers.warehouse.decode import decode_lineage
from lineagehub.topics import dlq
from stack.pieces.helm import Helm
from tests.consumer_faults import (
    FAST,
    KINDS,
    Counting,
    batch_consumer,
    crash_after_first_insert,
    dead_letters,
    finish,
    lineage_consumer,
    lineage_events,
    offsets_read_after,
    runs_in_other_lanes,
    start,
    stored,
    wait_for,
    watch_fetches,
)
from tests.marquez_standin import MarquezStandin

pytestmark = pytest.mark.dataplane
ROOT = Path(__file__).resolve().parents[2]


# ---- 1. ClickHouse failing every record -----------------------------------------------------

# What makes the table fail every insert while `SELECT 1` keeps answering, and undoes it.
FAULTS: dict[str, tuple[list[str], list[str]]] = {
    "read_only": (
        ["ALTER TABLE {t} MODIFY SETTING table_readonly = 1"],
        ["ALTER TABLE {t} MODIFY SETTING table_readonly = 0"],
    ),
    "disk_full": (
        ["ALTER TABLE {t} MODIFY SETTING min_free_disk_bytes_to_perform_insert = " + str(10**18)],
        ["ALTER TABLE {t} RESET SETTING min_free_disk_bytes_to_perform_insert"],
    ),
    "too_many_parts": (
        ["SYSTEM STOP MERGES {t}", "ALTER TABLE {t} MODIFY SETTING parts_to_throw_insert = 1"],
        ["ALTER TABLE {t} RESET SETTING parts_to_throw_insert", "SYSTEM START MERGES {t}"],
    ),
    # An error ClickHouse also gives for one bad row (VIOLATED_CONSTRAINT), here for all:
    # only the consumer's evidence (no other rows accepted either) says it is an outage.
    "rejects_every_row": (
        ["ALTER TABLE {t} ADD CONSTRAINT outage CHECK 0"],
        ["ALTER TABLE {t} DROP CONSTRAINT outage"],
    ),
}
CELLS = [
    ("otel", "read_only", "in_place"),
    ("otel", "disk_full", "in_place"),
    ("otel", "rejects_every_row", "in_place"),
    ("otel", "too_many_parts", "restart"),
    ("warehouse", "read_only", "restart"),
]
PARTITIONS = 3
MAX_ATTEMPTS = 5


@pytest.mark.parametrize(("kind_name", "fault", "recovery"), CELLS)
async def test_clickhouse_failing_every_record_dead_letters_nothing_and_loses_nothing(
    env: dict[str, str], chdb: ChdbBackend, kind_name: str, fault: str, recovery: str
) -> None:
    kind = KINDS[kind_name]
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique(f"outage-{kind.name}"), unique("outage-group")
    await create_topics(bootstrap, [topic], partitions=PARTITIONS)
    table = f"otel.{kind.table}"
    backend = Counting(chdb)

    def make() -> OtelConsumer:
        return batch_consumer(
            env, kind, topic, group, backend, max_insert_attempts=MAX_ATTEMPTS, shutdown_timeout=1
        )

    consumer = make()
    await produce(bootstrap, topic, kind.records(15))
    stop, task = start(consumer)
    try:
        await wait_drained(bootstrap, group, [topic], within=30)
        await chdb.query(f"SYSTEM STOP MERGES {table}")  # no merge hides a row stored twice
        before = await end_offsets(bootstrap, [topic])
        for sql in FAULTS[fault][0]:
            await chdb.query(sql.format(t=table))
        await produce(bootstrap, topic, kind.records(15))
        # Enough failures that the old rule (MAX_ATTEMPTS while ClickHouse answers a
        # ping, then as many per record, then the DLQ) had dead-lettered a record in at
        # least one partition.
        await wait_for(
            lambda: (
                backend.failures[kind.table] > PARTITIONS * 2 * MAX_ATTEMPTS
                or consumer.stats.get("dead_lettered") > 0
            ),
            "the fault was never hit",
        )
        assert await dead_letters(bootstrap, topic) == 0
        assert not consumer.stats.get("dead_lettered")
        done = await committed(bootstrap, group)
        assert all(done.get(tp, 0) <= end for tp, end in before.items()), "committed past"
        assert consumer.health.body()[1]["status"] == "degraded"
        if recovery == "restart":
            await finish(stop, task)  # stopped mid-outage: the unfinished batches wait
            assert all(off <= before[tp] for tp, off in (await committed(bootstrap, group)).items())
        for sql in FAULTS[fault][1]:
            await chdb.query(sql.format(t=table))
        if recovery == "restart":
            consumer = make()
            stop, task = start(consumer)
        await wait_drained(bootstrap, group, [topic], within=30)
        assert consumer.health.body()[1]["status"] == "ok"
    finally:
        if not task.done():
            await finish(stop, task)
    assert await stored(chdb, kind) == (30 * kind.rows, 30 * kind.rows)
    assert await dead_letters(bootstrap, topic) == 0


async def test_a_row_the_table_cannot_take_is_dead_lettered_alone(
    env: dict[str, str], chdb: ChdbBackend
) -> None:
    kind = KINDS["otel"]
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("poison-otel"), unique("poison-group")
    await create_topics(bootstrap, [topic], partitions=PARTITIONS)
    await chdb.setup(OTEL_SCHEMA.create(chdb.database, 0))
    await chdb.query(
        "ALTER TABLE otel.otel_traces ADD CONSTRAINT no_poison CHECK SpanName != 'poison'"
    )
    poison = traces_request([span(os.urandom(16), os.urandom(8), "poison")]).SerializeToString()
    good = kind.records(30)
    await produce(bootstrap, topic, [*good[:15], (b"p", poison), *good[15:]])
    consumer = batch_consumer(env, kind, topic, group, chdb)
    stop, task = start(consumer)
    try:
        await wait_drained(bootstrap, group, [topic], within=30)
        assert await dead_letters(bootstrap, topic) == 1
        # Alone in its batch, the only evidence that the table takes rows is another
        # insert of the table accepted meanwhile.
        await produce(bootstrap, topic, [(b"p", poison)])
        await wait_drained(bootstrap, group, [topic], within=30)
    finally:
        await finish(stop, task)
    dead = await read_all(bootstrap, dlq(topic), expect=2, within=10)
    assert [header(r.headers, "dlq.reason") for r in dead] == [b"insert_failed"] * 2
    assert all(b"VIOLATED_CONSTRAINT" in (header(r.headers, "dlq.error") or b"") for r in dead)
    assert await stored(chdb, kind) == (30 * kind.rows, 30 * kind.rows)


# ---- 1. Marquez failing every POST while its probe answers ---------------------------------


@pytest.mark.parametrize("lanes", [1, 8])
async def test_marquez_read_only_dead_letters_nothing_and_loses_nothing(
    env: dict[str, str], standin: MarquezStandin, lanes: int
) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("outage-lineage"), unique("outage-group")
    await create_topics(bootstrap, [topic], partitions=1)
    runs = [str(uuid.uuid4()) for _ in range(10)]
    standin.post_status = 500  # Marquez's database is read-only ...
    standin.get_status = 200  # ... and its probe still lists namespaces
    await produce(bootstrap, topic, lineage_events(runs))
    consumer = lineage_consumer(env, standin, topic, group, lanes=lanes)
    stop, task = start(consumer)
    try:
        # More 5xx than the old rule (3 per event while the probe answers, then the DLQ)
        # let any event get: with one lane, two events had been dead-lettered by now.
        await standin.until(
            lambda: (
                len(standin.posts) > 3 * len(runs) + 1 or consumer.stats.get("dead_lettered") > 0
            )
        )
        assert await dead_letters(bootstrap, topic) == 0
        assert not consumer.stats.get("dead_lettered")
        assert (await committed(bootstrap, group)).get(TopicPartition(topic, 0), 0) == 0
        assert consumer.health.body()[1]["status"] == "degraded"
        standin.post_status = None
        await wait_drained(bootstrap, group, [topic], within=30)
        assert consumer.health.body()[1]["status"] == "ok"
    finally:
        await finish(stop, task)
    assert standin.stored_count() == Counter({(r, "START"): 1 for r in runs})
    assert await dead_letters(bootstrap, topic) == 0


async def test_a_5xx_for_one_event_while_others_are_stored_is_dead_lettered_alone(
    env: dict[str, str], standin: MarquezStandin
) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("poison-lineage"), unique("poison-group")
    await create_topics(bootstrap, [topic], partitions=1)
    poison = str(uuid.uuid4())
    standin.status_for = lambda event: 500 if event["run"]["runId"] == poison else None
    runs = runs_in_other_lanes(poison, 10)  # not queued behind it
    await produce(bootstrap, topic, lineage_events([poison, *runs]))
    consumer = lineage_consumer(env, standin, topic, group)
    stop, task = start(consumer)
    try:
        await standin.until(lambda: standin.attempts(poison) >= 3 and len(standin.stored) == 10)
        # More events stored while it keeps failing: the failure is the event's own.
        later = runs_in_other_lanes(poison, 5)
        await produce(bootstrap, topic, lineage_events(later))
        await wait_drained(bootstrap, group, [topic], within=30)
    finally:
        await finish(stop, task)
    (dead,) = await read_all(bootstrap, dlq(topic), expect=1, within=10)
    assert header(dead.headers, "dlq.reason") == b"http_5xx"
    assert standin.stored_count() == Counter({(r, "START"): 1 for r in runs + later})


# ---- 2. clickhouse-driver refusing a record's values ------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def sendall(self, data: bytes) -> None:
        self.data += data


class DriverOverChdb:
    """Stands in for `clickhouse_driver.Client` inside a real `NativeBackend`: every insert
    is encoded by the driver's own column writers (so a value it cannot encode fails as it
    does against a server), then chdb stores the rows. No ClickHouse server needed."""

    def __init__(self, chdb: ChdbBackend, loop: asyncio.AbstractEventLoop, health: Any) -> None:
        self.chdb = chdb
        self.loop = loop
        self.health = health
        self.context = Client("127.0.0.1", port=1).connection.context
        self.context.server_info = ServerInfo("ClickHouse", 24, 8, 0, 54470, "UTC", "x", 54470)
        self.tables = {**OTEL_SCHEMA.tables, **LINEAGE_SCHEMA.tables}
        self.seen: list[tuple[str, int, str]] = []  # (token, rows, /healthz status) per insert

    def _await(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def execute(
        self,
        query: str,
        params: list[tuple[Any, ...]] | None = None,
        *,
        settings: dict[str, Any] | None = None,
        with_column_types: bool = False,
    ) -> Any:
        if params is None:
            if not query.lstrip().upper().startswith("SELECT"):
                self._await(self.chdb.setup([query]))  # DDL
                return []
            rows = self._await(self.chdb.query(query))
            values = [tuple(r.values()) for r in rows]
            if with_column_types:
                return values, [(n, "String") for n in (rows[0] if rows else {})]
            return values
        name = query.split("(", 1)[0].rsplit(".", maxsplit=1)[-1].strip().strip("`")
        table = self.tables[name]
        token = str((settings or {}).get("insert_deduplication_token", ""))
        self.seen.append((token, len(params), str(self.health.body()[1]["status"])))
        types = {
            r["name"]: r["type"]
            for r in self._await(
                self.chdb.query(
                    "SELECT name, type FROM system.columns "
                    f"WHERE database = 'otel' AND table = '{name}'"
                )
            )
        }
        for i, column in enumerate(table.columns):
            writer = BufferedSocketWriter(Sink(), 1 << 16)
            write_column(self.context, column, types[column], [row[i] for row in params], writer)
            writer.flush()
        rows = [dict(zip(table.columns, row, strict=True)) for row in params]
        self._await(self.chdb.insert(table, rows, token))
        return None

    def disconnect(self) -> None:
        pass


async def test_native_driver_refusing_a_record_dead_letters_only_it(
    env: dict[str, str], chdb: ChdbBackend
) -> None:
    kind = KINDS["warehouse"]
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("driver-wh"), unique("driver-group")
    await create_topics(bootstrap, [topic], partitions=1)
    unencodable, incomplete = str(uuid.uuid4()), str(uuid.uuid4())

    def decoder(value: bytes | None) -> dict[str, list[Row]]:
        """The warehouse decoder with two gaps it does not have (yet): a lone surrogate in
        a column (the driver cannot encode it as UTF-8) and a row missing a column."""
        tables = decode_lineage(value)
        (event,) = tables["lineage_events"]
        if event["RunId"] == unencodable:
            tables["lineage_events"] = [{**event, "JobName": "bad \ud800 name"}]
        if event["RunId"] == incomplete:
            tables["lineage_events"] = [{k: v for k, v in event.items() if k != "Payload"}]
        return tables

    await chdb.setup(LINEAGE_SCHEMA.create(chdb.database, 0))
    native = NativeBackend("clickhouse://127.0.0.1:1/otel")
    settings = OtelSettings(
        bootstrap=bootstrap,
        group=group,
        topics=(topic,),
        max_batch_wait=0.3,
        backoff=FAST,
        client_id="test-driver",
        name="warehouse",
    )
    consumer = OtelConsumer(settings, native, decoders={topic: decoder}, schema=LINEAGE_SCHEMA)
    driver = DriverOverChdb(chdb, asyncio.get_running_loop(), consumer.health)
    native._client = driver
    runs = [str(uuid.uuid4()) for _ in range(20)]
    await produce(
        bootstrap, topic, lineage_events([*runs[:10], unencodable, incomplete, *runs[10:]])
    )
    stop, task = start(consumer)
    try:
        await wait_drained(bootstrap, group, [topic], within=30)
        assert consumer.health.body()[1]["status"] == "ok"
    finally:
        await finish(stop, task)
    dead = await read_all(bootstrap, dlq(topic), expect=2, within=10)
    errors = sorted((header(r.headers, "dlq.error") or b"").decode() for r in dead)
    assert "KeyError" in errors[0] and "UnicodeEncodeError" in errors[1]
    assert {header(r.headers, "dlq.reason") for r in dead} == {b"insert_failed"}
    assert await stored(chdb, kind) == (20, 20)
    # Record by record once the batch was refused, and /healthz said so meanwhile.
    singles = [status for token, _, status in driver.seen if "/lineage_events/" in token]
    assert singles and set(singles) == {"degraded"}


# ---- 3. records fetched while the assignment is being installed ------------------------------


async def test_no_record_comes_out_while_a_replay_is_installed_and_none_is_dropped(
    env: dict[str, str], chdb: ChdbBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The partition has a `pending:` marker: while the install reads it, no record comes
    out (one batched then would be cut outside the replayed batch); then the batch is
    replayed and the rest stored, each record once."""
    kind = KINDS["otel"]
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("assign-otel"), unique("assign-group")
    await create_topics(bootstrap, [topic], partitions=1)
    await produce(bootstrap, topic, kind.records(30))
    # A first consumer dies after inserting its first batch: the commit says `pending:`.
    await crash_after_first_insert(env, kind, topic, group, chdb, max_batch_messages=10)
    # The next one gets the partition; its assignment listener reads the marker through
    # the admin client, whose answer is held.
    fetched = watch_fetches(monkeypatch, topic)
    asked, answer = asyncio.Event(), asyncio.Event()
    offsets_read_after(monkeypatch, group, answer, within=20, asked=asked)
    second = batch_consumer(env, kind, topic, group, chdb, max_batch_wait=2.0)
    stop, task = start(second)
    try:
        await asyncio.wait_for(asked.wait(), 30)
        await asyncio.sleep(1.0)  # time for fetches to bring the records, were any let out
        assert not fetched.is_set(), "records came out while the install read the marker"
        answer.set()
        await asyncio.wait_for(fetched.wait(), 30)
        await produce(bootstrap, topic, kind.records(10))
        await wait_drained(bootstrap, group, [topic], within=20)
    finally:
        answer.set()
        await finish(stop, task)
    assert await stored(chdb, kind) == (40 * kind.rows, 40 * kind.rows)


# ---- 4. deduplication tokens: recreated topics, other releases --------------------------------


async def recreate(bootstrap: str, topic: str, group: str) -> None:
    """Delete `topic` (and its DLQ), wait until Kafka forgot it and the group's offsets of
    it, then create it again."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic, dlq(topic)])
        deadline = time.monotonic() + 30
        while True:
            (described,) = await admin.describe_topics([topic])
            offsets = await admin.list_consumer_group_offsets(group)
            if described.get("error_code") and not any(tp.topic == topic for tp in offsets):
                break
            assert time.monotonic() < deadline, "the topic was never deleted"
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    await create_topics(bootstrap, [topic], partitions=1)


async def test_a_recreated_topic_or_another_release_on_the_same_database_drops_no_rows(
    env: dict[str, str], chdb: ChdbBackend
) -> None:
    kind = KINDS["otel"]
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group, other_release = unique("token-otel"), unique("token-group"), unique("release")
    await create_topics(bootstrap, [topic], partitions=1)
    backend = Counting(chdb)
    for wave, consumer_group in enumerate([group, group, other_release]):
        if wave:
            await recreate(bootstrap, topic, group)
        # Same topic name, same partition, same offsets, same batch boundaries each time.
        await produce(bootstrap, topic, kind.records(10))
        consumer = batch_consumer(
            env, kind, topic, consumer_group, backend, max_batch_messages=10, max_batch_wait=30
        )
        stop, task = start(consumer)
        try:
            await wait_drained(bootstrap, consumer_group, [topic], within=30)
        finally:
            await finish(stop, task)
        assert await stored(chdb, kind) == (10 * (wave + 1) * kind.rows,) * 2, f"wave {wave}"
    traces = [t for t in backend.tokens if t.endswith("/otel_traces")]
    assert len(traces) == 3 and len(set(traces)) == 3


# ---- 5. shutdown inside the pod's grace period ------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> Path:
    piece = Helm()
    if not piece.ready():
        piece.build()
    return piece.binary


def test_consumers_finish_their_shutdown_inside_the_pods_grace_period(helm: Path) -> None:
    done = subprocess.run(
        [str(helm), "template", "hub", str(ROOT / "charts" / "lineage-hub"), "-n", "lh"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    pods = {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]
        for doc in yaml.safe_load_all(done.stdout)
        if doc and doc["kind"] == "Deployment" and "consume-" in doc["metadata"]["name"]
    }
    assert len(pods) == 2
    # Kubernetes sends SIGTERM, waits terminationGracePeriodSeconds (default 30), then
    # SIGKILL: the in-flight wait plus the final commit, LeaveGroup and the DLQ producer's
    # flush must end before that, or the final commit is cut during an outage.
    budget = cli.SHUTDOWN_TIMEOUT + cli.SHUTDOWN_TAIL
    for name, pod in pods.items():
        assert pod.get("terminationGracePeriodSeconds", 30) > budget, name
    args = cli._parser().parse_args(["otel", "--chdb-path", "/nowhere"])
    batch = cli._batch_consumers(args, cast(Backend, None), Stats("t"), Health())
    assert [c.s.shutdown_timeout for c in batch] == [cli.SHUTDOWN_TIMEOUT] * 2
    assert LineageSettings("kafka", "marquez").shutdown_timeout <= cli.SHUTDOWN_TIMEOUT
