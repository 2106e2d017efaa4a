from __future__ import annotations

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1 import trace_pb2

from consumers.otel.columns import Columns
from consumers.otel.ddl import GAUGE, HISTOGRAM, PIPELINE_RUNS, SUM, TRACES
from consumers.otel.decode import (
    DecodeError,
    decode_metrics,
    decode_spans,
    decode_trace_columns,
    decode_trace_tables,
    pipeline_run_rows,
    value_to_str,
)
from consumers.samples import T0, metrics_request, run_trace, span, traces_request

TRACE_ID = bytes.fromhex("0102030405060708090a0b0c0d0e0f10")
ROOT = bytes.fromhex("1112131415161718")
CHILD = bytes.fromhex("2122232425262728")


def two_spans() -> bytes:
    root = span(
        TRACE_ID,
        ROOT,
        "pipelinerun",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        duration=5_000,
        attributes={"http.status": 200, "ok": True, "ratio": 0.25},
    )
    child = span(
        TRACE_ID,
        CHILD,
        "stage",
        parent=ROOT,
        start=T0 + 10,
        kind=trace_pb2.Span.SPAN_KIND_CLIENT,
        status=trace_pb2.Status.STATUS_CODE_ERROR,
        message="boom",
    )
    child.events.append(trace_pb2.Span.Event(time_unix_nano=T0 + 20, name="retry", attributes=[]))
    child.links.append(trace_pb2.Span.Link(trace_id=TRACE_ID, span_id=ROOT, trace_state="a=b"))
    return traces_request([root, child], service="svc", region="eu").SerializeToString()


def test_span_rows_follow_the_exporter_conventions() -> None:
    root, child = decode_spans(two_spans())
    assert set(root) == set(TRACES.columns)
    assert root["TraceId"] == "0102030405060708090a0b0c0d0e0f10"
    assert root["SpanId"] == "1112131415161718"
    assert root["ParentSpanId"] == ""
    assert child["ParentSpanId"] == "1112131415161718"
    assert (root["SpanKind"], child["SpanKind"]) == ("Server", "Client")
    assert (root["StatusCode"], child["StatusCode"]) == ("Unset", "Error")
    assert child["StatusMessage"] == "boom"
    assert root["Timestamp"] == T0
    assert root["Duration"] == 5_000
    assert root["ServiceName"] == "svc"
    assert root["ResourceAttributes"] == {"service.name": "svc", "region": "eu"}
    assert (root["ScopeName"], root["ScopeVersion"]) == ("lineagehub.runner", "0.1.0")
    assert root["SpanAttributes"] == {"http.status": "200", "ok": "true", "ratio": "0.25"}
    assert child["Events.Timestamp"] == [T0 + 20]
    assert child["Events.Name"] == ["retry"]
    assert child["Links.TraceId"] == ["0102030405060708090a0b0c0d0e0f10"]
    assert child["Links.SpanId"] == ["1112131415161718"]
    assert child["Links.TraceState"] == ["a=b"]


def test_every_kind_and_status_name() -> None:
    names = []
    for kind in range(6):
        s = span(TRACE_ID, bytes([kind + 1] * 8), "x", kind=kind)
        names.append(decode_spans(traces_request([s]).SerializeToString())[0]["SpanKind"])
    assert names == ["Unspecified", "Internal", "Server", "Client", "Producer", "Consumer"]
    codes = []
    for code in range(3):
        s = span(TRACE_ID, ROOT, "x", status=code)
        codes.append(decode_spans(traces_request([s]).SerializeToString())[0]["StatusCode"])
    assert codes == ["Unset", "Ok", "Error"]


@pytest.mark.parametrize(
    ("kind", "status"),
    [(-1, -1), (-3, -3), (-6, -2), (-7, -4), (-(2**31), -(2**31)), (6, 3), (2**31 - 1, 2**31 - 1)],
)
def test_enum_values_outside_the_enum_have_no_name(kind: int, status: int) -> None:
    # proto3 enums are open: any int32 arrives as is. A negative one used to index the
    # name table from its end ("Consumer" for -1) or raise IndexError (-7), which is no
    # DecodeError and took the consumer down.
    s = span(TRACE_ID, ROOT, "x", kind=kind, status=status)
    (row,) = decode_spans(traces_request([s]).SerializeToString())
    assert (row["SpanKind"], row["StatusCode"]) == ("", "")
    assert row["SpanId"] == ROOT.hex()  # the span is kept, only the name is empty


def test_metric_temporality_is_kept_as_the_wire_int32() -> None:
    request = metrics_request()
    for metric in request.resource_metrics[0].scope_metrics[0].metrics:
        if metric.WhichOneof("data") == "sum":
            metric.sum.aggregation_temporality = -(2**31)  # type: ignore[assignment]
        if metric.WhichOneof("data") == "histogram":
            metric.histogram.aggregation_temporality = 7  # type: ignore[assignment]
    tables = decode_metrics(request.SerializeToString())
    assert tables[SUM.name][0]["AggregationTemporality"] == -(2**31)
    assert tables[HISTOGRAM.name][0]["AggregationTemporality"] == 7


@pytest.mark.parametrize("field", ["start", "end", "event"])
def test_span_times_past_datetime64_are_rejected(field: str) -> None:
    s = span(TRACE_ID, ROOT, "late")
    late = 2**63  # one past what DateTime64(9) holds; ClickHouse fails the whole batch on it
    if field == "start":
        s.start_time_unix_nano = late
    elif field == "end":
        s.end_time_unix_nano = late
    else:
        s.events.append(trace_pb2.Span.Event(time_unix_nano=late, name="e"))
    with pytest.raises(DecodeError) as info:
        decode_spans(traces_request([s]).SerializeToString())
    assert info.value.reason == "invalid_span"
    s.start_time_unix_nano = s.end_time_unix_nano = 2**63 - 1
    del s.events[:]
    (row,) = decode_spans(traces_request([s]).SerializeToString())
    assert (row["Timestamp"], row["Duration"]) == (2**63 - 1, 0)


@pytest.mark.parametrize("where", ["start", "time", "exemplar"])
def test_metric_times_past_datetime64_are_rejected(where: str) -> None:
    request = metrics_request()
    hist = request.resource_metrics[0].scope_metrics[0].metrics[2]
    point = hist.histogram.data_points[0]
    if where == "start":
        point.start_time_unix_nano = 2**64 - 1
    elif where == "time":
        point.time_unix_nano = 2**63
    else:
        point.exemplars[0].time_unix_nano = 2**63
    with pytest.raises(DecodeError) as info:
        decode_metrics(request.SerializeToString())
    assert info.value.reason == "invalid_metric"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
        ("9223372036854775808", None),  # ClickHouse would store -2**63
        ("1e30", None),
        ("12.9", 12),
        ("inf", None),
        ("nan", None),
        ("many", None),
    ],
)
def test_record_counts_outside_int64_are_null(text: str, expected: int | None) -> None:
    s = span(
        TRACE_ID,
        ROOT,
        "stage",
        attributes={"lineagehub.run_id": "r", "lineagehub.records_in": text},
    )
    (row,) = decode_trace_tables(traces_request([s]).SerializeToString())[PIPELINE_RUNS.name]
    assert row["RecordsIn"] == expected


def test_attribute_values_flatten_like_pdata() -> None:
    assert value_to_str(AnyValue(double_value=1.0)) == "1"
    assert value_to_str(AnyValue(double_value=1e-7)) == "0.0000001"
    assert value_to_str(AnyValue(double_value=float("inf"))) == "+Inf"
    assert value_to_str(AnyValue(int_value=-3)) == "-3"
    assert value_to_str(AnyValue(bytes_value=b"\x00\x01")) == "AAE="
    arr = AnyValue(
        array_value=ArrayValue(values=[AnyValue(string_value="a"), AnyValue(int_value=1)])
    )
    assert value_to_str(arr) == '["a",1]'
    kvl = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                KeyValue(key="b", value=AnyValue(bool_value=False)),
                KeyValue(key="a", value=AnyValue(string_value="x")),
            ]
        )
    )
    assert value_to_str(kvl) == '{"a":"x","b":false}'
    assert value_to_str(AnyValue()) == ""


def test_pipeline_runs_one_row_per_run_and_stage() -> None:
    tables = decode_trace_tables(run_trace("run-1", pipeline="orders").SerializeToString())
    assert len(tables[TRACES.name]) == 1 + 3 * 3
    runs = {(r["RunId"], r["Stage"]): r for r in tables[PIPELINE_RUNS.name]}
    assert set(runs) == {
        ("run-1", ""),
        ("run-1", "extract"),
        ("run-1", "transform"),
        ("run-1", "load"),
    }
    transform = runs[("run-1", "transform")]
    assert set(transform) == set(PIPELINE_RUNS.columns)
    assert transform["SpanName"] == "stage transform"  # the enclosing span, not a child
    assert (transform["RecordsIn"], transform["RecordsOut"]) == (200, 199)
    assert transform["Status"] == "Ok"
    assert transform["Pipeline"] == "orders"
    assert transform["EndTime"] - transform["StartTime"] == transform["DurationNs"] == 9_000_000
    assert runs[("run-1", "")]["SpanName"] == "pipelinerun orders"
    assert runs[("run-1", "")]["RecordsIn"] is None


def test_spans_without_a_run_give_no_pipeline_rows() -> None:
    assert pipeline_run_rows(decode_spans(two_spans())) == []


def test_run_id_may_come_from_the_resource() -> None:
    s = span(TRACE_ID, ROOT, "stage", attributes={"lineagehub.stage": "load"})
    raw = traces_request([s], **{"lineagehub.run_id": "r9"}).SerializeToString()
    (row,) = decode_trace_tables(raw)[PIPELINE_RUNS.name]
    assert (row["RunId"], row["Stage"]) == ("r9", "load")


def test_metric_rows() -> None:
    tables = decode_metrics(metrics_request(service="svc").SerializeToString())
    (gauge,) = tables[GAUGE.name]
    (total,) = tables[SUM.name]
    (hist,) = tables[HISTOGRAM.name]
    assert set(gauge) == set(GAUGE.columns)
    assert set(total) == set(SUM.columns)
    assert set(hist) == set(HISTOGRAM.columns)
    assert (gauge["MetricName"], gauge["Value"], gauge["ServiceName"]) == (
        "lineagehub.stage.memory",
        42.0,
        "svc",
    )
    assert gauge["Attributes"] == {"lineagehub.run_id": "r1", "lineagehub.stage": "transform"}
    assert (total["Value"], total["IsMonotonic"], total["AggregationTemporality"]) == (
        99.5,
        True,
        2,
    )
    assert total["ResourceSchemaUrl"] == "https://opentelemetry.io/schemas/1.26.0"
    assert (hist["Count"], hist["Sum"], hist["Min"], hist["Max"]) == (3, 4.5, 0.5, 2.0)
    assert hist["BucketCounts"] == [1, 2, 0]
    assert hist["ExplicitBounds"] == [1.0, 2.0]
    assert hist["AggregationTemporality"] == 1
    assert hist["Exemplars.TraceId"] == ["0102030405060708090a0b0c0d0e0f10"]
    assert hist["Exemplars.SpanId"] == ["0102030405060708"]
    assert hist["Exemplars.TimeUnix"] == [T0]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (ExportTraceServiceRequest().SerializeToString(), "empty"),
        (b'{"resourceSpans": []}', "decode"),
        (b"\x0a\xff\xff\xff\xff\x0f", "decode"),
    ],
)
def test_undecodable_traces(raw: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_spans(raw)
    assert info.value.reason == reason


def test_truncated_protobuf_is_rejected() -> None:
    good = run_trace("r").SerializeToString()
    rejected = 0
    for cut in range(1, len(good), 7):
        try:
            decode_spans(good[:cut])
        except DecodeError:
            rejected += 1
    # Every cut lands inside the single ResourceSpans field: none may decode.
    assert rejected == len(range(1, len(good), 7))


def test_bad_ids_are_rejected() -> None:
    bad = span(b"\x01" * 15, ROOT, "x")
    with pytest.raises(DecodeError, match="trace id"):
        decode_spans(traces_request([bad]).SerializeToString())
    zero = span(b"\x00" * 16, ROOT, "x")
    with pytest.raises(DecodeError, match="trace id"):
        decode_spans(traces_request([zero]).SerializeToString())


def test_metrics_on_the_spans_topic_and_back_are_rejected() -> None:
    with pytest.raises(DecodeError):
        decode_spans(metrics_request().SerializeToString())
    with pytest.raises(DecodeError):
        decode_metrics(run_trace("r").SerializeToString())
    with pytest.raises(DecodeError):
        decode_metrics(ExportMetricsServiceRequest().SerializeToString())


def test_columns_layout_head_and_concat() -> None:
    """The span decoder's flat lists are what the generic row-by-row builder makes of the
    same rows (maps, arrays of maps, Nested sizes), and `head` / `concat` keep rows whole."""
    raw = two_spans()  # the child has an event and a link
    columns = decode_trace_columns(raw)[TRACES.name]
    assert isinstance(columns, Columns)
    rows = decode_trace_tables(raw)[TRACES.name]
    assert Columns.from_rows(TRACES, rows).cols == columns.cols
    both = Columns.concat(TRACES, [columns, columns])
    assert len(both) == 4
    assert both.rows() == rows + rows
    for n in range(5):
        assert both.head(n).rows() == (rows + rows)[:n]
        assert len(both.head(n)) == min(n, 4)
