"""The otel consumer replaying a crashed batch from its `pending:` marker, on real Kafka
into chdb, when the batch is no longer what the marker's writer saw:

* the marker was written by an older release (`pending:<last>`, no digest; tokens without
  the group and the digest): the replay inserts under that release's token;
* retention removed the batch's first records before the replay: the replay keeps the
  marker's first offset and digest, so its token is still the crashed insert's.

Either way a new token would store the crashed batch's rows a second time.
"""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import OffsetAndMetadata

from consumers.librdkafka_consumer import metadata_text
from consumers.otel.backend import ChdbBackend
from consumers.otel.consumer import OtelConsumer, _Batch
from consumers.testkit import create_topics, produce, unique, wait_drained
from tests.consumer_faults import (
    KINDS,
    batch_consumer,
    crash_after_first_insert,
    finish,
    start,
    stored,
)
from tests.crashing import CrashingBackend
from tests.integration.test_otel_delivery import commits

pytestmark = pytest.mark.dataplane
KIND = KINDS["otel"]


def older_release_token(_otel: OtelConsumer, batch: _Batch) -> str:
    """The deduplication token a release before digests inserted a batch under."""
    return f"{batch.tp.topic}/{batch.tp.partition}/{batch.start}-{batch.end}"


async def commit_as_group(
    bootstrap: str, group: str, tp: TopicPartition, at: int, meta: str
) -> None:
    """Commit `at` with `meta` for the (memberless) group, as any release of it would."""
    kafka = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await kafka.start()
    try:
        kafka.assign([tp])
        await kafka.commit({tp: OffsetAndMetadata(at, meta)})
    finally:
        await kafka.stop()


async def drain_after_crash(
    env: dict[str, str], topic: str, group: str, chdb: ChdbBackend
) -> CrashingBackend:
    """A new member takes the group over and drains it; the store as it saw it."""
    recording = CrashingBackend(chdb, crash_after=10**9)
    second = batch_consumer(env, KIND, topic, group, recording, max_batch_messages=1000)
    stop, task = start(second)
    try:
        await wait_drained(env["KAFKA_BOOTSTRAP"], group, [topic], within=60)
    finally:
        await finish(stop, task)
    return recording


async def test_a_marker_an_older_release_wrote_replays_under_that_releases_token(
    env: dict[str, str], chdb: ChdbBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an upgrade, the group's commit is a digest-less `pending:4` marker and the
    batch's rows are in ClickHouse under the older release's token. The replay must send
    that token: under the new format ClickHouse would take the 5 rows again."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("otel-legacy-marker"), unique("otel-legacy-marker-group")
    await create_topics(bootstrap, [topic], partitions=1)
    await produce(bootstrap, topic, KIND.records(5))
    tp = TopicPartition(topic, 0)
    # The older release: inserts the batch (cut by time) under its token, then dies.
    with monkeypatch.context() as older:
        older.setattr(OtelConsumer, "_token", older_release_token)
        crashing = await crash_after_first_insert(
            env, KIND, topic, group, chdb, max_batch_messages=1000
        )
    assert crashing.tokens == [f"{topic}/0/0-4/{KIND.table}"]
    # ... and its marker, in its format: the batch's first offset and `pending:<last>`.
    await commit_as_group(bootstrap, group, tp, 0, "pending:4")
    assert (await commits(bootstrap, group))[tp] == OffsetAndMetadata(0, "pending:4")
    assert await stored(chdb, KIND) == (5 * KIND.rows, 5 * KIND.rows)

    await produce(bootstrap, topic, KIND.records(40))
    recording = await drain_after_crash(env, topic, group, chdb)
    assert recording.tokens[0] == crashing.tokens[0], "the replay took the new token format"
    assert await stored(chdb, KIND) == (45 * KIND.rows, 45 * KIND.rows)


async def test_a_replayed_batch_whose_first_records_retention_removed_keeps_its_token(
    env: dict[str, str], chdb: ChdbBackend
) -> None:
    """The crashed batch is offsets 0-4; retention moves the log start to 2 before the
    replay. The replay reads 2-4 only, yet must insert under the marker's first offset (0)
    and digest (of 0-4): a token from what it read would store 2-4 a second time."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("otel-retained"), unique("otel-retained-group")
    await create_topics(bootstrap, [topic], partitions=1)
    await produce(bootstrap, topic, KIND.records(5))
    tp = TopicPartition(topic, 0)
    crashing = await crash_after_first_insert(
        env, KIND, topic, group, chdb, max_batch_messages=1000
    )
    marker = (await commits(bootstrap, group))[tp]
    assert (marker.offset, metadata_text(marker.metadata).split("/")[0]) == (0, "pending:4")

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        low = await admin.delete_records({tp: RecordsToDelete(before_offset=2)}, timeout_ms=30_000)
    finally:
        await admin.close()
    assert low[tp] == 2, "the broker did not move the partition's log start"

    await produce(bootstrap, topic, KIND.records(40))
    recording = await drain_after_crash(env, topic, group, chdb)
    assert recording.tokens[0] == crashing.tokens[0], "the replay took another token"
    assert await stored(chdb, KIND) == (45 * KIND.rows, 45 * KIND.rows)


async def test_a_replayed_batch_that_retention_removed_whole_is_passed_over(
    env: dict[str, str], chdb: ChdbBackend
) -> None:
    """Retention removes the whole crashed batch (0-4) and one record after it: the first
    record read (6) is past the marker's end, so the replay is over with nothing to insert;
    batching goes on from there and every record left is stored once."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("otel-retained-all"), unique("otel-retained-all-group")
    await create_topics(bootstrap, [topic], partitions=1)
    await produce(bootstrap, topic, KIND.records(5))
    tp = TopicPartition(topic, 0)
    await crash_after_first_insert(env, KIND, topic, group, chdb, max_batch_messages=1000)
    await produce(bootstrap, topic, KIND.records(1))  # offset 5, never stored
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        low = await admin.delete_records({tp: RecordsToDelete(before_offset=6)}, timeout_ms=30_000)
    finally:
        await admin.close()
    assert low[tp] == 6, "the broker did not move the partition's log start"

    await produce(bootstrap, topic, KIND.records(40))
    await drain_after_crash(env, topic, group, chdb)
    assert await stored(chdb, KIND) == (45 * KIND.rows, 45 * KIND.rows)
