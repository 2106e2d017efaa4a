"""Metric data points decoded a batch at a time into Arrow (`arrow_metrics`) are stored
exactly as the Python row decoder stores them, and refused for the same reasons.

As for spans (`test_otel_arrow_spans`): the same OTLP requests are stored twice into a
real chdb, once the way the consumer does now and once through `decode_metric_columns`
alone, and every row of the five metric tables is compared as ClickHouse returns it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from consumers.otel import arrow_metrics
from consumers.otel.arrow_metrics import (
    decode,
    decode_metric_batch,
    decode_metric_requests,
)
from consumers.otel.backend import ChdbBackend
from consumers.otel.columns import ArrowRows, Columns, Pending, Rows
from consumers.otel.ddl import EXP_HISTOGRAM, GAUGE, HISTOGRAM, SUM, SUMMARY
from consumers.otel.decode import INT64_MAX, DecodeError, decode_metric_columns
from consumers.samples import T0, metrics_request
from tests.unit.test_otel_arrow_spans import (
    Panic,
    Paths,
    _pending,
    assert_same,
    batch_path,
    chdb,
    clean_attributes,
    kv,
    ns,
    shared,
    some_id,
    typed_span,
    with_unknown_field,
)
from tests.unit.test_otel_decode_fuzz import (
    FUZZ,
    _field,
    doubles,
    enums,
    int64s,
    metric_requests,
    mutated,
    texts,
    uint32s,
    uint64s,
)

pytestmark = pytest.mark.asyncio
METRICS = Paths(
    decode_metric_requests,
    decode,
    decode_metric_batch,
    decode_metric_columns,
    (GAUGE, SUM, HISTOGRAM, EXP_HISTOGRAM, SUMMARY),
)
__all__ = ["chdb", "shared"]  # the fixtures, shared with the spans' tests


def rows_of(rows: Rows) -> list[Any]:
    return list(rows) if isinstance(rows, Sequence) else rows.rows()


def typed_attributes() -> list[KeyValue]:
    """Every value kind the Arrow path renders itself (the spans' test span's)."""
    return list(typed_span("x", 0).attributes)


def exemplar(n: int, **value: Any) -> metrics_pb2.Exemplar:
    return metrics_pb2.Exemplar(
        filtered_attributes=[kv("n", AnyValue(int_value=n)), kv("d", AnyValue(double_value=0.5))],
        time_unix_nano=T0 + n,
        span_id=bytes([n] * 8),
        trace_id=bytes([n] * 16),
        **value,
    )


def rich_request() -> bytes:
    """Every metric type, points with and without exemplars (int, double, no value; ids
    empty, zero, full), optional sums, mins and maxes set and not, exponential buckets on
    one side, odd doubles, int64 extremes, times at both ends of DateTime64(9), several
    resources and scopes, typed attributes, unicode, and a metric with no points."""
    request = metrics_request(service="svc ✓")
    first = request.resource_metrics[0]
    first.resource.attributes.extend(typed_attributes())
    scope = first.scope_metrics[0]
    scope.scope.attributes.extend(typed_attributes()[:3])
    scope.scope.dropped_attributes_count = 2**32 - 1
    scope.schema_url = "scope-url"
    gauge = scope.metrics.add(name="g ✓", description="dé", unit="1")
    gauge.gauge.data_points.extend(
        [
            metrics_pb2.NumberDataPoint(
                attributes=typed_attributes(),
                start_time_unix_nano=0,
                time_unix_nano=INT64_MAX,
                as_int=-(2**63),
                flags=1,
                exemplars=[
                    exemplar(1, as_int=2**63 - 1),
                    exemplar(2, as_double=math.nan),
                    exemplar(3),
                    metrics_pb2.Exemplar(span_id=bytes(8), trace_id=b"", time_unix_nano=0),
                ],
            ),
            metrics_pb2.NumberDataPoint(time_unix_nano=T0, as_double=-0.0),
            metrics_pb2.NumberDataPoint(time_unix_nano=T0, as_int=2**53 + 1),
            metrics_pb2.NumberDataPoint(time_unix_nano=T0),  # no value: 0
        ]
    )
    total = scope.metrics.add(name="s")
    total.sum.aggregation_temporality = -7  # type: ignore[assignment]
    total.sum.data_points.add(as_double=math.inf, time_unix_nano=T0)
    scope.metrics.add(name="no points").gauge.SetInParent()
    hist = scope.metrics.add(name="h")
    hist.histogram.aggregation_temporality = 2**31 - 1  # type: ignore[assignment]
    hist.histogram.data_points.add(count=2**64 - 1, bucket_counts=[0, 2**64 - 1])
    hist.histogram.data_points.add(
        sum=-math.inf, min=5e-324, max=1e308, explicit_bounds=[-0.0, math.nan]
    ).exemplars.append(exemplar(4, as_double=1.5))
    exp = scope.metrics.add(name="e")
    point = exp.exponential_histogram.data_points.add(
        scale=-20, zero_count=3, zero_threshold=0.1, sum=1.0, min=-1.0
    )
    point.negative.offset = -(2**31)
    point.negative.bucket_counts.extend([1, 0, 7])
    exp.exponential_histogram.data_points.add(count=1).positive.offset = 4
    summary = scope.metrics.add(name="q", unit="ms")
    summary.summary.data_points.add(count=3, sum=math.nan, flags=2**32 - 1)
    quantiles = summary.summary.data_points.add(attributes=typed_attributes()[:2], sum=1.5)
    quantiles.quantile_values.add(quantile=0.0, value=-1.0)
    quantiles.quantile_values.add(quantile=1.0, value=math.inf)
    second = request.resource_metrics.add(schema_url="res-url")  # no resource, no scope
    second.scope_metrics.add().metrics.add(name="g2").gauge.data_points.add(as_int=1)
    third = metrics_request(service="", run_id="r2").resource_metrics[0]
    request.resource_metrics.append(third)
    return request.SerializeToString()


def with_point_attribute(value: AnyValue, key: str = "x") -> bytes:
    request = metrics_request()
    point = request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    point.attributes.append(kv(key, value))
    return request.SerializeToString()


async def test_the_store_decodes_rich_requests_as_python_does(chdb: ChdbBackend) -> None:
    raws = [rich_request(), metrics_request().SerializeToString(), rich_request()]
    assert await assert_same(chdb, raws, METRICS) == set()  # all three decoded as Arrow
    tables = decode_metric_batch(raws)[0]
    assert not isinstance(tables, DecodeError)
    counts = {name: len(rows) for name, rows in tables.items()}
    assert counts == {
        GAUGE.name: 1 + 4 + 1 + 1,
        SUM.name: 1 + 1 + 1,
        HISTOGRAM.name: 1 + 2 + 1,
        EXP_HISTOGRAM.name: 2,
        SUMMARY.name: 2,
    }
    assert all(isinstance(rows, ArrowRows) for rows in tables.values())


async def test_what_only_python_decides_is_flagged_and_stored_as_python_does(
    chdb: ChdbBackend,
) -> None:
    """Nested values, a key given twice, times past DateTime64(9) in a point or an
    exemplar, exemplar ids of odd lengths: the whole request goes to the row decoder."""
    nested = AnyValue(kvlist_value=KeyValueList(values=[kv("k", AnyValue(int_value=1))]))
    late_exemplar = metrics_request()
    point = late_exemplar.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    point.exemplars.add(time_unix_nano=INT64_MAX + 1)
    odd_id = metrics_request()
    bucketed = odd_id.resource_metrics[0].scope_metrics[0].metrics[2].histogram.data_points[0]
    bucketed.exemplars.add(span_id=b"\x01\x02\x03")
    late_summary = metrics_request()
    summary = late_summary.resource_metrics[0].scope_metrics[0].metrics.add(name="q")
    summary.summary.data_points.add(start_time_unix_nano=2**64 - 1)
    duplicate = metrics_request()
    duplicate.resource_metrics[0].resource.attributes.append(kv("service.name", AnyValue()))
    raws = [
        with_point_attribute(nested),
        late_exemplar.SerializeToString(),
        odd_id.SerializeToString(),
        late_summary.SerializeToString(),
        duplicate.SerializeToString(),
    ]
    clean = metrics_request().SerializeToString()
    flagged = await assert_same(chdb, [clean, *raws, clean], METRICS)
    assert flagged == {1, 2, 3, 4, 5}
    outcomes, _ = batch_path(raws, METRICS)
    assert [o if isinstance(o, str) else "" for o in outcomes] == [
        "",
        "invalid_metric",
        "",
        "invalid_metric",
        "",
    ]


async def test_malformed_requests_are_refused_for_the_reason_python_gives(
    chdb: ChdbBackend,
) -> None:
    """Truncated bytes, unknown fields where the row decoder refuses them, a metric with
    no name or no data, no points at all: decided record by record, as before."""
    good = metrics_request()
    raw = good.SerializeToString()
    no_name = metrics_request()
    no_name.resource_metrics[0].scope_metrics[0].metrics[1].name = ""
    no_data = metrics_request()
    no_data.resource_metrics[0].scope_metrics[0].metrics.add(name="nothing")
    no_points = ExportMetricsServiceRequest()
    no_points.resource_metrics.add().scope_metrics.add().metrics.add(name="g").gauge.SetInParent()
    odd = [metrics_request() for _ in range(4)]
    odd[0].resource_metrics[0].CopyFrom(with_unknown_field(odd[0].resource_metrics[0]))
    scope_metrics = odd[1].resource_metrics[0].scope_metrics[0]
    scope_metrics.CopyFrom(with_unknown_field(scope_metrics))
    metric = odd[2].resource_metrics[0].scope_metrics[0].metrics[0]
    metric.CopyFrom(with_unknown_field(metric))
    point = odd[3].resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    point.CopyFrom(with_unknown_field(point))  # the row decoder takes it: so do we
    raws = [
        raw[: len(raw) // 2],
        raw + b"\xff",
        b"",
        no_name.SerializeToString(),
        no_data.SerializeToString(),
        no_points.SerializeToString(),
        *(r.SerializeToString() for r in odd),
        raw,
    ]
    await assert_same(chdb, raws, METRICS)
    outcomes, _ = batch_path(raws, METRICS)
    refused = [o if isinstance(o, str) else "" for o in outcomes]
    assert refused == [
        "decode",
        "decode",
        "empty",
        "invalid_metric",
        "invalid_metric",
        "empty",
        "decode",
        "decode",
        "decode",
        "",
        "",
    ]


async def test_a_request_not_in_canonical_form_is_decoded_in_python_at_once() -> None:
    """One metric's `oneof` given twice (a gauge, then a sum): protobuf keeps the sum."""
    gauge = metrics_pb2.Metric(
        name="m", gauge=metrics_pb2.Gauge(data_points=[metrics_pb2.NumberDataPoint(as_int=1)])
    )
    total = metrics_pb2.Metric(
        sum=metrics_pb2.Sum(data_points=[metrics_pb2.NumberDataPoint(as_int=2)])
    )
    merged = gauge.SerializeToString() + total.SerializeToString()
    raw = _field(1, _field(2, _field(2, merged)))  # request > resource metrics > scope
    tables = decode_metric_requests(raw)
    assert not _pending(tables)
    sums, gauges = tables[SUM.name], tables[GAUGE.name]
    assert isinstance(sums, Columns) and isinstance(gauges, Columns)
    assert [(r["MetricName"], r["Value"]) for r in sums.rows()] == [("m", 2.0)]
    assert not len(gauges)


@pytest.mark.parametrize("error", [IndexError("a bug"), Panic("a panic")])
async def test_a_batch_the_columnar_decoder_fails_on_goes_to_the_row_decoder(
    monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    def broken(records: Sequence[bytes]) -> None:
        raise error

    monkeypatch.setattr(arrow_metrics, "decode", broken)
    good = metrics_request().SerializeToString()
    late = metrics_request()
    late.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].time_unix_nano = (
        2**64 - 1
    )
    first, second = decode_metric_batch([good, late.SerializeToString()])
    assert isinstance(second, DecodeError) and second.reason == "invalid_metric"
    assert not isinstance(first, DecodeError)
    expected = decode_metric_columns(good)
    assert {k: rows_of(v) for k, v in first.items()} == {k: rows_of(v) for k, v in expected.items()}


@settings(FUZZ, max_examples=50)
@given(st.lists(metric_requests(), min_size=1, max_size=4), st.data())
async def test_any_batch_is_stored_as_python_stores_it(
    shared: ChdbBackend, requests: list[ExportMetricsServiceRequest], data: st.DataObject
) -> None:
    """Fuzzed requests (every metric type, odd ids, enums, times, nested and typed
    values, any unicode) and one mutated one: the same refusals, the same rows."""
    raws = [r.SerializeToString() for r in requests]
    raws.append(data.draw(mutated(raws[0])))
    await assert_same(shared, raws, METRICS)


# Requests the Arrow path decodes itself (the fuzzer's are mostly flagged).
numbers: st.SearchStrategy[dict[str, Any]] = st.sampled_from(["as_int", "as_double", None]).flatmap(
    lambda kind: (
        st.just({})
        if kind is None
        else (int64s if kind == "as_int" else doubles).map(lambda v: {kind: v})
    )
)


@st.composite
def clean_exemplars(draw: st.DrawFn) -> metrics_pb2.Exemplar:
    return metrics_pb2.Exemplar(
        filtered_attributes=draw(clean_attributes()),
        time_unix_nano=draw(ns),
        span_id=draw(st.one_of(st.just(b""), st.just(bytes(8)), some_id(8))),
        trace_id=draw(st.one_of(st.just(b""), st.just(bytes(16)), some_id(16))),
        **draw(numbers),
    )


@st.composite
def clean_head(draw: st.DrawFn, exemplars: bool = True) -> dict[str, Any]:
    head = {
        "attributes": draw(clean_attributes()),
        "start_time_unix_nano": draw(ns),
        "time_unix_nano": draw(ns),
        "flags": draw(uint32s),
    }
    if exemplars:
        head["exemplars"] = draw(st.lists(clean_exemplars(), max_size=2))
    return head


def optionals(draw: st.DrawFn) -> dict[str, float]:
    return {name: draw(doubles) for name in ("sum", "min", "max") if draw(st.booleans())}


@st.composite
def clean_metrics(draw: st.DrawFn) -> metrics_pb2.Metric:
    kind = draw(st.sampled_from([k for k, _ in arrow_metrics.KINDS]))
    n = draw(st.integers(1, 3))
    metric = metrics_pb2.Metric(name=draw(texts.filter(bool)), description=draw(texts))
    metric.unit = draw(texts)
    data = getattr(metric, kind)
    data.SetInParent()
    if kind in ("sum", "histogram", "exponential_histogram"):
        data.aggregation_temporality = draw(enums)
    if kind == "sum":
        data.is_monotonic = draw(st.booleans())
    for _ in range(n):
        if kind in ("gauge", "sum"):
            data.data_points.add(**draw(clean_head()), **draw(numbers))
        elif kind == "histogram":
            data.data_points.add(
                **draw(clean_head()),
                **optionals(draw),
                count=draw(uint64s),
                bucket_counts=draw(st.lists(uint64s, max_size=3)),
                explicit_bounds=draw(st.lists(doubles, max_size=3)),
            )
        elif kind == "exponential_histogram":
            point = data.data_points.add(
                **draw(clean_head()),
                **optionals(draw),
                count=draw(uint64s),
                scale=draw(enums),
                zero_count=draw(uint64s),
                zero_threshold=draw(doubles),
            )
            for side in (point.positive, point.negative):
                if draw(st.booleans()):
                    side.offset = draw(enums)
                    side.bucket_counts.extend(draw(st.lists(uint64s, max_size=3)))
        else:
            point = data.data_points.add(
                **draw(clean_head(exemplars=False)), count=draw(uint64s), sum=draw(doubles)
            )
            for _ in range(draw(st.integers(0, 2))):
                point.quantile_values.add(quantile=draw(doubles), value=draw(doubles))
    return metric


@st.composite
def clean_metric_requests(draw: st.DrawFn) -> bytes:
    request = ExportMetricsServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        resource = request.resource_metrics.add(schema_url=draw(texts))
        if draw(st.booleans()):
            resource.resource.CopyFrom(Resource(attributes=draw(clean_attributes())))
        for _ in range(draw(st.integers(1, 2))):
            scope = resource.scope_metrics.add(schema_url=draw(texts))
            if draw(st.booleans()):
                scope.scope.CopyFrom(
                    InstrumentationScope(
                        name=draw(texts),
                        version=draw(texts),
                        attributes=draw(clean_attributes()),
                        dropped_attributes_count=draw(uint32s),
                    )
                )
            scope.metrics.extend(draw(st.lists(clean_metrics(), min_size=1, max_size=3)))
    return request.SerializeToString()


@settings(FUZZ, max_examples=40)
@given(st.lists(clean_metric_requests(), min_size=1, max_size=5))
async def test_any_clean_batch_is_decoded_as_arrow_and_stored_as_python_stores_it(
    shared: ChdbBackend, raws: list[bytes]
) -> None:
    """Every metric type with typed values, unicode, exact nanoseconds, enums of any
    int32, odd doubles, unset optionals and bucket sides: none flagged, the same rows."""
    assert await assert_same(shared, raws, METRICS) == set()


async def test_arrow_rows_read_back_as_the_row_decoders_rows() -> None:
    """What the native backend sends (`ArrowRows.rows()`: times as integer ns, maps as
    dicts, arrays as lists) is what the row decoder gives, table by table."""
    request = ExportMetricsServiceRequest.FromString(rich_request())
    for metric in request.resource_metrics[0].scope_metrics[0].metrics:  # NaN != NaN
        data = getattr(metric, metric.WhichOneof("data") or "")
        for point in data.data_points:
            for exemplar in getattr(point, "exemplars", []):
                if math.isnan(exemplar.as_double):
                    exemplar.as_double = 0.5
            if metric.HasField("summary") and math.isnan(point.sum):
                point.sum = 0.5
            if metric.HasField("histogram"):
                point.explicit_bounds[:] = [
                    b if not math.isnan(b) else 3.0 for b in point.explicit_bounds
                ]
    raw = request.SerializeToString()
    (tables,) = decode_metric_batch([raw])
    assert not isinstance(tables, DecodeError)
    expected = decode_metric_columns(raw)
    for name, rows in tables.items():
        assert isinstance(rows, ArrowRows)
        assert rows.rows() == rows_of(expected[name]), name


@settings(FUZZ, max_examples=60)
@given(clean_metric_requests())
def test_a_request_counts_its_fullest_table_for_batching(raw: bytes) -> None:
    """What batching counts of a request is the most rows it adds to one table (each of
    a batch's inserts stays within `max_batch_rows`), across resources and scopes: the
    row decoder's largest table."""
    (pending,) = decode_metric_requests(raw).values()
    assert isinstance(pending, Pending)
    assert len(pending) == max(len(rows) for rows in decode_metric_columns(raw).values())
