"""Our services' own spans (self-tracing).

Sampled as OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG say (the SDK's names, read from
the environment the provider is given); without them,
a caller's decision is followed and one in ten of the rest is sampled (DEFAULT_ROOT_RATIO:
every span costs the service tens of microseconds, and a console's polling or a busy
ingest must not write a trace per request). Batched as OTEL_BSP_* say, with the resource
OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME give, all read from that environment too,
and exported as OTLP protobuf onto the `otel-spans` Kafka topic, the path the runs'
spans take to ClickHouse and Jaeger, and, as for the runs' spans, also straight to
OTEL_EXPORTER_OTLP_ENDPOINT with LINEAGEHUB_OTLP_DIRECT=1. The exporter's own producer
is not instrumented, so exporting spans makes no spans.

The operator uses the SDK (`tracer_provider`); the spans made per request or per
record, the gateway's request spans and the consumers' store spans, are recorded
without it (`SelfTraceProvider.otlp_batcher`, `span_recorder`, `lineagehub.store_spans`),
the same spans at a fraction of the cost.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import unquote

from opentelemetry.context import Context
from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    TELEMETRY_SDK_LANGUAGE,
    TELEMETRY_SDK_NAME,
    TELEMETRY_SDK_VERSION,
    Resource,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.sdk.version import __version__ as SDK_VERSION

from lineagehub import otlp_endpoint
from lineagehub.librdkafka_producer import producer_config
from lineagehub.otlp_spans import OtlpSpan, encode_readable, encode_request, readable
from lineagehub.span_batches import BatchSettings, SpanBatcher
from lineagehub.store_spans import SpanRecorder
from lineagehub.topics import SPANS_TOPIC
from lineagehub.tracecontext import headers_context

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message

log = logging.getLogger(__name__)

DIRECT_ENV = "LINEAGEHUB_OTLP_DIRECT"
#: The topic our spans go to instead of `otel-spans` (a benchmark keeps its spans out of
#: the stores this way).
TOPIC_ENV = "LINEAGEHUB_SELFTRACE_TOPIC"
ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
PROTOCOL_ENV = "OTEL_EXPORTER_OTLP_PROTOCOL"
EXPORT_TIMEOUT_S = 15.0
SAMPLER_ENV = "OTEL_TRACES_SAMPLER"
SAMPLER_ARG_ENV = "OTEL_TRACES_SAMPLER_ARG"
#: Of the requests (or records) that arrive without a sampled trace, the share traced.
DEFAULT_ROOT_RATIO = 0.1
RESOURCE_ENV = "OTEL_RESOURCE_ATTRIBUTES"
#: The thread that encodes and exports a consumer's store spans.
SPAN_THREAD = "selftrace-spans"
#: The thread that serves the Kafka exporter's acknowledgements.
KAFKA_THREAD = "selftrace-kafka"
#: How long the Kafka exporter's poller waits for an acknowledgement to serve.
POLL_SECONDS = 0.2
#: The span batches librdkafka may hold for a broker that is away (then refused).
QUEUED_KBYTES = 64 * 1024


class KafkaSpanExporter(SpanExporter):
    """Each batch as one `ExportTraceServiceRequest` record on `otel-spans`, keyed by the
    trace id of its first span, handed to librdkafka (confluent-kafka), whose own C
    threads send it: a batch costs the service one `produce` call, where an aiokafka
    producer on an event loop of its own cost it a thread hand-off and ~0.6 ms of Python
    a batch. `send` returns once the batch is queued; a batch Kafka refuses or does not
    acknowledge within EXPORT_TIMEOUT_S is said in the log (from the poller thread,
    KAFKA_THREAD), never raised into the service; `force_flush` and `shutdown` wait for
    the acknowledgements. The SDK calls `export` from its batch thread."""

    def __init__(
        self, bootstrap: str, topic: str = SPANS_TOPIC, client_id: str = "lineage-hub-selftrace"
    ) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self._closed = threading.Event()
        #: The producer's settings: ours (`producer_config`), a shorter delivery timeout,
        #: and a bound on the batches waiting for a broker that is away (then refused,
        #: logged).
        self.config = producer_config(
            bootstrap,
            client_id,
            delivery_timeout_ms=int(EXPORT_TIMEOUT_S * 1000),
            extra={"queue.buffering.max.kbytes": QUEUED_KBYTES},
        )
        self._producer = Producer(self.config)
        self._poller = threading.Thread(target=self._poll, name=KAFKA_THREAD, daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        """Serve the acknowledgements (`_delivered`), in this thread."""
        while not self._closed.is_set():
            self._producer.poll(POLL_SECONDS)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        payload = encode_readable(spans)
        context = spans[0].context
        key = format(context.trace_id, "032x") if context is not None else ""
        return SpanExportResult.SUCCESS if self.send(key, payload) else SpanExportResult.FAILURE

    def send(self, key: str, payload: bytes) -> bool:
        """One encoded `ExportTraceServiceRequest` queued for the topic; False (said in
        the log) when librdkafka refuses it (its queue full, the producer closed)."""
        if self._closed.is_set():
            return False
        try:
            self._producer.produce(self.topic, payload, key.encode(), on_delivery=_delivered)
        except Exception as exc:  # a lost batch of our own spans must not hurt the service
            log.warning("self-trace spans not exported to Kafka: %s", exc)
            return False
        return True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Whether every batch queued so far was acknowledged within the timeout (after
        `shutdown`: nothing is queued, and the client is closed)."""
        if self._closed.is_set():
            return True
        return self._producer.flush(timeout_millis / 1000) == 0

    def shutdown(self) -> None:
        """Wait for the batches queued (EXPORT_TIMEOUT_S at most), stop polling, then
        close the client: its librdkafka threads and connections end now, not whenever
        the exporter is collected. A batch still queued is dropped (said in the log)."""
        if self._closed.is_set():
            return
        left = self._producer.flush(EXPORT_TIMEOUT_S)
        self._closed.set()
        if left:
            log.warning("self-trace spans not exported to Kafka: %d batches left at shutdown", left)
        self._poller.join(EXPORT_TIMEOUT_S)
        if self._poller.is_alive():  # still inside a poll: never close the client under it
            return
        self._producer.purge()  # what is left would otherwise hold up `close`
        self._producer.close()


def _delivered(err: KafkaError | None, _msg: Message) -> None:
    if err is not None:
        log.warning("self-trace spans not exported to Kafka: %s: %s", err.name(), err.str())


def direct_exporter(environ: Mapping[str, str]) -> SpanExporter | None:
    """OTLP straight to a collector, as for the runner's spans: only with
    LINEAGEHUB_OTLP_DIRECT=1 and OTEL_EXPORTER_OTLP_ENDPOINT (or its traces variant) set
    (the local stack sets the endpoint for its tools; the default path stays Kafka).
    OTEL_EXPORTER_OTLP_PROTOCOL `http/protobuf` (default) or `grpc`. Endpoint, headers,
    timeout, compression and TLS are those `environ` gives (`lineagehub.otlp_endpoint`),
    handed to the exporter rather than left for it to read from the process."""
    wanted = environ.get(ENDPOINT_ENV) or environ.get(TRACES_ENDPOINT_ENV)
    if environ.get(DIRECT_ENV) != "1" or not wanted:
        return None
    grpc = otlp_protocol(environ) == "grpc"
    given = otlp_endpoint.settings(environ, grpc=grpc)
    if grpc:
        from grpc import Compression as GrpcCompression  # type: ignore[import-untyped]
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(  # TLS: the system's roots, as the SDK's default
            endpoint=given.endpoint,
            insecure=given.insecure,
            headers=given.headers,
            timeout=given.timeout_s,
            compression=GrpcCompression.Gzip
            if given.compression == "gzip"
            else GrpcCompression.NoCompression,
        )
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=given.endpoint,
        certificate_file=given.certificate_file,
        headers=given.headers,
        timeout=given.timeout_s,
        compression=Compression(given.compression),
    )


def check_config(environ: Mapping[str, str]) -> None:
    """Raise ValueError, naming the variable, for any self-tracing setting in `environ`
    a service would refuse at start: for a command line to check before it starts
    anything (a refusal inside the operator's startup handler would be retried forever)."""
    sampler_setting(environ)
    otlp_protocol(environ)
    BatchSettings.from_environ(environ)
    if environ.get(DIRECT_ENV) == "1":
        otlp_endpoint.settings(environ, grpc=otlp_protocol(environ) == "grpc")


def otlp_protocol(environ: Mapping[str, str]) -> str:
    """OTEL_EXPORTER_OTLP_PROTOCOL, checked: `http/protobuf` (default) or `grpc`."""
    protocol = environ.get(PROTOCOL_ENV) or "http/protobuf"
    if protocol not in {"http/protobuf", "grpc"}:
        raise ValueError(
            f"{PROTOCOL_ENV}={protocol!r} is not supported for self-tracing: "
            "use http/protobuf or grpc"
        )
    return protocol


#: OTEL_TRACES_SAMPLER's values, as the SDK names them: a sampler, or (the ratio ones)
#: a sampler class taking OTEL_TRACES_SAMPLER_ARG.
FIXED_SAMPLERS: dict[str, Sampler] = {
    "always_on": ALWAYS_ON,
    "always_off": ALWAYS_OFF,
    "parentbased_always_on": DEFAULT_ON,
    "parentbased_always_off": DEFAULT_OFF,
}
RATIO_SAMPLERS: dict[str, type[TraceIdRatioBased] | type[ParentBasedTraceIdRatio]] = {
    "traceidratio": TraceIdRatioBased,
    "parentbased_traceidratio": ParentBasedTraceIdRatio,
}


def sampler_setting(environ: Mapping[str, str]) -> tuple[str, float]:
    """(sampler name, ratio) as `environ` asks with OTEL_TRACES_SAMPLER /
    OTEL_TRACES_SAMPLER_ARG (the SDK's names and meaning, read from `environ`, not only
    from the process's environment as the SDK does); without them, follow the caller and
    sample DEFAULT_ROOT_RATIO of the rest. A name or ratio the SDK would only warn about
    and replace is refused here, naming the variable and what it takes."""
    name = environ.get(SAMPLER_ENV, "").strip().lower()
    if not name:
        return "parentbased_traceidratio", DEFAULT_ROOT_RATIO
    if name in FIXED_SAMPLERS:
        return name, 1.0
    if name not in RATIO_SAMPLERS:
        known = ", ".join([*FIXED_SAMPLERS, *RATIO_SAMPLERS])
        raise ValueError(f"{SAMPLER_ENV}={name!r} is not supported for self-tracing: use {known}")
    text = environ.get(SAMPLER_ARG_ENV, "").strip()
    try:
        ratio = float(text) if text else 1.0  # the SDK's default for a ratio sampler
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(
            f"{SAMPLER_ARG_ENV}={text!r} is not a ratio: use a number from 0 to 1 "
            f"(the share of traces {name} samples)"
        )
    return name, ratio


def configured_sampler(environ: Mapping[str, str]) -> Sampler:
    """The SDK sampler `environ` asks for (`sampler_setting`)."""
    name, ratio = sampler_setting(environ)
    if name in FIXED_SAMPLERS:
        return FIXED_SAMPLERS[name]
    return RATIO_SAMPLERS[name](ratio)


def root_decision(sampler: Sampler) -> Callable[[int], bool] | None:
    """Whether `sampler` records a span without a parent, as a function of its trace id,
    for the SDK's samplers that decide on the id alone (always on/off, the trace-id
    ratio, a parent-based one of them): the ratio's own bound compared, without the
    context reads and result object of `should_sample`. None for any other sampler."""
    if isinstance(sampler, ParentBased):
        return root_decision(sampler._root)  # the SDK keeps its root private
    if type(sampler) is TraceIdRatioBased:
        bound, limit = sampler.bound, TraceIdRatioBased.TRACE_ID_LIMIT
        return lambda trace_id: trace_id & limit < bound
    if type(sampler) is StaticSampler:
        keep = sampler.should_sample(Context(), 1, "").decision is not Decision.DROP
        return lambda trace_id: keep
    return None


def root_ratio_bound(sampler: Sampler) -> int | None:
    """The bound a trace-id ratio sampler (or a parent-based one of it, for roots)
    compares an id's low 64 bits with; None for any other sampler."""
    if isinstance(sampler, ParentBased):
        return root_ratio_bound(sampler._root)
    return sampler.bound if type(sampler) is TraceIdRatioBased else None


def caller_decision(sampler: Sampler) -> Callable[[int, bool], bool] | None:
    """Whether `sampler` records a span whose parent is remote (the caller's
    `traceparent`), as a function of the trace id and the parent's sampled flag, for
    the samplers `root_decision` knows and parent-based ones of them (whose delegates
    for a remote parent the SDK also keeps private). None for any other sampler."""
    if isinstance(sampler, ParentBased):
        sampled = root_decision(sampler._remote_parent_sampled)
        unsampled = root_decision(sampler._remote_parent_not_sampled)
        if sampled is None or unsampled is None:
            return None
        return lambda trace_id, flag: (sampled if flag else unsampled)(trace_id)
    keep = root_decision(sampler)
    return None if keep is None else lambda trace_id, flag: keep(trace_id)


def remote_parent_sampling(environ: Mapping[str, str]) -> Callable[[int, bool], bool]:
    """The decision `configured_sampler(environ)` makes for a span whose parent is remote
    (a consumer's store span, a child of the producer's span), as a plain function of
    (trace id, parent sampled): no SDK context or span is made to learn it."""
    decide = caller_decision(configured_sampler(environ))
    assert decide is not None, "every sampler `configured_sampler` makes is one it knows"
    return decide


class SelfTraceProvider(TracerProvider):
    """The SDK's provider of a service's spans, each exporter behind its own
    BatchSpanProcessor, and (`otlp_batcher`) batch threads for the spans the service
    records without the SDK (`OtlpSpan`s), to the same exporters: onto Kafka encoded
    by `otlp_spans` straight from the `OtlpSpan`s, to a collector as the SDK's spans."""

    def __init__(
        self,
        resource: Resource,
        sampler: Sampler,
        exporters: Sequence[SpanExporter],
        batching: BatchSettings,
    ) -> None:
        super().__init__(resource=resource, sampler=sampler)
        self.exporters = list(exporters)
        self.batching = batching
        self._batchers: list[SpanBatcher] = []
        for target in exporters:
            processor = BatchSpanProcessor(
                target,
                max_queue_size=batching.max_queue_size,
                schedule_delay_millis=batching.schedule_delay_ms,
                max_export_batch_size=batching.max_export_batch_size,
                export_timeout_millis=batching.export_timeout_ms,
            )
            self.add_span_processor(processor)

    def otlp_batcher(self, scope: str) -> SpanBatcher:
        """A batch thread for `OtlpSpan`s of the instrumentation scope `scope` (no
        version), as OTEL_BSP_* say, to this provider's exporters, with its resource.
        Stopped (what it holds exported) by `shutdown`, before the exporters."""
        resource = {k: str(v) for k, v in self.resource.attributes.items()}
        sinks = [
            _kafka_sink(target, resource, scope)
            if isinstance(target, KafkaSpanExporter)
            else _direct_sink(target, resource, scope)
            for target in self.exporters
        ]

        def export(spans: Sequence[OtlpSpan]) -> None:
            for sink in sinks:
                sink(spans)

        flushes = [e.force_flush for e in self.exporters]
        batcher = SpanBatcher(export, self.batching, name=SPAN_THREAD, on_flush=flushes)
        self._batchers.append(batcher)
        return batcher

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Exports what every batch thread (`otlp_batcher`) and span processor holds,
        now; whether the processors finished within the timeout."""
        for batcher in self._batchers:
            batcher.force_flush()
        return super().force_flush(timeout_millis)

    def shutdown(self) -> None:
        for batcher in self._batchers:
            batcher.shutdown()
        super().shutdown()


def tracer_provider(
    service: str, kafka_bootstrap: str, environ: Mapping[str, str] | None = None
) -> SelfTraceProvider | None:
    """The service's provider: spans onto `otel-spans` when Kafka is configured, and to
    a collector when asked (`direct_exporter`); None when self-tracing is off
    (OTEL_SDK_DISABLED=true) or has nowhere to go."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    sampler = configured_sampler(env)  # refused before any exporter starts a thread
    exporters: list[SpanExporter] = []
    if kafka_bootstrap:
        exporters.append(KafkaSpanExporter(kafka_bootstrap, env.get(TOPIC_ENV) or SPANS_TOPIC))
    direct = direct_exporter(env)
    if direct is not None:
        exporters.append(direct)
    if not exporters:
        return None
    batching = BatchSettings.from_environ(env)
    resource = Resource(resource_attributes(service, env))
    return SelfTraceProvider(resource, sampler, exporters, batching)


def record_context(headers: Sequence[tuple[str, bytes]] | None) -> Context | None:
    """The trace context a Kafka record's producer put in its headers (the gateway's
    request span, for a lineage event POSTed to it); None when it carries no valid one."""
    return headers_context(headers)


def resource_attributes(service: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The service's resource as the SDK's `Resource.create` makes it, read from
    `environ`: the SDK's `telemetry.sdk.*`, then OTEL_RESOURCE_ATTRIBUTES (key=value,
    comma separated, percent-encoded), then `service.name` (OTEL_SERVICE_NAME, else
    `service`)."""
    out = {
        TELEMETRY_SDK_LANGUAGE: "python",
        TELEMETRY_SDK_NAME: "opentelemetry",
        TELEMETRY_SDK_VERSION: SDK_VERSION,
    }
    for item in environ.get(RESOURCE_ENV, "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[unquote(key.strip())] = unquote(value.strip())
    out[SERVICE_NAME] = environ.get("OTEL_SERVICE_NAME") or service
    return out


def _kafka_sink(
    exporter: KafkaSpanExporter, resource: Mapping[str, str], scope: str
) -> Callable[[Sequence[OtlpSpan]], None]:
    def export(spans: Sequence[OtlpSpan]) -> None:
        payload = encode_request(spans, resource, scope)
        exporter.send(format(spans[0].trace_id, "032x"), payload)

    return export


def _direct_sink(
    exporter: SpanExporter, resource: Mapping[str, str], scope: str
) -> Callable[[Sequence[OtlpSpan]], None]:
    sdk_resource = Resource(dict(resource))
    instrumentation = InstrumentationScope(scope)

    def export(spans: Sequence[OtlpSpan]) -> None:
        exporter.export([readable(s, sdk_resource, instrumentation) for s in spans])

    return export


def span_recorder(
    service: str, kafka_bootstrap: str, environ: Mapping[str, str] | None = None
) -> SpanRecorder | None:
    """A consumer's store spans (`lineagehub.store_spans`), without the SDK: sampled
    as `configured_sampler` decides, batched as OTEL_BSP_* say, onto `otel-spans` as
    OTLP protobuf and to a collector when asked (`direct_exporter`), with the resource
    a `tracer_provider` of `service` would give them. None when self-tracing is off or
    has nowhere to go, as for `tracer_provider`."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    sample = remote_parent_sampling(env)  # refused before any exporter starts a thread
    batching = BatchSettings.from_environ(env)
    resource = resource_attributes(service, env)
    sinks: list[Callable[[Sequence[OtlpSpan]], None]] = []
    exporters: list[SpanExporter] = []
    if kafka_bootstrap:
        kafka = KafkaSpanExporter(kafka_bootstrap, env.get(TOPIC_ENV) or SPANS_TOPIC)
        sinks.append(_kafka_sink(kafka, resource, service))
        exporters.append(kafka)
    direct = direct_exporter(env)
    if direct is not None:
        sinks.append(_direct_sink(direct, resource, service))
        exporters.append(direct)
    if not sinks:
        return None

    def export(spans: Sequence[OtlpSpan]) -> None:
        for sink in sinks:
            sink(spans)

    batcher = SpanBatcher(
        export,
        batching,
        name=SPAN_THREAD,
        on_shutdown=[e.shutdown for e in exporters],
        on_flush=[e.force_flush for e in exporters],
    )
    return SpanRecorder(service, sample, batcher)
