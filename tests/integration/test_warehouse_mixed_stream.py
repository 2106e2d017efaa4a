"""A mixed stream through a real Kafka into the lineage warehouse writer and chdb, at
full speed: about 1% of the records are malformed (not JSON, wrong types, a required
field missing, past the size limit, no value, a time ClickHouse cannot hold), the rest
are events as producers send them. Every record ends up either stored once (its rows
in every table, nothing twice) or dead-lettered once with the reason the row path
gives it."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from consumers.dlq import header
from consumers.otel.backend import ChdbBackend
from consumers.otel.consumer import OtelConsumer, OtelSettings
from consumers.otel.decode import DecodeError
from consumers.testkit import end_offsets, produce, read_all, unique, wait_drained
from consumers.warehouse.batch import decode_lineage_pending
from consumers.warehouse.ddl import LINEAGE_SCHEMA
from consumers.warehouse.decode import MAX_RECORD_BYTES, decode_lineage
from lineagehub.topics import dlq
from tests.unit.test_warehouse_batch import producer_samples
from tests.warehouse_events import (
    PROJECTED_EDGES,
    dataset_in,
    dataset_out,
    later,
    new_run_id,
    run_event,
)

pytestmark = pytest.mark.dataplane
S3 = "s3://lake"
GOOD = 3000
# Room for a record past the writer's limit (the broker's default is 1 MiB).
TOPIC_MAX_BYTES = MAX_RECORD_BYTES * 2


def good_events(n: int) -> list[bytes]:
    """Run events of many shapes (no facets to wide schemas with column lineage), and
    the producers' samples (openlineage-python, Airflow, Spark, dbt, Flink, Marquez)."""
    rng = random.Random(11)
    out = producer_samples()
    while len(out) < n:
        run, i = new_run_id(), len(out)
        fields = [(f"c{k}", rng.choice(["int", "string"])) for k in range(rng.randrange(0, 30))]
        columns = {f: [(S3, f"in{i}", f)] for f, _ in fields[: rng.randrange(0, len(fields) + 1)]}
        out.append(
            run_event(
                rng.choice(["START", "RUNNING", "COMPLETE", "FAIL"]),
                run,
                ("etl", f"job{i % 97}"),
                later(i),
                inputs=[dataset_in(S3, f"in{i}", *fields)],
                outputs=[dataset_out(S3, f"out{i}", *fields, rows=i, columns=columns)],
            )
        )
    return out[:n]


def malformed(n: int) -> list[bytes | None]:
    """`n` records the writer cannot store, of every kind."""
    job = b'"job": {"namespace": "etl", "name": "j"}'
    kinds: list[bytes | None] = [
        b"{not json",
        b'{"eventTime": true, "run": {"runId": "r"}, ' + job + b"}",
        b'{"eventTime": "2026-01-01T00:00:00Z", "run": {"runId": {"a": 1}}, ' + job + b"}",
        b'{"eventTime": "2026-01-01T00:00:00Z", "run": {"runId": "r"}, ' + job + b', "inputs": 5}',
        b'{"eventTime": "2026-01-01T00:00:00Z", "run": {"runId": "r"}, '
        + job
        + b', "outputs": [{"namespace": "o", "name": ["x"]}]}',
        b'{"eventTime": "2026-01-01T00:00:00Z", "run": {"runId": "r"}}',
        b'{"run": {"runId": "r"}, ' + job + b"}",
        b'{"eventTime": "2999-01-01T00:00:00Z", "run": {"runId": "r"}, ' + job + b"}",
        b"[1, 2]",
        None,
    ]
    out = [kinds[i % len(kinds)] for i in range(n - 1)]
    pad = b" " * (MAX_RECORD_BYTES + 1000)
    out.append(b'{"eventTime": "2026-01-01T00:00:00Z", "pad": "' + pad + b'"}')
    return out


def reference(value: bytes | None) -> str | None:
    """The reason the row path refuses `value` with; None if it stores it."""
    try:
        decode_lineage(value)
    except DecodeError as exc:
        return exc.reason
    return None


async def create_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [
            NewTopic(name, 3, 1, topic_configs={"max.message.bytes": str(TOPIC_MAX_BYTES)}),
            NewTopic(dlq(name), 3, 1),
        ]
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(topics)
    finally:
        await admin.close()


async def count(b: ChdbBackend, sql: str) -> int:
    (row,) = await b.query(sql)
    return int(next(iter(row.values())))


async def test_one_percent_malformed_each_stored_once_or_dead_lettered_once(
    env: dict[str, str], chdb: ChdbBackend
) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic = unique("openlineage-mixed")
    await create_topic(bootstrap, topic)
    good = good_events(GOOD)
    bad = malformed(GOOD // 99)
    stream: list[bytes | None] = [*good, *bad]
    random.Random(5).shuffle(stream)
    expected = [reference(v) for v in stream]
    assert sum(r is None for r in expected) == len(good)  # the samples are all storable
    hashes = {decode_lineage(v)["lineage_events"][0]["EventHash"] for v in good}
    assert len(hashes) == len(good)  # no two alike: each must show up once
    assert all(r is not None for r in map(reference, bad))
    messages = [(str(i).encode(), value) for i, value in enumerate(stream)]
    await produce(bootstrap, topic, messages, max_request_size=TOPIC_MAX_BYTES)

    settings = OtelSettings(
        bootstrap=bootstrap,
        group=f"{topic}-warehouse",
        topics=(topic,),
        client_id="test-warehouse",
        name="warehouse",
    )
    writer = OtelConsumer(
        settings, chdb, decoders={topic: decode_lineage_pending}, schema=LINEAGE_SCHEMA
    )
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    try:
        await wait_drained(bootstrap, settings.group, [topic], within=300)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)

    # Dead-lettered once each, with the row path's reason; keys say which record.
    assert sum((await end_offsets(bootstrap, [dlq(topic)])).values()) == len(bad)
    dead = await read_all(bootstrap, dlq(topic), expect=len(bad), within=60)
    got = Counter(
        (int(r.key or b"-1"), (header(r.headers, "dlq.reason") or b"").decode()) for r in dead
    )
    want = Counter((i, reason) for i, reason in enumerate(expected) if reason is not None)
    assert got == want
    assert writer.stats.get("dead_lettered") == len(bad)
    assert all(header(r.headers, "dlq.error") for r in dead)  # each says why

    # Stored once each: one row per good event (no FINAL: a row twice would show), and
    # every io and edge row the row path gives, once.
    rows = Counter[str]()
    for value in good:
        for table, table_rows in decode_lineage(value).items():
            rows[table] += len(table_rows)
    assert await count(chdb, "SELECT count() FROM otel.lineage_events") == len(good)
    assert await count(chdb, "SELECT uniqExact(EventHash) FROM otel.lineage_events") == len(good)
    assert await count(chdb, "SELECT count() FROM otel.lineage_io") == rows["lineage_io"]
    assert await count(chdb, "SELECT count() FROM otel.lineage_edges") == rows["lineage_edges"]
    assert await count(chdb, PROJECTED_EDGES) == rows["lineage_edges"]
    assert not task.exception()
