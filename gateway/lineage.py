"""OpenLineage events in, Kafka records out: validation, keys, and publishing with acks.

Pure except for `Sink.publish`, which awaits the broker's acknowledgement.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from lineagehub.openlineage_schema import EventKind, SchemaError, event_kind, schema_errors

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """What the gateway needs of `lineagehub.telemetry.publisher.KafkaPublisher`."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send(self, topic: str, key: str, value: bytes) -> None: ...


@dataclass(frozen=True)
class Checked:
    """An event that passed validation, ready to publish."""

    kind: EventKind
    key: str
    value: bytes
    run_id: str | None
    event_type: str | None


@dataclass(frozen=True)
class Invalid:
    status: int  # 400 schema, 413 too large
    errors: list[SchemaError]


def record_key(event: dict[str, Any], kind: EventKind) -> str:
    """The Kafka key: the run id (lower case, as the runner and consumer use it) for a
    RunEvent; `dataset:<ns>/<name>` or `job:<ns>/<name>` for static lineage events."""
    if kind is EventKind.RUN:
        return str(event["run"]["runId"]).lower()
    if kind is EventKind.DATASET:
        return f"dataset:{event['dataset']['namespace']}/{event['dataset']['name']}"
    return f"job:{event['job']['namespace']}/{event['job']['name']}"


def check(event: object, max_event_bytes: int) -> Checked | Invalid:
    """Validate one event against the shared OpenLineage schema and size it for Kafka."""
    if not isinstance(event, dict):
        return Invalid(400, [SchemaError("$", f"expected an object, got {type(event).__name__}")])
    kind = event_kind(event)
    errors = schema_errors(event, kind)
    if errors:
        return Invalid(400, errors)
    value = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    if len(value) > max_event_bytes:
        message = f"the event is {len(value)} bytes, the limit is {max_event_bytes}"
        return Invalid(413, [SchemaError("$", message)])
    run_id = record_key(event, kind) if kind is EventKind.RUN else None
    event_type = event.get("eventType") if kind is EventKind.RUN else None
    return Checked(
        kind=kind,
        key=record_key(event, kind),
        value=value,
        run_id=run_id,
        event_type=str(event_type) if event_type is not None else None,
    )


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
        self._started = False
        self._lock = asyncio.Lock()
        self._down_until = 0.0
        self.last_error = ""

    @property
    def started(self) -> bool:
        return self._started

    async def _ensure_started(self) -> None:
        if self._started:
            return
        async with self._lock:
            if self._started:
                return
            remaining = self._down_until - time.monotonic()
            if remaining > 0:
                raise KafkaUnavailable(f"Kafka is unavailable: {self.last_error}", remaining)
            try:
                await asyncio.wait_for(self.publisher.start(), self.timeout_s)
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
        """Returns once the broker acknowledged the record; `KafkaUnavailable` otherwise."""
        await self._ensure_started()
        try:
            await asyncio.wait_for(self.publisher.send(self.topic, key, value), self.timeout_s)
        except Exception as exc:
            self.last_error = _describe(exc)
            raise KafkaUnavailable(
                f"Kafka did not acknowledge the event: {self.last_error}", self.cooldown_s
            ) from None

    async def close(self) -> None:
        async with self._lock:
            if self._started:
                self._started = False
                with _suppress():
                    await self.publisher.stop()


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
