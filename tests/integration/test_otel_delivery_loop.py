"""The otel consumer's start and fetch loop (`run`, `_loop`) on real Kafka, into chdb:
what it is configured with reaches the store and the broker.

* the tables are created with the retention the consumer was given (`--ttl-days`);
* the consumer joins its group under its own client id (what `kafka-consumer-groups`,
  client quotas and the broker's logs name it by), and its dead-letter producer and
  admin client connect under theirs;
* the lag (end offsets: a request to the broker) is asked once a `lag_interval`, not at
  every turn of the fetch loop;
* partitions a rebalance takes away are let go (the rebalance listener's revoke): a
  member's lag covers only the partitions it still owns.
"""

from __future__ import annotations

from typing import Any

import pytest

from consumers.librdkafka_consumer import LibrdkafkaConsumer
from consumers.otel.backend import ChdbBackend
from consumers.otel.consumer import OtelConsumer
from consumers.testkit import create_topics, describe_group, produce, unique, wait_drained
from tests.consumer_faults import KINDS, batch_consumer, finish, start, stored, wait_for
from tests.kafka_proxy import BrokerProxy

pytestmark = pytest.mark.dataplane
KIND = KINDS["otel"]


async def test_the_tables_are_created_with_the_ttl_the_consumer_was_given(
    env: dict[str, str], chdb: ChdbBackend
) -> None:
    """Every table keeps rows for `ttl_days` days (the default, 0, keeps them forever):
    the exporter's and `pipeline_runs`, ours."""
    topic, group = unique("otel-ttl"), unique("otel-ttl-group")
    await create_topics(env["KAFKA_BOOTSTRAP"], [topic], partitions=1)
    otel = batch_consumer(env, KIND, topic, group, chdb, ttl_days=3)
    stop, task = start(otel)
    try:
        await wait_for(lambda: otel.health.started, "the consumer never started")
    finally:
        await finish(stop, task)
    tables = await chdb.query(
        "SELECT name, create_table_query AS q FROM system.tables "
        "WHERE database = 'otel' AND engine LIKE '%MergeTree'"
    )
    made = {t["name"]: t["q"] for t in tables}
    assert {KIND.table, "otel_metrics_gauge", "otel_metrics_sum", "pipeline_runs"} <= set(made)
    without = sorted(name for name, q in made.items() if "toIntervalDay(3)" not in q)
    assert not without, f"tables without the 3-day TTL: {without}"


async def test_the_group_member_is_named_by_the_consumers_client_id(
    env: dict[str, str], chdb: ChdbBackend
) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("otel-client-id"), unique("otel-client-id-group")
    await create_topics(bootstrap, [topic], partitions=1)
    await produce(bootstrap, topic, KIND.records(3))
    otel = batch_consumer(env, KIND, topic, group, chdb, client_id="otel-client-id-test")
    stop, task = start(otel)
    try:
        await wait_drained(bootstrap, group, [topic], within=60)
        assert (await describe_group(bootstrap, group))[1] == ["otel-client-id-test"]
    finally:
        await finish(stop, task)
    assert await stored(chdb, KIND) == (3 * KIND.rows, 3 * KIND.rows)


async def test_every_client_of_the_consumer_tells_the_broker_its_id(
    env: dict[str, str], chdb: ChdbBackend
) -> None:
    """The group member, the dead-letter producer and the admin client each connect under
    the consumer's client id (`-dlq`, `-admin`), as the broker reads it from their
    requests (seen by a proxy in front of the broker's bootstrap address)."""
    topic, group = unique("otel-ids"), unique("otel-ids-group")
    await create_topics(env["KAFKA_BOOTSTRAP"], [topic], partitions=1)
    proxy = BrokerProxy(env["KAFKA_BOOTSTRAP"], "forward")
    try:
        proxied = {**env, "KAFKA_BOOTSTRAP": proxy.address}
        otel = batch_consumer(proxied, KIND, topic, group, chdb, client_id="otel-ids-test")
        stop, task = start(otel)
        try:
            await wait_for(lambda: otel.health.started, "the consumer never started")
        finally:
            await finish(stop, task)
    finally:
        proxy.close()
    expected = {"otel-ids-test", "otel-ids-test-dlq", "otel-ids-test-admin"}
    assert set(proxy.client_ids) == expected, proxy.client_ids


async def test_the_lag_is_asked_once_a_lag_interval_not_at_every_fetch(
    env: dict[str, str], chdb: ChdbBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an interval of an hour, the end offsets are asked at most once (at the first
    turn) while the loop fetches 30 records five at a time."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("otel-lag"), unique("otel-lag-group")
    await create_topics(bootstrap, [topic], partitions=1)
    await produce(bootstrap, topic, KIND.records(30))
    otel = batch_consumer(env, KIND, topic, group, chdb, lag_interval=3600, fetch_max_records=5)
    fetches: list[int] = []
    asked: list[object] = []
    real_fetch, real_ends = LibrdkafkaConsumer.getmany, LibrdkafkaConsumer.end_offsets

    async def getmany(self: LibrdkafkaConsumer, *tps: Any, **kw: Any) -> Any:
        out = await real_fetch(self, *tps, **kw)
        if self is otel._consumer:
            fetches.append(sum(len(records) for records in out.values()))
        return out

    async def end_offsets(self: LibrdkafkaConsumer, partitions: Any) -> Any:
        if self is otel._consumer:
            asked.append(partitions)
        return await real_ends(self, partitions)

    monkeypatch.setattr(LibrdkafkaConsumer, "getmany", getmany)
    monkeypatch.setattr(LibrdkafkaConsumer, "end_offsets", end_offsets)
    stop, task = start(otel)
    try:
        await wait_drained(bootstrap, group, [topic], within=60)
    finally:
        await finish(stop, task)
    assert sum(fetches) == 30 and max(fetches) <= 5, fetches
    assert len(asked) <= 1, f"end offsets asked {len(asked)} times in {len(fetches)} fetches"
    assert await stored(chdb, KIND) == (30 * KIND.rows, 30 * KIND.rows)


def owned(otel: OtelConsumer) -> set[tuple[str, int]]:
    kafka = otel._consumer
    return {(tp.topic, tp.partition) for tp in kafka.assignment()} if kafka else set()


def lag_of(otel: OtelConsumer) -> set[tuple[str, int]]:
    """The partitions whose lag the consumer reports (its metrics' lag gauge)."""
    return set(otel.stats.snapshot()[1])


async def test_a_member_reports_lag_only_for_the_partitions_it_still_owns(
    env: dict[str, str], chdb: ChdbBackend
) -> None:
    """A second member joins: the partitions the rebalance takes from the first leave its
    lag gauge (else both members report them, and the group's lag is counted twice)."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("otel-lag-owned"), unique("otel-lag-owned-group")
    await create_topics(bootstrap, [topic], partitions=3)
    await produce(bootstrap, topic, KIND.records(30))
    first = batch_consumer(env, KIND, topic, group, chdb, lag_interval=0.5)
    second = batch_consumer(env, KIND, topic, group, chdb, lag_interval=0.5)
    stop_first, first_task = start(first)
    try:
        await wait_drained(bootstrap, group, [topic], within=60)
        await wait_for(lambda: len(lag_of(first)) == 3, "the first never reported its lag")
        stop_second, second_task = start(second)
        try:
            await wait_for(
                lambda: bool(owned(second)) and len(owned(first) | owned(second)) == 3,
                "the partitions were never shared",
                within=60,
            )
            await wait_for(
                lambda: lag_of(first) == owned(first) and lag_of(second) == owned(second),
                "a member reports lag for partitions it does not own",
            )
            assert owned(first).isdisjoint(owned(second))
        finally:
            await finish(stop_second, second_task)
    finally:
        await finish(stop_first, first_task)
    assert await stored(chdb, KIND) == (30 * KIND.rows, 30 * KIND.rows)
