"""aiokafka plumbing shared by both consumers: clients, rebalance hooks, lag, and
whether the cluster answers at all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from consumers.health import Health
from consumers.stats import Stats

log = logging.getLogger(__name__)

# Room for a value the broker accepted (1 MiB by default) plus our dlq.* headers.
DLQ_MAX_REQUEST_BYTES = 2 * 1024 * 1024
# Asking for the end offsets waits out retriable errors up to aiokafka's request timeout
# (40 s): with the broker away, the consumer loop must not stand still that long.
LAG_TIMEOUT = 5.0
# How often, and how patiently, a consumer asks the cluster whether it is there.
KAFKA_CHECK_INTERVAL = 2.0
KAFKA_CHECK_TIMEOUT = 5.0
# aiokafka retries a failed fetch, coordinator lookup or metadata refresh after
# `retry_backoff_ms` (100 ms by default) and has no growing reconnect backoff: with the
# broker away its fetcher, coordinator and metadata task each woke the others ten times a
# second, two error lines a wake-up. A second between tries keeps an outage quiet and
# still finds a returning broker within a second.
RETRY_BACKOFF_MS = 1000


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
        retry_backoff_ms=RETRY_BACKOFF_MS,
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
        retry_backoff_ms=RETRY_BACKOFF_MS,
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
        ends = await asyncio.wait_for(consumer.end_offsets(tps), LAG_TIMEOUT)
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
        # A partition revoked while the offsets were asked for has had its lag removed
        # by the revoke: setting it now would leave a series for a partition not ours.
        if tp in consumer.assignment():
            stats.set_lag(tp.topic, tp.partition, int(ends.get(tp, done)) - int(done))


async def ask_cluster(consumer: AIOKafkaConsumer) -> None:
    """Ask a broker for the metadata of the consumer's own topics; raise if none answers.

    Not `consumer.topics()`: that asks for every topic in the cluster, which on a broker
    holding thousands of them costs tens of milliseconds of CPU a call. The request never
    creates a topic, and an empty subscription asks for none (never "all")."""
    client = consumer._client
    request = MetadataRequest(sorted(consumer.subscription()), allow_auto_topic_creation=False)
    nodes = [broker.nodeId for broker in client.cluster.brokers()] or ["bootstrap"]
    error: Exception = KafkaConnectionError("no broker known")
    for node in nodes:
        try:
            await client.send(node, request)
        except Exception as exc:  # KafkaError, OSError: try the next broker
            error = exc
        else:
            return
    raise error


async def watch_cluster(
    consumer: AIOKafkaConsumer,
    health: Health,
    name: str,
    interval: float = KAFKA_CHECK_INTERVAL,
    patience: float = KAFKA_CHECK_TIMEOUT,
) -> None:
    """Until cancelled: ask the cluster about the consumer's topics every `interval` seconds
    (waiting `patience` for the answer); while no broker answers, `health` is degraded
    (as "<name> kafka"), and ok again once one does.

    With its broker away a consumer only sees empty fetches and failing commits, all
    retried inside aiokafka: without this, `/healthz` said ok through a whole outage.
    """
    source = f"{name} kafka"
    while True:
        try:
            await asyncio.wait_for(ask_cluster(consumer), patience)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # KafkaError, TimeoutError, OSError: all mean "not there"
            if source not in health.reasons:
                log.warning("kafka unreachable", extra={"source": source, "error": repr(exc)})
            health.degrade(source, f"{name}: kafka unreachable: {exc!r}"[:300])
        else:
            if source in health.reasons:
                log.info("kafka reachable again", extra={"source": source})
            health.recover(source)
        await asyncio.sleep(interval)
