"""The stage's spans, recorded without the OpenTelemetry SDK: the trace they continue,
how they nest, what a failure leaves on them, and the OTLP message they become."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from pipeline_runner.settings import Settings
from pipeline_runner.telemetry import StageTelemetry, parent_ids

TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT = "b7ad6b7169203331"


@pytest.mark.parametrize(
    ("traceparent", "ids"),
    [
        (f"00-{TRACE}-{ROOT}-01", (TRACE, ROOT)),
        (f" 00-{TRACE}-{ROOT}-00 ", (TRACE, ROOT)),
        (f"01-{TRACE}-{ROOT}-01-future", (TRACE, ROOT)),  # a later version may say more
        (f"00-{TRACE}-{ROOT}-01-more", None),  # version 00 has four fields exactly
        (f"ff-{TRACE}-{ROOT}-01", None),
        (f"00-{'0' * 32}-{ROOT}-01", None),
        (f"00-{TRACE}-{'0' * 16}-01", None),
        (f"00-{TRACE.upper()}-{ROOT}-01", None),
        (f"00-{TRACE[:-1]}-{ROOT}-01", None),
        ("", None),
        (None, None),
    ],
)
def test_the_trace_a_stage_continues(traceparent: str | None, ids: tuple[str, str] | None) -> None:
    assert parent_ids(traceparent) == ids


def _spans(tel: StageTelemetry) -> list[Span]:
    request = ExportTraceServiceRequest.FromString(tel.finish().spans)
    (resource_spans,) = request.resource_spans
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "pipeline_runner"
    return list(scope_spans.spans)


def test_steps_nest_under_the_stage_span_under_the_run() -> None:
    tel = StageTelemetry(
        Settings(), traceparent=f"00-{TRACE}-{ROOT}-01", resource_attributes={"k8s.pod.name": "p"}
    )
    with tel.stage_span("stage transform", {"lineagehub.stage": "transform"}) as stage:
        with tel.step("read", {"lineagehub.columns": ["a", "b"]}) as read:
            read.set_attribute("lineagehub.rows", 3)
        with tel.step("write"):
            pass
        stage.set_attribute("lineagehub.records_out", 3)
    batch = tel.finish()
    assert (batch.trace_id, batch.span_count) == (TRACE, 3)
    request = ExportTraceServiceRequest.FromString(batch.spans)
    resource = {
        kv.key: kv.value.string_value for kv in request.resource_spans[0].resource.attributes
    }
    assert resource["service.name"] == "lineage-hub-runner" and resource["k8s.pod.name"] == "p"
    read_span, write_span, stage_span = request.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in (read_span, write_span, stage_span)] == [
        "read",
        "write",
        "stage transform",
    ]
    assert {s.trace_id.hex() for s in (read_span, write_span, stage_span)} == {TRACE}
    assert stage_span.parent_span_id.hex() == ROOT and stage_span.span_id.hex() == batch.span_id
    assert read_span.parent_span_id == stage_span.span_id == write_span.parent_span_id
    assert read_span.span_id != write_span.span_id
    assert stage_span.kind == Span.SPAN_KIND_INTERNAL
    assert stage_span.status.code == Status.STATUS_CODE_UNSET
    assert stage_span.start_time_unix_nano <= read_span.start_time_unix_nano
    assert read_span.end_time_unix_nano <= write_span.start_time_unix_nano
    assert write_span.end_time_unix_nano <= stage_span.end_time_unix_nano
    attrs = {kv.key: kv.value for kv in read_span.attributes}
    assert [v.string_value for v in attrs["lineagehub.columns"].array_value.values] == ["a", "b"]
    assert attrs["lineagehub.rows"].int_value == 3


def test_a_failed_step_leaves_its_exception_and_the_stage_its_verdict() -> None:
    tel = StageTelemetry(Settings(), traceparent="not a traceparent")
    with tel.stage_span("stage extract", {}) as stage:
        with pytest.raises(KeyError), tel.step("read"):
            raise KeyError("s3://key:secret@bucket/x.csv")
        tel.fail(stage, "InputNotFound", "no s3://key:secret@bucket/x.csv")
    read_span, stage_span = _spans(tel)
    assert len(stage_span.trace_id) == 16 and stage_span.parent_span_id == b""  # a new trace
    assert stage_span.status.code == Status.STATUS_CODE_ERROR
    assert stage_span.status.message == "InputNotFound: no s3://bucket/x.csv"
    assert {kv.key: kv.value.string_value for kv in stage_span.attributes}["error.type"] == (
        "InputNotFound"
    )
    assert read_span.status.code == Status.STATUS_CODE_ERROR
    (event,) = read_span.events
    attrs = {kv.key: kv.value.string_value for kv in event.attributes}
    assert event.name == "exception" and attrs["exception.type"] == "KeyError"
    assert "s3://bucket/x.csv" in attrs["exception.message"]
    assert "secret" not in attrs["exception.message"] + attrs["exception.stacktrace"]
    assert "raise KeyError" in attrs["exception.stacktrace"]
