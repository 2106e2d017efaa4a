"""One Kafka producer for lineage and telemetry, with delivery confirmed per send."""

from __future__ import annotations

from types import TracebackType

from aiokafka import AIOKafkaProducer


class KafkaPublisher:
    """`await send(...)` returns once the broker acknowledged the record (acks=all)."""

    def __init__(self, bootstrap: str, client_id: str = "lineage-hub") -> None:
        self.bootstrap = bootstrap
        self._client_id = client_id
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
            max_request_size=4 * 1024 * 1024,
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

    async def send(self, topic: str, key: str, value: bytes) -> None:
        await self.start()
        assert self._producer is not None
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
