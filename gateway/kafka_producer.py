"""The gateway's Kafka producer: acks=all and idempotent, records batched by a linger.

Each HTTP request waits for its own records' acknowledgements, and many requests are
in flight at once: a short linger lets the records of concurrent requests share one
produce request instead of paying a broker round trip each. `enqueue` appends a
record and returns its acknowledgement to await, so a caller can append several
records of one key in order (the idempotent producer keeps that order on the
partition) and then wait for all of them together.
"""

from __future__ import annotations

from lineagehub.telemetry.publisher import MAX_REQUEST_BYTES, KafkaPublisher

BATCH_BYTES = 256 * 1024

__all__ = ["BATCH_BYTES", "MAX_REQUEST_BYTES", "GatewayProducer"]


class GatewayProducer(KafkaPublisher):
    def __init__(
        self, bootstrap: str, linger_ms: int = 5, client_id: str = "lineage-hub-gateway"
    ) -> None:
        super().__init__(bootstrap, client_id, linger_ms=linger_ms, max_batch_size=BATCH_BYTES)
