"""Where a stage's lineage and telemetry go: Kafka (delivery confirmed), the console,
a list in memory (tests, benchmarks), or nowhere.

The Kafka client and the OTLP messages are imported by the emitter that uses them, so
a stage loads librdkafka only when it publishes to Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from lineagehub.topics import LINEAGE_TOPIC, METRICS_TOPIC, SPANS_TOPIC

if TYPE_CHECKING:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from lineagehub.librdkafka_producer import LibrdkafkaProducer as StageProducer


class Emitter(Protocol):
    """`send` returns once the record is delivered (or printed, or kept)."""

    description: str

    async def start(self) -> None: ...
    async def send(self, topic: str, key: str, value: bytes) -> None: ...
    async def close(self) -> None: ...


#: How long a stage's sends wait out "no broker reachable" before its telemetry is given
#: up: a broker refusing the stage's first connection (starting, or restarting) and
#: answering a moment later would otherwise cost every record the stage sent meanwhile.
UNREACHABLE_GRACE_S = 3.0


class KafkaEmitter:
    """Publishes to Kafka through librdkafka (`lineagehub.librdkafka_producer`). The
    producer is made, and starts connecting, when the emitter is: a stage makes it once
    its work has started, and its connection overlaps the work.

    The first send waits until a broker has answered a metadata request (or could not
    be asked): librdkafka's idempotent producer holds a record produced within a few
    milliseconds of its creation ~0.5 s (until a later timer asks for its producer id),
    and a stage sends its START at once; once a broker answered, the record goes at
    once (~0.07 s after the producer was made, on loopback, instead of ~0.5 s)."""

    def __init__(self, bootstrap: str) -> None:
        from lineagehub.librdkafka_producer import LibrdkafkaProducer as StageProducer

        self.bootstrap = bootstrap
        self.description = f"kafka {bootstrap}"
        self._producer: StageProducer | None = StageProducer(
            bootstrap, client_id="lineage-hub-runner", unreachable_grace_s=UNREACHABLE_GRACE_S
        )
        self._connected: asyncio.Future[None] | None = None

    async def start(self) -> None:
        return None

    async def _connect(self, producer: StageProducer) -> None:
        """Returns once a broker answered, or could not: a failure is the sends' to
        meet and report (the broker unreachable, or silent past the grace)."""
        with contextlib.suppress(Exception):
            await producer.connect(UNREACHABLE_GRACE_S)

    async def send(self, topic: str, key: str, value: bytes) -> None:
        if self._producer is None:
            raise ConnectionError("the Kafka emitter was closed")
        if self._connected is None:  # the first send: sends at once share the wait
            self._connected = asyncio.ensure_future(self._connect(self._producer))
        await asyncio.shield(self._connected)
        await self._producer.send(topic, key, value)

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            producer.close()


class FailedEmitter:
    """An emitter that could not be made: every send raises the error that stopped it."""

    def __init__(self, description: str, error: Exception) -> None:
        self.description = description
        self.error = error

    async def start(self) -> None:
        return None

    async def send(self, topic: str, key: str, value: bytes) -> None:
        raise self.error

    async def close(self) -> None:
        return None


class NullEmitter:
    description = "nowhere"

    async def start(self) -> None:
        return None

    async def send(self, topic: str, key: str, value: bytes) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass
class MemoryEmitter:
    """Keeps every record: (topic, key, value)."""

    records: list[tuple[str, str, bytes]] = field(default_factory=list)
    description: str = "memory"

    async def start(self) -> None:
        return None

    async def send(self, topic: str, key: str, value: bytes) -> None:
        self.records.append((topic, key, value))

    async def close(self) -> None:
        return None

    def lineage(self) -> list[dict[str, Any]]:
        return [json.loads(v) for t, _, v in self.records if t == LINEAGE_TOPIC]

    def spans(self) -> list[ExportTraceServiceRequest]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        return [
            ExportTraceServiceRequest.FromString(v) for t, _, v in self.records if t == SPANS_TOPIC
        ]

    def metrics(self) -> list[ExportMetricsServiceRequest]:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )

        return [
            ExportMetricsServiceRequest.FromString(v)
            for t, _, v in self.records
            if t == METRICS_TOPIC
        ]


def describe_spans(value: bytes) -> list[str]:
    """One line per span of an OTLP trace request."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest.FromString(value)
    lines = []
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                attrs = {kv.key: _text(kv.value) for kv in span.attributes}
                ms = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
                lines.append(
                    f"span {span.name!r} trace={span.trace_id.hex()} span={span.span_id.hex()} "
                    f"parent={span.parent_span_id.hex() or '-'} {ms:.1f}ms "
                    f"start={span.start_time_unix_nano} "
                    f"status={span.status.code} {json.dumps(attrs, sort_keys=True)}"
                )
    return lines


def describe_metrics(value: bytes) -> list[str]:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    request = ExportMetricsServiceRequest.FromString(value)
    lines = []
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                points = getattr(metric, kind).data_points if kind else []
                values = []
                for p in points:
                    if kind == "histogram":
                        values.append(f"count={p.count} sum={p.sum:.3f}")
                    else:
                        values.append(str(p.as_int if p.HasField("as_int") else p.as_double))
                lines.append(f"metric {metric.name} ({kind}, {metric.unit}) {', '.join(values)}")
    return lines


def _text(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(value, kind) if kind else None


class ConsoleEmitter:
    """Prints each record: lineage events as JSON, spans and metrics as one line each."""

    description = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    async def start(self) -> None:
        return None

    async def send(self, topic: str, key: str, value: bytes) -> None:
        out = self.stream
        if topic == LINEAGE_TOPIC:
            print(f"[{topic} key={key}] {value.decode()}", file=out)
        elif topic == SPANS_TOPIC:
            for line in describe_spans(value):
                print(f"[{topic} key={key}] {line}", file=out)
        elif topic == METRICS_TOPIC:
            for line in describe_metrics(value):
                print(f"[{topic} key={key}] {line}", file=out)
        else:
            print(f"[{topic} key={key}] {len(value)} bytes", file=out)
        out.flush()

    async def close(self) -> None:
        return None
