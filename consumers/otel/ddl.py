"""ClickHouse tables: the OpenTelemetry Collector ClickHouse exporter's schema, plus ours.

`otel_traces`, `otel_traces_trace_id_ts` (+ `_mv`) and `otel_metrics_{gauge,sum,histogram,
exponential_histogram,summary}` have the exporter's columns, types, codecs, indexes,
partitioning and sort keys, so Grafana's ClickHouse plugin (OTel mode) and other OTel
tools read them as they are. Two deliberate additions, both table *settings*, no column changes:

* `non_replicated_deduplication_window`: keeps the hashes of recent inserts so an
  insert that repeats an `insert_deduplication_token` is dropped. That is how a
  redelivered Kafka batch adds no rows (see `consumer.py`). Replicated engines
  deduplicate by default; this setting gives a single-node MergeTree (and chdb)
  the same behaviour.
* TTL is off unless `ttl_days` is given (the exporter's default is also no TTL).

`pipeline_runs` is ours: one row per (run, stage), a ReplacingMergeTree whose
version is the span duration, so the enclosing stage span wins over its children
if they carry the same attributes. Read it with `FINAL`. With `ttl_days` its rows go
by their stage's start, as the spans they come from do; not a whole part at a time
(`ttl_only_drop_parts`): the table has no partition by day, so a part mixes days, and
merges drop the expired rows.

The same statements run on chdb and on a ClickHouse server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

DEDUP_WINDOW = 1000


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    # DateTime64(9) columns (or arrays of them) whose row values are integer nanoseconds.
    time_columns: frozenset[str]
    # How each column travels to ClickHouse (`consumers.otel.columns`): `s` String (the
    # default), `t` DateTime64(9) as integer ns, `u64` `i64` `u32` `i32` `u8` `f64` `bool`,
    # `n64` Nullable(Int64), `map` Map(String, String), `a:<kind>` an array of those.
    kinds: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    def kind(self, column: str) -> str:
        return self.kinds.get(column, "s")


_METRIC_HEAD = (
    "ResourceAttributes",
    "ResourceSchemaUrl",
    "ScopeName",
    "ScopeVersion",
    "ScopeAttributes",
    "ScopeDroppedAttrCount",
    "ScopeSchemaUrl",
    "ServiceName",
    "MetricName",
    "MetricDescription",
    "MetricUnit",
    "Attributes",
    "StartTimeUnix",
    "TimeUnix",
)
_EXEMPLARS = (
    "Exemplars.FilteredAttributes",
    "Exemplars.TimeUnix",
    "Exemplars.Value",
    "Exemplars.SpanId",
    "Exemplars.TraceId",
)
_METRIC_TIMES = frozenset({"StartTimeUnix", "TimeUnix", "Exemplars.TimeUnix"})
_METRIC_KINDS = {
    "ResourceAttributes": "map",
    "ScopeAttributes": "map",
    "ScopeDroppedAttrCount": "u32",
    "Attributes": "map",
    "StartTimeUnix": "t",
    "TimeUnix": "t",
    "Value": "f64",
    "Flags": "u32",
    "Exemplars.FilteredAttributes": "a:map",
    "Exemplars.TimeUnix": "a:t",
    "Exemplars.Value": "a:f64",
    "Exemplars.SpanId": "a:s",
    "Exemplars.TraceId": "a:s",
    "AggregationTemporality": "i32",
    "IsMonotonic": "bool",
    "Count": "u64",
    "Sum": "f64",
    "BucketCounts": "a:u64",
    "ExplicitBounds": "a:f64",
    "Min": "f64",
    "Max": "f64",
    "Scale": "i32",
    "ZeroCount": "u64",
    "PositiveOffset": "i32",
    "PositiveBucketCounts": "a:u64",
    "NegativeOffset": "i32",
    "NegativeBucketCounts": "a:u64",
    "ValueAtQuantiles.Quantile": "a:f64",
    "ValueAtQuantiles.Value": "a:f64",
}

TRACES = Table(
    "otel_traces",
    (
        "Timestamp",
        "TraceId",
        "SpanId",
        "ParentSpanId",
        "TraceState",
        "SpanName",
        "SpanKind",
        "ServiceName",
        "ResourceAttributes",
        "ScopeName",
        "ScopeVersion",
        "SpanAttributes",
        "Duration",
        "StatusCode",
        "StatusMessage",
        "Events.Timestamp",
        "Events.Name",
        "Events.Attributes",
        "Links.TraceId",
        "Links.SpanId",
        "Links.TraceState",
        "Links.Attributes",
    ),
    frozenset({"Timestamp", "Events.Timestamp"}),
    {
        "Timestamp": "t",
        "ResourceAttributes": "map",
        "SpanAttributes": "map",
        "Duration": "u64",
        "Events.Timestamp": "a:t",
        "Events.Name": "a:s",
        "Events.Attributes": "a:map",
        "Links.TraceId": "a:s",
        "Links.SpanId": "a:s",
        "Links.TraceState": "a:s",
        "Links.Attributes": "a:map",
    },
)
GAUGE = Table(
    "otel_metrics_gauge",
    (*_METRIC_HEAD, "Value", "Flags", *_EXEMPLARS),
    _METRIC_TIMES,
    _METRIC_KINDS,
)
SUM = Table(
    "otel_metrics_sum",
    (*_METRIC_HEAD, "Value", "Flags", *_EXEMPLARS, "AggregationTemporality", "IsMonotonic"),
    _METRIC_TIMES,
    _METRIC_KINDS,
)
HISTOGRAM = Table(
    "otel_metrics_histogram",
    (
        *_METRIC_HEAD,
        "Count",
        "Sum",
        "BucketCounts",
        "ExplicitBounds",
        *_EXEMPLARS,
        "Flags",
        "Min",
        "Max",
        "AggregationTemporality",
    ),
    _METRIC_TIMES,
    _METRIC_KINDS,
)
EXP_HISTOGRAM = Table(
    "otel_metrics_exponential_histogram",
    (
        *_METRIC_HEAD,
        "Count",
        "Sum",
        "Scale",
        "ZeroCount",
        "PositiveOffset",
        "PositiveBucketCounts",
        "NegativeOffset",
        "NegativeBucketCounts",
        *_EXEMPLARS,
        "Flags",
        "Min",
        "Max",
        "AggregationTemporality",
    ),
    _METRIC_TIMES,
    _METRIC_KINDS,
)
SUMMARY = Table(
    "otel_metrics_summary",
    (
        *_METRIC_HEAD,
        "Count",
        "Sum",
        "ValueAtQuantiles.Quantile",
        "ValueAtQuantiles.Value",
        "Flags",
    ),
    frozenset({"StartTimeUnix", "TimeUnix"}),
    _METRIC_KINDS,
)
PIPELINE_RUNS = Table(
    "pipeline_runs",
    (
        "RunId",
        "Stage",
        "Pipeline",
        "ServiceName",
        "TraceId",
        "SpanId",
        "SpanName",
        "StartTime",
        "EndTime",
        "DurationNs",
        "Status",
        "StatusMessage",
        "RecordsIn",
        "RecordsOut",
        "Attributes",
    ),
    frozenset({"StartTime", "EndTime"}),
    {
        "StartTime": "t",
        "EndTime": "t",
        "DurationNs": "u64",
        "RecordsIn": "n64",
        "RecordsOut": "n64",
        "Attributes": "map",
    },
)
TABLES = {t.name: t for t in (TRACES, GAUGE, SUM, HISTOGRAM, EXP_HISTOGRAM, SUMMARY, PIPELINE_RUNS)}

_MAP = "Map(LowCardinality(String), String)"

_TRACES_SQL = f"""
CREATE TABLE IF NOT EXISTS {{db}}.otel_traces (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {_MAP} CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes {_MAP} CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes {_MAP}
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes {_MAP}
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = MergeTree()
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
{{ttl:toDate(Timestamp)}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1,
    non_replicated_deduplication_window = {DEDUP_WINDOW}
"""

_TRACE_ID_TS_SQL = f"""
CREATE TABLE IF NOT EXISTS {{db}}.otel_traces_trace_id_ts (
    TraceId String CODEC(ZSTD(1)),
    Start DateTime CODEC(Delta, ZSTD(1)),
    End DateTime CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = MergeTree()
PARTITION BY toDate(Start)
ORDER BY (TraceId, Start)
{{ttl:toDate(Start)}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1,
    non_replicated_deduplication_window = {DEDUP_WINDOW}
"""

_TRACE_ID_TS_MV_SQL = """
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.otel_traces_trace_id_ts_mv
TO {db}.otel_traces_trace_id_ts
AS SELECT
    TraceId,
    min(Timestamp) AS Start,
    max(Timestamp) AS End
FROM {db}.otel_traces
WHERE TraceId != ''
GROUP BY TraceId
"""

_METRIC_HEAD_SQL = f"""
    ResourceAttributes {_MAP} CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes {_MAP} CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName String CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes {_MAP} CODEC(ZSTD(1)),
    StartTimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),"""

_EXEMPLARS_SQL = f"""
    Exemplars Nested (
        FilteredAttributes {_MAP},
        TimeUnix DateTime64(9),
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),"""

_METRIC_TAIL_SQL = f"""
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = MergeTree()
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
{{ttl:toDateTime(TimeUnix)}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1,
    non_replicated_deduplication_window = {DEDUP_WINDOW}
"""

_GAUGE_SQL = (
    "CREATE TABLE IF NOT EXISTS {db}.otel_metrics_gauge ("
    + _METRIC_HEAD_SQL
    + """
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),"""
    + _EXEMPLARS_SQL
    + _METRIC_TAIL_SQL
)
_SUM_SQL = (
    "CREATE TABLE IF NOT EXISTS {db}.otel_metrics_sum ("
    + _METRIC_HEAD_SQL
    + """
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),"""
    + _EXEMPLARS_SQL
    + """
    AggregationTemporality Int32 CODEC(ZSTD(1)),
    IsMonotonic Boolean CODEC(Delta, ZSTD(1)),"""
    + _METRIC_TAIL_SQL
)
# Both histograms end the same way: exemplars, flags, min, max, temporality.
_HISTOGRAM_TAIL_SQL = (
    _EXEMPLARS_SQL
    + """
    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),"""
    + _METRIC_TAIL_SQL
)
_HISTOGRAM_SQL = (
    "CREATE TABLE IF NOT EXISTS {db}.otel_metrics_histogram ("
    + _METRIC_HEAD_SQL
    + """
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    BucketCounts Array(UInt64) CODEC(ZSTD(1)),
    ExplicitBounds Array(Float64) CODEC(ZSTD(1)),"""
    + _HISTOGRAM_TAIL_SQL
)

_EXP_HISTOGRAM_SQL = (
    "CREATE TABLE IF NOT EXISTS {db}.otel_metrics_exponential_histogram ("
    + _METRIC_HEAD_SQL
    + """
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    Scale Int32 CODEC(ZSTD(1)),
    ZeroCount UInt64 CODEC(ZSTD(1)),
    PositiveOffset Int32 CODEC(ZSTD(1)),
    PositiveBucketCounts Array(UInt64) CODEC(ZSTD(1)),
    NegativeOffset Int32 CODEC(ZSTD(1)),
    NegativeBucketCounts Array(UInt64) CODEC(ZSTD(1)),"""
    + _HISTOGRAM_TAIL_SQL
)
_SUMMARY_SQL = (
    "CREATE TABLE IF NOT EXISTS {db}.otel_metrics_summary ("
    + _METRIC_HEAD_SQL
    + """
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    ValueAtQuantiles Nested (
        Quantile Float64,
        Value Float64
    ) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),"""
    + _METRIC_TAIL_SQL
)

_PIPELINE_RUNS_SQL = f"""
CREATE TABLE IF NOT EXISTS {{db}}.pipeline_runs (
    RunId String CODEC(ZSTD(1)),
    Stage LowCardinality(String) CODEC(ZSTD(1)),
    Pipeline LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    StartTime DateTime64(9) CODEC(Delta, ZSTD(1)),
    EndTime DateTime64(9) CODEC(Delta, ZSTD(1)),
    DurationNs UInt64 CODEC(ZSTD(1)),
    Status LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    RecordsIn Nullable(Int64),
    RecordsOut Nullable(Int64),
    Attributes {_MAP} CODEC(ZSTD(1))
) ENGINE = ReplacingMergeTree(DurationNs)
ORDER BY (RunId, Stage)
{{ttl:toDateTime(StartTime)}}
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
"""

_ORDERED = (
    _TRACES_SQL,
    _TRACE_ID_TS_SQL,
    _TRACE_ID_TS_MV_SQL,
    _GAUGE_SQL,
    _SUM_SQL,
    _HISTOGRAM_SQL,
    _EXP_HISTOGRAM_SQL,
    _SUMMARY_SQL,
    _PIPELINE_RUNS_SQL,
)


def _quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def render_statements(templates: Sequence[str], database: str, ttl_days: int) -> list[str]:
    """`CREATE DATABASE` then each template with `{db}` and `{ttl:<column>}` filled in."""
    db = _quote_ident(database)
    out = [f"CREATE DATABASE IF NOT EXISTS {db}"]
    for template in templates:
        sql = template.replace("{db}", db)
        while "{ttl:" in sql:
            start = sql.index("{ttl:")
            end = sql.index("}", start)
            field = sql[start + 5 : end]
            ttl = f"TTL {field} + toIntervalDay({ttl_days})" if ttl_days > 0 else ""
            sql = sql[:start] + ttl + sql[end + 1 :]
        out.append(sql.strip())
    return out


def create_statements(database: str = "otel", ttl_days: int = 0) -> list[str]:
    """Every statement, in order, to create the database and tables (idempotent)."""
    return render_statements(_ORDERED, database, ttl_days)


@dataclass(frozen=True)
class Schema:
    """What a batch consumer writes: its tables and the statements that create them."""

    tables: Mapping[str, Table]
    create: Callable[[str, int], list[str]]


OTEL_SCHEMA = Schema(TABLES, create_statements)


def insert_prefix(database: str, table: Table) -> str:
    """`INSERT INTO db.table (cols)`: the part both backends share."""
    cols = ", ".join(_quote_ident(c) for c in table.columns)
    return f"INSERT INTO {_quote_ident(database)}.{_quote_ident(table.name)} ({cols})"


def dedup_settings(token: str) -> dict[str, str | int]:
    """Per-insert settings that make a repeated token a no-op, MV included."""
    return {
        "insert_deduplicate": 1,
        "insert_deduplication_token": token,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
    }
