"""One Kafka producer for lineage and telemetry, with delivery confirmed per send."""

from __future__ import annotations

import logging
from types import TracebackType

from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)


class KafkaPublisher:
    """`await send(...)` returns once the broker acknowledged the record (acks=all)."""

    def __init__(self, bootstrap: str, client_id: str = "lineage-hub") -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            max_request_size=4 * 1024 * 1024,
            request_timeout_ms=15000,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, key: str, value: bytes) -> None:
        await self._producer.send_and_wait(topic, value=value, key=key.encode())

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
