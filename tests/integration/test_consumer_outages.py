"""Outages against poison, on real Kafka with real stores: Marquez (a stand-in on
loopback, tests/marquez_standin.py) failing every POST while its probe answers.

A store that fails every record dead-letters nothing and commits nothing past what it
stored, and once it recovers every record is stored exactly once. A record that fails
while other records are stored is dead-lettered alone. Also: the consumers' shutdown
against the pod's grace period.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from aiokafka import TopicPartition

from consumers import cli
from consumers.dlq import header
from consumers.health import Health
from consumers.lineage.consumer import LineageConsumer, LineageSettings
from consumers.otel.backend import Backend
from consumers.retry import Backoff
from consumers.samples import lineage_bytes
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
from lineagehub.topics import dlq
from stack.pieces.helm import Helm
from tests.marquez_standin import MarquezStandin

pytestmark = pytest.mark.dataplane
ROOT = Path(__file__).resolve().parents[2]
FAST = Backoff(base=0.02, factor=2.0, cap=0.1)
Pairs = list[tuple[bytes | None, bytes | None]]


@pytest.fixture(scope="module")
def env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if os.environ.get("CONSUMERS_TEST_EXTERNAL") == "1":
        yield dict(os.environ)
    else:
        yield request.getfixturevalue("stack").env


@pytest.fixture
async def standin() -> AsyncIterator[MarquezStandin]:
    server = MarquezStandin()
    await server.start()
    yield server
    await server.stop()


async def wait_for(check: Callable[[], bool], what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.02)


async def dead_letters(bootstrap: str, topic: str) -> int:
    """How many records the DLQ holds (its end offsets: no waiting, no guessing)."""
    return sum((await end_offsets(bootstrap, [dlq(topic)])).values())


def start(consumer: LineageConsumer) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(consumer.run(stop))


async def finish(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, 60)


# ---- 1. Marquez failing every POST while its probe answers ---------------------------------


def lineage_consumer(
    env: dict[str, str], standin: MarquezStandin, topic: str, group: str, **kw: Any
) -> LineageConsumer:
    settings = LineageSettings(
        bootstrap=env["KAFKA_BOOTSTRAP"],
        marquez_url=standin.url,
        group=group,
        topic=topic,
        backoff=FAST,
        max_server_error_attempts=3,
        **kw,
    )
    return LineageConsumer(settings)


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
