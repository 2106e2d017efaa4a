"""Property-based fuzzing of the OTLP decoders the `otel` consumer runs on every Kafka record.

Inputs are structured `ExportTraceServiceRequest` / `ExportMetricsServiceRequest`
messages built from Hypothesis strategies (ids of any length, enums outside their
range, negative ones included, 64-bit extremes, NaN and infinities, nested and odd
attribute values, any unicode, empty resources and scopes, every metric type), their
serialised bytes mutated, and plain random bytes.

The property: a decoder returns rows or raises `DecodeError` with a known reason,
never anything else (any other exception escapes the consumer's handler), and each
row holds a value of the right ClickHouse type for every column of its table, the
types read from the DDL itself.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from consumers.otel.ddl import (
    EXP_HISTOGRAM,
    GAUGE,
    HISTOGRAM,
    PIPELINE_RUNS,
    SUM,
    SUMMARY,
    TABLES,
    TRACES,
    Table,
)
from consumers.otel.ddl import create_statements as otel_create_statements
from consumers.otel.decode import (
    ATTR_PIPELINE,
    ATTR_RECORDS_IN,
    ATTR_RECORDS_OUT,
    ATTR_RUN_ID,
    ATTR_STAGE,
    DecodeError,
    decode_metrics,
    decode_trace_tables,
)
from consumers.otel.decode import METRIC_TABLES as DECODED_METRIC_TABLES
from consumers.samples import T0, metrics_request, run_trace
from tests.fuzz import fuzz_settings

# Examples per property; each property runs in a few seconds.
STRUCTURED_EXAMPLES = 300
BYTES_EXAMPLES = 300
MUTATED_EXAMPLES = 200

FUZZ = fuzz_settings(STRUCTURED_EXAMPLES, HealthCheck.data_too_large)

# Every reason the decoders give; a new one must be added here on purpose.
REASONS = {"empty", "too_large", "decode", "invalid_span", "invalid_metric"}

# The names of the enum values, written out independently of the decoder.
KIND_NAMES = dict(
    enumerate(["Unspecified", "Internal", "Server", "Client", "Producer", "Consumer"])
)
STATUS_NAMES = {0: "Unset", 1: "Ok", 2: "Error"}

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)


# ---- the column types, read from the DDL ------------------------------------------------


def _split_top(text: str) -> list[str]:
    """`text` split at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _column_types() -> dict[str, dict[str, str]]:
    """{table: {column: ClickHouse type}}; a Nested column's parts are `Array(type)`."""
    out: dict[str, dict[str, str]] = {}
    for sql in otel_create_statements("otel"):
        head = re.match(r"CREATE TABLE IF NOT EXISTS `otel`\.(\w+) \(", sql)
        if head is None:
            continue
        body = sql[head.end() : sql.rindex(") ENGINE")]
        columns: dict[str, str] = {}
        for item in _split_top(body):
            if item.startswith("INDEX "):
                continue
            name, _, rest = item.partition(" ")
            rest = re.sub(r"\s+CODEC\(.*\)$", "", rest.strip(), flags=re.S)
            nested = re.fullmatch(r"Nested\s*\((.*)\)", rest, flags=re.S)
            if nested is None:
                columns[name] = rest
                continue
            for part in _split_top(nested.group(1)):
                sub, _, typ = part.partition(" ")
                columns[f"{name}.{sub}"] = f"Array({typ.strip()})"
        out[head.group(1)] = columns
    return out


COLUMN_TYPES = _column_types()


def _int_in(value: Any, bounds: tuple[int, int]) -> bool:
    return type(value) is int and bounds[0] <= value <= bounds[1]


def fits(typ: str, value: Any) -> bool:
    """Whether `value` is what the backends can insert into a column of type `typ`."""
    inner = re.fullmatch(r"(\w+)\((.*)\)", typ, flags=re.S)
    if inner is not None:
        wrapper, arg = inner.groups()
        if wrapper == "LowCardinality":
            return fits(arg, value)
        if wrapper == "Nullable":
            return value is None or fits(arg, value)
        if wrapper == "Array":
            return isinstance(value, list) and all(fits(arg, v) for v in value)
        if wrapper == "Map":
            key_type, value_type = _split_top(arg)
            return isinstance(value, dict) and all(
                fits(key_type, k) and fits(value_type, v) for k, v in value.items()
            )
        if wrapper == "DateTime64" and arg == "9":
            return _int_in(value, (0, INT64[1]))
        raise AssertionError(f"the fuzzer does not know the column type {typ}")
    scalar: dict[str, Callable[[Any], bool]] = {
        "String": lambda v: isinstance(v, str),
        "UInt32": lambda v: _int_in(v, UINT32),
        "UInt64": lambda v: _int_in(v, UINT64),
        "Int32": lambda v: _int_in(v, INT32),
        "Int64": lambda v: _int_in(v, INT64),
        "Float64": lambda v: type(v) is float,
        "Boolean": lambda v: type(v) is bool,
    }
    if typ not in scalar:
        raise AssertionError(f"the fuzzer does not know the column type {typ}")
    return scalar[typ](value)


def check_rows(tables: Mapping[str, list[dict[str, Any]]], expected: set[str]) -> None:
    assert set(tables) == expected
    for name, rows in tables.items():
        table: Table = TABLES[name]
        types = COLUMN_TYPES[name]
        assert set(table.columns) <= set(types), f"{name}: TABLES and the DDL disagree"
        for row in rows:
            missing = set(table.columns) - set(row)
            assert not missing, f"{name} row lacks {sorted(missing)}"
            for col in table.columns:
                assert fits(types[col], row[col]), f"{name}.{col} ({types[col]}): {row[col]!r}"
            # ClickHouse refuses a Nested column whose arrays differ in length.
            nested: dict[str, set[int]] = {}
            for col in table.columns:
                if "." in col:
                    nested.setdefault(col.split(".")[0], set()).add(len(row[col]))
            assert all(len(sizes) == 1 for sizes in nested.values()), (name, nested)


def run_decoder(
    decode: Callable[[bytes | None], dict[str, list[dict[str, Any]]]],
    raw: bytes,
    expected: set[str],
) -> dict[str, list[dict[str, Any]]] | None:
    """The decoder's rows, checked, or None for a `DecodeError` (any other exception fails)."""
    try:
        tables = decode(raw)
    except DecodeError as exc:
        assert exc.reason in REASONS, exc.reason
        assert str(exc).startswith(f"{exc.reason}: ")
        return None
    check_rows(tables, expected)
    return tables


TRACE_TABLES = {TRACES.name, PIPELINE_RUNS.name}
METRIC_TABLES = {t.name for t in DECODED_METRIC_TABLES}


# ---- strategies --------------------------------------------------------------------------


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`odd` one time in six: enough to reach every check, while most requests get through."""
    return st.integers(0, 5).flatmap(lambda n: odd if n == 0 else usual)


texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
int32s = st.one_of(st.integers(-8, 8), st.integers(*INT32))
sint32s = int32s
# Enum fields take any int32 on the wire; the stubs only name the defined values.
enums: st.SearchStrategy[Any] = int32s
uint32s = st.one_of(st.sampled_from([0, 1, 2**32 - 1]), st.integers(*UINT32))
int64s = st.one_of(st.sampled_from([0, -1, *INT64]), st.integers(*INT64))
uint64s = st.one_of(st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1]), st.integers(*UINT64))
times = mostly(
    st.integers(T0 - 10**12, T0 + 10**12),
    st.one_of(st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1]), st.integers(*UINT64)),
)
doubles = st.floats(allow_nan=True, allow_infinity=True)
# How many resources per request, scopes per resource: one, or now and then none or several.
levels = mostly(st.just(1), st.integers(0, 3))


def ids(size: int) -> st.SearchStrategy[bytes]:
    """Mostly well-formed ids, also all-zero, empty and of the wrong length."""
    return mostly(
        st.binary(min_size=size, max_size=size),
        st.one_of(
            st.sampled_from([b"", bytes(size), b"\xff" * size]), st.binary(max_size=2 * size + 1)
        ),
    )


keys = st.one_of(
    st.sampled_from(
        [
            "service.name",
            ATTR_RUN_ID,
            ATTR_STAGE,
            ATTR_PIPELINE,
            ATTR_RECORDS_IN,
            ATTR_RECORDS_OUT,
            "",
        ]
    ),
    texts,
)

scalar_values = st.one_of(
    st.builds(lambda s: AnyValue(string_value=s), texts),
    st.builds(lambda s: AnyValue(string_value=s), st.sampled_from(["1e30", "nan", "-0", "7"])),
    st.builds(lambda b: AnyValue(bool_value=b), st.booleans()),
    st.builds(lambda i: AnyValue(int_value=i), int64s),
    st.builds(lambda d: AnyValue(double_value=d), doubles),
    st.builds(lambda b: AnyValue(bytes_value=b), st.binary(max_size=8)),
    st.just(AnyValue()),  # no value at all
)


def _containers(children: st.SearchStrategy[AnyValue]) -> st.SearchStrategy[AnyValue]:
    return st.one_of(
        st.lists(children, max_size=3).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
        st.lists(st.tuples(keys, children), max_size=3).map(
            lambda kvs: AnyValue(
                kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs])
            )
        ),
    )


def _deep(depth: int) -> AnyValue:
    """An array/kvlist chain `depth` levels deep.

    Built in place, top down: the message constructors copy their arguments, and a copy
    is bound by protobuf's nesting limit, so these stay well below it (see
    `test_attribute_values_nested_past_the_protobuf_limit` for deeper ones).
    """
    root = AnyValue()
    value = root
    for level in range(depth):
        if level % 2:
            value = value.array_value.values.add()
        else:
            value = value.kvlist_value.values.add(key="k").value
    value.string_value = "leaf"
    return root


any_values = mostly(
    scalar_values,
    st.one_of(
        st.recursive(scalar_values, _containers, max_leaves=6), st.integers(1, 24).map(_deep)
    ),
)
attributes = st.lists(st.builds(KeyValue, key=keys, value=any_values), max_size=3)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """{} or {"value": ...}: for fields that may be left unset."""
    return st.one_of(st.just({}), strategy.map(lambda v: {"value": v}))


@st.composite
def resources(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments for the `resource` field: unset, empty, or with attributes."""
    if draw(st.booleans()):
        return {}
    return {
        "resource": Resource(attributes=draw(attributes), dropped_attributes_count=draw(uint32s))
    }


@st.composite
def scopes(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return {}
    return {
        "scope": InstrumentationScope(
            name=draw(texts),
            version=draw(texts),
            attributes=draw(attributes),
            dropped_attributes_count=draw(uint32s),
        )
    }


@st.composite
def spans(draw: st.DrawFn) -> trace_pb2.Span:
    events = [
        trace_pb2.Span.Event(
            time_unix_nano=draw(times),
            name=draw(texts),
            attributes=draw(attributes),
            dropped_attributes_count=draw(uint32s),
        )
        for _ in range(draw(st.integers(0, 2)))
    ]
    links = [
        trace_pb2.Span.Link(
            trace_id=draw(ids(16)),
            span_id=draw(ids(8)),
            trace_state=draw(texts),
            attributes=draw(attributes),
            flags=draw(uint32s),
        )
        for _ in range(draw(st.integers(0, 2)))
    ]
    return trace_pb2.Span(
        trace_id=draw(ids(16)),
        span_id=draw(ids(8)),
        parent_span_id=draw(st.one_of(st.just(b""), ids(8))),  # b"": a root span
        trace_state=draw(texts),
        flags=draw(uint32s),
        name=draw(texts),
        kind=draw(enums),
        start_time_unix_nano=draw(times),
        end_time_unix_nano=draw(times),
        attributes=draw(attributes),
        dropped_attributes_count=draw(uint32s),
        events=events,
        dropped_events_count=draw(uint32s),
        links=links,
        dropped_links_count=draw(uint32s),
        status=trace_pb2.Status(code=draw(enums), message=draw(texts)),
    )


@st.composite
def trace_requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                **draw(resources()),
                schema_url=draw(texts),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        **draw(scopes()),
                        schema_url=draw(texts),
                        spans=draw(st.lists(spans(), max_size=3)),
                    )
                    for _ in range(draw(levels))
                ],
            )
            for _ in range(draw(levels))
        ]
    )


@st.composite
def exemplars(draw: st.DrawFn) -> metrics_pb2.Exemplar:
    value = draw(st.sampled_from(["as_int", "as_double", None]))
    number: dict[str, st.SearchStrategy[Any]] = {"as_int": int64s, "as_double": doubles}
    return metrics_pb2.Exemplar(
        filtered_attributes=draw(attributes),
        time_unix_nano=draw(times),
        span_id=draw(ids(8)),
        trace_id=draw(ids(16)),
        **({value: draw(number[value])} if value else {}),
    )


@st.composite
def point_head(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "attributes": draw(attributes),
        "start_time_unix_nano": draw(times),
        "time_unix_nano": draw(times),
        "flags": draw(uint32s),
    }


@st.composite
def number_points(draw: st.DrawFn) -> metrics_pb2.NumberDataPoint:
    value = draw(st.sampled_from(["as_int", "as_double", None]))
    number: dict[str, st.SearchStrategy[Any]] = {"as_int": int64s, "as_double": doubles}
    return metrics_pb2.NumberDataPoint(
        **draw(point_head()),
        exemplars=draw(st.lists(exemplars(), max_size=1)),
        **({value: draw(number[value])} if value else {}),
    )


@st.composite
def histogram_points(draw: st.DrawFn) -> metrics_pb2.HistogramDataPoint:
    extra = {
        name: opt["value"] for name in ("sum", "min", "max") if (opt := draw(optional(doubles)))
    }
    return metrics_pb2.HistogramDataPoint(
        **draw(point_head()),
        count=draw(uint64s),
        bucket_counts=draw(st.lists(uint64s, max_size=4)),
        explicit_bounds=draw(st.lists(doubles, max_size=4)),
        exemplars=draw(st.lists(exemplars(), max_size=1)),
        **extra,
    )


@st.composite
def exponential_points(draw: st.DrawFn) -> metrics_pb2.ExponentialHistogramDataPoint:
    def buckets() -> metrics_pb2.ExponentialHistogramDataPoint.Buckets:
        return metrics_pb2.ExponentialHistogramDataPoint.Buckets(
            offset=draw(sint32s), bucket_counts=draw(st.lists(uint64s, max_size=3))
        )

    extra = {
        name: opt["value"] for name in ("sum", "min", "max") if (opt := draw(optional(doubles)))
    }
    return metrics_pb2.ExponentialHistogramDataPoint(
        **draw(point_head()),
        count=draw(uint64s),
        scale=draw(sint32s),
        zero_count=draw(uint64s),
        positive=buckets(),
        negative=buckets(),
        zero_threshold=draw(doubles),
        exemplars=draw(st.lists(exemplars(), max_size=1)),
        **extra,
    )


@st.composite
def summary_points(draw: st.DrawFn) -> metrics_pb2.SummaryDataPoint:
    quantiles = [
        metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=draw(doubles), value=draw(doubles))
        for _ in range(draw(st.integers(0, 3)))
    ]
    return metrics_pb2.SummaryDataPoint(
        **draw(point_head()),
        count=draw(uint64s),
        sum=draw(doubles),
        quantile_values=quantiles,
    )


METRIC_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary", None)


@st.composite
def metrics(draw: st.DrawFn) -> metrics_pb2.Metric:
    kind = draw(st.sampled_from(METRIC_KINDS))
    data: dict[str, Any] = {}
    if kind == "gauge":
        data["gauge"] = metrics_pb2.Gauge(data_points=draw(st.lists(number_points(), max_size=2)))
    elif kind == "sum":
        data["sum"] = metrics_pb2.Sum(
            data_points=draw(st.lists(number_points(), max_size=2)),
            aggregation_temporality=draw(enums),
            is_monotonic=draw(st.booleans()),
        )
    elif kind == "histogram":
        data["histogram"] = metrics_pb2.Histogram(
            data_points=draw(st.lists(histogram_points(), max_size=2)),
            aggregation_temporality=draw(enums),
        )
    elif kind == "exponential_histogram":
        data["exponential_histogram"] = metrics_pb2.ExponentialHistogram(
            data_points=draw(st.lists(exponential_points(), max_size=2)),
            aggregation_temporality=draw(enums),
        )
    elif kind == "summary":
        data["summary"] = metrics_pb2.Summary(
            data_points=draw(st.lists(summary_points(), max_size=2))
        )
    return metrics_pb2.Metric(
        name=draw(st.one_of(texts, st.just("lineagehub.records"))),
        description=draw(texts),
        unit=draw(texts),
        metadata=draw(attributes),
        **data,
    )


@st.composite
def metric_requests(draw: st.DrawFn) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                **draw(resources()),
                schema_url=draw(texts),
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(
                        **draw(scopes()),
                        schema_url=draw(texts),
                        metrics=draw(st.lists(metrics(), max_size=2)),
                    )
                    for _ in range(draw(levels))
                ],
            )
            for _ in range(draw(levels))
        ]
    )


@st.composite
def mutated(draw: st.DrawFn, raw: bytes) -> bytes:
    """`raw` with a few bytes flipped, cut, inserted or appended (unknown fields, mostly)."""
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "append"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            data[min(pos, len(data) - 1)] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=6))
        else:
            data += draw(st.binary(min_size=1, max_size=12))
    return bytes(data)


# ---- the properties ----------------------------------------------------------------------


def _spans_of(request: ExportTraceServiceRequest) -> list[trace_pb2.Span]:
    return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def test_trace_requests_decode_to_rows_or_a_decode_error() -> None:
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(trace_requests())
    def check(request: ExportTraceServiceRequest) -> None:
        tables = run_decoder(decode_trace_tables, request.SerializeToString(), TRACE_TABLES)
        if tables is None:
            outcomes["rejected"] += 1
            return
        outcomes["rows"] += 1
        # One row per span, in order, its names and numbers those of the wire message.
        wire = _spans_of(request)
        rows = tables[TRACES.name]
        assert len(rows) == len(wire)
        for row, s in zip(rows, wire, strict=True):
            assert row["SpanKind"] == KIND_NAMES.get(s.kind, "")
            assert row["StatusCode"] == STATUS_NAMES.get(s.status.code, "")
            assert (row["TraceId"], row["SpanId"]) == (s.trace_id.hex(), s.span_id.hex())
            assert row["Duration"] == max(s.end_time_unix_nano - s.start_time_unix_nano, 0)
        for run in tables[PIPELINE_RUNS.name]:
            assert run["RunId"]
            assert run["EndTime"] - run["StartTime"] == run["DurationNs"]

    check()
    # The strategies reach both sides of the decoder, not only its rejections.
    assert outcomes["rows"] >= STRUCTURED_EXAMPLES // 20, outcomes
    assert outcomes["rejected"] >= STRUCTURED_EXAMPLES // 10, outcomes


def _point_list(request: ExportMetricsServiceRequest, kind: str) -> list[Any]:
    return [
        p
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.WhichOneof("data") == kind
        for p in getattr(m, kind).data_points
    ]


def _points(request: ExportMetricsServiceRequest, kind: str) -> int:
    return len(_point_list(request, kind))


def _wire_number(point: metrics_pb2.NumberDataPoint) -> float:
    if point.WhichOneof("value") == "as_int":
        return float(point.as_int)
    return point.as_double  # 0.0 when neither is set


def _same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_metric_requests_decode_to_rows_or_a_decode_error() -> None:
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(metric_requests())
    def check(request: ExportMetricsServiceRequest) -> None:
        tables = run_decoder(decode_metrics, request.SerializeToString(), METRIC_TABLES)
        if tables is None:
            outcomes["rejected"] += 1
            return
        outcomes["rows"] += 1
        # Every point of every metric type is one row of its table: none is dropped.
        for kind, table in (
            ("gauge", GAUGE),
            ("sum", SUM),
            ("histogram", HISTOGRAM),
            ("exponential_histogram", EXP_HISTOGRAM),
            ("summary", SUMMARY),
        ):
            assert len(tables[table.name]) == _points(request, kind), kind
        for kind, table in (("exponential_histogram", EXP_HISTOGRAM), ("summary", SUMMARY)):
            wire_counts = [p.count for p in _point_list(request, kind)]
            assert [row["Count"] for row in tables[table.name]] == wire_counts, kind
        quantiles = [
            [q.quantile for q in p.quantile_values] for p in _point_list(request, "summary")
        ]
        got_quantiles = [row["ValueAtQuantiles.Quantile"] for row in tables[SUMMARY.name]]
        assert all(
            len(a) == len(b) and all(map(_same_float, a, b))
            for a, b in zip(got_quantiles, quantiles, strict=True)
        )
        buckets = [
            (p.positive.offset, list(p.positive.bucket_counts), list(p.negative.bucket_counts))
            for p in _point_list(request, "exponential_histogram")
        ]
        got_buckets = [
            (r["PositiveOffset"], r["PositiveBucketCounts"], r["NegativeBucketCounts"])
            for r in tables[EXP_HISTOGRAM.name]
        ]
        assert got_buckets == buckets
        for kind, table in (("gauge", GAUGE), ("sum", SUM)):
            wire = [_wire_number(p) for p in _point_list(request, kind)]
            got = [row["Value"] for row in tables[table.name]]
            assert all(map(_same_float, got, wire)), (kind, got, wire)

    check()
    assert outcomes["rows"] >= STRUCTURED_EXAMPLES // 20, outcomes
    assert outcomes["rejected"] >= STRUCTURED_EXAMPLES // 10, outcomes


@settings(FUZZ, max_examples=MUTATED_EXAMPLES)
@given(st.data())
def test_mutated_requests_decode_to_rows_or_a_decode_error(data: st.DataObject) -> None:
    trace = data.draw(st.one_of(trace_requests(), st.just(run_trace("r1"))))
    metric = data.draw(st.one_of(metric_requests(), st.just(metrics_request())))
    run_decoder(decode_trace_tables, data.draw(mutated(trace.SerializeToString())), TRACE_TABLES)
    run_decoder(decode_metrics, data.draw(mutated(metric.SerializeToString())), METRIC_TABLES)


@settings(FUZZ, max_examples=BYTES_EXAMPLES)
@given(st.binary(max_size=400))
def test_random_bytes_decode_to_rows_or_a_decode_error(raw: bytes) -> None:
    run_decoder(decode_trace_tables, raw, TRACE_TABLES)
    run_decoder(decode_metrics, raw, METRIC_TABLES)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _deep_request(depth: int) -> bytes:
    """A span whose attribute `deep` nests kvlists and arrays `depth` levels deep.

    Written as bytes: the Python message classes refuse to build such a value.
    """
    value = _field(1, b"leaf")  # AnyValue.string_value
    for level in range(depth):
        if level % 2:
            value = _field(5, _field(1, value))  # AnyValue.array_value.values
        else:
            value = _field(6, _field(1, _field(1, b"k") + _field(2, value)))  # kvlist_value
    good = run_trace("r1", stages=(), children=0)
    span = good.resource_spans[0].scope_spans[0].spans[0].SerializeToString()
    span += _field(9, _field(1, b"deep") + _field(2, value))  # Span.attributes
    return _field(1, _field(2, _field(2, span)))  # resource_spans.scope_spans.spans


def test_attribute_values_nested_past_the_protobuf_limit() -> None:
    decoded = []
    for depth in range(1, 201):
        tables = run_decoder(decode_trace_tables, _deep_request(depth), TRACE_TABLES)
        if tables is not None:
            flat = tables[TRACES.name][0]["SpanAttributes"]["deep"]
            assert flat.count("leaf") == 1
            assert flat.count("[") + flat.count("{") == depth
            decoded.append(depth)
    # Values decode up to protobuf's nesting limit, and deeper ones are a DecodeError.
    assert decoded == list(range(1, len(decoded) + 1))
    assert 20 < len(decoded) < 200


# ---- the checker itself ------------------------------------------------------------------


def test_the_column_types_cover_every_table() -> None:
    for name, table in TABLES.items():
        assert set(table.columns) <= set(COLUMN_TYPES[name]), name
        for col in table.columns:
            fits(COLUMN_TYPES[name][col], None)  # raises for a type it cannot judge
    assert COLUMN_TYPES[TRACES.name]["Events.Timestamp"] == "Array(DateTime64(9))"
    assert COLUMN_TYPES[PIPELINE_RUNS.name]["RecordsIn"] == "Nullable(Int64)"


def test_the_checker_takes_real_rows() -> None:
    check_rows(decode_trace_tables(run_trace("r1").SerializeToString()), TRACE_TABLES)
    check_rows(decode_metrics(metrics_request().SerializeToString()), METRIC_TABLES)


@pytest.mark.parametrize(
    ("table", "col", "bad"),
    [
        (TRACES.name, "Timestamp", 2**63),  # past DateTime64(9)
        (TRACES.name, "Duration", -1),
        (TRACES.name, "SpanKind", None),
        (TRACES.name, "SpanAttributes", {"a": 1}),
        (TRACES.name, "Events.Name", ["only one"]),  # Nested arrays of different lengths
        (PIPELINE_RUNS.name, "RecordsIn", 2**63),
        (PIPELINE_RUNS.name, "Stage", ...),  # ... = the column is missing
    ],
)
def test_the_checker_rejects_rows_the_tables_cannot_hold(table: str, col: str, bad: Any) -> None:
    tables = decode_trace_tables(run_trace("r1").SerializeToString())
    row = dict(tables[table][0])
    if bad is ...:
        del row[col]
    else:
        row[col] = bad
    with pytest.raises(AssertionError):
        check_rows({**tables, table: [row]}, TRACE_TABLES)
