"""The gateway's Kafka producer: acks=all and idempotent, records batched by a linger.

Each HTTP request waits for its own records' acknowledgements, and many requests are
in flight at once: a short linger lets the records of concurrent requests share one
produce request instead of paying a broker round trip each. `enqueue` appends a
record and returns its acknowledgement to await, so a caller can append several
records of one key in order (the idempotent producer keeps that order on the
partition) and then wait for all of them together. Each record carries the request
span's trace context in its headers.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.tracing import kafka_headers
from lineagehub.telemetry.publisher import MAX_REQUEST_BYTES, KafkaPublisher

BATCH_BYTES = 256 * 1024

__all__ = ["BATCH_BYTES", "MAX_REQUEST_BYTES", "GatewayProducer"]


class GatewayProducer(KafkaPublisher):
    def __init__(
        self, bootstrap: str, linger_ms: int = 5, client_id: str = "lineage-hub-gateway"
    ) -> None:
        super().__init__(bootstrap, client_id, linger_ms=linger_ms, max_batch_size=BATCH_BYTES)

    async def enqueue(self, topic: str, key: str, value: bytes) -> asyncio.Future[Any]:
        """As `KafkaPublisher.enqueue`, with the request span's `traceparent` in the
        record's headers (when the gateway traces), for the consumer's span to continue."""
        await self.start()
        assert self._producer is not None
        future: asyncio.Future[Any] = await self._producer.send(
            topic, value=value, key=key.encode(), headers=kafka_headers() or None
        )
        return future
