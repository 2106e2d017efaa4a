"""`update_lag` against a partition revoked while its end offsets were being asked for:
the revoke drops the partition's lag series, and the answer arriving after it must not
put the series back (a member would report lag for a partition another member owns)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.kafka import update_lag
from consumers.stats import Stats

OURS, REVOKED = TopicPartition("otel-spans", 0), TopicPartition("otel-spans", 1)


class RevokedMidAsk:
    """The consumer calls `update_lag` makes, with a rebalance taking `REVOKED` away
    (and the revoke dropping its lag) while the end offsets are on their way."""

    def __init__(self, stats: Stats) -> None:
        self.owned = {OURS, REVOKED}
        self.stats = stats

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        await asyncio.sleep(0)  # the answer is awaited: the rebalance runs meanwhile
        self.owned.discard(REVOKED)
        self.stats.drop_lag(REVOKED.topic, REVOKED.partition)
        return {tp: 100 for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return 40


async def test_a_partition_revoked_during_the_ask_gets_no_lag_series_back() -> None:
    stats = Stats("test")
    stats.set_lag(REVOKED.topic, REVOKED.partition, 7)
    consumer = RevokedMidAsk(stats)
    await update_lag(cast(AIOKafkaConsumer, consumer), stats, committed=lambda tp: 30)
    assert stats.lag == {(OURS.topic, OURS.partition): 70}


async def test_the_position_is_the_lag_base_when_nothing_is_committed() -> None:
    stats = Stats("test")
    consumer: Any = RevokedMidAsk(stats)
    await update_lag(cast(AIOKafkaConsumer, consumer), stats, committed=lambda tp: None)
    assert stats.lag == {(OURS.topic, OURS.partition): 60}
