"""A batch of OTLP trace requests -> `otel_traces` and `pipeline_runs` as Arrow tables,
vectorised: no Python object per span.

`ptars` parses the requests' bytes straight into Arrow (Rust, ~2 µs a span); pyarrow's
compute functions flatten resources, scopes and spans and render the exporter's
columns. What comes out is what `decode.decode_trace_columns` gives, column for column
(`tests/unit/test_otel_arrow_spans.py` compares both through chdb). The requests whose
rows would need Python's rules are returned as *flagged* instead, and the caller decodes
them with `decode_trace_columns` (stored, or refused with the reason they always had):
ids of the wrong length or all zero, times past what DateTime64(9) holds, an attribute
key given twice, attribute values that are arrays, maps or string-table indexes, and
link or parent ids that are not 8/16 bytes or empty.

Doubles, bytes and record counts that are not plain integers are rendered in Python,
value by value: rare, and each rendered exactly as the row decoder does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from ptars import HandlerPool

from consumers.otel.arrow_common import (
    Decoded,
    Outcome,
    attribute_maps,
    children,
    decode_batch,
    field,
    hex_ids,
    kept,
    late,
    levels,
    lookup,
    mark,
    mark_odd_ids,
    ns,
    offsets,
    optional_hex,
    parse_batch,
    record_offsets,
    sizes,
)
from consumers.otel.columns import Pending, Rows, arrow_schema
from consumers.otel.ddl import PIPELINE_RUNS, TRACES
from consumers.otel.decode import (
    ATTR_PIPELINE,
    ATTR_RECORDS_IN,
    ATTR_RECORDS_OUT,
    ATTR_RUN_ID,
    ATTR_STAGE,
    SPAN_KINDS,
    STATUS_CODES,
    _int_or_none,
    decode_trace_columns,
)
from consumers.otel.screen import Kind, screen

_HANDLER = HandlerPool([ExportTraceServiceRequest.DESCRIPTOR.file]).get_for_message(
    ExportTraceServiceRequest.DESCRIPTOR
)
_TRACES_SCHEMA = arrow_schema(TRACES)
# The `otel_traces` columns a `pipeline_runs` row takes from its span.
_RUN_COLUMNS = (
    "Timestamp",
    "Duration",
    "ServiceName",
    "TraceId",
    "SpanId",
    "SpanName",
    "StatusCode",
    "StatusMessage",
    "SpanAttributes",
)
_RUNS_SCHEMA = arrow_schema(PIPELINE_RUNS)


def _names(codes: pa.Array, names: tuple[str, ...]) -> pa.Array:
    """An enum's name, '' for a value outside it (`decode._enum_name`)."""
    inside = pc.and_(pc.greater_equal(codes, 0), pc.less(codes, len(names)))
    index = pc.if_else(inside, codes, len(names))
    return pc.take(pa.array([*names, ""], pa.string()), index)


def decode(records: Sequence[bytes]) -> Decoded:
    """The rows of `records` (each already parsed once by protobuf: well-formed, in
    canonical form, with spans), and the indexes of those left to Python."""
    n = len(records)
    flat = levels(parse_batch(_HANDLER, records), "resource_spans", "scope_spans", "spans")
    scopes, spans, span_scope, span_res = flat.scopes, flat.leaves, flat.leaf_scope, flat.leaf_res
    span_record, flags, res_maps = flat.leaf_record, flat.flags, flat.res_maps

    # What only Python's rules decide: flag the request.
    trace_id, span_id = field(spans, "trace_id"), field(spans, "span_id")
    zero16, zero8 = pa.scalar(bytes(16), pa.binary()), pa.scalar(bytes(8), pa.binary())
    mark(flags, span_record, pc.not_equal(pc.binary_length(trace_id), 16))
    mark(flags, span_record, pc.equal(trace_id, zero16))
    mark(flags, span_record, pc.not_equal(pc.binary_length(span_id), 8))
    mark(flags, span_record, pc.equal(span_id, zero8))
    parent = field(spans, "parent_span_id")
    mark_odd_ids(flags, span_record, parent, 8)
    start = field(spans, "start_time_unix_nano")
    end = field(spans, "end_time_unix_nano")
    mark(flags, span_record, pc.or_(late(start), late(end)))
    events, event_span = children(field(spans, "events"))
    mark(flags, span_record[event_span], late(field(events, "time_unix_nano")))
    links, link_span = children(field(spans, "links"))
    for name, width in (("trace_id", 16), ("span_id", 8)):
        mark_odd_ids(flags, span_record[link_span], field(links, name), width)

    span_maps = attribute_maps(field(spans, "attributes"), span_record, flags)
    event_maps = attribute_maps(field(events, "attributes"), span_record[event_span], flags)
    link_maps = attribute_maps(field(links, "attributes"), span_record[link_span], flags)

    # The requests not flagged: their spans (events, links) in order, and nothing else
    # from here on (ids of other lengths would not hex).
    keep = ~flags[span_record]
    spans, span_maps = kept(spans, keep), kept(span_maps, keep)
    events, event_maps = kept(events, keep[event_span]), kept(event_maps, keep[event_span])
    links, link_maps = kept(links, keep[link_span]), kept(link_maps, keep[link_span])
    span_scope, span_res = span_scope[keep], span_res[keep]
    start = field(spans, "start_time_unix_nano")
    end = field(spans, "end_time_unix_nano")
    scope = field(scopes, "scope")
    status = field(spans, "status")
    res_of_span = pa.array(span_res, pa.int64())
    service = pc.fill_null(lookup(res_maps, "service.name"), "")
    scope_of_span = pa.array(span_scope, pa.int64())
    columns = [
        ns(start),
        hex_ids(field(spans, "trace_id"), 16),
        hex_ids(field(spans, "span_id"), 8),
        optional_hex(field(spans, "parent_span_id"), 8),
        field(spans, "trace_state"),
        field(spans, "name"),
        _names(field(spans, "kind"), SPAN_KINDS),
        pc.take(service, res_of_span),
        pc.take(res_maps, res_of_span),
        pc.take(pc.fill_null(field(scope, "name"), ""), scope_of_span),
        pc.take(pc.fill_null(field(scope, "version"), ""), scope_of_span),
        span_maps,
        pc.if_else(pc.greater(end, start), pc.subtract(end, start), pa.scalar(0, pa.uint64())),
        _names(pc.fill_null(field(status, "code"), 0), STATUS_CODES),
        pc.fill_null(field(status, "message"), ""),
    ]
    ev = offsets(sizes(field(spans, "events")))
    ln = offsets(sizes(field(spans, "links")))
    for items, bounds in (
        (ns(field(events, "time_unix_nano")), ev),
        (field(events, "name"), ev),
        (event_maps, ev),
        (optional_hex(field(links, "trace_id"), 16), ln),
        (optional_hex(field(links, "span_id"), 8), ln),
        (field(links, "trace_state"), ln),
        (link_maps, ln),
    ):
        columns.append(pa.ListArray.from_arrays(bounds, items))
    traces = pa.Table.from_arrays(columns, schema=_TRACES_SCHEMA)
    kept_records = span_record[keep]
    runs = _runs(traces, res_maps, span_res, kept_records)
    return Decoded(
        {TRACES.name: traces, PIPELINE_RUNS.name: runs.drop_columns(["_record"])},
        {
            TRACES.name: record_offsets(kept_records, n),
            PIPELINE_RUNS.name: record_offsets(runs["_record"].to_numpy(), n),
        },
        set(np.flatnonzero(flags).tolist()),
    )


def _counts(text: pa.Array) -> pa.Array:
    """`decode._int_or_none` over a column: plain integers here, anything else in Python."""
    plain = pc.fill_null(pc.match_substring_regex(text, r"^-?[0-9]{1,18}$"), False)
    out = pc.if_else(plain, pc.cast(pc.if_else(plain, text, "0"), pa.int64()), None)
    other = pc.and_(pc.invert(plain), pc.not_equal(pc.fill_null(text, ""), ""))
    if pc.any(other).as_py():
        mask = pc.fill_null(other, False)
        parsed = [_int_or_none(t) for t in pc.filter(text, mask).to_pylist()]
        out = pc.replace_with_mask(out, mask, pa.array(parsed, pa.int64()))
    return out


def _runs(
    traces: pa.Table, res_maps: pa.Array, span_res: np.ndarray, record: np.ndarray
) -> pa.Table:
    """`pipeline_runs` rows: per request, the longest span of each (run, stage) that names
    a run, the first one on a tie (`decode._RunRows`)."""
    span_maps = traces["SpanAttributes"].combine_chunks()
    res_of_span = pa.array(span_res, pa.int64())

    def attr(key: str, maps: pa.Array = span_maps, res: pa.Array = res_of_span) -> pa.Array:
        """The span's attribute, else its resource's (`maps`: the spans' attribute maps,
        `res`: each one's resource)."""
        return pc.coalesce(lookup(maps, key), pc.take(lookup(res_maps, key), res))

    run_id = pc.fill_null(attr(ATTR_RUN_ID), "")
    stage = pc.fill_null(attr(ATTR_STAGE), "")
    named = np.flatnonzero(pc.not_equal(run_id, "").to_numpy(zero_copy_only=False))
    if not len(named):
        return _RUNS_SCHEMA.empty_table().append_column("_record", pa.array([], pa.int64()))
    # Per (request, run, stage): the longest span, the first on a tie; rows in span order.
    runs = pc.dictionary_encode(run_id).indices.to_numpy(zero_copy_only=False)[named]
    stages = pc.dictionary_encode(stage).indices.to_numpy(zero_copy_only=False)[named]
    took = traces["Duration"].to_numpy()[named]
    owner = record[named]
    # lexsort: the last key first; `took` descending as its bitwise complement (uint64).
    order = np.lexsort((named, ~took, stages, runs, owner))
    key = np.stack([owner[order], runs[order], stages[order]])
    first = np.ones(len(order), dtype=bool)
    first[1:] = (key[:, 1:] != key[:, :-1]).any(axis=0)
    winners = np.sort(named[order[first]])
    pos = pa.array(winners, pa.int64())
    pick = traces.select(_RUN_COLUMNS).take(pos)  # not the nested and map columns it leaves
    start = pick["Timestamp"]
    took = pick["Duration"]

    def picked(key: str) -> pa.Array:  # `attr` of the winners alone: a map lookup a row
        return attr(key, pick["SpanAttributes"], pa.array(span_res[winners], pa.int64()))

    pipeline = pc.fill_null(picked(ATTR_PIPELINE), "")
    columns = {
        "RunId": pc.take(run_id, pos),
        "Stage": pc.take(stage, pos),
        "Pipeline": pipeline,
        "ServiceName": pick["ServiceName"],
        "TraceId": pick["TraceId"],
        "SpanId": pick["SpanId"],
        "SpanName": pick["SpanName"],
        "StartTime": start,
        "EndTime": pc.cast(
            pc.add(pc.cast(start, pa.int64()), pc.cast(took, pa.int64())), pa.timestamp("ns")
        ),
        "DurationNs": took,
        "Status": pick["StatusCode"],
        "StatusMessage": pick["StatusMessage"],
        "RecordsIn": _counts(picked(ATTR_RECORDS_IN)),
        "RecordsOut": _counts(picked(ATTR_RECORDS_OUT)),
        "Attributes": pick["SpanAttributes"],
    }
    out = pa.Table.from_arrays([columns[c] for c in PIPELINE_RUNS.columns], schema=_RUNS_SCHEMA)
    return out.append_column("_record", pa.array(record[winners], pa.int64()))


# ---- the otel consumer's decoder for the spans topic --------------------------------------


def _plain_spans(scope_spans: Any, rows: dict[str, int]) -> bool:
    """Count a scope's spans (`pipeline_runs` takes fewer); False when one has unknown
    fields (the row decoder refuses the request)."""
    spans = scope_spans.spans
    if any(map(UnknownFieldSet, spans)):
        return False
    rows[TRACES.name] = rows.get(TRACES.name, 0) + len(spans)
    return True


def decode_trace_requests(raw: bytes | None) -> Mapping[str, Rows | Pending]:
    """A request checked alone (`screen`); its rows are decoded with the rest of its
    batch (`decode_trace_batch`)."""
    return screen(raw, SPANS)


def decode_trace_batch(records: list[bytes]) -> list[Outcome]:
    """Each request's tables (slices of the batch's Arrow tables), or, for one `decode`
    flags, what `decode_trace_columns` gives for it: its rows or its `DecodeError`."""
    return decode_batch(records, decode, decode_trace_columns)


SPANS = Kind(
    message=ExportTraceServiceRequest,
    resources="resource_spans",
    scopes="scope_spans",
    check_scopes=False,
    leaves=_plain_spans,
    row_decoder=decode_trace_columns,
    table=TRACES.name,
    batch=decode_trace_batch,
    empty="ExportTraceServiceRequest carries no spans",
)
