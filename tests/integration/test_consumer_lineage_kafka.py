"""`consume lineage` on real Kafka against a Marquez stand-in on loopback
(tests/marquez_standin.py): an offset is committed only once Marquez stored its event,
a revoked partition is committed before it moves, Marquez down pauses the partitions,
and shutdown commits what was stored and leaves the group."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumers.lineage.consumer import LineageConsumer, LineageSettings
from consumers.retry import Backoff
from consumers.samples import lineage_bytes
from consumers.testkit import committed, create_topics, end_offsets, unique, wait_drained
from lineagehub.topics import dlq
from tests.consumer_faults import runs_in_other_lanes, wait_for
from tests.marquez_standin import MarquezStandin

pytestmark = pytest.mark.dataplane
NS = "standin"


@dataclass
class Setup:
    bootstrap: str
    topic: str
    group: str

    def tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.topic, partition)


@pytest.fixture
async def setup(env: dict[str, str]) -> Setup:
    s = Setup(env["KAFKA_BOOTSTRAP"], unique("openlineage-events"), unique("lineage-group"))
    await create_topics(s.bootstrap, [s.topic])  # 3 partitions
    return s


Item = tuple[int, str, str]  # partition, run id, event type


async def produce_to(bootstrap: str, topic: str, items: list[Item]) -> list[int]:
    """Each event to its partition, keyed by its run id; the offsets, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                value=lineage_bytes(run_id, event_type, namespace=NS, job="standin.job"),
                key=run_id.encode(),
                partition=partition,
            )
            for partition, run_id, event_type in items
        ]
        return [(await f).offset for f in futures]
    finally:
        await producer.stop()


def consumer_for(s: Setup, standin: MarquezStandin, **kw: Any) -> LineageConsumer:
    settings = LineageSettings(
        bootstrap=s.bootstrap,
        marquez_url=standin.url,
        group=s.group,
        topic=s.topic,
        backoff=Backoff(base=0.05, factor=2.0, cap=0.5),
        **kw,
    )
    return LineageConsumer(settings)


def start(consumer: LineageConsumer) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(consumer.run(stop))


async def finish(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, 60)


async def wait_committed(s: Setup, tp: TopicPartition, offset: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while (await committed(s.bootstrap, s.group)).get(tp, -1) < offset:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{tp} never committed {offset}")
        await asyncio.sleep(0.1)


async def group_state(s: Setup) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_consumer_groups([s.group])
    finally:
        await admin.close()
    return str(described.groups[0][2])


async def test_an_offset_is_committed_only_after_marquez_stored_its_event(
    setup: Setup, standin: MarquezStandin
) -> None:
    held = str(uuid.uuid4())
    others = runs_in_other_lanes(held, 20)
    standin.hold(held)  # received, never answered until released
    items: list[Item] = [(0, held, "START")]
    items += [(0, r, "START") for r in others[:10]] + [(1, r, "START") for r in others[10:]]
    await produce_to(setup.bootstrap, setup.topic, items)
    consumer = consumer_for(setup, standin)
    stop, task = start(consumer)
    try:
        # Everything behind the held event (offset 0 of partition 0) is stored ...
        await standin.until(lambda: len(standin.stored) == len(others))
        # ... and a commit round has run since: a new event on partition 1 got committed.
        (beacon,) = await produce_to(setup.bootstrap, setup.topic, [(1, str(uuid.uuid4()), "X")])
        await wait_committed(setup, setup.tp(1), beacon + 1)
        done = await committed(setup.bootstrap, setup.group)
        # Partition 0's offsets 1..10 are stored, but offset 0 is not: nothing committed.
        assert done.get(setup.tp(0), 0) == 0
        assert held in standin.received and standin.attempts(held) == 0
        standin.release(held)
        await wait_drained(setup.bootstrap, setup.group, [setup.topic], within=30)
    finally:
        await finish(stop, task)
    counts = standin.stored_count()
    assert counts[(held, "START")] == 1
    assert all(counts[(r, "START")] == 1 for r in others)
    assert len(standin.stored) == len(items) + 1


async def test_revoked_partitions_are_committed_before_they_move_nothing_lost_or_doubled(
    setup: Setup, standin: MarquezStandin
) -> None:
    standin.delay = 0.02  # a Marquez that takes its time: the stream is still running
    waves = [[str(uuid.uuid4()) for _ in range(90)] for _ in range(3)]

    def items(runs: list[str]) -> list[Item]:
        return [(i % 3, r, t) for i, r in enumerate(runs) for t in ("START", "COMPLETE")]

    await produce_to(setup.bootstrap, setup.topic, items(waves[0]))
    # No periodic commit for the first member: whatever it stored reaches Kafka only
    # through the commit on revoke (or on shutdown).
    first = consumer_for(setup, standin, lanes=2, commit_interval=3600, client_id="first")
    second = consumer_for(setup, standin, lanes=2, client_id="second")
    stop1, task1 = start(first)
    stop2: asyncio.Event | None = None
    task2: asyncio.Task[None] | None = None
    try:
        await standin.until(lambda: len(standin.stored) >= 20)
        stop2, task2 = start(second)
        await wait_for(
            lambda: second._consumer is not None and bool(second._consumer.assignment()),
            "the second member never got a partition",
        )
        await wait_for(
            lambda: first._consumer is not None and len(first._consumer.assignment()) < 3,
            "the first member kept every partition",
        )
        await produce_to(setup.bootstrap, setup.topic, items(waves[1]))
        await wait_for(lambda: second.stats.get("posted") > 0, "the second member never posted")
        await finish(stop1, task1)  # the first member leaves: the second takes everything
        await produce_to(setup.bootstrap, setup.topic, items(waves[2]))
        await wait_drained(setup.bootstrap, setup.group, [setup.topic], within=60)
    finally:
        if not task1.done():
            await finish(stop1, task1)
        if stop2 is not None and task2 is not None:
            await finish(stop2, task2)
    counts = standin.stored_count()
    want = {(r, t) for wave in waves for r in wave for t in ("START", "COMPLETE")}
    assert set(counts) == want, "nothing lost"
    doubled = {k: n for k, n in counts.items() if n != 1}
    assert not doubled, f"stored more than once: {len(doubled)}"
    assert first.stats.get("posted") > 0 and second.stats.get("posted") > 0


async def test_a_fetch_returned_after_a_rebalance_inside_getmany_is_dispatched_whole(
    setup: Setup, standin: MarquezStandin
) -> None:
    """The group rebalances while the loop waits in getmany, which then returns records
    of the new assignment, read from the commit (aiokafka returns none while a rebalance
    is under way), and its fetch position has moved past them. They are all dispatched:
    a dispatch that took this fetch for one from before the revocation (a rebalance
    generation read before getmany) dropped it, and its records were never read again."""
    runs = [str(uuid.uuid4()) for _ in range(60)]
    first = consumer_for(setup, standin, lanes=2, client_id="first")
    second = consumer_for(setup, standin, lanes=2, client_id="second")
    stop1, task1 = start(first)
    members = [(stop1, task1)]
    try:
        await wait_for(
            lambda: first._consumer is not None and len(first._consumer.assignment()) == 3,
            "the first member never got every partition",
        )
        kafka = first._consumer
        assert kafka is not None
        getmany = kafka.getmany
        rebalanced: list[dict[TopicPartition, list[Any]]] = []

        async def rebalanced_meanwhile(*partitions: TopicPartition, **kw: Any) -> Any:
            if rebalanced:
                return await getmany(*partitions, **kw)
            await produce_to(
                setup.bootstrap, setup.topic, [(i % 3, r, "START") for i, r in enumerate(runs)]
            )
            members.append(start(second))  # the group rebalances while this call waits
            await wait_for(lambda: 0 < len(kafka.assignment()) < 3, "no rebalance")
            while not (batches := await getmany(*partitions, **kw)):
                pass  # the new assignment's position is read from the commit first
            rebalanced.append(batches)
            return batches

        kafka.getmany = rebalanced_meanwhile
        await wait_for(lambda: bool(rebalanced), "getmany never returned after the rebalance")
        assert set(rebalanced[0]) <= kafka.assignment()
        await wait_drained(setup.bootstrap, setup.group, [setup.topic], within=30)
    finally:
        for stop, task in members:
            await finish(stop, task)
    assert standin.stored_count() == Counter({(r, "START"): 1 for r in runs})
    assert first.stats.get("posted") > 0 and second.stats.get("posted") > 0


async def test_marquez_down_pauses_every_partition_and_resumes_when_it_answers(
    setup: Setup, standin: MarquezStandin
) -> None:
    before = [str(uuid.uuid4()) for _ in range(9)]
    during = [str(uuid.uuid4()) for _ in range(30)]
    await produce_to(
        setup.bootstrap, setup.topic, [(i % 3, r, "START") for i, r in enumerate(before)]
    )
    consumer = consumer_for(setup, standin)
    stop, task = start(consumer)
    try:
        await wait_drained(setup.bootstrap, setup.group, [setup.topic], within=30)
        stored_before = await committed(setup.bootstrap, setup.group)
        standin.post_status = standin.get_status = 503  # down: POST and probe alike
        await produce_to(
            setup.bootstrap, setup.topic, [(i % 3, r, "START") for i, r in enumerate(during)]
        )
        await wait_for(lambda: not consumer.gate.is_up, "the gate never closed")
        kafka = consumer._consumer
        assert kafka is not None
        await wait_for(
            lambda: kafka.paused() == kafka.assignment(), "the partitions were never paused"
        )
        assert consumer.health.body()[1]["status"] == "degraded"
        # The prober keeps asking; nothing new is committed meanwhile.
        gets = standin.gets
        await standin.until(lambda: standin.gets >= gets + 2)
        assert await committed(setup.bootstrap, setup.group) == stored_before
        standin.post_status = None
        standin.get_status = 200
        await wait_drained(setup.bootstrap, setup.group, [setup.topic], within=30)
        assert consumer.gate.is_up and consumer.health.body()[1]["status"] == "ok"
        assert not kafka.paused()
    finally:
        await finish(stop, task)
    counts = standin.stored_count()
    assert counts == Counter({(r, "START"): 1 for r in before + during})
    assert not consumer.stats.get("dead_lettered")
    assert sum((await end_offsets(setup.bootstrap, [dlq(setup.topic)])).values()) == 0


async def test_shutdown_commits_what_was_stored_and_leaves_the_group(
    setup: Setup, standin: MarquezStandin
) -> None:
    held = str(uuid.uuid4())
    runs = runs_in_other_lanes(held, 12)
    items: list[Item] = [(0, r, "START") for r in runs[:6]] + [(0, held, "START")]
    items += [(0, r, "START") for r in runs[6:]]
    offsets = await produce_to(setup.bootstrap, setup.topic, items)
    standin.hold(held)
    consumer = consumer_for(setup, standin, commit_interval=3600, shutdown_timeout=0.5)
    stop, task = start(consumer)
    await standin.until(lambda: len(standin.stored) == len(runs) and held in standin.received)
    # Stop while the held POST is in flight: wait (bounded) for it, commit, leave.
    await finish(stop, task)
    done = await committed(setup.bootstrap, setup.group)
    held_offset = offsets[len(runs) // 2]
    assert done.get(setup.tp(0)) == held_offset, "committed up to the unfinished event"
    assert await group_state(setup) in {"Empty", "Dead"}, "left the group"
    # The held POST is answered after the consumer gave up on it: Marquez failed it.
    standin.post_status = 503
    standin.release(held)
    await standin.until(lambda: standin.attempts(held) == 1)
    standin.post_status = None
    again = consumer_for(setup, standin)
    stop, task = start(again)
    try:
        await wait_drained(setup.bootstrap, setup.group, [setup.topic], within=30)
    finally:
        await finish(stop, task)
    counts = standin.stored_count()
    assert counts[(held, "START")] == 1
    # Below the commit: stored once. Above it: redelivered (at-least-once), never lost.
    assert all(counts[(r, "START")] == 1 for r in runs[: len(runs) // 2])
    assert all(counts[(r, "START")] >= 1 for r in runs[len(runs) // 2 :])


async def test_a_partition_paused_for_its_in_flight_limit_resumes_after_another_pauses(
    setup: Setup, standin: MarquezStandin
) -> None:
    """Partition 0 reaches the in-flight limit and pauses; later partition 1 does too.
    When Marquez answers again, both resume: the first pause must not be forgotten
    when the second is recorded (it would stay paused for good, its events unread)."""
    standin.hold_all()  # received, never answered until released
    consumer = consumer_for(setup, standin, max_in_flight=4)
    stop, task = start(consumer)
    first = [str(uuid.uuid4()) for _ in range(6)]
    second = [str(uuid.uuid4()) for _ in range(6)]
    after = [str(uuid.uuid4()) for _ in range(6)]
    try:
        await wait_for(lambda: consumer._consumer is not None, "the consumer never started")
        kafka = consumer._consumer
        assert kafka is not None
        await wait_for(lambda: bool(kafka.assignment()), "no partition was assigned")
        await produce_to(setup.bootstrap, setup.topic, [(0, r, "START") for r in first])
        await wait_for(lambda: kafka.paused() == {setup.tp(0)}, "partition 0 never paused")
        await produce_to(setup.bootstrap, setup.topic, [(1, r, "START") for r in second])
        await wait_for(
            lambda: kafka.paused() == {setup.tp(0), setup.tp(1)}, "partition 1 never paused"
        )
        standin.release_all()
        await produce_to(
            setup.bootstrap, setup.topic, [(i % 2, r, "START") for i, r in enumerate(after)]
        )
        await wait_drained(setup.bootstrap, setup.group, [setup.topic], within=60)
        assert not kafka.paused()
    finally:
        standin.release_all()
        await finish(stop, task)
    counts = standin.stored_count()
    assert counts == Counter({(r, "START"): 1 for r in first + second + after})


async def test_a_partition_paused_for_its_limit_resumes_as_soon_as_half_is_done(
    setup: Setup, standin: MarquezStandin
) -> None:
    """A partition paused for its in-flight limit is resumed by the worker that finishes
    the event bringing it down to half the limit, at that moment: not at the loop's next
    fetch, which waits its whole timeout while every partition is paused (with a slow
    Marquez, long enough for every worker to run dry)."""
    tp = setup.tp(0)
    standin.hold_all()  # received, never answered until released
    consumer = consumer_for(setup, standin, max_in_flight=4, fetch_max_records=1)
    seen: list[tuple[int, bool]] = []  # (in flight, paused) as each event is finished
    count = consumer.stats.inc

    def watching(name: str, amount: float = 1, **labels: str | int) -> None:
        count(name, amount, **labels)
        if name == "processed" and consumer._consumer is not None:
            seen.append((consumer.tracker.in_flight(tp), tp in consumer._consumer.paused()))

    consumer.stats.inc = watching  # type: ignore[method-assign]
    runs = [str(uuid.uuid4()) for _ in range(12)]
    stop, task = start(consumer)
    try:
        await wait_for(lambda: consumer._consumer is not None, "the consumer never started")
        kafka = consumer._consumer
        assert kafka is not None
        await produce_to(setup.bootstrap, setup.topic, [(0, r, "START") for r in runs])
        await wait_for(lambda: kafka.paused() == {tp}, "the partition never paused")
        standin.release_all()
        await wait_drained(setup.bootstrap, setup.group, [setup.topic], within=60)
    finally:
        standin.release_all()
        await finish(stop, task)
    assert any(busy <= 2 for busy, _ in seen), seen
    assert [busy for busy, paused in seen if paused and busy <= 2] == [], seen
    assert standin.stored_count() == Counter({(r, "START"): 1 for r in runs})
