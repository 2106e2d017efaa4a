"""A stage's Kafka producer: librdkafka (confluent-kafka), each record acknowledged by
every in-sync replica (acks=all, idempotent), the acknowledgement awaited per send.

Why not aiokafka, as the long-running services use: a stage sends four or five records
and exits. aiokafka's import and its asyncio connection machinery cost ~55 ms of CPU
per stage; librdkafka's C client is a shared library and does its I/O in its own
threads (`bench/bench_runner_startup.py --kafka`).

The producer is made when the emitter is (a stage makes it as soon as its config is
good, before its work): librdkafka connects, and an idempotent producer fetches its
producer id (~0.5 s on a fresh client), in the background while the stage imports and
works, so its records go out at once when they are ready.

A broker that cannot be reached fails every send still waiting at once, with the
broker's error, rather than when the records time out: like aiokafka refusing to start,
the stage warns and carries on without publishing.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

#: Records up to this size (the broker's default message.max.bytes is ~1 MiB).
MAX_RECORD_BYTES = 4 * 1024 * 1024
#: How long a record may wait for its acknowledgement, retries included.
DELIVERY_TIMEOUT_MS = 30_000
#: How often the poller hands acknowledgements over (it wakes at once for one).
POLL_SECONDS = 0.2
#: librdkafka's errors meaning no broker can be reached now (one broker of several
#: dropping a connection is retried, and is not one of them).
_UNREACHABLE = frozenset({"_ALL_BROKERS_DOWN", "_AUTHENTICATION"})


class KafkaUnreachable(ConnectionError):
    """No broker could be reached: the records not yet acknowledged are given up."""


class StageProducer:
    """`await send(...)` returns once the broker acknowledged the record, or raises."""

    def __init__(self, bootstrap: str, client_id: str) -> None:
        from confluent_kafka import Producer

        self.bootstrap = bootstrap
        self._unreachable: str | None = None
        self._waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = {}
        self._lock = threading.Lock()
        self._next = 0
        self._closed = threading.Event()
        self._producer: Producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": client_id,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 0,
                "message.max.bytes": MAX_RECORD_BYTES,
                "delivery.timeout.ms": DELIVERY_TIMEOUT_MS,
                "error_cb": self._on_error,
                # The failure is reported once, by the stage (`Delivery`), not logged
                # by librdkafka on stderr at each reconnect.
                "log_level": 0,
            }
        )
        self._poller = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(POLL_SECONDS)

    def _on_error(self, err: KafkaError) -> None:
        if err.name() in _UNREACHABLE:
            self._unreachable = f"{err.name()}: {err.str()}"
            self._fail_waiting(KafkaUnreachable(self._unreachable))

    def _fail_waiting(self, exc: BaseException) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for loop, future in waiting.values():
            loop.call_soon_threadsafe(_settle, future, exc)

    def _acknowledged(self, ticket: int, err: KafkaError | None) -> None:
        with self._lock:
            found = self._waiting.pop(ticket, None)
        if found is None:  # failed already (broker unreachable)
            return
        loop, future = found
        exc = None if err is None else ConnectionError(f"{err.name()}: {err.str()}")
        loop.call_soon_threadsafe(_settle, future, exc)

    async def send(self, topic: str, key: str, value: bytes) -> None:
        if self._unreachable is not None:
            raise KafkaUnreachable(self._unreachable)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            ticket, self._next = self._next, self._next + 1
            self._waiting[ticket] = (loop, future)

        def done(err: KafkaError | None, _msg: Message) -> None:
            self._acknowledged(ticket, err)

        try:
            self._producer.produce(topic, value, key.encode(), on_delivery=done)
        except BaseException:
            with self._lock:
                self._waiting.pop(ticket, None)
            raise
        await future

    def close(self, timeout: float = 5.0) -> None:
        """Stop polling and let librdkafka finish what it holds (nothing, once every
        send was awaited); a record still queued after `timeout` is dropped. The poller
        is not waited for: it ends at its next wake-up, and a stage's exit need not wait
        `POLL_SECONDS` for it (librdkafka may be polled from two threads at once)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._unreachable is None:
            self._producer.flush(timeout)
        self._producer.purge()
        self._fail_waiting(KafkaUnreachable("the producer was closed"))


def _settle(future: asyncio.Future[Any], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
