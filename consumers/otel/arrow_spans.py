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

import base64
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from ptars import HandlerPool

from consumers.otel.columns import ArrowRows, Pending, Rows, arrow_schema
from consumers.otel.ddl import PIPELINE_RUNS, TRACES
from consumers.otel.decode import (
    ATTR_PIPELINE,
    ATTR_RECORDS_IN,
    ATTR_RECORDS_OUT,
    ATTR_RUN_ID,
    ATTR_STAGE,
    INT64_MAX,
    SPAN_KINDS,
    STATUS_CODES,
    STOPPING,
    DecodeError,
    _go_float,
    _int_or_none,
    _parse,
    decode_trace_columns,
    decoder_failure,
)

log = logging.getLogger(__name__)

_HANDLER = HandlerPool([ExportTraceServiceRequest.DESCRIPTOR.file]).get_for_message(
    ExportTraceServiceRequest.DESCRIPTOR
)
_HANDLER_LOCK = threading.Lock()  # one batch at a time through the parser
_TRACES_SCHEMA = arrow_schema(TRACES)
_RUNS_SCHEMA = arrow_schema(PIPELINE_RUNS)
_MAP = pa.map_(pa.string(), pa.string())
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Value kinds the SQL-free rendering leaves to Python's rules for the whole request.
_NESTED = ("array_value", "kvlist_value", "string_value_strindex")


@dataclass
class Decoded:
    """The rows of the requests not flagged, each request's rows contiguous and in order:
    request `i` owns `traces[trace_offsets[i]:trace_offsets[i + 1]]` (likewise runs)."""

    traces: pa.Table
    runs: pa.Table
    trace_offsets: list[int]
    run_offsets: list[int]
    flagged: set[int]


def _field(array: pa.Array, name: str) -> pa.Array:
    return pc.struct_field(array, name)


def _children(lists: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The items of a list array and, for each, the index of the list it belongs to."""
    return pc.list_flatten(lists), pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)


def _sizes(lists: pa.Array) -> np.ndarray:
    sizes: np.ndarray = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    return sizes


def _offsets(sizes: np.ndarray) -> pa.Array:
    out = np.zeros(len(sizes) + 1, dtype=np.int32)
    np.cumsum(sizes, out=out[1:])
    return pa.array(out, pa.int32())


def _mark(flags: np.ndarray, owner: np.ndarray, bad: Any) -> None:
    """Flag the requests (`owner[i]`) of the items where `bad` holds."""
    mask = np.asarray(pc.fill_null(bad, False).to_numpy(zero_copy_only=False), dtype=bool)
    if mask.any():
        flags[owner[mask]] = True


def _hex(ids: pa.Array, width: int) -> pa.Array:
    """Lower-case hex of ids that are all `width` bytes long."""
    n = len(ids)
    if not n:
        return pa.array([], pa.string())
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32)[ids.offset : ids.offset + n + 1]
    raw = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    digits = np.empty(len(raw) * 2, dtype=np.uint8)
    digits[0::2] = _HEX[raw >> 4]
    digits[1::2] = _HEX[raw & 15]
    text = pa.py_buffer(digits.tobytes())
    starts = pa.py_buffer(np.arange(0, 2 * width * (n + 1), 2 * width, dtype=np.int32).tobytes())
    return pa.StringArray.from_buffers(n, starts, text)


def _optional_hex(ids: pa.Array, width: int) -> pa.Array:
    """`decode._hex` for ids that are empty or `width` bytes: '' for no or all-zero bytes."""
    lengths = pc.binary_length(ids)
    full = pc.equal(lengths, width)
    padded = pc.if_else(full, ids, pa.scalar(bytes(width), pa.binary()))
    text = _hex(padded, width)
    return pc.if_else(pc.equal(padded, pa.scalar(bytes(width), pa.binary())), "", text)


def _replace(text: pa.Array, present: pa.Array, values: pa.Array, render: Any) -> pa.Array:
    """`text` with each present value rendered in Python (`render`)."""
    mask = pc.fill_null(present, False)
    if not pc.any(mask).as_py():
        return text
    rendered = pa.array([render(v) for v in pc.filter(values, mask).to_pylist()], pa.string())
    return pc.replace_with_mask(text, mask, rendered)


def _render(values: pa.Array) -> pa.Array:
    """Each AnyValue as text, as `decode.value_to_str` gives it (simple kinds)."""
    n = len(values)
    text = pc.coalesce(
        _field(values, "string_value"),
        pc.cast(_field(values, "int_value"), pa.string()),
        pc.if_else(_field(values, "bool_value"), "true", "false"),
        pa.nulls(n, pa.string()),
    )
    doubles = _field(values, "double_value")
    text = _replace(text, pc.is_valid(doubles), doubles, _go_float)
    raw = _field(values, "bytes_value")
    text = _replace(text, pc.is_valid(raw), raw, lambda b: base64.b64encode(b).decode())
    return pc.fill_null(text, "")


def _attribute_maps(lists: pa.Array, owner: np.ndarray, flags: np.ndarray) -> pa.Array:
    """A Map column from attribute lists; flags the requests (`owner` per list) whose
    lists the map could not hold as a dict does (a key twice, nested values)."""
    kvs, parent = _children(lists)
    keys = _field(kvs, "key")
    values = _field(kvs, "value")
    if len(kvs):
        for kind in _NESTED:
            _mark(flags, owner[parent], pc.is_valid(_field(values, kind)))
        codes = pc.dictionary_encode(keys).indices.to_numpy(zero_copy_only=False)
        pairs = parent.astype(np.int64) * (int(codes.max()) + 1) + codes
        ordered = np.sort(pairs)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if len(repeated):
            flags[owner[repeated // (int(codes.max()) + 1)]] = True
    return pa.MapArray.from_arrays(_offsets(_sizes(lists)), keys, _render(values), type=_MAP)


def _lookup(maps: pa.Array, key: str) -> pa.Array:
    """Each map's value for `key`, null where it has none (`pc.map_lookup`, 20x faster:
    the maps kept have each key once)."""
    maps = maps.combine_chunks() if isinstance(maps, pa.ChunkedArray) else maps
    offsets = maps.offsets.to_numpy()
    first, last = int(offsets[0]), int(offsets[-1])
    keys = maps.keys.slice(first, last - first)
    hits = np.flatnonzero(pc.equal(keys, key).to_numpy(zero_copy_only=False))
    owner = np.repeat(np.arange(len(maps)), np.diff(offsets))
    at = np.full(len(maps), -1, dtype=np.int64)
    at[owner[hits]] = hits + first
    return pc.take(maps.items, pa.array(at, pa.int64(), mask=at < 0))


def _names(codes: pa.Array, names: tuple[str, ...]) -> pa.Array:
    """An enum's name, '' for a value outside it (`decode._enum_name`)."""
    inside = pc.and_(pc.greater_equal(codes, 0), pc.less(codes, len(names)))
    index = pc.if_else(inside, codes, len(names))
    return pc.take(pa.array([*names, ""], pa.string()), index)


def _late(times: pa.Array) -> pa.Array:
    return pc.greater(times, pa.scalar(INT64_MAX, pa.uint64()))


def _ns(times: pa.Array) -> pa.Array:
    return pc.cast(pc.cast(times, pa.int64()), pa.timestamp("ns"))


def decode(records: Sequence[bytes]) -> Decoded:
    """The rows of `records` (each already parsed once by protobuf: well-formed, in
    canonical form, with spans), and the indexes of those left to Python."""
    n = len(records)
    with _HANDLER_LOCK:
        batch = _HANDLER.list_to_record_batch(list(records))
    resources, res_record = _children(batch.column("resource_spans"))
    scopes_of = _field(resources, "scope_spans")
    scopes, scope_res = _children(scopes_of)
    spans, span_scope = _children(_field(scopes, "spans"))
    span_res = scope_res[span_scope]
    span_record = res_record[span_res]
    flags = np.zeros(n, dtype=bool)

    # What only Python's rules decide: flag the request.
    trace_id, span_id = _field(spans, "trace_id"), _field(spans, "span_id")
    zero16, zero8 = pa.scalar(bytes(16), pa.binary()), pa.scalar(bytes(8), pa.binary())
    _mark(flags, span_record, pc.not_equal(pc.binary_length(trace_id), 16))
    _mark(flags, span_record, pc.equal(trace_id, zero16))
    _mark(flags, span_record, pc.not_equal(pc.binary_length(span_id), 8))
    _mark(flags, span_record, pc.equal(span_id, zero8))
    parent = _field(spans, "parent_span_id")
    parent_len = pc.binary_length(parent)
    _mark(flags, span_record, pc.and_(pc.not_equal(parent_len, 0), pc.not_equal(parent_len, 8)))
    start = _field(spans, "start_time_unix_nano")
    end = _field(spans, "end_time_unix_nano")
    _mark(flags, span_record, pc.or_(_late(start), _late(end)))
    events, event_span = _children(_field(spans, "events"))
    _mark(flags, span_record[event_span], _late(_field(events, "time_unix_nano")))
    links, link_span = _children(_field(spans, "links"))
    for name, width in (("trace_id", 16), ("span_id", 8)):
        size = pc.binary_length(_field(links, name))
        _mark(
            flags,
            span_record[link_span],
            pc.and_(pc.not_equal(size, 0), pc.not_equal(size, width)),
        )

    res_maps = _attribute_maps(
        _field(_field(resources, "resource"), "attributes"), res_record, flags
    )
    span_maps = _attribute_maps(_field(spans, "attributes"), span_record, flags)
    event_maps = _attribute_maps(_field(events, "attributes"), span_record[event_span], flags)
    link_maps = _attribute_maps(_field(links, "attributes"), span_record[link_span], flags)

    # The requests not flagged: their spans (events, links) in order, and nothing else
    # from here on (ids of other lengths would not hex).
    keep = ~flags[span_record]
    kept = pa.array(keep, pa.bool_())
    spans, span_maps = spans.filter(kept), span_maps.filter(kept)
    kept_events = pa.array(keep[event_span], pa.bool_())
    kept_links = pa.array(keep[link_span], pa.bool_())
    events, event_maps = events.filter(kept_events), event_maps.filter(kept_events)
    links, link_maps = links.filter(kept_links), link_maps.filter(kept_links)
    span_scope, span_res = span_scope[keep], span_res[keep]
    start = _field(spans, "start_time_unix_nano")
    end = _field(spans, "end_time_unix_nano")
    scope = _field(scopes, "scope")
    status = _field(spans, "status")
    res_of_span = pa.array(span_res, pa.int64())
    service = pc.fill_null(_lookup(res_maps, "service.name"), "")
    scope_of_span = pa.array(span_scope, pa.int64())
    columns = [
        _ns(start),
        _hex(_field(spans, "trace_id"), 16),
        _hex(_field(spans, "span_id"), 8),
        _optional_hex(_field(spans, "parent_span_id"), 8),
        _field(spans, "trace_state"),
        _field(spans, "name"),
        _names(_field(spans, "kind"), SPAN_KINDS),
        pc.take(service, res_of_span),
        pc.take(res_maps, res_of_span),
        pc.take(pc.fill_null(_field(scope, "name"), ""), scope_of_span),
        pc.take(pc.fill_null(_field(scope, "version"), ""), scope_of_span),
        span_maps,
        pc.if_else(pc.greater(end, start), pc.subtract(end, start), pa.scalar(0, pa.uint64())),
        _names(pc.fill_null(_field(status, "code"), 0), STATUS_CODES),
        pc.fill_null(_field(status, "message"), ""),
    ]
    ev = _offsets(_sizes(_field(spans, "events")))
    ln = _offsets(_sizes(_field(spans, "links")))
    for items, offsets in (
        (_ns(_field(events, "time_unix_nano")), ev),
        (_field(events, "name"), ev),
        (event_maps, ev),
        (_optional_hex(_field(links, "trace_id"), 16), ln),
        (_optional_hex(_field(links, "span_id"), 8), ln),
        (_field(links, "trace_state"), ln),
        (link_maps, ln),
    ):
        columns.append(pa.ListArray.from_arrays(offsets, items))
    traces = pa.Table.from_arrays(columns, schema=_TRACES_SCHEMA)
    kept_records = span_record[keep]
    runs = _runs(traces, res_maps, span_res, kept_records)
    return Decoded(
        traces,
        runs.drop_columns(["_record"]),
        _record_offsets(kept_records, n),
        _record_offsets(runs["_record"].to_numpy(), n),
        set(np.flatnonzero(flags).tolist()),
    )


def _record_offsets(owner: np.ndarray, n: int) -> list[int]:
    counts = np.bincount(owner, minlength=n) if len(owner) else np.zeros(n, dtype=np.int64)
    return [0, *np.cumsum(counts).tolist()]


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

    def attr(key: str) -> pa.Array:  # the span's attribute, else the resource's
        return pc.coalesce(_lookup(span_maps, key), pc.take(_lookup(res_maps, key), res_of_span))

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
    pick = traces.take(pos)
    start = pick["Timestamp"]
    took = pick["Duration"]
    pipeline = pc.take(pc.fill_null(attr(ATTR_PIPELINE), ""), pos)
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
        "RecordsIn": _counts(pc.take(attr(ATTR_RECORDS_IN), pos)),
        "RecordsOut": _counts(pc.take(attr(ATTR_RECORDS_OUT), pos)),
        "Attributes": pick["SpanAttributes"],
    }
    out = pa.Table.from_arrays([columns[c] for c in PIPELINE_RUNS.columns], schema=_RUNS_SCHEMA)
    return out.append_column("_record", pa.array(record[winners], pa.int64()))


# ---- the otel consumer's decoder for the spans topic --------------------------------------


def decode_trace_requests(raw: bytes | None) -> Mapping[str, Rows | Pending]:
    """What `decode.decode_trace_columns` checks of a request alone (it parses, it has
    spans); its rows are decoded with the rest of its batch (`decode_trace_batch`).

    Unknown fields where the row decoder refuses them (a ResourceSpans, a Span): that
    decoder decides at once, so both paths refuse the same requests for the same reason.

    A request not in canonical form (its fields encoded again are not its bytes: a field
    given twice, fields out of order, defaults written out) is decoded in Python at once:
    protobuf merges such fields, a columnar parser need not.
    """
    request: ExportTraceServiceRequest = _parse(
        ExportTraceServiceRequest, raw, "ExportTraceServiceRequest"
    )
    assert raw is not None  # `_parse` refuses an empty record
    spans = 0
    for resource_spans in request.resource_spans:
        if UnknownFieldSet(resource_spans):
            return decode_trace_columns(raw)
        for scope_spans in resource_spans.scope_spans:
            spans += len(scope_spans.spans)
            if any(UnknownFieldSet(span) for span in scope_spans.spans):
                return decode_trace_columns(raw)
    if not spans:
        raise DecodeError("empty", "ExportTraceServiceRequest carries no spans")
    if request.SerializeToString() != raw:
        return decode_trace_columns(raw)
    return {TRACES.name: Pending(raw, spans, decode_trace_batch)}


def decode_trace_batch(records: list[bytes]) -> list[Mapping[str, Rows] | DecodeError]:
    """Each request's tables (slices of the batch's Arrow tables), or, for one `decode`
    flags, what `decode_trace_columns` gives for it: its rows or its `DecodeError`."""
    try:
        decoded: Decoded | None = decode(records)
    except STOPPING:
        raise
    except BaseException:
        # The columnar parser refusing what protobuf took, a bug here, or a panic in the
        # Rust parser (a BaseException): the row decoder stores the batch as it always did
        # (slower), rather than the partition replaying it forever.
        log.exception("batch decode failed; decoding request by request")
        decoded = None
    out: list[Mapping[str, Rows] | DecodeError] = []
    for i, raw in enumerate(records):
        if decoded is None or i in decoded.flagged:
            try:
                out.append(decode_trace_columns(raw))
            except DecodeError as exc:
                out.append(exc)
            except STOPPING:
                raise
            except BaseException as exc:
                log.exception("row decoder failed on a request of the batch")
                out.append(decoder_failure(exc))
            continue
        t, r = decoded.trace_offsets, decoded.run_offsets
        out.append(
            {
                TRACES.name: ArrowRows(TRACES, decoded.traces, t[i], t[i + 1] - t[i]),
                PIPELINE_RUNS.name: ArrowRows(PIPELINE_RUNS, decoded.runs, r[i], r[i + 1] - r[i]),
            }
        )
    return out
