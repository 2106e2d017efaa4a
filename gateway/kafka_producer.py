"""The gateway's Kafka producer: acks=all and idempotent, records batched by a linger.

Each HTTP request waits for its own records' acknowledgements, and many requests are
in flight at once: a short linger lets the records of concurrent requests share one
produce request instead of paying a broker round trip each. `enqueue` appends a
record and returns its acknowledgement to await, so a caller can append several
records of one key in order (the idempotent producer keeps that order on the
partition) and then wait for all of them together.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer

#: Kafka records up to this size (the broker's default message.max.bytes is ~1 MiB).
MAX_REQUEST_BYTES = 4 * 1024 * 1024
BATCH_BYTES = 256 * 1024


class GatewayProducer:
    def __init__(
        self, bootstrap: str, linger_ms: int = 5, client_id: str = "lineage-hub-gateway"
    ) -> None:
        self.bootstrap = bootstrap
        self.linger_ms = linger_ms
        self._client_id = client_id
        self._producer: Any = None

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=self.linger_ms,
            max_batch_size=BATCH_BYTES,
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
        future: asyncio.Future[Any] = await self._producer.send(
            topic, value=value, key=key.encode()
        )
        return future

    async def send(self, topic: str, key: str, value: bytes) -> None:
        await (await self.enqueue(topic, key, value))
