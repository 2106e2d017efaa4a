"""The gateway's Kafka producer: acks=all and idempotent, records batched by a linger,
on librdkafka (`lineagehub.librdkafka_producer`).

Each HTTP request waits for its own records' acknowledgements, and many requests are
in flight at once: a short linger lets the records of concurrent requests share one
produce request instead of paying a broker round trip each. `enqueue` appends a
record and returns its acknowledgement to await, so a caller can append several
records of one key in order (the idempotent producer keeps that order on the
partition) and then wait for all of them together. Each record carries the request
span's trace context in its headers.

Why librdkafka rather than aiokafka: the batching, compression-free encoding and
socket I/O run in librdkafka's C threads, not on the event loop that also parses and
validates the requests (`bench/bench_gateway_producers.py`: about a third of the CPU a
record at 50 a send).
"""

from __future__ import annotations

import asyncio

from gateway.tracing import kafka_headers
from lineagehub.librdkafka_producer import MAX_RECORD_BYTES, LibrdkafkaProducer
from lineagehub.topics import LINEAGE_TOPIC

#: Records up to this size are accepted by the producer (the gateway's own event limit,
#: `Settings.max_event_bytes`, is lower).
MAX_REQUEST_BYTES = MAX_RECORD_BYTES
#: How long `start` waits for a broker's first answer (the sink bounds it too).
CONNECT_TIMEOUT_S = 30.0

__all__ = ["MAX_REQUEST_BYTES", "GatewayProducer"]


class GatewayProducer:
    """`start` returns once a broker answered (fails at once when none can be reached,
    for a clear 503); `stop` waits for the records still held to be acknowledged."""

    def __init__(
        self,
        bootstrap: str,
        linger_ms: int = 2,
        client_id: str = "lineage-hub-gateway",
        topic: str = LINEAGE_TOPIC,
    ) -> None:
        self.bootstrap = bootstrap
        self.linger_ms = linger_ms
        self._client_id = client_id
        #: The topic the gateway publishes to: its connect and outage probe ask for it.
        self.topic = topic
        self._producer: LibrdkafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = LibrdkafkaProducer(
            self.bootstrap, self._client_id, linger_ms=self.linger_ms, probe_topic=self.topic
        )
        try:
            await producer.connect(CONNECT_TIMEOUT_S)
        except BaseException:
            await asyncio.to_thread(producer.close)
            raise
        self._producer = producer

    async def stop(self) -> None:
        """Flush (in a thread: the acknowledgements still arrive on the loop) and close."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await asyncio.to_thread(producer.close)

    async def enqueue(self, topic: str, key: str, value: bytes) -> asyncio.Future[None]:
        """Append one record (in call order) with the request span's `traceparent` in its
        headers (when the gateway traces), for the consumer's span to continue; the
        returned future resolves once the broker acknowledged it, or fails."""
        producer = self._producer
        if producer is None:  # started by the sink first: only a direct caller gets here
            await self.start()
            producer = self._producer
            assert producer is not None
        return producer.enqueue(topic, key, value, kafka_headers() or None)

    async def send(self, topic: str, key: str, value: bytes) -> None:
        await (await self.enqueue(topic, key, value))
