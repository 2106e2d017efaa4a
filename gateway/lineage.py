"""OpenLineage events in, Kafka records out: validation, keys, and publishing with acks.

Validation and keys are `lineagehub.openlineage_schema`'s (Marquez's rules, shared with
the lineage consumer); `record_key` is re-exported from there.

Pure except for `Sink.publish`, which awaits the broker's acknowledgement.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, cast, runtime_checkable

import orjson

from lineagehub.openlineage_schema import (
    EventKind,
    SchemaError,
    event_kind,
    lone_surrogate_path,
    record_key,
    room_for_nesting,
    schema_errors,
)

log = logging.getLogger(__name__)

__all__ = ["Checked", "Invalid", "KafkaUnavailable", "Publisher", "Sink", "check", "record_key"]


class Publisher(Protocol):
    """What the gateway needs of a producer: `send` returns once the record is acknowledged."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send(self, topic: str, key: str, value: bytes) -> None: ...


@runtime_checkable
class PipelinedPublisher(Publisher, Protocol):
    """A producer that can append records in order and be awaited for their acks after:
    `gateway.kafka_producer.GatewayProducer`."""

    async def enqueue(self, topic: str, key: str, value: bytes) -> Awaitable[Any]: ...


class Checked(NamedTuple):
    """An event that passed validation, ready to publish (a named tuple: made for every
    event, at less than half a frozen dataclass's cost)."""

    kind: EventKind
    key: str
    value: bytes
    run_id: str | None
    event_type: str | None


@dataclass(frozen=True)
class Invalid:
    status: int  # 400 schema, 413 too large
    errors: list[SchemaError]


def check(event: object, max_event_bytes: int) -> Checked | Invalid:
    """Validate one event with Marquez's rules (shared with the consumer), size it for Kafka.

    Never raises: what cannot be re-encoded as UTF-8 JSON (a lone surrogate such as
    `"\\ud800"`, nesting too deep to encode) is a 400 naming the problem.
    """
    if not isinstance(event, dict):
        return Invalid(400, schema_errors(event))
    kind = event_kind(event)
    errors = schema_errors(event, kind)
    if errors:
        return Invalid(400, errors)
    try:
        value = _encode(event)
    except UnicodeEncodeError:
        path = lone_surrogate_path(event) or "$"
        message = (
            "contains a lone UTF-16 surrogate (such as \\ud800), which is not Unicode and "
            "cannot be stored as UTF-8: escape the character as a surrogate pair or send it "
            "as UTF-8"
        )
        return Invalid(400, [SchemaError(path, message)])
    except RecursionError:
        return Invalid(400, [SchemaError("$", "nesting too deep to re-encode the event")])
    except ValueError as exc:  # a non-finite float from a caller that did not use loads
        return Invalid(400, [SchemaError("$", f"not encodable as JSON: {exc}")])
    if len(value) > max_event_bytes:
        message = f"the event is {len(value)} bytes, the limit is {max_event_bytes}"
        return Invalid(413, [SchemaError("$", message)])
    key = record_key(event, kind)
    event_type = event.get("eventType") if kind is EventKind.RUN else None
    return Checked(
        kind=kind,
        key=key,
        value=value,
        run_id=key if kind is EventKind.RUN else None,
        event_type=str(event_type) if event_type is not None else None,
    )


def _encode(event: dict[str, object]) -> bytes:
    """Compact UTF-8 JSON: orjson, or the standard encoder for what orjson refuses
    (integers beyond 64 bits, nesting over 254, lone surrogates: its errors are ours)."""
    try:
        return orjson.dumps(event)
    except orjson.JSONEncodeError:
        with room_for_nesting():  # the MAX_NESTING levels `loads` lets through
            text = json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode()


class KafkaUnavailable(Exception):
    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Sink:
    """Publishes to one topic with a bounded wait for the acknowledgement.

    The publisher is started once, under a lock (concurrent first requests must not
    create several producers). After a failed start, requests get 503 at once for
    `cooldown` seconds instead of each trying to connect again.
    """

    def __init__(
        self, publisher: Publisher, topic: str, timeout_s: float, cooldown_s: float
    ) -> None:
        self.publisher = publisher
        self.topic = topic
        self.timeout_s = timeout_s
        self.cooldown_s = cooldown_s
        # Decided once: a runtime Protocol check costs about 100 us a call.
        self._pipelined = isinstance(publisher, PipelinedPublisher)
        self._started = False
        self._closed = False
        self._lock = asyncio.Lock()
        self._down_until = 0.0
        self.last_error = ""

    @property
    def started(self) -> bool:
        return self._started

    def _refuse_if_closed(self) -> None:
        """After `close` nothing may start the producer again (a request still in flight
        would make one that is never stopped)."""
        if self._closed:
            raise KafkaUnavailable("the gateway is shutting down", self.cooldown_s)

    async def _ensure_started(self) -> None:
        self._refuse_if_closed()
        if self._started:
            return
        async with self._lock:
            self._refuse_if_closed()
            if self._started:
                return
            remaining = self._down_until - time.monotonic()
            if remaining > 0:
                raise KafkaUnavailable(f"Kafka is unavailable: {self.last_error}", remaining)
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self.publisher.start()
            except Exception as exc:
                self.last_error = _describe(exc)
                self._down_until = time.monotonic() + self.cooldown_s
                log.warning("kafka producer did not start: %s", self.last_error)
                with _suppress():
                    await self.publisher.stop()
                raise KafkaUnavailable(
                    f"Kafka is unavailable: {self.last_error}", self.cooldown_s
                ) from None
            self._started = True

    async def ready(self) -> None:
        """Start the producer now (raises `KafkaUnavailable` when it cannot)."""
        await self._ensure_started()

    async def publish(self, key: str, value: bytes) -> None:
        """Returns once the broker acknowledged the record; `KafkaUnavailable` otherwise.

        One record (the ingest route's usual request) on a pipelined producer skips the
        groups' bookkeeping: append and await the acknowledgement under the same bounded
        wait, with the same outcomes as `publish_in_order(key, [value])`."""
        if not self._pipelined:
            (failure,) = await self.publish_in_order(key, [value])
            if failure is not None:
                raise failure
            return
        await self._ensure_started()
        pipelined = cast(PipelinedPublisher, self.publisher)  # checked once, in __init__
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        try:
            self._refuse_if_closed()  # no await between this and the append
            ack = await pipelined.enqueue(self.topic, key, value)
            await _acknowledged_by(asyncio.ensure_future(ack), loop, deadline)
        except Exception as exc:
            (failure,) = self._failures(1, [exc])
            assert failure is not None
            raise failure from None

    async def publish_in_order(
        self, key: str, values: list[bytes]
    ) -> list[KafkaUnavailable | None]:
        """Append one key's records in this order, then wait for all the acknowledgements
        together (one round trip, not one per record): None for each acknowledged record.

        After the first record that fails, the later ones are failures too, whether or not
        they landed: a client retrying from the first failure keeps the key's order (a
        record that landed twice is a duplicate, which at-least-once allows).
        """
        (out,) = await self.publish_groups([(key, values)])
        return out

    async def publish_groups(
        self, groups: list[tuple[str, list[bytes]]]
    ) -> list[list[KafkaUnavailable | None]]:
        """`publish_in_order` for several keys at once, one list of outcomes per group:
        every group's records appended (each key's in its order), then one bounded wait
        for all their acknowledgements (a batch request pays one wait, not one per key).
        A group that could not be appended fails whole; one that is acknowledged before
        the wait times out succeeds whatever the others do."""
        try:
            await self._ensure_started()
        except KafkaUnavailable as down:
            return [[down] * len(values) for _, values in groups]
        if self._pipelined:
            outcomes = await self._send_pipelined(groups)
        else:
            outcomes = list(await asyncio.gather(*(self._send_plain(k, v) for k, v in groups)))
        return [
            self._failures(len(values), got)
            for (_, values), got in zip(groups, outcomes, strict=True)
        ]

    def _failures(
        self, count: int, outcomes: list[BaseException | None]
    ) -> list[KafkaUnavailable | None]:
        """Each record's failure: from the first that failed on, all of them (see above);
        records with no outcome (never sent after a failure) fail too."""
        failed: KafkaUnavailable | None = None
        out: list[KafkaUnavailable | None] = []
        for outcome in [*outcomes, *[None] * (count - len(outcomes))]:
            if failed is None and isinstance(outcome, BaseException):
                self.last_error = _describe(outcome)
                failed = KafkaUnavailable(
                    f"Kafka did not acknowledge the event: {self.last_error}", self.cooldown_s
                )
            out.append(failed)
        return out

    async def _send_plain(self, key: str, values: list[bytes]) -> list[BaseException | None]:
        """One at a time: the next record waits for the previous one's acknowledgement."""
        sent: list[BaseException | None] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                for value in values:
                    try:
                        self._refuse_if_closed()
                        await self.publisher.send(self.topic, key, value)
                    except Exception as exc:
                        return [*sent, exc]  # the rest are not sent (failures, see above)
                    sent.append(None)
        except Exception as exc:  # the wait timed out: nothing more is known
            return [exc] * len(values)
        return sent

    async def _send_pipelined(
        self, groups: list[tuple[str, list[bytes]]]
    ) -> list[list[BaseException | None]]:
        pipelined = cast(PipelinedPublisher, self.publisher)  # checked once, in __init__
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        acks: list[list[asyncio.Future[Any]]] = [[] for _ in groups]
        broken: list[BaseException | None] = [None] * len(groups)
        try:
            async with asyncio.timeout_at(deadline):
                for index, (key, values) in enumerate(groups):
                    try:
                        for value in values:
                            self._refuse_if_closed()  # no await between this and the append
                            ack = await pipelined.enqueue(self.topic, key, value)
                            acks[index].append(asyncio.ensure_future(ack))
                    except Exception as exc:  # this group's append: nothing more is known
                        broken[index] = exc
        except TimeoutError as exc:  # appending outlasted the wait: the rest are not sent
            for index, (_, values) in enumerate(groups):
                if broken[index] is None and len(acks[index]) < len(values):
                    broken[index] = exc
        waiting = [
            ack for index, group in enumerate(acks) if broken[index] is None for ack in group
        ]
        await _settled(waiting, deadline)
        return [
            [error] * len(values) if error is not None else [_outcome(ack) for ack in group]
            for (_, values), group, error in zip(groups, acks, broken, strict=True)
        ]

    async def close(self) -> None:
        self._closed = True
        async with self._lock:
            if self._started:
                self._started = False
                with _suppress():
                    await self.publisher.stop()


async def _acknowledged_by(
    ack: asyncio.Future[Any], loop: asyncio.AbstractEventLoop, deadline: float
) -> None:
    """Awaits `ack`; at `deadline` cancels it and raises TimeoutError (as `_settled`
    does). A timer rather than `asyncio.timeout`, whose context costs a single-event
    request several microseconds; the request's own cancellation still propagates."""
    if ack.done():
        ack.result()
        return
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        ack.cancel()

    timer = loop.call_at(deadline, expire)
    try:
        await ack
    except asyncio.CancelledError:
        # Expired, unless the request was cancelled too (both can fall due in one turn
        # of a busy loop): a cancellation of the caller's is never turned into a timeout.
        task = asyncio.current_task()
        if expired and (task is None or not task.cancelling()):
            raise TimeoutError from None
        raise
    finally:
        timer.cancel()


async def _settled(acks: list[asyncio.Future[Any]], deadline: float) -> None:
    """Returns once every ack is settled, or at `deadline` with the unsettled ones
    cancelled. Each is awaited in turn: the acknowledgements of a poll are settled
    together, so most are done when their turn comes and cost no suspension, where
    `asyncio.wait` put a callback on each (about 1 us a record more)."""
    try:
        async with asyncio.timeout_at(deadline):
            for ack in acks:
                if not ack.done():
                    await _quietly(ack)
    except TimeoutError:
        for ack in acks:
            ack.cancel()  # a no-op on the settled ones


async def _quietly(ack: asyncio.Future[Any]) -> None:
    """Waits for `ack` whatever its outcome (read later by `_outcome`)."""
    try:
        await ack
    except Exception:
        return


def _outcome(ack: asyncio.Future[Any]) -> BaseException | None:
    """None for an acknowledged record, else why not (one still pending timed out)."""
    if ack.cancelled():
        return TimeoutError()
    return ack.exception()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out waiting for the broker"
    name = type(exc).__name__
    text = str(exc) or name
    return (text if text.startswith(name) else f"{name}: {text}")[:500]


class _suppress:
    """Like contextlib.suppress(Exception), but logs what it swallowed."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        if exc is not None and isinstance(exc, Exception):
            log.debug("ignored while stopping the producer: %s", exc)
            return True
        return False
