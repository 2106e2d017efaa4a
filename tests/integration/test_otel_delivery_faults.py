"""The otel consumer's delivery path on real Kafka, into chdb, when Kafka calls fail:

* reading the group's committed offsets fails when partitions are assigned: the consumer
  reads them again and still replays a crashed batch with the crashed batch's bounds;
* a new group's first records arrive while that read is still on its way: they are kept
  (the partition has no commit to go back to);
* the commit fails while the consumer stops: the batch is left to the next member, no
  rewind is started on the way out, and the next member stores every record once;
* a marker commit fails: the rewind starts the partition at its commit, or at its
  beginning when it has none yet.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

import consumers.otel.consumer as otel_consumer
from consumers.librdkafka_consumer import CommitFailed, metadata_text
from consumers.otel.backend import ChdbBackend
from consumers.testkit import create_topics, produce, unique, wait_drained
from tests.consumer_faults import (
    KINDS,
    batch_consumer,
    crash_after_first_insert,
    finish,
    offsets_read_after,
    position,
    refuse_first_commit,
    start,
    stored,
    wait_for,
    watch_fetches,
)
from tests.crashing import CrashingBackend
from tests.integration.test_otel_delivery import commits

pytestmark = pytest.mark.dataplane
KIND = KINDS["otel"]


class CoordinatorAwayOnce(AIOKafkaAdminClient):  # type: ignore[misc]
    """The real admin client; its first read of a group's offsets fails as it does while
    the group's coordinator moves to another broker."""

    failed: ClassVar[int] = 0

    async def list_consumer_group_offsets(self, *args: Any, **kw: Any) -> Any:
        if not CoordinatorAwayOnce.failed:
            CoordinatorAwayOnce.failed += 1
            raise GroupCoordinatorNotAvailableError()
        return await super().list_consumer_group_offsets(*args, **kw)


async def test_a_failed_read_of_the_committed_offsets_still_replays_the_crashed_batch(
    env: dict[str, str], chdb: ChdbBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the marker the replay would batch the crashed batch's records with the
    ones queued behind them, under another token: each crashed record stored twice."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("otel-offsets-fault"), unique("otel-offsets-fault-group")
    await create_topics(bootstrap, [topic], partitions=1)
    await produce(bootstrap, topic, KIND.records(5))
    # A batch cut by time (5 records, far from full) is inserted; the process dies before
    # it commits the batch's end.
    crashing = await crash_after_first_insert(
        env, KIND, topic, group, chdb, max_batch_messages=1000
    )
    marker = next(iter((await commits(bootstrap, group)).values()))
    assert (marker.offset, metadata_text(marker.metadata).split("/")[0]) == (0, "pending:4")
    assert await stored(chdb, KIND) == (5 * KIND.rows, 5 * KIND.rows)

    await produce(bootstrap, topic, KIND.records(40))
    monkeypatch.setattr(CoordinatorAwayOnce, "failed", 0)
    monkeypatch.setattr(otel_consumer, "AIOKafkaAdminClient", CoordinatorAwayOnce)
    recording = CrashingBackend(chdb, crash_after=10**9)
    second = batch_consumer(env, KIND, topic, group, recording, max_batch_messages=1000)
    stop, task = start(second)
    try:
        await wait_drained(bootstrap, group, [topic], within=60)
    finally:
        await finish(stop, task)
    assert CoordinatorAwayOnce.failed == 1, "the offsets read never failed"
    assert recording.tokens[0] == crashing.tokens[0], "the replay cut the batch elsewhere"
    assert await stored(chdb, KIND) == (45 * KIND.rows, 45 * KIND.rows)


async def test_no_record_comes_out_before_the_install_has_read_the_commits(
    env: dict[str, str], chdb: ChdbBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record batched before the install knows where its partition starts could be
    committed past a batch to replay, or dropped with nothing to seek back to it.
    librdkafka hands out no record of a new assignment before its callback returns, and
    the callback waits for the listener's install: with the commits' read held, nothing
    comes out; once it answers, every record is stored once. Two partitions assigned
    together, no commit yet (with one: `test_consumer_outages.py`)."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("otel-early"), unique("otel-early-group")
    await create_topics(bootstrap, [topic], partitions=2)
    await produce(bootstrap, topic, KIND.records(20))  # random keys: both partitions
    fetched = watch_fetches(monkeypatch, topic)
    asked, answer = asyncio.Event(), asyncio.Event()
    offsets_read_after(monkeypatch, group, answer, asked=asked)
    otel = batch_consumer(env, KIND, topic, group, chdb, max_batch_wait=5.0)
    stop, task = start(otel)
    try:
        await asyncio.wait_for(asked.wait(), 60)
        await asyncio.sleep(1.0)  # time for fetches to bring the records, were any let out
        assert not fetched.is_set(), "records came out while the install read the commits"
        answer.set()
        await asyncio.wait_for(fetched.wait(), 60)
        await produce(bootstrap, topic, KIND.records(10))
        await wait_drained(bootstrap, group, [topic], within=60)
    finally:
        answer.set()
        await finish(stop, task)
    assert await stored(chdb, KIND) == (30 * KIND.rows, 30 * KIND.rows)


async def test_a_commit_failing_while_stopping_starts_no_rewind_and_loses_nothing(
    env: dict[str, str], chdb: ChdbBackend
) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("otel-stop-fault"), unique("otel-stop-fault-group")
    await create_topics(bootstrap, [topic], partitions=1)
    await produce(bootstrap, topic, KIND.records(7))
    # Neither full nor old enough: only the shutdown cuts this batch.
    otel = batch_consumer(env, KIND, topic, group, chdb, max_batch_wait=3600)
    stop, task = start(otel)
    refused: list[object] = []
    try:
        await wait_for(lambda: otel._consumer is not None, "the consumer never started")
        kafka = otel._consumer
        assert kafka is not None
        await wait_for(lambda: bool(kafka.assignment()), "the partition was never assigned")
        (tp,) = kafka.assignment()
        deadline = asyncio.get_running_loop().time() + 30
        while await position(kafka, tp) < 7:  # fetched, so buffered in the batch
            assert asyncio.get_running_loop().time() < deadline, "the records were never read"
            await asyncio.sleep(0.05)

        async def coordinator_gone(offsets: Any) -> None:
            refused.append(offsets)
            raise CommitFailed("the group's coordinator went away")

        kafka.commit = coordinator_gone  # type: ignore[method-assign]
        stop.set()
        await asyncio.wait_for(task, 60)
    finally:
        if not task.done():
            await finish(stop, task)
    assert refused, "the shutdown's flush never tried to commit"
    # A rewind started now would re-read the partition into a consumer that has left its
    # group, with a task that outlives the consumer.
    assert otel._recovery is None, "stopping started a rewind"
    assert topic not in {tp.topic for tp in await commits(bootstrap, group)}

    second = batch_consumer(env, KIND, topic, group, chdb)
    stop, task = start(second)
    try:
        await wait_drained(bootstrap, group, [topic], within=60)
    finally:
        await finish(stop, task)
    assert await stored(chdb, KIND) == (7 * KIND.rows, 7 * KIND.rows)


async def test_a_failed_first_marker_commit_rewinds_to_the_partitions_beginning(
    env: dict[str, str], chdb: ChdbBackend
) -> None:
    """A new group's first batch fails at its marker commit: the partition has no commit
    to rewind to, so the rewind starts it where the reset policy does (its beginning).
    Left where the fetch had got to, the batch's records would never be read again."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("otel-first-commit"), unique("otel-first-commit-group")
    await create_topics(bootstrap, [topic], partitions=1)
    # Only a full batch (10 records) is cut: the first is exactly the first 10 records.
    otel = batch_consumer(env, KIND, topic, group, chdb, max_batch_messages=10, max_batch_wait=3600)
    stop, task = start(otel)
    try:
        await wait_for(lambda: bool(otel._parts), "the partition was never installed", 60)
        refused = refuse_first_commit(otel)
        await produce(bootstrap, topic, KIND.records(10))
        await wait_for(lambda: bool(refused), "the marker commit was never tried", 60)
        await produce(bootstrap, topic, KIND.records(10))
        await wait_drained(bootstrap, group, [topic], within=60)
    finally:
        await finish(stop, task)
    assert await stored(chdb, KIND) == (20 * KIND.rows, 20 * KIND.rows)


async def test_a_failed_marker_commit_rewinds_to_the_commit_and_no_further(
    env: dict[str, str], chdb: ChdbBackend
) -> None:
    """Batches cut by time: re-read from further back than the commit, the records before
    it would come in a batch of other bounds (another token) and be stored twice."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("otel-marker-fault"), unique("otel-marker-fault-group")
    await create_topics(bootstrap, [topic], partitions=1)
    otel = batch_consumer(env, KIND, topic, group, chdb, max_batch_messages=1000)
    stop, task = start(otel)
    try:
        await produce(bootstrap, topic, KIND.records(5))
        await wait_drained(bootstrap, group, [topic], within=60)
        refused = refuse_first_commit(otel)
        await produce(bootstrap, topic, KIND.records(5))
        await wait_for(lambda: bool(refused), "the marker commit was never tried", 60)
        await wait_drained(bootstrap, group, [topic], within=60)
    finally:
        await finish(stop, task)
    assert await stored(chdb, KIND) == (10 * KIND.rows, 10 * KIND.rows)
