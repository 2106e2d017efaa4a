"""Spans recorded without the SDK: the OTLP bytes we write are what the SDK's encoder
writes for the same span, our sampling decision for a remote parent is the SDK
sampler's, and the batch thread exports as OTEL_BSP_* say."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from lineagehub.otlp_spans import (
    _SCALAR_FIELDS,
    _SCALAR_FIELDS_MAX,
    KIND_CONSUMER,
    KIND_INTERNAL,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNSET,
    OtlpEvent,
    OtlpSpan,
    encode_request,
    readable,
)
from lineagehub.selftrace import configured_sampler, remote_parent_sampling
from lineagehub.span_batches import BatchSettings, SpanBatcher

RESOURCE = {"service.name": "svc", "telemetry.sdk.language": "python", "k": "v,é"}


def _span(i: int, **given: object) -> OtlpSpan:
    fields: dict[str, object] = {
        "name": f"store {i}",
        "trace_id": random.getrandbits(128) or 1,
        "span_id": random.getrandbits(64) or 1,
        "parent_span_id": random.getrandbits(64) or 1,
        "start_unix_nano": 1_700_000_000_000_000_000 + i,
        "end_unix_nano": 1_700_000_000_000_500_000 + i,
        "kind": KIND_CONSUMER,
        "parent_is_remote": True,
    }
    return OtlpSpan(**{**fields, **given})  # type: ignore[arg-type]


SPANS = [
    _span(0, attributes={"messaging.system": "kafka", "n": 3, "big": 2**62, "neg": -5}),
    _span(1, attributes={"f": 0.25, "b": True, "no": False, "l": ["a", "b"], "li": [1, -2]}),
    _span(2, status_code=STATUS_ERROR, status_message="RuntimeError: é", trace_state="a=b,c=d"),
    _span(3, status_code=STATUS_OK, parent_span_id=0, kind=KIND_INTERNAL, parent_is_remote=False),
    _span(4, events=[OtlpEvent("exception", 7, {"exception.type": "X", "n": 1})], name=""),
    _span(5, parent_is_remote=False, status_code=STATUS_UNSET, attributes={"e": ""}),
]


def test_our_bytes_are_the_sdks_for_the_same_spans() -> None:
    ours = ExportTraceServiceRequest.FromString(encode_request(SPANS, RESOURCE, "scope-x"))
    resource = Resource(RESOURCE)
    scope = InstrumentationScope("scope-x")
    sdk = encode_spans([readable(s, resource, scope) for s in SPANS])
    assert ours == sdk
    assert encode_request(SPANS, RESOURCE, "scope-x") == sdk.SerializeToString()


def test_attributes_stay_the_sdks_past_the_kept_fields_bound() -> None:
    """A writer's spans: the same keys, values seen once (offsets) past the bound of
    the fields kept, values that compare equal across types (True, 1, 1.0) under one
    key, long texts (a two-byte length): every batch is still the SDK's bytes."""
    resource, scope = Resource(RESOURCE), InstrumentationScope("scope-x")
    same_value = [True, 1, 1.0, "1", False, 0, 0.0, ""]
    for batch in range(4):
        spans = [
            _span(
                i,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.kafka.offset": str(batch * 3000 + i),
                    "v": same_value[(batch + i) % len(same_value)],
                    "text": "é" * (i % 200),
                },
            )
            for i in range(3000)
        ]
        sdk = encode_spans([readable(s, resource, scope) for s in spans])
        assert encode_request(spans, RESOURCE, "scope-x") == sdk.SerializeToString()
    assert len(_SCALAR_FIELDS) <= _SCALAR_FIELDS_MAX  # a writer's memory stays bounded


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_TRACES_SAMPLER": "always_on"},
        {"OTEL_TRACES_SAMPLER": "always_off"},
        {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
        {"OTEL_TRACES_SAMPLER": "parentbased_always_off"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.3"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"},
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
    ],
)
def test_the_remote_parent_decision_is_the_sdk_samplers(environ: dict[str, str]) -> None:
    sdk, ours = configured_sampler(environ), remote_parent_sampling(environ)
    rng = random.Random(19)
    for _ in range(400):
        trace_id = rng.getrandbits(128) or 1
        sampled = rng.random() < 0.5
        flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        parent = SpanContext(trace_id, rng.getrandbits(64) or 1, True, flags)
        context = trace.set_span_in_context(NonRecordingSpan(parent))
        decision = sdk.should_sample(context, trace_id, "store").decision
        assert ours(trace_id, sampled) is (decision is Decision.RECORD_AND_SAMPLE)


class _Exports:
    def __init__(self) -> None:
        self.batches: list[list[OtlpSpan]] = []
        self.arrived = threading.Event()

    def __call__(self, spans: Sequence[OtlpSpan]) -> None:
        self.batches.append(list(spans))
        self.arrived.set()


def test_a_full_batch_leaves_at_once_and_the_rest_at_shutdown() -> None:
    exports = _Exports()
    hour = 3_600_000
    settings = BatchSettings(schedule_delay_ms=hour, max_queue_size=8, max_export_batch_size=3)
    batcher = SpanBatcher(exports, settings, name="t")
    for i in range(4):
        batcher.add(_span(i))
    assert exports.arrived.wait(30)  # the batch of three, long before the hour's delay
    assert [[s.name for s in b] for b in exports.batches] == [["store 0", "store 1", "store 2"]]
    batcher.shutdown()
    assert [s.name for s in exports.batches[-1]] == ["store 3"]
    batcher.add(_span(9))  # after shutdown: ignored
    batcher.force_flush()
    assert sum(len(b) for b in exports.batches) == 4


def test_a_full_queue_drops_new_spans() -> None:
    exports = _Exports()
    settings = BatchSettings(schedule_delay_ms=3_600_000, max_queue_size=2, max_export_batch_size=2)
    blocked = threading.Event()
    release = threading.Event()

    def slow(spans: Sequence[OtlpSpan]) -> None:
        blocked.set()
        assert release.wait(30)
        exports(spans)

    batcher = SpanBatcher(slow, settings, name="t")
    batcher.add(_span(0))
    batcher.add(_span(1))  # a full batch: the thread takes both and blocks exporting
    assert blocked.wait(30)
    for i in range(2, 6):
        batcher.add(_span(i))
    assert batcher.dropped == 2  # the queue holds two
    release.set()
    batcher.shutdown()
    assert [s.name for b in exports.batches for s in b] == [f"store {i}" for i in range(4)]


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_BSP_SCHEDULE_DELAY": "soon"}, "OTEL_BSP_SCHEDULE_DELAY='soon'"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE='0'"),
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "3000"}, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=3000"),
    ],
)
def test_bsp_settings_are_read_from_environ_and_checked(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ValueError) as refused:
        BatchSettings.from_environ(environ)
    assert named in str(refused.value)
    given = {
        "OTEL_BSP_SCHEDULE_DELAY": "250",
        "OTEL_BSP_MAX_QUEUE_SIZE": "100",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10",
        "OTEL_BSP_EXPORT_TIMEOUT": "900",
    }
    assert BatchSettings.from_environ(given) == BatchSettings(250, 100, 10, 900)
    assert BatchSettings.from_environ({}) == BatchSettings()


def test_the_sdks_own_spans_encode_as_the_sdk_encodes_them() -> None:
    """The gateway's and operator's SDK spans leave through our encoder too: a server
    span under a remote caller with a tracestate, a child with an exception and an
    error status, spans of two scopes and two resources, one with a link (the SDK's
    encoder then)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Link, SpanKind, StatusCode
    from opentelemetry.trace.span import TraceState

    from lineagehub.otlp_spans import encode_readable

    finished = InMemorySpanExporter()
    providers = [
        TracerProvider(resource=Resource({"service.name": name, "n": i}))
        for i, name in enumerate(("gateway", "operator"))
    ]
    for provider in providers:
        provider.add_span_processor(SimpleSpanProcessor(finished))
    caller = SpanContext(
        0xABC, 0xDEF, True, TraceFlags(TraceFlags.SAMPLED), TraceState([("vendor", "x")])
    )
    tracer = providers[0].get_tracer("lineagehub.gateway")
    with (
        tracer.start_as_current_span(
            "POST /api/v1/lineage",
            context=trace.set_span_in_context(NonRecordingSpan(caller)),
            kind=SpanKind.SERVER,
            attributes={"http.response.status_code": 201, "url.path": "/api/v1/lineage"},
        ),
        pytest.raises(ValueError),
        tracer.start_as_current_span("inner") as inner,
    ):
        inner.set_status(StatusCode.ERROR, "bad")
        raise ValueError("bad é")
    other = providers[1].get_tracer("kube", "1.2")
    with other.start_as_current_span("create Job", kind=SpanKind.CLIENT) as span:
        span.set_attribute("k8s.kinds", ["Job", "ConfigMap"])
    plain = list(finished.get_finished_spans())
    assert encode_readable(plain) == encode_spans(plain).SerializeToString()
    with other.start_as_current_span("linked", links=[Link(caller)]):
        pass
    linked = list(finished.get_finished_spans())
    assert encode_readable(linked) == encode_spans(linked).SerializeToString()
