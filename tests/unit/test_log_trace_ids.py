"""A JSON log line carries the trace and span ids of the span it was written in."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from consumers.logs import JsonFormatter as ConsumerFormatter
from gateway.logs import JsonFormatter as GatewayFormatter

FORMATTERS = [
    pytest.param(GatewayFormatter(), ("time", "level", "logger", "message"), id="gateway"),
    pytest.param(ConsumerFormatter(), ("ts", "level", "logger", "msg"), id="consumers"),
]


def _line(formatter: logging.Formatter) -> dict[str, object]:
    record = logging.makeLogRecord(
        {"name": "t", "levelno": logging.INFO, "levelname": "INFO", "msg": "hi %s", "args": ("x",)}
    )
    record.batch = 3  # an `extra=` field
    doc: dict[str, object] = json.loads(formatter.format(record))
    return doc


@pytest.mark.parametrize(("formatter", "fields"), FORMATTERS)
def test_a_line_in_a_span_names_the_span_and_keeps_its_fields(
    formatter: logging.Formatter, fields: tuple[str, ...]
) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner") as span:
        line = _line(formatter)
        context = span.get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"
    assert set(fields) <= set(line) and line["batch"] == 3
    assert "hi x" in line.values()


@pytest.mark.parametrize(("formatter", "fields"), FORMATTERS)
def test_a_propagated_context_is_named_and_no_span_means_no_ids(
    formatter: logging.Formatter, fields: tuple[str, ...]
) -> None:
    remote = SpanContext(0xABC, 0x12, is_remote=True, trace_flags=TraceFlags(0))
    with trace.use_span(NonRecordingSpan(remote)):
        line = _line(formatter)
    assert (line["trace_id"], line["span_id"]) == (f"{0xABC:032x}", f"{0x12:016x}")
    outside = _line(formatter)
    assert "trace_id" not in outside and "span_id" not in outside
    assert set(fields) <= set(outside)
