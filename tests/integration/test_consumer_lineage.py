"""`consume lineage` against real Kafka and Marquez from the local stack."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from consumers.dlq import header
from consumers.lineage.consumer import LineageConsumer, LineageSettings
from consumers.retry import Backoff
from consumers.samples import lineage_bytes, lineage_event
from consumers.testkit import (
    committed,
    create_topics,
    end_offsets,
    produce,
    read_all,
    unique,
    wait_drained,
)
from lineagehub.topics import dlq

pytestmark = [pytest.mark.dataplane, pytest.mark.usefixtures("marquez_up")]


@pytest.fixture(scope="module")
def handle(request: pytest.FixtureRequest) -> Any:
    if os.environ.get("CONSUMERS_TEST_EXTERNAL") == "1":
        return None
    return request.getfixturevalue("stack")


@pytest.fixture(scope="module")
def env(handle: Any) -> dict[str, str]:
    return dict(os.environ) if handle is None else dict(handle.env)


@dataclass
class Setup:
    bootstrap: str
    marquez: str
    topic: str
    group: str
    namespace: str


@pytest.fixture
async def setup(env: dict[str, str]) -> Setup:
    s = Setup(
        env["KAFKA_BOOTSTRAP"],
        env["MARQUEZ_URL"].rstrip("/"),
        unique("openlineage-events"),
        unique("lineage-group"),
        unique("ns"),
    )
    await create_topics(s.bootstrap, [s.topic])
    return s


@pytest.fixture
async def marquez(setup: Setup) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=setup.marquez, timeout=10) as client:
        yield client


def consumer_for(s: Setup, **kw: Any) -> LineageConsumer:
    settings = LineageSettings(
        bootstrap=s.bootstrap,
        marquez_url=s.marquez,
        group=s.group,
        topic=s.topic,
        backoff=Backoff(base=0.1, factor=2.0, cap=2.0),
        **kw,
    )
    return LineageConsumer(settings)


def count_pings(consumer: LineageConsumer) -> list[int]:
    """Count the consumer's real pings of Marquez (the prober's only call while it is down)."""
    count = [0]
    ping = consumer.marquez.ping

    async def counted() -> bool:
        count[0] += 1
        return await ping()

    consumer.marquez.ping = counted  # type: ignore[method-assign]
    return count


async def run_until_drained(s: Setup, consumer: LineageConsumer, within: float = 90) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_drained(s.bootstrap, s.group, [s.topic], within=within)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def run_state(marquez: httpx.AsyncClient, run_id: str) -> str | None:
    response = await marquez.get(f"/api/v1/jobs/runs/{run_id}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return str(response.json()["state"])


async def wait_states(
    marquez: httpx.AsyncClient, runs: list[str], state: str, within: float = 60
) -> None:
    """Marquez processes POSTs asynchronously: poll until every run shows `state`."""
    deadline = time.monotonic() + within
    pending = set(runs)
    while pending and time.monotonic() < deadline:
        for run_id in list(pending):
            if await run_state(marquez, run_id) == state:
                pending.discard(run_id)
        if pending:
            await asyncio.sleep(0.5)
    assert not pending, f"{len(pending)} runs never reached {state}, e.g. {sorted(pending)[:3]}"


Pairs = list[tuple[bytes | None, bytes | None]]
BOTH = ("START", "COMPLETE")


def events(s: Setup, runs: list[str], job: str, types: tuple[str, ...] = BOTH) -> Pairs:
    out: Pairs = []
    for run_id in runs:
        for t in types:
            out.append((run_id.encode(), lineage_bytes(run_id, t, namespace=s.namespace, job=job)))
    return out


async def test_events_reach_marquez_with_datasets_and_column_lineage(
    setup: Setup, marquez: httpx.AsyncClient
) -> None:
    runs = [str(uuid.uuid4()) for _ in range(10)]
    await produce(setup.bootstrap, setup.topic, events(setup, runs, "orders.transform"))
    consumer = consumer_for(setup)
    await run_until_drained(setup, consumer)
    await wait_states(marquez, runs, "COMPLETED")
    assert consumer.stats.get("posted") == 20
    job = (await marquez.get(f"/api/v1/namespaces/{setup.namespace}/jobs/orders.transform")).json()
    assert {(d["namespace"], d["name"]) for d in job["inputs"]} == {
        ("file", "orders.transform.input")
    }
    assert {(d["namespace"], d["name"]) for d in job["outputs"]} == {
        ("file", "orders.transform.output")
    }
    dataset = (await marquez.get("/api/v1/namespaces/file/datasets/orders.transform.output")).json()
    sent = lineage_event(runs[0], "COMPLETE", namespace=setup.namespace, job="orders.transform")
    want = sent["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert dataset["facets"]["columnLineage"]["fields"] == want
    assert [f["name"] for f in dataset["fields"]] == ["id", "total"]


async def test_marquez_outage_pauses_then_delivers_everything_once(
    setup: Setup, marquez: httpx.AsyncClient, handle: Any
) -> None:
    if handle is None:
        pytest.skip("needs the stack handle to stop and start Marquez")
    job = "outage.job"
    before = [str(uuid.uuid4()) for _ in range(5)]
    during = [str(uuid.uuid4()) for _ in range(30)]
    await produce(setup.bootstrap, setup.topic, events(setup, before, job))
    consumer = consumer_for(setup)
    pings = count_pings(consumer)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_drained(setup.bootstrap, setup.group, [setup.topic], within=60)
        await asyncio.to_thread(handle.stop, "marquez")
        await produce(setup.bootstrap, setup.topic, events(setup, during, job))
        for _ in range(300):
            if not consumer.gate.is_up:
                break
            await asyncio.sleep(0.1)
        assert not consumer.gate.is_up, "the consumer never noticed Marquez was down"
        assert consumer.health.body()[1]["status"] == "degraded"
        retried = consumer.stats.get("retried")
        # Paused: while the prober pings Marquez again and again, the workers wait on the
        # gate; the POSTs in flight when it closed fail once more at most (no retry storm).
        probed = pings[0]
        for _ in range(600):
            if pings[0] >= probed + 4:
                break
            await asyncio.sleep(0.1)
        assert pings[0] >= probed + 4, "the prober stopped pinging while Marquez is down"
        assert consumer.stats.get("retried") - retried <= 3
        assert consumer._paused, "partitions are paused while Marquez is down"
        ends = await end_offsets(setup.bootstrap, [setup.topic])
        done = await committed(setup.bootstrap, setup.group)
        assert sum(ends.values()) > sum(done.values()), "nothing is committed while Marquez is down"
        await asyncio.to_thread(handle.start, "marquez")
        await wait_drained(setup.bootstrap, setup.group, [setup.topic], within=180)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    await wait_states(marquez, before + during, "COMPLETED", within=120)
    runs = (
        await marquez.get(
            f"/api/v1/namespaces/{setup.namespace}/jobs/{job}/runs", params={"limit": 200}
        )
    ).json()
    ids = [r["id"] for r in runs["runs"]]
    assert sorted(ids) == sorted(before + during), "every run exactly once"
    assert consumer.gate.is_up and consumer.health.body()[1]["status"] == "ok"


async def test_malformed_events_go_to_the_dlq_and_never_block_good_ones(
    setup: Setup, marquez: httpx.AsyncClient
) -> None:
    good_runs = [str(uuid.uuid4()) for _ in range(20)]
    bad: list[tuple[str, bytes]] = []
    base = lineage_event(str(uuid.uuid4()), namespace=setup.namespace, job="bad")
    for i in range(40):
        bad.append(("invalid_json", b'{"eventType": "START", ' + str(i).encode()))
        missing = json.loads(json.dumps(base))
        del missing["run"]["runId"]
        bad.append(("schema", json.dumps(missing).encode()))
        late = json.loads(json.dumps(base))
        late["eventTime"] = f"yesterday {i}"
        bad.append(("schema", json.dumps(late).encode()))
        typed = json.loads(json.dumps(base))
        typed["job"]["name"] = i
        bad.append(("schema", json.dumps(typed).encode()))
        bad.append(("schema", b"[1, 2, 3]"))
    bad.append(("invalid_json", b"x" * 900_000))
    bad.append(("empty", b""))
    assert len(bad) >= 200
    messages: list[tuple[bytes | None, bytes | None]] = []
    good = iter(good_runs)
    for i, (_, value) in enumerate(bad):
        # Same key as the good event behind it: the same lane, so the DLQ path must not stall it.
        run_id = next(good, None) if i % 10 == 0 else None
        key = (run_id or str(i)).encode()
        messages.append((key, value))
        if run_id:
            messages.append(
                (key, lineage_bytes(run_id, "START", namespace=setup.namespace, job="good"))
            )
            messages.append(
                (key, lineage_bytes(run_id, "COMPLETE", namespace=setup.namespace, job="good"))
            )
    await produce(setup.bootstrap, setup.topic, messages)
    consumer = consumer_for(setup)
    await run_until_drained(setup, consumer, within=180)
    await wait_states(marquez, good_runs, "COMPLETED")
    dead = await read_all(setup.bootstrap, dlq(setup.topic), expect=len(bad), within=60)
    assert len(dead) == len(bad)
    reasons = sorted((header(r.headers, "dlq.reason") or b"").decode() for r in dead)
    assert reasons == sorted(reason for reason, _ in bad)
    assert all(header(r.headers, "dlq.error") for r in dead)
    assert all(header(r.headers, "dlq.topic") == setup.topic.encode() for r in dead)


async def test_sigterm_finishes_in_flight_commits_and_leaves_the_group(
    setup: Setup, marquez: httpx.AsyncClient, tmp_path: Any
) -> None:
    runs = [str(uuid.uuid4()) for _ in range(40)]
    await produce(setup.bootstrap, setup.topic, events(setup, runs, "sigterm.job"))
    code = "import sys; from consumers.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        "lineage",
        "--bootstrap",
        setup.bootstrap,
        "--marquez-url",
        setup.marquez,
        "--group",
        setup.group,
        "--topic",
        setup.topic,
        "--health-port",
        "-1",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        # Stop it while it is busy: as soon as the first offsets are committed.
        for _ in range(300):
            if await committed(setup.bootstrap, setup.group):
                break
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-3000:]
    admin = AIOKafkaAdminClient(bootstrap_servers=setup.bootstrap)
    await admin.start()
    try:
        (group,) = await admin.describe_consumer_groups([setup.group])
    finally:
        await admin.close()
    assert group.groups[0][2] in {"Empty", "Dead"}, group  # it left: no session timeout wait
    # Everything it committed is in Marquez (it committed only what was stored).
    done = sum((await committed(setup.bootstrap, setup.group)).values())
    assert done > 0
    stored = [r for r in runs if await run_state(marquez, r) is not None]
    assert len(stored) * 2 >= done
