"""aiokafka plumbing shared by both consumers: clients, rebalance hooks, lag."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from consumers.stats import Stats

log = logging.getLogger(__name__)

# Room for a value the broker accepted (1 MiB by default) plus our dlq.* headers.
DLQ_MAX_REQUEST_BYTES = 2 * 1024 * 1024


def make_consumer(
    bootstrap: str, group: str, topics: Iterable[str], client_id: str, **extra: object
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=client_id,
        enable_auto_commit=False,  # we commit only what is stored or dead-lettered
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        **extra,
    )


def make_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        max_request_size=DLQ_MAX_REQUEST_BYTES,
        linger_ms=0,  # dead letters are rare and sent one by one: don't wait for company
    )


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forward aiokafka's rebalance callbacks to the consumer loop."""

    def __init__(
        self,
        revoked: Callable[[set[TopicPartition]], Awaitable[None]],
        assigned: Callable[[set[TopicPartition]], Awaitable[None]],
    ) -> None:
        self._revoked = revoked
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            log.info("partitions revoked", extra={"partitions": sorted(map(str, revoked))})
            await self._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(map(str, assigned))})
        await self._assigned(set(assigned))


async def update_lag(
    consumer: AIOKafkaConsumer, stats: Stats, committed: Callable[[TopicPartition], int | None]
) -> None:
    """Lag = end of the partition minus what this consumer has committed (or its position)."""
    tps = list(consumer.assignment())
    if not tps:
        return
    try:
        ends = await consumer.end_offsets(tps)
    except Exception as exc:  # lag is best effort: never stop consuming over it
        log.debug("end_offsets failed", extra={"error": str(exc)})
        return
    for tp in tps:
        done = committed(tp)
        if done is None:
            try:
                done = await consumer.position(tp)
            except Exception:
                continue
        stats.set_lag(tp.topic, tp.partition, int(ends.get(tp, done)) - int(done))
