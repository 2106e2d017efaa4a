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

import asyncio
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

from consumers.otel.columns import Columns, Slots
from consumers.otel.ddl import (
    EXP_HISTOGRAM,
    GAUGE,
    HISTOGRAM,
    PIPELINE_RUNS,
    SUM,
    SUMMARY,
    TRACES,
)

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


# What a decoder's caller lets through. Anything else a decoder raises (a bug in it, or a
# Rust panic, which derives from BaseException) must dead-letter the record, never crash
# the consumer: it would crash again on the same record after every restart.
STOPPING = (asyncio.CancelledError, KeyboardInterrupt, SystemExit)


def decoder_failure(exc: BaseException) -> DecodeError:
    """The DecodeError a record gets when its decoder raised `exc` unexpectedly."""
    return DecodeError("decoder_error", f"the decoder raised {type(exc).__name__}: {exc}"[:500])


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
    out: dict[str, str] = {}
    for kv in kvs:
        value = kv.value  # strings, by far the most common, without a call
        kind = value.WhichOneof("value")
        out[kv.key] = value.string_value if kind == "string_value" else value_to_str(value)
    return out


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


_NO_TRACE, _NO_SPAN = bytes(16), bytes(8)
_KIND_NAMES = dict(enumerate(SPAN_KINDS))
_STATUS_NAMES = dict(enumerate(STATUS_CODES))


def _check_span(span: trace_pb2.Span, tid: bytes, sid: bytes) -> None:
    if len(tid) != 16 or tid == _NO_TRACE:
        raise DecodeError("invalid_span", f"trace id must be 16 non-zero bytes: {span.name!r}")
    if len(sid) != 8 or sid == _NO_SPAN:
        raise DecodeError("invalid_span", f"span id must be 8 non-zero bytes: {span.name!r}")
    if len(span.parent_span_id) not in (0, 8):
        raise DecodeError("invalid_span", f"parent span id must be 8 bytes: {span.name!r}")
    _check_known(span, "Span")


def _span_columns(request: ExportTraceServiceRequest) -> tuple[Columns, list[Row]]:
    """The `otel_traces` columns of a request, and its `pipeline_runs` rows.

    The hot loop of the spans topic: list appends into local names, one attribute
    read per field, no row dict.
    """
    out = Columns(TRACES)
    c = out.cols
    timestamp, trace_id, span_id, parent_id = (c[k][0] for k in _TRACE_IDS)
    trace_state, span_name, span_kind, service_name = (c[k][0] for k in _TRACE_NAMES)
    res_sizes, res_keys, res_values = c["ResourceAttributes"]
    scope_name, scope_version = c["ScopeName"][0], c["ScopeVersion"][0]
    span_sizes, span_keys, span_values = c["SpanAttributes"]
    duration, status_code, status_message = (c[k][0] for k in _TRACE_STATUS)
    ev_time, ev_name, ev_attrs = c["Events.Timestamp"], c["Events.Name"], c["Events.Attributes"]
    link_tid, link_sid = c["Links.TraceId"], c["Links.SpanId"]
    link_state, link_attrs = c["Links.TraceState"], c["Links.Attributes"]
    nested_sizes = (ev_time[0], ev_name[0], ev_attrs[0])
    link_sizes = (link_tid[0], link_sid[0], link_state[0], link_attrs[0])
    kinds, codes = _KIND_NAMES, _STATUS_NAMES
    runs = _RunRows()
    for resource_spans in request.resource_spans:
        _check_known(resource_spans, "ResourceSpans")
        res_attrs = attrs(resource_spans.resource.attributes)
        res_list, res_vals, res_n = list(res_attrs), list(res_attrs.values()), len(res_attrs)
        service = res_attrs.get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            sname, sversion = scope.name, scope.version
            for span in scope_spans.spans:
                tid, sid, name = span.trace_id, span.span_id, span.name
                _check_span(span, tid, sid)
                start, end, events = span.start_time_unix_nano, span.end_time_unix_nano, span.events
                if start > INT64_MAX or end > INT64_MAX or (events and _late(events)):
                    _check_times(
                        (start, end, *(e.time_unix_nano for e in events)), "invalid_span", name
                    )
                span_attrs = attrs(span.attributes)
                tid_hex, sid_hex = tid.hex(), sid.hex()
                status = span.status
                code, message = codes.get(status.code, ""), status.message
                took = end - start if end > start else 0
                timestamp.append(start)
                trace_id.append(tid_hex)
                span_id.append(sid_hex)
                parent_id.append(_hex(span.parent_span_id))
                trace_state.append(span.trace_state)
                span_name.append(name)
                span_kind.append(kinds.get(span.kind, ""))
                service_name.append(service)
                res_sizes.append(res_n)
                res_keys.extend(res_list)
                res_values.extend(res_vals)
                scope_name.append(sname)
                scope_version.append(sversion)
                span_sizes.append(len(span_attrs))
                span_keys.extend(span_attrs)
                span_values.extend(span_attrs.values())
                duration.append(took)
                status_code.append(code)
                status_message.append(message)
                if events:
                    _events(events, ev_time, ev_name, ev_attrs)
                else:
                    for sizes in nested_sizes:
                        sizes.append(0)
                links = span.links
                if links:
                    _links(links, link_tid, link_sid, link_state, link_attrs)
                else:
                    for sizes in link_sizes:
                        sizes.append(0)
                if ATTR_RUN_ID in span_attrs or ATTR_RUN_ID in res_attrs:
                    runs.add(
                        res_attrs,
                        span_attrs,
                        service,
                        tid_hex,
                        sid_hex,
                        name,
                        start,
                        took,
                        code,
                        message,
                    )
    out.length = len(timestamp)
    return out, runs.rows()


def _late(events: Any) -> bool:
    return any(e.time_unix_nano > INT64_MAX for e in events)


_TRACE_IDS = ("Timestamp", "TraceId", "SpanId", "ParentSpanId")
_TRACE_NAMES = ("TraceState", "SpanName", "SpanKind", "ServiceName")
_TRACE_STATUS = ("Duration", "StatusCode", "StatusMessage")


def _events(events: Any, times: Slots, names: Slots, maps: Slots) -> None:
    """Append one span's `Events.*` arrays."""
    n = len(events)
    times[0].append(n)
    names[0].append(n)
    if n:
        times[1].extend(e.time_unix_nano for e in events)
        names[1].extend(e.name for e in events)
    _attr_maps(events, maps)


def _links(links: Any, tids: Slots, sids: Slots, states: Slots, maps: Slots) -> None:
    """Append one span's `Links.*` arrays."""
    n = len(links)
    for column in (tids, sids, states):
        column[0].append(n)
    if n:
        tids[1].extend(_hex(link.trace_id) for link in links)
        sids[1].extend(_hex(link.span_id) for link in links)
        states[1].extend(link.trace_state for link in links)
    _attr_maps(links, maps)


def _attr_maps(items: Any, maps: Slots) -> None:
    """Append an `Array(Map)` cell: the attributes of each of `items`."""
    maps[0].append(len(items))
    for item in items:
        item_attrs = attrs(item.attributes)
        maps[1].append(len(item_attrs))
        maps[2].extend(item_attrs)
        maps[3].extend(item_attrs.values())


def decode_spans(raw: bytes | None) -> list[Row]:
    """One `otel_traces` row per span of an `ExportTraceServiceRequest`."""
    spans = decode_trace_columns(raw)[TRACES.name]
    assert isinstance(spans, Columns)
    return spans.rows()


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


class _RunRows:
    """`pipeline_runs` rows from the spans that name a run (`lineagehub.run_id`).

    A span with a stage attribute gives the stage's row; one without gives the
    run's own row (Stage = ''). When several spans name the same (run, stage),
    the longest one is the stage span enclosing the others: kept here, and by
    the table's ReplacingMergeTree(DurationNs) across batches.
    """

    def __init__(self) -> None:
        self.best: dict[tuple[str, str], Row] = {}

    def add(
        self,
        res_attrs: Mapping[str, str],
        span_attrs: Mapping[str, str],
        service: str,
        trace_id: str,
        span_id: str,
        name: str,
        start: int,
        took: int,
        status: str,
        message: str,
    ) -> None:
        def get(key: str) -> str:  # the span's attribute, else the resource's
            value = span_attrs.get(key)
            return (res_attrs.get(key) if value is None else value) or ""

        run_id = get(ATTR_RUN_ID)
        if not run_id:
            return
        stage = get(ATTR_STAGE)
        key = (run_id, stage)
        known = self.best.get(key)
        if known is not None and took <= known["DurationNs"]:
            return
        merged = {**res_attrs, **span_attrs}
        self.best[key] = {
            "RunId": run_id,
            "Stage": stage,
            "Pipeline": merged.get(ATTR_PIPELINE) or "",
            "ServiceName": service,
            "TraceId": trace_id,
            "SpanId": span_id,
            "SpanName": name,
            "StartTime": start,
            "EndTime": start + took,
            "DurationNs": took,
            "Status": status,
            "StatusMessage": message,
            "RecordsIn": _int_or_none(merged.get(ATTR_RECORDS_IN) or ""),
            "RecordsOut": _int_or_none(merged.get(ATTR_RECORDS_OUT) or ""),
            "Attributes": dict(span_attrs),
        }

    def rows(self) -> list[Row]:
        return list(self.best.values())


def pipeline_run_rows(spans: Iterable[Mapping[str, Any]]) -> list[Row]:
    """`pipeline_runs` rows from `otel_traces` rows (see `_RunRows`)."""
    runs = _RunRows()
    for span in spans:
        runs.add(
            span["ResourceAttributes"],
            span["SpanAttributes"],
            span["ServiceName"],
            span["TraceId"],
            span["SpanId"],
            span["SpanName"],
            span["Timestamp"],
            span["Duration"],
            span["StatusCode"],
            span["StatusMessage"],
        )
    return runs.rows()


def decode_trace_columns(raw: bytes | None) -> dict[str, Columns | list[Row]]:
    """What the consumer stores of an `ExportTraceServiceRequest`: `otel_traces` as
    columns, `pipeline_runs` (a few rows) as rows."""
    request: ExportTraceServiceRequest = _parse(
        ExportTraceServiceRequest, raw, "ExportTraceServiceRequest"
    )
    spans, runs = _span_columns(request)
    if not spans.length:
        raise DecodeError("empty", "ExportTraceServiceRequest carries no spans")
    return {TRACES.name: spans, PIPELINE_RUNS.name: runs}


def decode_trace_tables(raw: bytes | None) -> dict[str, list[Row]]:
    """`decode_trace_columns` as row dicts."""
    tables = decode_trace_columns(raw)
    return {k: v.rows() if isinstance(v, Columns) else v for k, v in tables.items()}


# ---- metrics ---------------------------------------------------------------------------

METRIC_TABLES = (GAUGE, SUM, HISTOGRAM, EXP_HISTOGRAM, SUMMARY)
_BY_KIND = {
    "gauge": GAUGE,
    "sum": SUM,
    "histogram": HISTOGRAM,
    "exponential_histogram": EXP_HISTOGRAM,
    "summary": SUMMARY,
}


def _number(point: Any) -> float:
    kind = point.WhichOneof("value")
    if kind == "as_int":
        return float(point.as_int)
    if kind == "as_double":
        return float(point.as_double)
    return 0.0


def _optional(point: Any, name: str) -> float:
    """An optional double (`sum`, `min`, `max`) as the exporter stores it: 0 when absent."""
    return float(getattr(point, name)) if point.HasField(name) else 0.0


def decode_metric_columns(raw: bytes | None) -> dict[str, Columns]:
    """The columns of every metric table for an `ExportMetricsServiceRequest`: one row
    per data point, of whichever of the five OTLP metric types."""
    request: ExportMetricsServiceRequest = _parse(
        ExportMetricsServiceRequest, raw, "ExportMetricsServiceRequest"
    )
    out = {t.name: Columns(t) for t in METRIC_TABLES}
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
                _metric_columns(metric, head, out)
    if not any(len(c) for c in out.values()):
        raise DecodeError("empty", "ExportMetricsServiceRequest carries no data points")
    return out


def decode_metrics(raw: bytes | None) -> dict[str, list[Row]]:
    """`decode_metric_columns` as row dicts."""
    return {name: c.rows() for name, c in decode_metric_columns(raw).items()}


def _metric_columns(metric: metrics_pb2.Metric, head: Row, out: dict[str, Columns]) -> None:
    _check_known(metric, "Metric")
    if not metric.name:
        raise DecodeError("invalid_metric", "metric without a name")
    kind = metric.WhichOneof("data")
    table = _BY_KIND.get(kind or "")
    if table is None:
        raise DecodeError("invalid_metric", f"metric {metric.name!r} has no data")
    data = getattr(metric, kind or "")
    cols = out[table.name]
    points = data.data_points
    for p in points:
        _point_columns(cols, p, exemplars=table is not SUMMARY)
        if table is GAUGE or table is SUM:
            cols.put("Value", _number(p))
        if table is SUM:
            cols.put("AggregationTemporality", int(data.aggregation_temporality))
            cols.put("IsMonotonic", bool(data.is_monotonic))
        elif table is HISTOGRAM:
            cols.put("BucketCounts", list(p.bucket_counts))
            cols.put("ExplicitBounds", list(p.explicit_bounds))
        elif table is EXP_HISTOGRAM:
            cols.put("Scale", p.scale)
            cols.put("ZeroCount", p.zero_count)
            cols.put("PositiveOffset", p.positive.offset)
            cols.put("PositiveBucketCounts", list(p.positive.bucket_counts))
            cols.put("NegativeOffset", p.negative.offset)
            cols.put("NegativeBucketCounts", list(p.negative.bucket_counts))
        elif table is SUMMARY:
            cols.put("ValueAtQuantiles.Quantile", [q.quantile for q in p.quantile_values])
            cols.put("ValueAtQuantiles.Value", [q.value for q in p.quantile_values])
        if table is HISTOGRAM or table is EXP_HISTOGRAM or table is SUMMARY:
            cols.put("Count", p.count)
            cols.put("Sum", _optional(p, "sum") if table is not SUMMARY else p.sum)
        if table is HISTOGRAM or table is EXP_HISTOGRAM:
            cols.put("Min", _optional(p, "min"))
            cols.put("Max", _optional(p, "max"))
            cols.put("AggregationTemporality", int(data.aggregation_temporality))
    n = len(points)
    cols.repeat(
        {
            **head,
            "MetricName": metric.name,
            "MetricDescription": metric.description,
            "MetricUnit": metric.unit,
        },
        n,
    )
    cols.length += n


def _point_columns(cols: Columns, p: Any, exemplars: bool) -> None:
    """The columns every data point has: attributes, times, flags (and exemplars)."""
    ex = list(p.exemplars) if exemplars else []
    times = (p.start_time_unix_nano, p.time_unix_nano, *(e.time_unix_nano for e in ex))
    _check_times(times, "invalid_metric", "data point")
    cols.put("Attributes", attrs(p.attributes))
    cols.put("StartTimeUnix", p.start_time_unix_nano)
    cols.put("TimeUnix", p.time_unix_nano)
    cols.put("Flags", p.flags)
    if not exemplars:
        return
    cols.put("Exemplars.FilteredAttributes", [attrs(e.filtered_attributes) for e in ex])
    cols.put("Exemplars.TimeUnix", [e.time_unix_nano for e in ex])
    cols.put("Exemplars.Value", [_number(e) for e in ex])
    cols.put("Exemplars.SpanId", [_hex(e.span_id) for e in ex])
    cols.put("Exemplars.TraceId", [_hex(e.trace_id) for e in ex])
