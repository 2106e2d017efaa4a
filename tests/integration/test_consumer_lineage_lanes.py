"""The lineage consumer keeps its lanes busy, on real Kafka against the Marquez stand-in
(tests/marquez_standin.py), and its scheduling keeps what it guarantees.

The stand-in holds every POST and the test answers them one at a time, newest and oldest
in turn, so events finish out of offset order. After each answer, the count of POSTs in
flight must come back to the lane count (or to the number of runs with an event left, when
fewer: a run's events go one at a time): a lane that idles while a record it may take is
queued, at a fetch, a slice of the dispatch, a pause or a commit, leaves the count short
for good, since the other POSTs stay held. The fetch, the dispatch slices and the
in-flight limit are set small, so the stream crosses each of those boundaries many times.
"""

from __future__ import annotations

import uuid
from functools import partial

import pytest
from aiokafka import TopicPartition

from consumers.testkit import committed, create_topics, unique, wait_drained
from tests.consumer_faults import wait_for
from tests.integration.test_consumer_lineage_kafka import (
    Item,
    Setup,
    consumer_for,
    finish,
    produce_to,
    start,
)
from tests.marquez_standin import MarquezStandin

pytestmark = pytest.mark.dataplane
LANES = 4
RUNS = 24
GAP = 7  # a run's COMPLETE comes this many records after its START


def interleaved(runs: list[str]) -> list[Item]:
    """START of each run in turn, its COMPLETE `GAP` records later: S0 .. S6 C0 S7 C1 ..."""
    items: list[Item] = []
    completes: list[str] = []
    for run in runs:
        items.append((0, run, "START"))
        completes.append(run)
        if len(completes) >= GAP:
            items.append((0, completes.pop(0), "COMPLETE"))
    items += [(0, run, "COMPLETE") for run in completes]
    return items


async def test_lanes_stay_busy_runs_keep_their_order_and_commits_stop_at_the_first_unstored(
    env: dict[str, str], standin: MarquezStandin
) -> None:
    s = Setup(env["KAFKA_BOOTSTRAP"], unique("openlineage-events"), unique("lineage-group"))
    await create_topics(s.bootstrap, [s.topic], partitions=1)
    tp = TopicPartition(s.topic, 0)
    items = interleaved([str(uuid.uuid4()) for _ in range(RUNS)])
    offsets = await produce_to(s.bootstrap, s.topic, items)
    standin.hold_each()
    consumer = consumer_for(
        s,
        standin,
        lanes=LANES,
        max_in_flight=10,  # pauses and resumes the partition over and over
        fetch_max_records=5,
        dispatch_slice=3,
        commit_interval=0.0,
        http_timeout=120.0,  # a POST is held as long as the test needs
    )
    stored: set[tuple[str, str]] = set()

    def left() -> list[tuple[int, str, str]]:
        """(offset, run, type) of every event not stored yet, in offset order."""
        return [
            (offset, run, kind)
            for offset, (_, run, kind) in zip(offsets, items, strict=True)
            if (run, kind) not in stored
        ]

    def lanes_full() -> bool:
        runnable = len({run for _, run, _ in left()})
        return standin.in_flight == min(LANES, runnable)

    def committed_up_to(offset: int) -> bool:
        return consumer.tracker.last_committed(tp) == offset

    def settled(count: int) -> bool:
        """The first `count` answers are processed, and what they let commit committed."""
        return consumer.stats.get("processed") == count and not consumer.tracker.to_commit()

    def answered(count: int) -> bool:
        return len(standin.posts) == count

    stop, task = start(consumer)
    try:
        for step in range(len(items)):
            await standin.until(lanes_full)
            waiting = standin.waiting
            assert len({held.run_id for held in waiting}) == len(waiting), (
                "two events of one run in flight at once"
            )
            first_unstored = left()[0][0]
            if step % 2 == 0 and step:  # a commit round since the last answer, the newest
                await wait_for(partial(settled, step), "no commit round after an answer")
                done = consumer.tracker.last_committed(tp)
                assert done is None or done <= first_unstored, f"committed {done}: unstored"
            if step % 6 == 5 and first_unstored:  # the commit does reach the first unstored
                await wait_for(
                    partial(committed_up_to, first_unstored),
                    f"never committed up to offset {first_unstored}",
                )
            held = waiting[-1] if step % 2 else waiting[0]
            standin.answer(held)
            stored.add((held.run_id, held.event_type))
            await standin.until(partial(answered, step + 1))
        await wait_drained(s.bootstrap, s.group, [s.topic], within=30)
        assert (await committed(s.bootstrap, s.group))[tp] == offsets[-1] + 1
    finally:
        standin.release_all()
        await finish(stop, task)
    assert standin.most_in_flight == LANES
    order = [(p.run_id, p.event_type) for p in standin.posts]
    assert sorted(order) == sorted((run, kind) for _, run, kind in items), "each stored once"
    for _, run, _ in items:
        assert [kind for r, kind in order if r == run] == ["START", "COMPLETE"], run
    assert not consumer.stats.get("dead_lettered")


async def test_offsets_past_an_unfinished_event_are_bounded_apart_from_the_in_flight_limit(
    env: dict[str, str], standin: MarquezStandin
) -> None:
    """One event held: the events behind it are stored (they are not unfinished), until
    `max_uncommitted` offsets are past it; then the partition pauses, however few records
    are unfinished, and resumes once the held one is stored."""
    s = Setup(env["KAFKA_BOOTSTRAP"], unique("openlineage-events"), unique("lineage-group"))
    await create_topics(s.bootstrap, [s.topic], partitions=1)
    tp = TopicPartition(s.topic, 0)
    held = str(uuid.uuid4())
    others = [str(uuid.uuid4()) for _ in range(30)]
    await produce_to(s.bootstrap, s.topic, [(0, run, "START") for run in [held, *others]])
    standin.hold(held)
    consumer = consumer_for(
        s, standin, max_in_flight=100, max_uncommitted=8, fetch_max_records=2, http_timeout=120.0
    )
    stop, task = start(consumer)
    try:
        await wait_for(lambda: consumer._consumer is not None, "the consumer never started")
        kafka = consumer._consumer
        assert kafka is not None
        await wait_for(lambda: kafka.paused() == {tp}, "the partition never paused")
        window = consumer.tracker.in_flight(tp)
        await standin.until(lambda: len(standin.stored) == window - 1)
        assert kafka.paused() == {tp} and consumer._parts[tp].unfinished == 1
        assert 8 <= window <= 8 + 2, "offsets ran past the bound by more than a fetch"
        standin.release(held)
        await wait_drained(s.bootstrap, s.group, [s.topic], within=30)
        assert not kafka.paused()
    finally:
        standin.release_all()
        await finish(stop, task)
    counts = standin.stored_count()
    assert sorted(counts) == sorted((run, "START") for run in [held, *others])
    assert set(counts.values()) == {1}
