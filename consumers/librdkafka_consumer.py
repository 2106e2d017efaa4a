"""A Kafka group consumer on librdkafka (confluent-kafka), with the part of aiokafka's
`AIOKafkaConsumer` the batch consumer (`consumers.otel.consumer`: the otel consumer and
the lineage warehouse writer) uses: `getmany`, `commit` with metadata, `pause`, `resume`,
`seek`, `highwater`, the offsets, and an async rebalance listener.

Why: fetching and unpacking a record costs aiokafka ~8 µs of the event loop's CPU (a
3.2 KB record; its CRC32C check is software, 2.7 µs of it), librdkafka ~1 µs, its
CRC32C in hardware. Records are checked as the Java client checks them (`check.crcs`).

Threads: librdkafka fetches in its own threads; one thread of ours (the consumer's)
makes every call on the client that touches the group (poll, commit, pause, resume,
seek, position, close), in the order the event loop asked for them. From the moment
librdkafka decides to rebalance until the application's callback has answered, any call
on the handle from another thread is held up (`assignment()`, a commit, even metadata
and watermarks: measured with confluent-kafka 2.16): made from the event loop, it would
stop the loop that the callback waits for. The callbacks run inside the consumer
thread's poll; each runs the listener's coroutine on the event loop and, while it waits
for it, makes the calls asked for meanwhile (the revoke's last commits). As with
aiokafka, a rebalance waits for the revoke (in-flight batches commit); unlike aiokafka,
no record of a new assignment comes out before the install (the commit metadata read)
is over, so none is batched before the consumer knows where its partition starts.

As with aiokafka, a paused partition's records never come out of `getmany` (those a
fetch already under way brings are held until it is resumed), and after a `seek` none
from before it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata
from confluent_kafka import Consumer, KafkaException, Message
from confluent_kafka import TopicPartition as RdPartition

log = logging.getLogger(__name__)
T = TypeVar("T")

#: librdkafka's "no offset" (`RD_KAFKA_OFFSET_INVALID`).
OFFSET_INVALID = -1001
#: Records fetched ahead and held for `getmany`, all partitions together (librdkafka's
#: default is 64 MiB): enough to keep a batch of 2,000 records of a few KB in reserve.
QUEUED_KBYTES = 16 * 1024
#: How long a call waits for an answer about offsets or the cluster.
REQUEST_TIMEOUT_S = 5.0
#: How often the consumer thread, in a rebalance callback, looks for a call to make.
SERVE_INTERVAL_S = 0.05

Fetched = dict[TopicPartition, list["FetchedRecord"]]


class CommitFailed(Exception):
    """The group did not take a commit: the partition is no longer ours, the group is
    rebalancing, or the coordinator cannot be reached. The batch is left to its next
    owner (or to this consumer's rewind)."""


class Listener(Protocol):
    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None: ...
    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None: ...


@dataclass(frozen=True, slots=True)
class FetchedRecord:
    """A consumed record, with aiokafka's `ConsumerRecord` attribute names."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms, as the producer or the broker stamped it
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


def consumer_config(
    bootstrap: str, group: str, client_id: str, **extra: object
) -> dict[str, object]:
    """Our group consumers' librdkafka settings: commits only what the caller commits,
    from the earliest offset of a partition without a commit, transactional records once
    committed, CRCs checked, aiokafka's session timing (a member that died without leaving
    loses its partitions after 10 s, as before), librdkafka's own log silenced (errors
    reach the caller, and the cluster watch reports an outage once)."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "check.crcs": True,
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 3_000,
        "queued.max.messages.kbytes": QUEUED_KBYTES,
        "log_level": 0,
        **extra,
    }


def metadata_text(committed: str) -> str:
    """A commit's metadata as it was meant: confluent-kafka sends a commit's metadata with
    its C string's closing NUL (its size is `strlen + 1`, 2.16), so what it committed
    reads back ending in "\x00" (to any client; aiokafka's commits do not)."""
    return committed[:-1] if committed.endswith("\x00") else committed


def _ours(tp: RdPartition) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


def _theirs(tp: TopicPartition, offset: int = OFFSET_INVALID) -> RdPartition:
    return RdPartition(tp.topic, tp.partition, offset)


def _record(m: Message) -> FetchedRecord:
    headers = m.headers()
    return FetchedRecord(
        m.topic() or "",
        m.partition() or 0,
        m.offset() or 0,
        m.timestamp()[1],
        m.key(),
        m.value(),
        tuple(cast(list[tuple[str, bytes | None]], headers)) if headers else (),
    )


class LibrdkafkaConsumer:
    """A group member reading `subscribe`d topics; made with `consumer_config`'s settings."""

    def __init__(self, config: Mapping[str, object]) -> None:
        self._config = dict(config)
        self._consumer: Consumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: Listener | None = None
        self._topics: list[str] = []
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._closed = False
        # The event loop's view, kept in step with the consumer thread's calls.
        self._assignment: frozenset[TopicPartition] = frozenset()
        self._assigning: frozenset[TopicPartition] = frozenset()
        self._starts: dict[TopicPartition, int] = {}  # seeks asked for during an install
        self._paused: set[TopicPartition] = set()
        self._held: Fetched = {}  # fetched after their partition was paused
        self._seeks: dict[TopicPartition, int] = {}  # how many seeks each partition had
        self._high: dict[TopicPartition, int] = {}

    def _client(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("the consumer is not started")
        return self._consumer

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._consumer = Consumer({**self._config, "error_cb": _log_error})
        name = f"librdkafka-consumer-{self._config.get('client.id', '')}"
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def subscribe(self, topics: Iterable[str], listener: Listener) -> None:
        self._topics = list(topics)
        self._listener = listener
        consumer = self._client()
        self._send(
            lambda: consumer.subscribe(
                self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke
            )
        )

    def subscription(self) -> set[str]:
        return set(self._topics)

    async def stop(self) -> None:
        """Leave the group (the listener hears the revoke) and close the client."""
        if self._closed or self._consumer is None:
            return
        self._closed = True
        consumer = self._consumer
        try:
            await self._call(consumer.close)
        except (KafkaException, RuntimeError) as exc:
            # (An error raised in a rebalance callback comes out here.) The group hears
            # of it by the session's end instead; the caller still has its other
            # clients to close.
            log.warning("leaving the group failed", extra={"error": str(exc)})
        finally:
            self._assignment = frozenset()
            self._jobs.put(None)  # the consumer thread ends

    def _serve(self) -> None:
        """The consumer thread: make the calls asked for, in order, until told to end."""
        while (job := self._jobs.get()) is not None:
            job()

    def _call(self, call: Callable[[], T]) -> asyncio.Future[T]:
        """Make `call` in the consumer thread; its outcome, to await."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                outcome: tuple[object, BaseException | None] = (call(), None)
            except BaseException as exc:  # handed to the caller
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it
                loop.call_soon_threadsafe(_settle, future, *outcome)

        self._jobs.put(job)
        return future

    def _send(self, call: Callable[[], object]) -> None:
        """Make `call` in the consumer thread, not waiting for it (a failure is logged)."""

        def job() -> None:
            try:
                call()
            except Exception as exc:  # a partition revoked meanwhile, a closed client
                log.debug("consumer call failed", extra={"error": repr(exc)})

        self._jobs.put(job)

    # ---- records ---------------------------------------------------------------------

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> Fetched:
        """Records of the assigned partitions not paused, by partition: up to
        `max_records` fetched, waiting up to `timeout_ms` for the first."""
        seeks = dict(self._seeks)
        fetching = self._call(lambda: self._fetch(timeout_ms / 1000, max_records or 500))
        try:
            fetched = await asyncio.shield(fetching)
        except asyncio.CancelledError:
            # The fetch goes on, and librdkafka's position moves past what it brings:
            # hold its records for the next call rather than lose them.
            fetching.add_done_callback(lambda f: self._hold(f, seeks))
            raise
        out: Fetched = {}
        for tp in [tp for tp in self._held if tp not in self._paused]:
            out[tp] = self._held.pop(tp)
        return self._sort(fetched, seeks, out)

    def _sort(
        self, fetched: Fetched, seeks: dict[TopicPartition, int], out: Fetched | None
    ) -> Fetched:
        """Add to `out` the records of partitions still ours and not sought since the
        fetch was asked for; hold those of paused partitions (all, without `out`)."""
        taken: Fetched = {} if out is None else out
        for tp, records in fetched.items():
            if tp not in self._assignment or self._seeks.get(tp) != seeks.get(tp):
                continue  # revoked, or sought elsewhere, while they were on their way
            if out is None or tp in self._paused:
                self._held.setdefault(tp, []).extend(records)
            else:
                taken.setdefault(tp, []).extend(records)
        return taken

    def _hold(self, fetching: asyncio.Future[Fetched], seeks: dict[TopicPartition, int]) -> None:
        if not fetching.cancelled() and fetching.exception() is None:
            self._sort(fetching.result(), seeks, None)

    def _fetch(self, timeout: float, max_records: int) -> Fetched:
        consumer = self._client()
        first = consumer.poll(timeout)
        if first is None:
            return {}
        messages = [first]
        if max_records > 1:
            messages += consumer.consume(max_records - 1, 0)
        out: Fetched = {}
        for m in messages:
            error = m.error()
            if error is not None:
                log.debug("fetch error", extra={"error": str(error)})
                continue
            record = _record(m)
            tp = TopicPartition(record.topic, record.partition)
            batch = out.get(tp)
            if batch is None:
                out[tp] = [record]
            else:
                batch.append(record)
        for tp in out:
            _low, high = consumer.get_watermark_offsets(_theirs(tp), cached=True)
            if high >= 0:
                self._high[tp] = int(high)
        return out

    # ---- positions -------------------------------------------------------------------

    def assignment(self) -> set[TopicPartition]:
        """The partitions assigned (during an install, those being installed too)."""
        return set(self._assignment)

    def pause(self, *tps: TopicPartition) -> None:
        self._paused.update(tps)
        consumer = self._client()
        self._send(lambda: consumer.pause([_theirs(tp) for tp in tps]))

    def resume(self, *tps: TopicPartition) -> None:
        self._paused.difference_update(tps)
        consumer = self._client()
        self._send(lambda: consumer.resume([_theirs(tp) for tp in tps]))

    def paused(self) -> set[TopicPartition]:
        return self._paused & self._assignment

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """The partition's next record is `offset`'s; none fetched before comes out."""
        if tp in self._assigning:
            # librdkafka seeks only assigned partitions: this is where it starts. (No
            # record of it can be on its way: it was not assigned.)
            self._starts[tp] = offset
            return
        self._seeks[tp] = self._seeks.get(tp, 0) + 1
        self._held.pop(tp, None)
        consumer = self._client()
        self._send(lambda: consumer.seek(_theirs(tp, offset)))

    def highwater(self, tp: TopicPartition) -> int | None:
        """The partition's end as of its last fetch (no request)."""
        return self._high.get(tp)

    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: high for tp, (_low, high) in (await self._watermarks(tps)).items()}

    async def beginning_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: low for tp, (low, _high) in (await self._watermarks(tps)).items()}

    async def _watermarks(
        self, tps: Iterable[TopicPartition]
    ) -> dict[TopicPartition, tuple[int, int]]:
        """Asked in a worker thread: held up while a rebalance callback runs, it never
        stops the event loop."""
        consumer = self._client()
        wanted = list(tps)

        def ask() -> dict[TopicPartition, tuple[int, int]]:
            out: dict[TopicPartition, tuple[int, int]] = {}
            for tp in wanted:
                low, high = consumer.get_watermark_offsets(
                    _theirs(tp), timeout=REQUEST_TIMEOUT_S, cached=False
                )
                out[tp] = (int(low), int(high))
            return out

        return await asyncio.to_thread(ask)

    async def position(self, tp: TopicPartition) -> int:
        """The offset of the partition's next record; `KafkaException` before a record of
        it has been handed out (librdkafka knows no position before: unlike aiokafka's,
        waiting for one would wait for the `getmany` of whoever waits)."""
        consumer = self._client()
        (where,) = await self._call(lambda: consumer.position([_theirs(tp)]))
        if where.offset < 0:
            raise KafkaException(f"no position yet for {tp.topic}/{tp.partition}")
        return int(where.offset)

    # ---- commits ---------------------------------------------------------------------

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        """Commit each partition's offset and metadata, waiting for the coordinator's
        answer; `CommitFailed` when it refuses any, or when a partition is not ours."""
        consumer = self._client()
        theirs = []
        for tp, meta in offsets.items():
            if tp not in self._assignment:
                raise CommitFailed(f"{tp.topic}/{tp.partition} is not assigned to us")
            if meta.metadata:
                theirs.append(
                    RdPartition(tp.topic, tp.partition, meta.offset, metadata=meta.metadata)
                )
            else:  # no metadata at all, not a lone NUL (`metadata_text`)
                theirs.append(RdPartition(tp.topic, tp.partition, meta.offset))
        try:
            answer = await self._call(lambda: consumer.commit(offsets=theirs, asynchronous=False))
        except (KafkaException, RuntimeError) as exc:
            raise CommitFailed(str(exc)) from exc
        for tp in answer or []:
            if tp.error is not None:
                raise CommitFailed(f"{tp.topic}/{tp.partition}: {tp.error}")

    # ---- rebalances (in the consumer thread) -------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[RdPartition]) -> None:
        new = frozenset(_ours(p) for p in partitions)
        self._starts = {}
        self._assigning = new
        self._assignment = self._assignment | new
        try:
            if self._listener is not None:
                self._hear(self._listener.on_partitions_assigned, partitions)
        finally:
            self._assigning = frozenset()
        starts = [_theirs(tp, self._starts.pop(tp, OFFSET_INVALID)) for tp in sorted(new)]
        consumer.assign(starts)
        if starts:
            # A partition assigned again starts unpaused unless paused during its install.
            consumer.resume(starts)
            held = [p for p in starts if _ours(p) in self._paused]
            if held:
                consumer.pause(held)

    def _on_revoke(self, consumer: Consumer, partitions: list[RdPartition]) -> None:
        if partitions:
            self._hear(self._revoked, partitions)

    async def _revoked(self, gone: set[TopicPartition]) -> None:
        """On the event loop: the listener hears it, then they are no longer ours."""
        try:
            if self._listener is not None:
                await self._listener.on_partitions_revoked(gone)
        finally:
            self._assignment = self._assignment - gone
            for tp in gone:
                self._paused.discard(tp)
                self._held.pop(tp, None)
                self._high.pop(tp, None)

    def _hear(
        self,
        heard: Callable[[set[TopicPartition]], Awaitable[None]],
        partitions: list[RdPartition],
    ) -> None:
        """Run the listener's coroutine on the event loop and wait for it, making the
        calls asked for meanwhile. A failing listener is logged: librdkafka would
        otherwise raise it out of whatever call polled."""
        loop = self._loop
        assert loop is not None
        log.info(
            f"partitions {heard.__name__.rsplit('_', 1)[-1]}",
            extra={"partitions": sorted(f"{p.topic}/{p.partition}" for p in partitions)},
        )
        try:
            done = asyncio.run_coroutine_threadsafe(
                _awaited(heard({_ours(p) for p in partitions})), loop
            )
        except RuntimeError:  # the loop is closed: nobody is listening
            return
        while not done.done():
            try:
                job = self._jobs.get(timeout=SERVE_INTERVAL_S)
            except queue.Empty:
                if not loop.is_running():  # it will never run the listener
                    done.cancel()
                    return
                continue
            if job is None:  # `stop` has gone: nothing more is asked of this thread
                self._jobs.put(None)
                done.cancel()
                return
            job()
        if done.cancelled():
            log.error("rebalance listener cancelled")
        elif done.exception() is not None:
            log.error("rebalance listener failed", exc_info=done.exception())


async def _awaited(coroutine: Awaitable[None]) -> None:
    await coroutine


def _settle(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _log_error(error: object) -> None:
    log.debug("librdkafka", extra={"error": str(error)})
