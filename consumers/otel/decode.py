"""OTLP protobuf (one `Export*ServiceRequest` per Kafka record) -> ClickHouse row dicts.

Pure functions. Rows follow the OpenTelemetry Collector ClickHouse exporter's
conventions, checked against its source and integration tests:

* ids are lower-case hex (`TraceId` 32 chars, `SpanId` 16), an all-empty id is `""`;
* `SpanKind` and `StatusCode` are pdata's names: `Unspecified`, `Internal`, `Server`,
  `Client`, `Producer`, `Consumer`; `Unset`, `Ok`, `Error`. A value outside the enum
  (proto3 enums are open: any int32, negative ones included, can arrive) is `""`,
  as pdata's `String()` gives for it;
* `Duration` is end minus start in nanoseconds; `ServiceName` is the resource's
  `service.name`; attribute values are flattened to strings the way pdata's
  `Value.AsString` does (ints and bools as text, arrays and maps as JSON);
* time columns hold integer nanoseconds here; the backend renders them. `DateTime64(9)`
  is a signed 64-bit count, so a wire time past 2262 (`fixed64` allows it) is rejected
  here rather than failing, or wrapping in, the insert.

Anything that is not a well-formed request raises `DecodeError` with a reason code,
and the consumer dead-letters the whole record.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from google.protobuf.message import DecodeError as ProtoDecodeError
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from consumers.otel.ddl import GAUGE, HISTOGRAM, PIPELINE_RUNS, SUM, TRACES

Row = dict[str, Any]

# Span attributes the stage runner sets (resource attributes are a fallback).
ATTR_RUN_ID = "lineagehub.run_id"
ATTR_STAGE = "lineagehub.stage"
ATTR_PIPELINE = "lineagehub.pipeline"
ATTR_RECORDS_IN = "lineagehub.records_in"
ATTR_RECORDS_OUT = "lineagehub.records_out"

SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES = ("Unset", "Ok", "Error")
MAX_RECORD_BYTES = 16 * 1024 * 1024
# The largest value of a DateTime64(9) / Int64 column.
INT64_MAX = 2**63 - 1


class DecodeError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# ---- attribute values ---------------------------------------------------------------------


def _go_float(value: float) -> str:
    """Like Go's strconv.FormatFloat(v, 'f', -1, 64): shortest, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in {"-0", ""} else text


def _raw(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "array_value":
        return [_raw(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _raw(kv.value) for kv in value.kvlist_value.values}
    return None


def value_to_str(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return _go_float(value.double_value)
    raw = _raw(value)
    if isinstance(raw, str):
        return raw
    return json.dumps(raw, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def attrs(kvs: Iterable[KeyValue]) -> dict[str, str]:
    return {kv.key: value_to_str(kv.value) for kv in kvs}


def _enum_name(names: tuple[str, ...], value: int) -> str:
    """The name of a wire enum value, `""` for one the enum does not define.

    Only `0 <= value < len(names)` indexes the table: a negative value must not
    wrap around to the end of it (or raise `IndexError` past the caller's handler).
    """
    return names[value] if 0 <= value < len(names) else ""


def _hex(raw: bytes) -> str:
    return raw.hex() if any(raw) else ""


def _check_times(times: Iterable[int], reason: str, where: str) -> None:
    for ns in times:
        if ns > INT64_MAX:
            raise DecodeError(reason, f"{where}: time {ns} ns is past what DateTime64(9) holds")


def _check_known(msg: Message, where: str) -> None:
    if len(UnknownFieldSet(msg)):
        raise DecodeError("decode", f"unknown fields in {where}: not an OTLP request")


def _parse(cls: type[Message], raw: bytes | None, what: str) -> Any:
    if raw is None or not raw:
        raise DecodeError("empty", "record has no value")
    if len(raw) > MAX_RECORD_BYTES:
        raise DecodeError("too_large", f"{len(raw)} bytes, the limit is {MAX_RECORD_BYTES}")
    try:
        msg = cls.FromString(raw)
    except (ProtoDecodeError, RuntimeError, ValueError) as exc:
        raise DecodeError("decode", f"not a valid {what}: {exc}") from None
    _check_known(msg, what)
    return msg


# ---- traces ----------------------------------------------------------------------------


def _check_span(span: trace_pb2.Span) -> None:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        raise DecodeError("invalid_span", f"trace id must be 16 non-zero bytes: {span.name!r}")
    if len(span.span_id) != 8 or not any(span.span_id):
        raise DecodeError("invalid_span", f"span id must be 8 non-zero bytes: {span.name!r}")
    if len(span.parent_span_id) not in (0, 8):
        raise DecodeError("invalid_span", f"parent span id must be 8 bytes: {span.name!r}")
    _check_known(span, "Span")
    times = (span.start_time_unix_nano, span.end_time_unix_nano)
    _check_times((*times, *(e.time_unix_nano for e in span.events)), "invalid_span", span.name)


def decode_spans(raw: bytes | None) -> list[Row]:
    """One `otel_traces` row per span of an `ExportTraceServiceRequest`."""
    request: ExportTraceServiceRequest = _parse(
        ExportTraceServiceRequest, raw, "ExportTraceServiceRequest"
    )
    rows: list[Row] = []
    for resource_spans in request.resource_spans:
        _check_known(resource_spans, "ResourceSpans")
        res_attrs = attrs(resource_spans.resource.attributes)
        service = res_attrs.get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            for span in scope_spans.spans:
                _check_span(span)
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                rows.append(
                    {
                        "Timestamp": start,
                        "TraceId": span.trace_id.hex(),
                        "SpanId": span.span_id.hex(),
                        "ParentSpanId": _hex(span.parent_span_id),
                        "TraceState": span.trace_state,
                        "SpanName": span.name,
                        "SpanKind": _enum_name(SPAN_KINDS, span.kind),
                        "ServiceName": service,
                        "ResourceAttributes": res_attrs,
                        "ScopeName": scope.name,
                        "ScopeVersion": scope.version,
                        "SpanAttributes": attrs(span.attributes),
                        "Duration": max(end - start, 0),
                        "StatusCode": _enum_name(STATUS_CODES, span.status.code),
                        "StatusMessage": span.status.message,
                        "Events.Timestamp": [e.time_unix_nano for e in span.events],
                        "Events.Name": [e.name for e in span.events],
                        "Events.Attributes": [attrs(e.attributes) for e in span.events],
                        "Links.TraceId": [_hex(link.trace_id) for link in span.links],
                        "Links.SpanId": [_hex(link.span_id) for link in span.links],
                        "Links.TraceState": [link.trace_state for link in span.links],
                        "Links.Attributes": [attrs(link.attributes) for link in span.links],
                    }
                )
    if not rows:
        raise DecodeError("empty", "ExportTraceServiceRequest carries no spans")
    return rows


def _int_or_none(text: str | None) -> int | None:
    """A count attribute as the Nullable(Int64) column takes it: None if it is not one.

    ClickHouse would wrap a value outside Int64 silently, so such a value is None too.
    """
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        try:
            value = int(float(text))
        except (ValueError, OverflowError):
            return None
    return value if -INT64_MAX - 1 <= value <= INT64_MAX else None


def pipeline_run_rows(spans: Iterable[Mapping[str, Any]]) -> list[Row]:
    """`pipeline_runs` rows from the spans that name a run (`lineagehub.run_id`).

    A span with a stage attribute gives the stage's row; one without gives the
    run's own row (Stage = ''). When several spans name the same (run, stage),
    the longest one is the stage span enclosing the others: kept here, and by
    the table's ReplacingMergeTree(DurationNs) across batches.
    """
    best: dict[tuple[str, str], Row] = {}
    for span in spans:
        span_attrs: Mapping[str, str] = span["SpanAttributes"]
        merged = {**span["ResourceAttributes"], **span_attrs}

        def get(key: str, merged: Mapping[str, str] = merged) -> str:
            return merged.get(key) or ""

        run_id = get(ATTR_RUN_ID)
        if not run_id:
            continue
        stage = get(ATTR_STAGE)
        row: Row = {
            "RunId": run_id,
            "Stage": stage,
            "Pipeline": get(ATTR_PIPELINE),
            "ServiceName": span["ServiceName"],
            "TraceId": span["TraceId"],
            "SpanId": span["SpanId"],
            "SpanName": span["SpanName"],
            "StartTime": span["Timestamp"],
            "EndTime": span["Timestamp"] + span["Duration"],
            "DurationNs": span["Duration"],
            "Status": span["StatusCode"],
            "StatusMessage": span["StatusMessage"],
            "RecordsIn": _int_or_none(get(ATTR_RECORDS_IN)),
            "RecordsOut": _int_or_none(get(ATTR_RECORDS_OUT)),
            "Attributes": dict(span_attrs),
        }
        key = (run_id, stage)
        if key not in best or row["DurationNs"] > best[key]["DurationNs"]:
            best[key] = row
    return list(best.values())


def decode_trace_tables(raw: bytes | None) -> dict[str, list[Row]]:
    spans = decode_spans(raw)
    return {TRACES.name: spans, PIPELINE_RUNS.name: pipeline_run_rows(spans)}


# ---- metrics ---------------------------------------------------------------------------


def _number(point: Any) -> float:
    kind = point.WhichOneof("value")
    if kind == "as_int":
        return float(point.as_int)
    if kind == "as_double":
        return float(point.as_double)
    return 0.0


def _exemplars(point: Any) -> Row:
    ex = list(point.exemplars)
    return {
        "Exemplars.FilteredAttributes": [attrs(e.filtered_attributes) for e in ex],
        "Exemplars.TimeUnix": [e.time_unix_nano for e in ex],
        "Exemplars.Value": [_number(e) for e in ex],
        "Exemplars.SpanId": [_hex(e.span_id) for e in ex],
        "Exemplars.TraceId": [_hex(e.trace_id) for e in ex],
    }


def decode_metrics(raw: bytes | None) -> dict[str, list[Row]]:
    """Rows per table (gauge, sum, histogram) of an `ExportMetricsServiceRequest`.

    Summary and exponential-histogram points are not stored (no table for them yet):
    a request that carries only those gives no rows, and is no error.
    """
    request: ExportMetricsServiceRequest = _parse(
        ExportMetricsServiceRequest, raw, "ExportMetricsServiceRequest"
    )
    out: dict[str, list[Row]] = {GAUGE.name: [], SUM.name: [], HISTOGRAM.name: []}
    skipped = 0
    for resource_metrics in request.resource_metrics:
        _check_known(resource_metrics, "ResourceMetrics")
        res_attrs = attrs(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            _check_known(scope_metrics, "ScopeMetrics")
            scope = scope_metrics.scope
            head = {
                "ResourceAttributes": res_attrs,
                "ResourceSchemaUrl": resource_metrics.schema_url,
                "ScopeName": scope.name,
                "ScopeVersion": scope.version,
                "ScopeAttributes": attrs(scope.attributes),
                "ScopeDroppedAttrCount": scope.dropped_attributes_count,
                "ScopeSchemaUrl": scope_metrics.schema_url,
                "ServiceName": res_attrs.get("service.name", ""),
            }
            for metric in scope_metrics.metrics:
                skipped += _metric_rows(metric, head, out)
    if not any(out.values()) and not skipped:
        raise DecodeError("empty", "ExportMetricsServiceRequest carries no data points")
    return out


def _metric_rows(metric: metrics_pb2.Metric, head: Row, out: dict[str, list[Row]]) -> int:
    _check_known(metric, "Metric")
    if not metric.name:
        raise DecodeError("invalid_metric", "metric without a name")
    base = {
        **head,
        "MetricName": metric.name,
        "MetricDescription": metric.description,
        "MetricUnit": metric.unit,
    }
    kind = metric.WhichOneof("data")
    if kind == "gauge":
        for p in metric.gauge.data_points:
            out[GAUGE.name].append({**base, **_point(p), "Value": _number(p)})
    elif kind == "sum":
        for p in metric.sum.data_points:
            out[SUM.name].append(
                {
                    **base,
                    **_point(p),
                    "Value": _number(p),
                    "AggregationTemporality": int(metric.sum.aggregation_temporality),
                    "IsMonotonic": bool(metric.sum.is_monotonic),
                }
            )
    elif kind == "histogram":
        for hp in metric.histogram.data_points:
            out[HISTOGRAM.name].append(
                {
                    **base,
                    **_point(hp),
                    "Count": hp.count,
                    "Sum": hp.sum if hp.HasField("sum") else 0.0,
                    "BucketCounts": list(hp.bucket_counts),
                    "ExplicitBounds": list(hp.explicit_bounds),
                    "Min": hp.min if hp.HasField("min") else 0.0,
                    "Max": hp.max if hp.HasField("max") else 0.0,
                    "AggregationTemporality": int(metric.histogram.aggregation_temporality),
                }
            )
    elif kind == "summary":
        return len(metric.summary.data_points)
    elif kind == "exponential_histogram":
        return len(metric.exponential_histogram.data_points)
    else:
        raise DecodeError("invalid_metric", f"metric {metric.name!r} has no data")
    return 0


def _point(p: Any) -> Row:
    times = (p.start_time_unix_nano, p.time_unix_nano, *(e.time_unix_nano for e in p.exemplars))
    _check_times(times, "invalid_metric", "data point")
    return {
        "Attributes": attrs(p.attributes),
        "StartTimeUnix": p.start_time_unix_nano,
        "TimeUnix": p.time_unix_nano,
        "Flags": p.flags,
        **_exemplars(p),
    }
