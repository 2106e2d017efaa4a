"""aiokafka plumbing shared by both consumers: clients, rebalance hooks, lag, whether
the cluster answers at all, and stopping a consumer whatever state its fetcher is in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

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


class LagSource(Protocol):
    """What `update_lag` asks of a consumer (aiokafka's, `LibrdkafkaConsumer`)."""

    def assignment(self) -> set[TopicPartition]: ...
    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]: ...
    async def position(self, tp: TopicPartition) -> int: ...


async def update_lag(
    consumer: LagSource, stats: Stats, committed: Callable[[TopicPartition], int | None]
) -> None:
    """Lag = end of the partition minus what this consumer has committed (or its position)."""
    tps = list(consumer.assignment())
    if not tps:
        return
    try:
        async with asyncio.timeout(LAG_TIMEOUT):  # not wait_for: see watch_cluster
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
        # A partition revoked while the offsets were asked for has had its lag removed
        # by the revoke: setting it now would leave a series for a partition not ours.
        if tp in consumer.assignment():
            stats.set_lag(tp.topic, tp.partition, int(ends.get(tp, done)) - int(done))


async def ask_cluster(consumer: AIOKafkaConsumer) -> None:
    """Ask a broker for the metadata of the consumer's own topics; raise if none answers.

    Not `consumer.topics()`: that asks for every topic in the cluster, which on a broker
    holding thousands of them costs tens of milliseconds of CPU a call. The request never
    creates a topic, and an empty subscription asks for none (never "all")."""
    await ask_through(consumer._client, consumer.subscription())


async def ask_through(client: _Client, topics: Iterable[str]) -> None:
    """`ask_cluster` through any aiokafka client (a consumer's, an admin client's)."""
    request = MetadataRequest(sorted(topics), allow_auto_topic_creation=False)
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
    ask: Callable[[], Awaitable[None]],
    health: Health,
    name: str,
    interval: float = KAFKA_CHECK_INTERVAL,
    patience: float = KAFKA_CHECK_TIMEOUT,
) -> None:
    """Until cancelled: ask the cluster about the consumer's topics (`ask`: `ask_cluster`
    of an aiokafka consumer, or `ask_through` an admin client's connection) every
    `interval` seconds (waiting `patience` for the answer); while no broker answers,
    `health` is degraded (as "<name> kafka"), and ok again once one does.

    With its broker away a consumer only sees empty fetches and failing commits, all
    retried inside aiokafka: without this, `/healthz` said ok through a whole outage.

    The ask is bounded by `asyncio.timeout`, in this task: Python 3.11's `wait_for` runs
    it in a task of its own and drops a cancel that arrives once that task has finished
    but before this one resumed (CPython gh-86296), and the watch went on for ever.
    """
    source = f"{name} kafka"
    while True:
        try:
            async with asyncio.timeout(patience):
                await ask()
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


class _Fetcher(Protocol):
    """The two attributes of aiokafka's `Fetcher` that `finish_stop` reaches (0.14)."""

    _fetch_task: asyncio.Task[None]  # the routine that starts fetch requests
    _pending_tasks: set[asyncio.Task[bool]]  # the fetch/offset-reset requests it started


class _Client(Protocol):
    """The parts of aiokafka's `AIOKafkaClient` reached here (0.14)."""

    @property
    def cluster(self) -> Any: ...
    async def send(self, node_id: Any, request: Any) -> Any: ...
    async def close(self) -> None: ...


def _cancel_requests() -> int:
    """How many cancellations of the running task are pending (not of a task it awaited)."""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """`consumer.stop()`, except that a `CancelledError` nobody sent to us does not escape
    and the connections are closed anyway; a cancellation of the running task propagates.

    aiokafka's `Fetcher.close()` (0.14) does `for x in self._pending_tasks: x.cancel();
    await x`. A fetch request task that failed (broker gone, request timed out) sleeps its
    `retry_backoff_ms` outside its own `except CancelledError`, so awaiting it after the
    cancel raises `CancelledError` into the caller of `stop()`: the other pending tasks
    are never cancelled and `stop()` skips `self._client.close()`, leaving the
    connections open. A consumer stopped within a second of an outage (our back-off) hit
    it. Upstream: aio-libs/aiokafka#983, whose fix (PR #1007) made the fetch routine's own
    cancel-then-await loop suppress the error but left this one in `close()` (a comment
    there lists it with the others), and #647 (the same pattern in the group-less
    coordinator's close, open).

    Ours is told from a stray one by the running task's count of cancel requests, taken
    before the call: a task already cancelled (stopping in its `finally`) still closes.
    And `Fetcher.close()` awaits its cancelled routine inside `suppress(CancelledError)`,
    so a cancellation of ours arriving there is swallowed and `stop()` returns normally:
    the grown count re-raises it.
    """
    before = _cancel_requests()
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        if _cancel_requests() > before:
            raise
        log.warning("aiokafka's consumer stop raised CancelledError: finishing it")
        await finish_stop(consumer)
    if _cancel_requests() > before:
        raise asyncio.CancelledError  # ours, swallowed inside aiokafka


async def finish_stop(consumer: AIOKafkaConsumer) -> None:
    """What `AIOKafkaConsumer.stop()` leaves undone when it raised: end the fetcher's
    tasks and close the client's connections. (`stop()` marks the consumer closed first,
    so calling it again does nothing.) A cancellation of the running task propagates;
    the tasks' own endings (cancelled, failed) are of no use at shutdown."""
    fetcher: _Fetcher | None = consumer._fetcher
    if fetcher is not None:
        tasks = [fetcher._fetch_task, *fetcher._pending_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                log.debug("fetch task failed at shutdown", extra={"error": repr(task.exception())})
    client: _Client = consumer._client
    await client.close()
