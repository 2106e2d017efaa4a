"""Dead-letter queue: what can never succeed goes to `<topic>.dlq` with headers naming why.

The original key and value are kept (so a fixed consumer can replay them), the
original headers are kept, and `dlq.*` headers are added:

| header | value |
| --- | --- |
| `dlq.reason` | a short code: `invalid_json`, `schema`, `http_4xx`, `decode`, `too_large` |
| `dlq.error` | the human-readable error, at most 1000 characters |
| `dlq.topic`, `dlq.partition`, `dlq.offset` | where the message came from |
| `dlq.consumer` | which consumer rejected it |
| `dlq.timestamp` | when (Unix ms) |
| `dlq.truncated` | present (`<original size>`) when the value had to be cut to fit |
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from aiokafka.errors import MessageSizeTooLargeError

from lineagehub.store_spans import KafkaRecord
from lineagehub.topics import dlq as dlq_topic

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
MAX_ERROR_CHARS = 1000
TRUNCATED_VALUE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Rejection:
    """Why a message can never succeed."""

    reason: str
    detail: str


class Record(KafkaRecord, Protocol):
    """The parts of an aiokafka ConsumerRecord we read."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> object: ...


class Producer(Protocol):
    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: Headers | None = None,
    ) -> object: ...


def dlq_headers(
    record: Record, rejection: Rejection, consumer: str, now_ms: int | None = None
) -> Headers:
    original = [(str(k), bytes(v)) for k, v in (record.headers or ())]  # type: ignore[attr-defined]
    ours = [
        ("dlq.reason", rejection.reason.encode()),
        ("dlq.error", rejection.detail[:MAX_ERROR_CHARS].encode("utf-8", "replace")),
        ("dlq.topic", record.topic.encode()),
        ("dlq.partition", str(record.partition).encode()),
        ("dlq.offset", str(record.offset).encode()),
        ("dlq.consumer", consumer.encode()),
        ("dlq.timestamp", str(now_ms if now_ms is not None else int(time.time() * 1000)).encode()),
    ]
    # Drop stale dlq.* headers if a replayed dead letter is rejected again.
    return [h for h in original if not h[0].startswith("dlq.")] + ours


def header(headers: object, name: str) -> bytes | None:
    for k, v in headers or ():  # type: ignore[attr-defined]
        if k == name:
            return bytes(v)
    return None


class DeadLetterQueue:
    def __init__(self, producer: Producer, consumer: str) -> None:
        self.producer = producer
        self.consumer = consumer

    async def send(self, record: Record, rejection: Rejection) -> None:
        """Publish to the DLQ and wait for the broker's ack (at-least-once)."""
        headers = dlq_headers(record, rejection, self.consumer)
        topic = dlq_topic(record.topic)
        try:
            await self.producer.send_and_wait(
                topic, value=record.value, key=record.key, headers=headers
            )
        except MessageSizeTooLargeError:
            size = len(record.value or b"")
            cut = (record.value or b"")[:TRUNCATED_VALUE_BYTES]
            await self.producer.send_and_wait(
                topic,
                value=cut,
                key=(record.key or b"")[:1024] or None,
                headers=[*headers, ("dlq.truncated", str(size).encode())],
            )
        log.warning(
            "dead-lettered",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": rejection.reason,
                "error": rejection.detail[:200],
            },
        )
