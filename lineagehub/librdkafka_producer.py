"""A Kafka producer on librdkafka (confluent-kafka) with asyncio acknowledgements:
each record acknowledged by every in-sync replica (acks=all, idempotent).

Used by a stage (a few records, then exit: librdkafka's C client costs a stage ~55 ms
less CPU than aiokafka's import and connection machinery, `bench/bench_runner_startup.py
--kafka`) and by the gateway (many requests in flight: librdkafka does the batching and
the I/O in its own threads, about a third of aiokafka's CPU a record,
`bench/bench_gateway_producers.py`).

`enqueue` appends a record and returns its acknowledgement to await, so a caller can
append several records of one key in order (the idempotent producer keeps that order on
the partition) and wait for all of them together; `send` awaits one.

librdkafka connects when the producer is made (an idempotent producer also fetches its
producer id, ~0.5 s on a fresh client), in the background. A broker that cannot be
reached fails every acknowledgement still waiting, with the broker's error, once the
outage outlasts `unreachable_grace_s` (at once by default) rather than when the records
time out, and later records are refused at once until a broker answers again (the poller
asks for metadata meanwhile). Within the grace, records wait: a broker that answers
again gets them, each once (they are never sent twice).

Every metadata request names one topic (`probe_topic`): without a topic the broker
describes all of its topics, ~42 ms of its CPU a request with 1,200 of them, made every
`POLL_SECONDS` of an outage. A broker that answers answers for any topic, known or not.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

from lineagehub.topics import LINEAGE_TOPIC

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

#: Records up to this size (the broker's default message.max.bytes is ~1 MiB).
MAX_RECORD_BYTES = 4 * 1024 * 1024
#: How long a record may wait for its acknowledgement, retries included.
DELIVERY_TIMEOUT_MS = 30_000
#: How often the poller hands acknowledgements over (it wakes at once for one), and how
#: long it waits for a broker's answer while none can be reached.
POLL_SECONDS = 0.2
#: librdkafka's errors meaning no broker can be reached now (one broker of several
#: dropping a connection is retried, and is not one of them).
_UNREACHABLE = frozenset({"_ALL_BROKERS_DOWN", "_AUTHENTICATION"})

Headers = Sequence[tuple[str, bytes]]
_Waiting = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]
_Settled = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]", BaseException | None]


def producer_config(
    bootstrap: str,
    client_id: str,
    *,
    delivery_timeout_ms: int = DELIVERY_TIMEOUT_MS,
    extra: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The librdkafka settings of our producers (this module's, the self-trace span
    exporter's): each record acknowledged by every in-sync replica (acks=all,
    idempotent), records up to MAX_RECORD_BYTES, given up after `delivery_timeout_ms`,
    and librdkafka's own log silenced: a failure is reported once, by the user (a
    stage's `Delivery`, the gateway's 503, the exporter's log line), not on stderr at
    each reconnect. `extra`: the caller's own settings on top."""
    return {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": True,
        "message.max.bytes": MAX_RECORD_BYTES,
        "delivery.timeout.ms": delivery_timeout_ms,
        "log_level": 0,
        **(extra or {}),
    }


class KafkaUnreachable(ConnectionError):
    """No broker could be reached: the records not yet acknowledged are given up."""


class LibrdkafkaProducer:
    """`await send(...)` returns once the broker acknowledged the record, or raises;
    `enqueue(...)` appends and hands back the acknowledgement to await later."""

    def __init__(
        self,
        bootstrap: str,
        client_id: str,
        *,
        linger_ms: int = 0,
        probe_topic: str = LINEAGE_TOPIC,
        unreachable_grace_s: float = 0.0,
    ) -> None:
        from confluent_kafka import Producer

        self.bootstrap = bootstrap
        #: The one topic whose metadata `connect` and the outage probe ask for.
        self.probe_topic = probe_topic
        #: How long an outage may last before the records waiting are given up and new
        #: ones refused (0: at once, the gateway's 503). librdkafka reports "all brokers
        #: down" for a first connection refused too, which a broker starting up answers
        #: a moment later: a stage waits that long rather than lose its telemetry.
        self.unreachable_grace_s = unreachable_grace_s
        self._unreachable: str | None = None
        self._unreachable_since = 0.0
        self._waiting: dict[int, _Waiting] = {}
        self._settled: list[_Settled] = []
        self._lock = threading.Lock()
        self._next = 0
        self._closed = threading.Event()
        self._producer: Producer = Producer(
            producer_config(
                bootstrap,
                client_id,
                extra={"linger.ms": linger_ms, "error_cb": self._on_error},
            )
        )
        self._poller = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            if self._unreachable is None:
                self._producer.poll(POLL_SECONDS)
                self._hand_over()
            elif self._answers(POLL_SECONDS):
                self._unreachable = None
            elif self._given_up():
                self._fail_waiting(KafkaUnreachable(self._unreachable))

    def _answers(self, timeout: float) -> bool:
        """Whether a broker answers a metadata request within `timeout`."""
        from confluent_kafka import KafkaException

        try:
            self._producer.list_topics(self.probe_topic, timeout=timeout)
        except KafkaException:
            return False
        return True

    def _on_error(self, err: KafkaError) -> None:
        if err.name() in _UNREACHABLE:
            if self._unreachable is None:
                self._unreachable_since = time.monotonic()
            self._unreachable = f"{err.name()}: {err.str()}"
            if self._given_up():
                self._fail_waiting(KafkaUnreachable(self._unreachable))

    def _given_up(self) -> bool:
        """Whether no broker has been reachable for longer than the grace."""
        return (
            self._unreachable is not None
            and time.monotonic() - self._unreachable_since >= self.unreachable_grace_s
        )

    def _fail_waiting(self, exc: BaseException) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, {}
            self._settled.extend((loop, future, exc) for loop, future in waiting.values())
        self._hand_over()

    def _acknowledged(self, ticket: int, err: KafkaError | None) -> None:
        """Notes a record's outcome (on librdkafka's side); `_hand_over` passes it on."""
        exc = None if err is None else ConnectionError(f"{err.name()}: {err.str()}")
        with self._lock:
            found = self._waiting.pop(ticket, None)
            if found is not None:  # else failed already (broker unreachable)
                self._settled.append((*found, exc))

    def _hand_over(self) -> None:
        """Settles the noted outcomes on their loops, one wake-up a loop for all the
        acknowledgements of a poll (a wake-up each would cost a syscall a record)."""
        with self._lock:
            if not self._settled:
                return
            settled, self._settled = self._settled, []
        by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]] = {}
        for item in settled:
            by_loop.setdefault(item[0], []).append(item)
        for loop, items in by_loop.items():
            loop.call_soon_threadsafe(_settle, items)

    def _ticket(self) -> tuple[int, asyncio.Future[None]]:
        """A future to settle from librdkafka's side, failed with the rest when no
        broker can be reached."""
        if self._given_up():
            raise KafkaUnreachable(self._unreachable or "no broker reachable")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            ticket, self._next = self._next, self._next + 1
            self._waiting[ticket] = (loop, future)
        return ticket, future

    def _forget(self, ticket: int) -> None:
        with self._lock:
            self._waiting.pop(ticket, None)

    async def connect(self, wait_s: float) -> None:
        """Returns once a broker answered a metadata request; raises `KafkaUnreachable`
        as soon as none can be reached, `ConnectionError` when none answered in time."""
        from confluent_kafka import KafkaException

        ticket, future = self._ticket()

        def ask() -> None:
            try:
                self._producer.list_topics(self.probe_topic, timeout=wait_s)
            except KafkaException as exc:
                self._acknowledged(ticket, exc.args[0])
            else:
                self._acknowledged(ticket, None)
            self._hand_over()

        threading.Thread(target=ask, name="kafka-connect", daemon=True).start()
        try:
            await future
        finally:
            self._forget(ticket)

    def enqueue(
        self, topic: str, key: str, value: bytes, headers: Headers | None = None
    ) -> asyncio.Future[None]:
        """Append one record (in call order); the returned future resolves once the
        broker acknowledged it, or fails. Raises at once when the record cannot be
        queued (no broker reachable, too large, librdkafka's queue full)."""
        ticket, future = self._ticket()

        def done(err: KafkaError | None, _msg: Message) -> None:
            self._acknowledged(ticket, err)

        try:
            # Read only: the sequence's pairs are copied into the record.
            sent = cast("list[tuple[str, str | bytes | None]] | None", headers)
            self._producer.produce(topic, value, key.encode(), on_delivery=done, headers=sent)
        except BaseException:
            self._forget(ticket)
            raise
        return future

    async def send(self, topic: str, key: str, value: bytes) -> None:
        await self.enqueue(topic, key, value)

    def close(self, timeout: float = 5.0) -> None:
        """Stop polling and let librdkafka finish what it holds (nothing, once every
        send was awaited); a record still queued after `timeout` is dropped, and its
        acknowledgement fails. The poller is not waited for: it ends at its next wake-up,
        and a stage's exit need not wait `POLL_SECONDS` for it (librdkafka may be polled
        from two threads at once)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._unreachable is None:
            self._producer.flush(timeout)
        self._producer.purge()
        self._hand_over()
        self._fail_waiting(KafkaUnreachable("the producer was closed"))


def _settle(settled: list[_Settled]) -> None:
    for _, future, exc in settled:
        if future.done():  # cancelled by its waiter
            continue
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)
