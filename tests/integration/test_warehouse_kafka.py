"""The lineage warehouse writer against a real Kafka, into chdb: every OpenLineage
event kind stored, what cannot be stored dead-lettered once with a reason, and a
writer killed mid-batch losing nothing and doubling nothing."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from consumers.dlq import header
from consumers.otel.backend import ChdbBackend
from consumers.otel.consumer import OtelConsumer, OtelSettings
from consumers.testkit import create_topics, produce, read_all, unique, wait_drained
from consumers.warehouse.batch import decode_lineage_pending
from consumers.warehouse.ddl import LINEAGE_SCHEMA
from lineagehub.topics import dlq
from tests.crashing import CrashingBackend
from tests.warehouse_events import (
    PROJECTED_EDGES,
    dataset_event,
    dataset_in,
    dataset_out,
    job_event,
    later,
    new_run_id,
    run_event,
)

pytestmark = pytest.mark.dataplane
S3 = "s3://lake"


@pytest.fixture
async def topic(env: dict[str, str]) -> str:
    name = unique("openlineage-events")
    await create_topics(env["KAFKA_BOOTSTRAP"], [name])
    return name


def writer(env: dict[str, str], topic: str, backend: Any, **kw: Any) -> OtelConsumer:
    settings = OtelSettings(
        bootstrap=env["KAFKA_BOOTSTRAP"],
        group=f"{topic}-warehouse",
        topics=(topic,),
        max_batch_wait=0.3,
        client_id="test-warehouse",
        name="warehouse",
        **kw,
    )
    return OtelConsumer(
        settings, backend, decoders={topic: decode_lineage_pending}, schema=LINEAGE_SCHEMA
    )


async def run_until_drained(consumer: OtelConsumer, env: dict[str, str], topic: str) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_drained(env["KAFKA_BOOTSTRAP"], consumer.s.group, [topic], within=90)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def count(b: ChdbBackend, sql: str) -> int:
    (row,) = await b.query(sql)
    return int(next(iter(row.values())))


def pipeline(run: str, job: str, at: float) -> list[bytes]:
    """One run's START, RUNNING and COMPLETE; inputs on START, outputs on COMPLETE."""
    return [
        run_event("START", run, ("etl", job), later(at), inputs=[dataset_in(S3, f"{job}_in")]),
        run_event("RUNNING", run, ("etl", job), later(at + 1)),
        run_event(
            "COMPLETE",
            run,
            ("etl", job),
            later(at + 2),
            outputs=[dataset_out(S3, f"{job}_out", ("id", "int"), rows=10)],
        ),
    ]


async def test_every_event_kind_is_stored_and_bad_ones_are_dead_lettered(
    env: dict[str, str], topic: str, chdb: ChdbBackend
) -> None:
    runs = {new_run_id(): f"job{i}" for i in range(20)}
    messages: list[tuple[bytes | None, bytes | None]] = []
    for i, (run, job) in enumerate(runs.items()):
        events = pipeline(run, job, i)
        random.Random(i).shuffle(events)  # arrival order is not eventTime order
        messages += [(run.encode(), e) for e in events]
    messages.append((b"ds", dataset_event(S3, "declared", later(0), ("a", "string"))))
    messages.append((b"job", job_event(("etl", "designed"), later(0), [(S3, "x")], [(S3, "y")])))
    bad = [
        (b"bad", b"not json at all"),
        (b"bad", b'{"eventTime": "2026-01-01T00:00:00Z", "run": {"runId": "r"}}'),
        (b"bad", b"{}"),
        (b"bad", None),
    ]
    messages += bad
    await produce(env["KAFKA_BOOTSTRAP"], topic, messages)
    consumer = writer(env, topic, chdb)
    await run_until_drained(consumer, env, topic)

    states = await chdb.query("SELECT RunId, State FROM otel.lineage_runs")
    assert {r["RunId"]: r["State"] for r in states} == dict.fromkeys(runs, "COMPLETE")
    assert await count(chdb, "SELECT count() FROM otel.lineage_events FINAL") == 20 * 3 + 2
    io = await chdb.query(
        "SELECT RunId, groupUniqArray((Direction, DatasetName)) AS io "
        "FROM otel.lineage_io WHERE RunId != '' GROUP BY RunId"
    )
    assert {r["RunId"]: sorted(map(tuple, r["io"])) for r in io} == {
        run: [("input", f"{job}_in"), ("output", f"{job}_out")] for run, job in runs.items()
    }
    dead = await read_all(env["KAFKA_BOOTSTRAP"], dlq(topic), expect=len(bad), within=30)
    assert len(dead) == len(bad)
    reasons = sorted((header(r.headers, "dlq.reason") or b"").decode() for r in dead)
    assert reasons == ["empty_record", "invalid_event", "invalid_event", "invalid_json"]
    assert consumer.stats.get("dead_lettered") == len(bad)


async def test_killed_mid_batch_then_restarted_loses_and_doubles_nothing(
    env: dict[str, str], topic: str, chdb: ChdbBackend
) -> None:
    runs = {new_run_id(): f"job{i}" for i in range(150)}
    messages: list[tuple[bytes | None, bytes | None]] = [
        (run.encode(), event)
        for i, (run, job) in enumerate(runs.items())
        for event in pipeline(run, job, i)
    ]
    await produce(env["KAFKA_BOOTSTRAP"], topic, messages)

    crashing = CrashingBackend(chdb, crash_after=2, table="lineage_events")
    first = writer(env, topic, crashing, max_batch_messages=40)
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    await asyncio.wait_for(crashing.crashed.wait(), 60)
    first.abort()  # the process is gone: no flush, no commit
    stop.set()
    await asyncio.wait_for(task, 30)
    crashed_token = crashing.tokens[-1]
    before = await count(chdb, "SELECT count() FROM otel.lineage_events")
    assert 0 < before < len(messages)

    recording = CrashingBackend(chdb, crash_after=10**9, table="lineage_events")
    await run_until_drained(writer(env, topic, recording, max_batch_messages=40), env, topic)

    # The batch inserted before the crash came back whole under the same token and
    # ClickHouse dropped it: no row twice, in any table, even without FINAL.
    assert crashed_token in recording.tokens
    assert await count(chdb, "SELECT count() FROM otel.lineage_events") == len(messages)
    assert await count(chdb, "SELECT count() FROM otel.lineage_io") == 2 * len(runs)
    assert await count(chdb, "SELECT count() FROM otel.lineage_edges") == 2 * len(runs)
    assert await count(chdb, PROJECTED_EDGES) == 2 * len(runs)  # sorted by destination, once
    stats = await chdb.query(
        "SELECT sum(RowCount) AS rows FROM otel.lineage_io WHERE Direction = 'output'"
    )
    assert int(stats[0]["rows"]) == 10 * len(runs)
    assert await count(chdb, "SELECT count() FROM otel.lineage_runs") == len(runs)
