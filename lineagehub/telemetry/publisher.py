"""One Kafka producer for lineage and telemetry, with delivery confirmed per send."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer

#: Kafka records up to this size (the broker's default message.max.bytes is ~1 MiB).
MAX_REQUEST_BYTES = 4 * 1024 * 1024


class KafkaPublisher:
    """`await send(...)` returns once the broker acknowledged the record (acks=all,
    idempotent). `linger_ms` > 0 lets the records of concurrent senders share a produce
    request (a server with many requests in flight); `enqueue` appends a record and hands
    back its acknowledgement, so one caller can append several records of a key in order
    and await them together."""

    def __init__(
        self,
        bootstrap: str,
        client_id: str = "lineage-hub",
        *,
        linger_ms: int = 0,
        max_batch_size: int = 16384,
    ) -> None:
        self.bootstrap = bootstrap
        self.linger_ms = linger_ms
        self._client_id = client_id
        self._max_batch_size = max_batch_size
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect; the producer is made here because aiokafka needs a running loop."""
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=self.linger_ms,
            max_batch_size=self._max_batch_size,
            max_request_size=MAX_REQUEST_BYTES,
            request_timeout_ms=15000,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def enqueue(self, topic: str, key: str, value: bytes) -> asyncio.Future[Any]:
        """Append one record (in call order); the returned future resolves once the
        broker acknowledged it, or fails."""
        await self.start()
        assert self._producer is not None
        future: asyncio.Future[Any] = await self._producer.send(
            topic, value=value, key=key.encode()
        )
        return future

    async def send(self, topic: str, key: str, value: bytes) -> None:
        await (await self.enqueue(topic, key, value))

    async def __aenter__(self) -> KafkaPublisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
