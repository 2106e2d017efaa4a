"""A batch of OTLP metric requests -> the five `otel_metrics_*` tables as Arrow tables,
vectorised: no Python object per data point.

The spans' approach (`arrow_spans`): `ptars` parses the batch into Arrow, pyarrow renders
the exporter's columns, each request keeps its slice of every table. What comes out is
what `decode.decode_metric_columns` gives, column for column
(`tests/unit/test_otel_arrow_metrics.py` compares both through chdb). Requests whose rows
need the row decoder's rules are *flagged* and decoded by it: times past what
DateTime64(9) holds, an attribute key given twice, attribute values that are arrays,
maps or string-table indexes, exemplar ids that are neither empty nor 8/16 bytes. What
refuses a request on its own (unknown fields where the row decoder refuses them, a
metric without a name or data, no data points) is decided before, record by record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from ptars import HandlerPool

from consumers.otel.arrow_common import (
    Decoded,
    Outcome,
    attribute_maps,
    children,
    decode_batch,
    field,
    kept,
    late,
    levels,
    lists,
    lookup,
    mark,
    mark_odd_ids,
    ns,
    optional_hex,
    parse_batch,
    record_offsets,
    sizes,
)
from consumers.otel.columns import Pending, Rows, arrow_schema
from consumers.otel.ddl import EXP_HISTOGRAM, GAUGE, HISTOGRAM, SUM, SUMMARY, Table
from consumers.otel.decode import decode_metric_columns
from consumers.otel.screen import Kind, screen

_HANDLER = HandlerPool([ExportMetricsServiceRequest.DESCRIPTOR.file]).get_for_message(
    ExportMetricsServiceRequest.DESCRIPTOR
)
# The `Metric.data` field of each table, in the order the row decoder fills them.
KINDS: tuple[tuple[str, Table], ...] = (
    ("gauge", GAUGE),
    ("sum", SUM),
    ("histogram", HISTOGRAM),
    ("exponential_histogram", EXP_HISTOGRAM),
    ("summary", SUMMARY),
)


@dataclass
class _Points:
    """One metric type's data points in a batch, before the flagged requests are dropped."""

    table: Table
    data: pa.Array  # the `Metric.<kind>` structs, one per metric
    points: pa.Array
    metric: np.ndarray  # each point's metric
    record: np.ndarray  # each point's request
    maps: pa.Array  # each point's attributes
    exemplars: pa.Array | None = None
    exemplar_point: np.ndarray | None = None
    exemplar_maps: pa.Array | None = None


def _number(point: pa.Array) -> pa.Array:
    """`decode._number`: the int or the double as a double, 0 when neither is set."""
    as_int = pc.cast(field(point, "as_int"), pa.float64(), safe=False)
    return pc.fill_null(pc.coalesce(field(point, "as_double"), as_int), 0.0)


def _optional(point: pa.Array, name: str) -> pa.Array:
    """`decode._optional`: an optional double, 0 when absent."""
    return pc.fill_null(field(point, name), 0.0)


def _flat(values: pa.Array, item: pa.DataType) -> pa.Array:
    """A repeated scalar field as a list column of `item` (null and absent: empty)."""
    return lists(sizes(values), pc.cast(pc.list_flatten(values), item))


def _points(
    kind: str, table: Table, metrics: pa.Array, metric_record: np.ndarray, flags: np.ndarray
) -> _Points:
    """One kind's points; flags the requests whose points only the row decoder may decide."""
    data = field(metrics, kind)
    points, point_metric = children(field(data, "data_points"))
    record = metric_record[point_metric]
    mark(
        flags,
        record,
        pc.or_(late(field(points, "start_time_unix_nano")), late(field(points, "time_unix_nano"))),
    )
    out = _Points(
        table,
        data,
        points,
        point_metric,
        record,
        attribute_maps(field(points, "attributes"), record, flags),
    )
    if table is SUMMARY:
        return out
    exemplars, exemplar_point = children(field(points, "exemplars"))
    owner = record[exemplar_point]
    mark(flags, owner, late(field(exemplars, "time_unix_nano")))
    mark_odd_ids(flags, owner, field(exemplars, "span_id"), 8)
    mark_odd_ids(flags, owner, field(exemplars, "trace_id"), 16)
    out.exemplars, out.exemplar_point = exemplars, exemplar_point
    out.exemplar_maps = attribute_maps(field(exemplars, "filtered_attributes"), owner, flags)
    return out


def decode(records: Sequence[bytes]) -> Decoded:
    """The rows of `records` (each already parsed once by protobuf: well-formed, in
    canonical form, with data points), and the indexes of those left to Python."""
    n = len(records)
    flat = levels(parse_batch(_HANDLER, records), "resource_metrics", "scope_metrics", "metrics")
    resources, scopes, metrics = flat.resources, flat.scopes, flat.leaves
    metric_scope, metric_res, metric_record = flat.leaf_scope, flat.leaf_res, flat.leaf_record
    flags, res_maps = flat.flags, flat.res_maps
    scope = field(scopes, "scope")
    scope_maps = attribute_maps(field(scope, "attributes"), flat.res_record[flat.scope_res], flags)
    kinds = [_points(kind, table, metrics, metric_record, flags) for kind, table in KINDS]

    # Per metric, what its points repeat: resource, scope and metric columns.
    service = pc.fill_null(lookup(res_maps, "service.name"), "")
    res_of_metric = pa.array(metric_res, pa.int64())
    scope_of_metric = pa.array(metric_scope, pa.int64())
    head = {
        "ResourceAttributes": pc.take(res_maps, res_of_metric),
        "ResourceSchemaUrl": pc.take(field(resources, "schema_url"), res_of_metric),
        "ScopeName": pc.take(pc.fill_null(field(scope, "name"), ""), scope_of_metric),
        "ScopeVersion": pc.take(pc.fill_null(field(scope, "version"), ""), scope_of_metric),
        "ScopeAttributes": pc.take(scope_maps, scope_of_metric),
        "ScopeDroppedAttrCount": pc.take(
            pc.fill_null(field(scope, "dropped_attributes_count"), 0), scope_of_metric
        ),
        "ScopeSchemaUrl": pc.take(field(scopes, "schema_url"), scope_of_metric),
        "ServiceName": pc.take(service, res_of_metric),
        "MetricName": field(metrics, "name"),
        "MetricDescription": field(metrics, "description"),
        "MetricUnit": field(metrics, "unit"),
    }
    tables: dict[str, pa.Table] = {}
    bounds: dict[str, list[int]] = {}
    for points in kinds:
        keep = ~flags[points.record]
        tables[points.table.name] = _table(points, keep, head)
        bounds[points.table.name] = record_offsets(points.record[keep], n)
    return Decoded(tables, bounds, set(np.flatnonzero(flags).tolist()))


def _table(kind: _Points, keep: np.ndarray, head: Mapping[str, pa.Array]) -> pa.Table:
    """One table's rows: the points of the requests not flagged, in order."""
    table = kind.table
    p = kept(kind.points, keep)
    metric = pa.array(kind.metric[keep], pa.int64())
    cols: dict[str, pa.Array] = {name: pc.take(values, metric) for name, values in head.items()}
    cols["Attributes"] = kept(kind.maps, keep)
    cols["StartTimeUnix"] = ns(field(p, "start_time_unix_nano"))
    cols["TimeUnix"] = ns(field(p, "time_unix_nano"))
    cols["Flags"] = field(p, "flags")
    if kind.exemplars is not None:
        assert kind.exemplar_point is not None and kind.exemplar_maps is not None
        ex_keep = keep[kind.exemplar_point]
        ex = kept(kind.exemplars, ex_keep)
        count = sizes(field(p, "exemplars"))
        cols["Exemplars.FilteredAttributes"] = lists(count, kept(kind.exemplar_maps, ex_keep))
        cols["Exemplars.TimeUnix"] = lists(count, ns(field(ex, "time_unix_nano")))
        cols["Exemplars.Value"] = lists(count, _number(ex))
        cols["Exemplars.SpanId"] = lists(count, optional_hex(field(ex, "span_id"), 8))
        cols["Exemplars.TraceId"] = lists(count, optional_hex(field(ex, "trace_id"), 16))
    if table is GAUGE or table is SUM:
        cols["Value"] = _number(p)
    # Of the metric's data, only these two fields per point (taking the whole struct
    # would copy every point's nested lists once for each point).
    if table is not GAUGE and table is not SUMMARY:
        cols["AggregationTemporality"] = pc.take(
            field(kind.data, "aggregation_temporality"), metric
        )
    if table is SUM:
        cols["IsMonotonic"] = pc.take(field(kind.data, "is_monotonic"), metric)
    if table is HISTOGRAM or table is EXP_HISTOGRAM:
        cols["Count"] = field(p, "count")
        for name in ("Sum", "Min", "Max"):
            cols[name] = _optional(p, name.lower())
    if table is HISTOGRAM:
        cols["BucketCounts"] = _flat(field(p, "bucket_counts"), pa.uint64())
        cols["ExplicitBounds"] = _flat(field(p, "explicit_bounds"), pa.float64())
    elif table is EXP_HISTOGRAM:
        cols["Scale"] = field(p, "scale")
        cols["ZeroCount"] = field(p, "zero_count")
        for side in ("Positive", "Negative"):
            buckets = field(p, side.lower())
            cols[f"{side}Offset"] = pc.fill_null(field(buckets, "offset"), 0)
            cols[f"{side}BucketCounts"] = _flat(field(buckets, "bucket_counts"), pa.uint64())
    elif table is SUMMARY:
        cols["Count"] = field(p, "count")
        cols["Sum"] = field(p, "sum")
        quantiles, _ = children(field(p, "quantile_values"))
        count = sizes(field(p, "quantile_values"))
        cols["ValueAtQuantiles.Quantile"] = lists(count, field(quantiles, "quantile"))
        cols["ValueAtQuantiles.Value"] = lists(count, field(quantiles, "value"))
    schema = arrow_schema(table)
    return pa.Table.from_arrays(
        [pc.cast(cols[c], schema.field(c).type) for c in table.columns], schema=schema
    )


# ---- the otel consumer's decoder for the metrics topic ------------------------------------


def _plain_metrics(scope_metrics: Any, rows: dict[str, int]) -> bool:
    """Count a scope's data points per metric type (each type is its own table); False
    when a metric has no name, no data or unknown fields (the row decoder refuses the
    request for it)."""
    for metric in scope_metrics.metrics:
        kind = metric.WhichOneof("data")
        if kind is None or not metric.name or UnknownFieldSet(metric):
            return False
        rows[kind] = rows.get(kind, 0) + len(getattr(metric, kind).data_points)
    return True


def decode_metric_requests(raw: bytes | None) -> Mapping[str, Rows | Pending]:
    """A request checked alone (`screen`); its rows are decoded with the rest of its
    batch (`decode_metric_batch`)."""
    return screen(raw, METRICS)


def decode_metric_batch(records: list[bytes]) -> list[Outcome]:
    """Each request's tables (slices of the batch's Arrow tables), or, for one `decode`
    flags, what `decode_metric_columns` gives for it: its rows or its `DecodeError`."""
    return decode_batch(records, decode, decode_metric_columns)


METRICS = Kind(
    message=ExportMetricsServiceRequest,
    resources="resource_metrics",
    scopes="scope_metrics",
    check_scopes=True,
    leaves=_plain_metrics,
    row_decoder=decode_metric_columns,
    table=GAUGE.name,
    batch=decode_metric_batch,
)
