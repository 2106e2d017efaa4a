"""Stopping an aiokafka consumer whose fetch request failed and is waiting out its retry
back-off, on the real broker: aiokafka 0.14's own `stop()` raises `CancelledError` though
nobody cancelled the caller and leaves the connections open; `stop_consumer` stops
cleanly and closes them, and still lets a real cancellation of the stopping task through.
Then each consumer (otel, warehouse writer, lineage) stopped right after a broker outage.

The fetch is made to fail without disturbing the broker: the broker may hold a fetch of
an empty partition for `fetch_max_wait_ms`, longer than the client waits for an answer
(`request_timeout_ms`), so the request times out (RequestTimedOutError, a KafkaError)
and the fetch task sleeps its `retry_backoff_ms`, a minute here: the whole test.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import RequestTimedOutError

from consumers.kafka import finish_stop, stop_consumer
from consumers.lineage.consumer import LineageConsumer
from consumers.otel.backend import ChdbBackend
from consumers.otel.consumer import OtelConsumer
from consumers.testkit import create_topics, unique
from tests.conftest import StackHandle
from tests.consumer_faults import KINDS, batch_consumer, finish, lineage_consumer, start, wait_for
from tests.helpers import librdkafka_threads
from tests.marquez_standin import MarquezStandin

pytestmark = pytest.mark.dataplane

_SOCKET = re.compile(r"socket:\[(\d+)\]")


def broker_sockets(bootstrap: str) -> set[int]:
    """The inodes of this process's TCP sockets whose peer is the broker's port (open
    file descriptors only: a socket the client closed is gone from them)."""
    port = int(bootstrap.rsplit(":", 1)[1])
    held = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            match = _SOCKET.fullmatch(str(fd.readlink()))
        except OSError:  # closed since listed
            continue
        if match:
            held.add(int(match.group(1)))
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path("/proc/self/net", table).read_text().splitlines()[1:]:
            fields = line.split()
            peer_port, inode = int(fields[2].rsplit(":", 1)[1], 16), int(fields[9])
            if peer_port == port and inode in held:
                found.add(inode)
    return found


def fetch_timed_out(caplog: pytest.LogCaptureFixture) -> bool:
    """Whether aiokafka's fetcher logged a fetch request that timed out: the fetch task
    logs it in the step that starts its back-off sleep."""
    return any(
        r.name == "aiokafka.consumer.fetcher"
        and str(r.msg).startswith("Failed fetch messages")
        and any(isinstance(arg, RequestTimedOutError) for arg in r.args or ())
        for r in caplog.records
    )


class BackingOff:
    """A started consumer whose fetch failed and which now waits out its back-off, and
    the broker connections it opened."""

    def __init__(self, consumer: AIOKafkaConsumer, bootstrap: str, opened: set[int]) -> None:
        self.consumer = consumer
        self.bootstrap = bootstrap
        self.opened = opened

    def still_open(self) -> set[int]:
        return broker_sockets(self.bootstrap) & self.opened


@pytest.fixture
async def backing_off(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> AsyncIterator[BackingOff]:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic = unique("stop-backoff")
    await create_topics(bootstrap, [topic], partitions=1)
    before = broker_sockets(bootstrap)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="test-stop-backoff",
        enable_auto_commit=False,
        fetch_max_wait_ms=10_000,  # the broker holds a fetch of the empty partition...
        request_timeout_ms=1_000,  # ...longer than the client waits
        retry_backoff_ms=60_000,  # then the fetch task sleeps through the test
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])  # no group: the fetcher starts at once
        await wait_for(lambda: fetch_timed_out(caplog), "no fetch timed out")
        # The client closed the timed-out fetch's connection and forced a metadata
        # refresh, which connects again: the connection the stop must close is that new
        # one, once made. Taken from the client, not from the process's sockets just
        # after the timeout: then the old socket may not be closed yet (the transport
        # closes it a loop turn later) and the new one not made.
        await wait_for(lambda: bool(connected_sockets(consumer._client)), "never reconnected")
        opened = connected_sockets(consumer._client) & (broker_sockets(bootstrap) - before)
        assert opened, "the consumer holds no broker connection: nothing to see closed"
        yield BackingOff(consumer, bootstrap, opened)
    finally:
        await finish_stop(consumer)  # whatever the test left: no open connection


async def test_aiokafkas_own_stop_raises_cancelled_error_and_leaves_connections_open(
    backing_off: BackingOff,
) -> None:
    """The defect `stop_consumer` works around, reproduced. If a newer aiokafka stops
    cleanly here, `stop_consumer` can go back to a plain `stop()`."""
    with pytest.raises(asyncio.CancelledError):
        await backing_off.consumer.stop()
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0, "nobody cancelled this task"
    assert backing_off.still_open(), "stop() closed the connections: the defect is gone"
    await finish_stop(backing_off.consumer)
    assert not backing_off.still_open()


async def test_stop_consumer_stops_cleanly_and_closes_the_connections(
    backing_off: BackingOff,
) -> None:
    consumer = backing_off.consumer
    await stop_consumer(consumer)
    assert not backing_off.still_open(), "connections left open after the stop"
    fetcher = consumer._fetcher
    assert all(task.done() for task in [fetcher._fetch_task, *fetcher._pending_tasks])


async def test_a_cancellation_of_the_stopping_task_still_propagates(
    backing_off: BackingOff,
) -> None:
    stopping = asyncio.create_task(stop_consumer(backing_off.consumer))
    await asyncio.sleep(0)  # it runs into aiokafka's stop() and waits there
    assert not stopping.done()
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert stopping.cancelled()


def client_sockets(consumer: LineageConsumer) -> set[int]:
    """The inodes of the sockets the lineage consumer's aiokafka clients (its group
    member, its dead-letter producer) hold open to the broker now."""
    clients = [
        getattr(consumer._consumer, "_client", None),
        getattr(consumer._producer, "client", None),
    ]
    return set().union(*(connected_sockets(client) for client in clients))


def connected_sockets(client: object) -> set[int]:
    """The inodes of the sockets of an aiokafka client's connections it has not closed
    (one it closed drops its writer at once, though the transport closes the socket a
    loop turn later)."""
    inodes = set()
    for conn in getattr(client, "_conns", {}).values():
        writer = getattr(conn, "_writer", None)
        sock = writer.transport.get_extra_info("socket") if writer is not None else None
        if sock is not None and sock.fileno() >= 0:
            inodes.add(os.fstat(sock.fileno()).st_ino)
    return inodes


def widen_fetch_backoff(consumer: LineageConsumer) -> None:
    """A failed fetch of the started `consumer` waits a minute before its retry, not the
    second our clients wait (aiokafka's fetcher reads `_retry_backoff` at each retry): a
    stop once the broker is back then finds the fetch still waiting, as any stop within
    a second of the broker's return does."""
    assert consumer._consumer is not None
    consumer._consumer._fetcher._retry_backoff = 60.0


def status(consumer: OtelConsumer | LineageConsumer) -> object:
    return consumer.health.body()[1]["status"]


def assigned(consumer: OtelConsumer | LineageConsumer) -> bool:
    return consumer._consumer is not None and bool(consumer._consumer.assignment())


async def test_each_consumer_stops_cleanly_right_after_a_broker_outage(
    kafka: StackHandle,
    chdb: ChdbBackend,
    standin: MarquezStandin,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The otel consumer, the warehouse writer (librdkafka's group member) and two lineage
    consumers (aiokafka's), each through its own `_shutdown`, stopped as soon as the
    broker is back while a failed fetch may still wait out its back-off: every stop,
    those meeting aiokafka's defect (at least one does) too, ends without an error, and
    none keeps a connection to the broker (the librdkafka clients' threads are gone)."""
    bootstrap = kafka.env["KAFKA_BOOTSTRAP"]
    names = ("otel", "warehouse", "lineage", "lineage-2")
    topics = {name: unique(f"stop-outage-{name}") for name in names}
    await create_topics(bootstrap, topics.values(), partitions=1)
    batch = [
        batch_consumer(
            kafka.env,
            KINDS[name],
            topics[name],
            unique(f"stop-{name}"),
            chdb,
            kafka_check_interval=0.5,
        )
        for name in ("otel", "warehouse")
    ]
    lineage = [
        lineage_consumer(
            kafka.env, standin, topics[name], unique(f"stop-{name}"), kafka_check_interval=0.5
        )
        for name in ("lineage", "lineage-2")
    ]
    consumers: list[OtelConsumer | LineageConsumer] = [*batch, *lineage]
    caplog.set_level(logging.WARNING, "consumers.kafka")
    threads_before = librdkafka_threads()
    running = [start(consumer) for consumer in consumers]
    try:
        await wait_for(lambda: all(status(c) == "ok" for c in consumers), "never healthy")
        await wait_for(lambda: all(assigned(c) for c in consumers), "never assigned")
        assert librdkafka_threads() > threads_before, "no librdkafka client: nothing shown"
        for consumer in lineage:
            widen_fetch_backoff(consumer)
        await asyncio.to_thread(kafka.stop, "kafka")
        await wait_for(lambda: all(status(c) == "degraded" for c in consumers), "saw no outage")
        await asyncio.to_thread(kafka.start, "kafka")
        await wait_for(lambda: all(status(c) == "ok" for c in consumers), "never recovered")
        owned = set().union(*(client_sockets(c) for c in lineage))
    finally:
        ended = await asyncio.gather(
            *(finish(stop, task) for stop, task in running), return_exceptions=True
        )
    assert ended == [None] * len(consumers), f"a shutdown failed: {ended!r}"
    # Whether a consumer's fetch is in its back-off when it stops depends on where that
    # fetch was when the broker went away (a fetch never sent is not retried that way):
    # most stops meet the defect; at least one of the two must, or nothing is shown.
    met = [r for r in caplog.records if "consumer stop raised CancelledError" in r.message]
    assert met, "no stop met aiokafka's defect: nothing shown"
    assert owned, "the consumers held no connection to the broker: nothing shown"
    # Only the consumers' own: a librdkafka client another test left in this process
    # connects again when the broker comes back, and is no concern of these stops.
    assert not broker_sockets(bootstrap) & owned, "connections to the broker left open"
    assert librdkafka_threads() == threads_before, "a librdkafka client was left running"
