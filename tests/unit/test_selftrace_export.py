"""Where self-tracing spans go, as the environment says: a real OTLP/HTTP receiver on
loopback, the SDK's sampler variables, and the refusals."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import HTTPServer
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from gateway.cli import main
from lineagehub import otlp_endpoint
from lineagehub.selftrace import (
    DEFAULT_ROOT_RATIO,
    check_config,
    configured_sampler,
    span_recorder,
    tracer_provider,
)
from lineagehub.store_spans import record_span
from tests.loopback_http import QuietHandler, serving


class _Receiver(QuietHandler):
    bodies: list[tuple[str, bytes]] = []
    headers_seen: list[dict[str, str]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
        self.bodies.append((self.path, self.rfile.read(length)))
        self.reply(200, headers={"Content-Type": "application/x-protobuf"})


@pytest.fixture
def headers_seen() -> list[dict[str, str]]:
    """The HTTP headers of each request the collector received."""
    return []


@pytest.fixture
def collector(
    headers_seen: list[dict[str, str]],
) -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    bodies: list[tuple[str, bytes]] = []
    handler = type("Receiver", (_Receiver,), {"bodies": bodies, "headers_seen": headers_seen})
    # Single-threaded: one request at a time, handled in the serving thread.
    with serving(handler, server=HTTPServer) as served:
        yield served.url, bodies


@pytest.fixture
def direct(
    collector: tuple[str, list[tuple[str, bytes]]], monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, bytes]]:
    """Self-tracing told to export straight to the collector; what it received."""
    url, bodies = collector
    monkeypatch.setenv("LINEAGEHUB_OTLP_DIRECT", "1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    for name in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    return bodies


def the_one_span(bodies: list[tuple[str, bytes]]) -> tuple[str, Any]:
    """The collector got one POST to /v1/traces holding one span: its service and it."""
    ((path, body),) = bodies
    assert path == "/v1/traces"
    (resource_spans,) = ExportTraceServiceRequest.FromString(body).resource_spans
    attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    ((sent,),) = [scope.spans for scope in resource_spans.scope_spans]
    return attrs["service.name"], sent


def test_direct_export_reaches_an_otlp_http_collector(direct: list[tuple[str, bytes]]) -> None:
    bodies = direct
    provider = tracer_provider("lineage-hub-gateway", "")
    assert provider is not None
    with provider.get_tracer("t").start_as_current_span("request") as span:
        trace_id = span.get_span_context().trace_id
    provider.shutdown()
    service, sent = the_one_span(bodies)
    assert service == "lineage-hub-gateway"
    assert sent.name == "request" and int.from_bytes(sent.trace_id, "big") == trace_id


def test_the_sdk_sampler_variables_decide(
    direct: list[tuple[str, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = direct
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    provider = tracer_provider("svc", "")
    assert provider is not None
    with provider.get_tracer("t").start_as_current_span("dropped") as span:
        assert not span.is_recording()
    provider.shutdown()
    assert bodies == []


def test_by_default_a_callers_decision_is_followed_and_one_root_in_ten_sampled(
    direct: list[tuple[str, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER")
    provider = tracer_provider("svc", "")
    assert provider is not None
    sampler = provider.sampler
    # TraceIdRatioBased keeps a root when its trace id's low 64 bits are under ratio * 2**64.
    bound = round(DEFAULT_ROOT_RATIO * 2**64)

    def sampled(trace_id: int, parent: Context | None = None) -> bool:
        result = sampler.should_sample(parent, trace_id, "request")
        return result.decision is Decision.RECORD_AND_SAMPLE

    assert sampled(bound - 1) and not sampled(bound) and not sampled(2**64 - 1)
    # The caller's decision, against what the ratio would say of the same trace id.
    for flags, trace_id, expected in (
        (TraceFlags.SAMPLED, 2**64 - 1, True),
        (TraceFlags.DEFAULT, bound - 1, False),
    ):
        caller = SpanContext(
            trace_id, 0xB7AD6B7169203331, is_remote=True, trace_flags=TraceFlags(flags)
        )
        parent = trace.set_span_in_context(NonRecordingSpan(caller))
        assert sampled(trace_id, parent) is expected
    provider.shutdown()


def test_nowhere_to_go_or_disabled_means_untraced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINEAGEHUB_OTLP_DIRECT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    assert tracer_provider("svc", "") is None  # an endpoint alone is the stack's tools'
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracer_provider("svc", "127.0.0.1:1") is None


def test_an_unknown_protocol_is_a_configuration_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    assert main(["--check-config"]) == 2
    said = capsys.readouterr().err
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in said and "http/protobuf or grpc" in said


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "_ARG"),
    ],
)
def test_check_config_refuses_a_sampler_the_server_would_refuse(
    setting: dict[str, str],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in setting.items():
        monkeypatch.setenv(key, value)
    assert main(["--check-config"]) == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "process", "recorded"),
    [
        # The environment handed to the provider decides, whatever the process's says.
        ({"OTEL_TRACES_SAMPLER": "always_off"}, {"OTEL_TRACES_SAMPLER": "always_on"}, False),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"},
            {},
            False,
        ),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1"}, {}, True),
        # Without them in the given environment: our default, not the process's sampler.
        ({}, {"OTEL_TRACES_SAMPLER": "always_off"}, None),
    ],
)
def test_an_environ_given_to_the_provider_governs_its_sampler(
    collector: tuple[str, list[tuple[str, bytes]]],
    monkeypatch: pytest.MonkeyPatch,
    given: dict[str, str],
    process: dict[str, str],
    recorded: bool | None,
) -> None:
    url, bodies = collector
    for name in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in process.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)  # the exporter reads it itself
    environ = {"LINEAGEHUB_OTLP_DIRECT": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": url, **given}
    provider = tracer_provider("svc", "", environ)
    assert provider is not None
    if recorded is None:
        assert provider.sampler.get_description() == configured_sampler({}).get_description()
    else:
        with provider.get_tracer("t").start_as_current_span("request") as span:
            assert span.is_recording() is recorded
    provider.shutdown()
    assert len(bodies) == (1 if recorded else 0)


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER='sometimes'"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
            "OTEL_TRACES_SAMPLER_ARG='1.5'",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "a"},
            "OTEL_TRACES_SAMPLER_ARG='a'",
        ),
    ],
)
def test_a_sampler_the_sdk_would_silently_replace_is_refused(
    given: dict[str, str], named: str
) -> None:
    with pytest.raises(ValueError, match="use ") as refused:
        tracer_provider("svc", "127.0.0.1:1", given)
    assert named in str(refused.value)


def test_store_spans_reach_an_otlp_http_collector(direct: list[tuple[str, bytes]]) -> None:
    """The consumers' store spans (recorded without the SDK) take the same direct path,
    with the service's resource."""
    recorder = span_recorder("lineage-hub-warehouse", "")
    assert recorder is not None
    producer = f"00-{'ab' * 16}-{'cd' * 8}-01"
    with record_span(recorder, "store t", "t", [("traceparent", producer.encode())], {}) as span:
        assert span is not None
    recorder.shutdown()
    service, sent = the_one_span(direct)
    assert service == "lineage-hub-warehouse"
    assert sent.name == "store t" and sent.trace_id.hex() == "ab" * 16
    assert sent.parent_span_id.hex() == "cd" * 8 and sent.kind == sent.SPAN_KIND_CONSUMER


def _three_spans(kind: str, environ: dict[str, str]) -> None:
    """Three spans through a provider (the gateway's, the operator's) or a store-span
    recorder (the consumers'), each given `environ`, then shut down."""
    if kind == "provider":
        provider = tracer_provider("svc", "", environ)
        assert provider is not None
        for _ in range(3):
            with provider.get_tracer("t").start_as_current_span("request"):
                pass
        provider.shutdown()
        return
    recorder = span_recorder("svc", "", environ)
    assert recorder is not None
    producer = [("traceparent", f"00-{'ab' * 16}-{'cd' * 8}-01".encode())]
    for _ in range(3):
        with record_span(recorder, "store t", "t", producer, {}):
            pass
    recorder.shutdown()


@pytest.mark.parametrize("kind", ["provider", "recorder"])
def test_the_given_environ_governs_endpoint_headers_batches_and_resource(
    collector: tuple[str, list[tuple[str, bytes]]],
    headers_seen: list[dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """The process's environment points elsewhere and says otherwise; the mapping the
    service was given decides where spans go, with which headers, in which batches
    (one span a batch here) and with which resource."""
    url, bodies = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # nothing there
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=process")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512")
    environ = {
        "LINEAGEHUB_OTLP_DIRECT": "1",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=blue%20one",
        "OTEL_RESOURCE_ATTRIBUTES": "team=given%2Cteam,deployment.environment=test",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "3600000",
    }
    _three_spans(kind, environ)
    assert [path for path, _ in bodies] == ["/v1/traces"] * 3  # a batch a span
    assert [h.get("x-tenant") for h in headers_seen] == ["blue one"] * 3
    for _, body in bodies:
        (resource_spans,) = ExportTraceServiceRequest.FromString(body).resource_spans
        attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        assert attrs["team"] == "given,team" and attrs["deployment.environment"] == "test"
        assert attrs["service.name"] == "svc" and attrs["telemetry.sdk.language"] == "python"


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "OTEL_EXPORTER_OTLP_TIMEOUT='soon'"),
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0"}, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT='0'"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "OTEL_EXPORTER_OTLP_COMPRESSION='zstd'"),
        ({"OTEL_BSP_EXPORT_TIMEOUT": "-1"}, "OTEL_BSP_EXPORT_TIMEOUT='-1'"),
    ],
)
def test_a_bad_exporter_setting_is_refused_naming_the_variable(
    given: dict[str, str], named: str
) -> None:
    environ = {"LINEAGEHUB_OTLP_DIRECT": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", **given}
    for make in (tracer_provider, span_recorder, lambda s, b, e: check_config(e)):
        with pytest.raises(ValueError) as refused:
            make("svc", "", environ)
        assert named in str(refused.value)


def test_the_traces_endpoint_is_used_as_it_is() -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4318/",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2.5",
    }
    assert otlp_endpoint.settings(environ, grpc=False).endpoint == "http://general:4318/v1/traces"
    assert otlp_endpoint.settings(environ, grpc=False).timeout_s == 2.5
    environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "http://traces:1/custom"
    assert otlp_endpoint.settings(environ, grpc=False).endpoint == "http://traces:1/custom"
    grpc = otlp_endpoint.settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4317"}, grpc=True)
    assert grpc.endpoint == "https://c:4317" and not grpc.insecure


@pytest.mark.parametrize(
    "endpoint", ["collector.example.com:4317", "http://c:4317", "https://c:4317", "grpc://c:4317"]
)
@pytest.mark.parametrize("insecure", [None, "true", "false", "TRUE"])
def test_grpc_tls_is_decided_as_the_sdk_decides(
    endpoint: str, insecure: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plaintext only where the SDK's own gRPC exporter would send plaintext: a bare
    host:port gets TLS (spans and their auth header must not go out in the clear)."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    if insecure is not None:
        environ["OTEL_EXPORTER_OTLP_INSECURE"] = insecure
    # The SDK's exporter reads the process environment: make it exactly `environ`'s.
    for name in ("INSECURE", "TRACES_INSECURE", "TRACES_ENDPOINT"):
        monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_{name}", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    sdk = OTLPSpanExporter()
    try:
        ours = otlp_endpoint.settings(environ, grpc=True).insecure
        assert ours == sdk._insecure, (endpoint, insecure)
    finally:
        sdk.shutdown()
