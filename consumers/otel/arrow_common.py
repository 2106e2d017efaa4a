"""What the batch decoders into Arrow (`arrow_spans`, `arrow_metrics`) share: walking the
nested lists `ptars` gives, flagging the requests only the row decoder may decide,
rendering attribute maps and ids as the row decoder does, and the batch loop that falls
back to the row decoder record by record.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from consumers.otel.columns import ArrowRows, Rows
from consumers.otel.ddl import TABLES
from consumers.otel.decode import INT64_MAX, STOPPING, DecodeError, _go_float, decoder_failure

log = logging.getLogger(__name__)

PARSER_LOCK = threading.Lock()  # one batch at a time through the Rust parsers
MAP = pa.map_(pa.string(), pa.string())
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Value kinds the SQL-free rendering leaves to Python's rules for the whole request.
_NESTED = ("array_value", "kvlist_value", "string_value_strindex")


def field(array: pa.Array, name: str) -> pa.Array:
    return pc.struct_field(array, name)


def children(lists: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The items of a list array and, for each, the index of the list it belongs to."""
    return pc.list_flatten(lists), pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)


def sizes(lists: pa.Array) -> np.ndarray:
    out: np.ndarray = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    return out


def offsets(counts: np.ndarray) -> pa.Array:
    out = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=out[1:])
    return pa.array(out, pa.int32())


def lists(counts: np.ndarray, items: pa.Array) -> pa.Array:
    """A list column: `counts[i]` of `items` in row `i`."""
    return pa.ListArray.from_arrays(offsets(counts), items)


def kept(items: pa.Array, keep: np.ndarray) -> pa.Array:
    """`items` where `keep` holds: the array itself when it holds everywhere (a batch
    with nothing flagged; a filter would copy every nested list)."""
    return items if keep.all() else items.filter(pa.array(keep, pa.bool_()))


def mark(flags: np.ndarray, owner: np.ndarray, bad: Any) -> None:
    """Flag the requests (`owner[i]`) of the items where `bad` holds."""
    mask = np.asarray(pc.fill_null(bad, False).to_numpy(zero_copy_only=False), dtype=bool)
    if mask.any():
        flags[owner[mask]] = True


def mark_odd_ids(flags: np.ndarray, owner: np.ndarray, ids: pa.Array, width: int) -> None:
    """Flag ids that are neither empty nor `width` bytes (`optional_hex` takes no others)."""
    size = pc.binary_length(ids)
    mark(flags, owner, pc.and_(pc.not_equal(size, 0), pc.not_equal(size, width)))


def hex_ids(ids: pa.Array, width: int) -> pa.Array:
    """Lower-case hex of ids that are all `width` bytes long."""
    n = len(ids)
    if not n:
        return pa.array([], pa.string())
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    starts = np.frombuffer(ids.buffers()[1], dtype=np.int32)[ids.offset : ids.offset + n + 1]
    raw = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[starts[0] : starts[-1]]
    digits = np.empty(len(raw) * 2, dtype=np.uint8)
    digits[0::2] = _HEX[raw >> 4]
    digits[1::2] = _HEX[raw & 15]
    text = pa.py_buffer(digits.tobytes())
    bounds = pa.py_buffer(np.arange(0, 2 * width * (n + 1), 2 * width, dtype=np.int32).tobytes())
    return pa.StringArray.from_buffers(n, bounds, text)


def optional_hex(ids: pa.Array, width: int) -> pa.Array:
    """`decode._hex` for ids that are empty or `width` bytes: '' for no or all-zero bytes."""
    full = pc.equal(pc.binary_length(ids), width)
    zero = pa.scalar(bytes(width), pa.binary())
    padded = pc.if_else(full, ids, zero)
    return pc.if_else(pc.equal(padded, zero), "", hex_ids(padded, width))


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
        field(values, "string_value"),
        pc.cast(field(values, "int_value"), pa.string()),
        pc.if_else(field(values, "bool_value"), "true", "false"),
        pa.nulls(n, pa.string()),
    )
    doubles = field(values, "double_value")
    text = _replace(text, pc.is_valid(doubles), doubles, _go_float)
    raw = field(values, "bytes_value")
    text = _replace(text, pc.is_valid(raw), raw, lambda b: base64.b64encode(b).decode())
    return pc.fill_null(text, "")


def attribute_maps(kv_lists: pa.Array, owner: np.ndarray, flags: np.ndarray) -> pa.Array:
    """A Map column from attribute lists; flags the requests (`owner` per list) whose
    lists the map could not hold as a dict does (a key twice, nested values)."""
    kvs, parent = children(kv_lists)
    keys = field(kvs, "key")
    values = field(kvs, "value")
    if len(kvs):
        for kind in _NESTED:
            mark(flags, owner[parent], pc.is_valid(field(values, kind)))
        codes = pc.dictionary_encode(keys).indices.to_numpy(zero_copy_only=False)
        width = int(codes.max()) + 1
        pairs = parent.astype(np.int64) * width + codes
        ordered = np.sort(pairs)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if len(repeated):
            flags[owner[repeated // width]] = True
    return pa.MapArray.from_arrays(offsets(sizes(kv_lists)), keys, _render(values), type=MAP)


def lookup(maps: pa.Array, key: str) -> pa.Array:
    """Each map's value for `key`, null where it has none (`pc.map_lookup`, 20x faster:
    the maps kept have each key once)."""
    maps = maps.combine_chunks() if isinstance(maps, pa.ChunkedArray) else maps
    bounds = maps.offsets.to_numpy()
    first, last = int(bounds[0]), int(bounds[-1])
    keys = maps.keys.slice(first, last - first)
    hits = np.flatnonzero(pc.equal(keys, key).to_numpy(zero_copy_only=False))
    owner = np.repeat(np.arange(len(maps)), np.diff(bounds))
    at = np.full(len(maps), -1, dtype=np.int64)
    at[owner[hits]] = hits + first
    return pc.take(maps.items, pa.array(at, pa.int64(), mask=at < 0))


def late(times: pa.Array) -> pa.Array:
    """Times past what DateTime64(9) holds (the row decoder refuses them)."""
    return pc.greater(times, pa.scalar(INT64_MAX, pa.uint64()))


def ns(times: pa.Array) -> pa.Array:
    return pc.cast(pc.cast(times, pa.int64()), pa.timestamp("ns"))


@dataclass
class Levels:
    """A batch of requests flattened level by level (resource -> scope -> leaf: span or
    metric), each item with the index of its owner, and the requests' flags so far."""

    resources: pa.Array
    res_record: np.ndarray  # each resource's request
    scopes: pa.Array
    scope_res: np.ndarray  # each scope's resource
    leaves: pa.Array
    leaf_scope: np.ndarray
    leaf_res: np.ndarray
    leaf_record: np.ndarray
    res_maps: pa.Array  # each resource's attributes
    flags: np.ndarray  # per request: left to the row decoder


def levels(batch: pa.RecordBatch, resources: str, scopes: str, leaves: str) -> Levels:
    """Flatten a parsed batch's `resources` -> `scopes` -> `leaves` (field names)."""
    flags = np.zeros(batch.num_rows, dtype=bool)
    res, res_record = children(batch.column(resources))
    scope, scope_res = children(field(res, scopes))
    leaf, leaf_scope = children(field(scope, leaves))
    leaf_res = scope_res[leaf_scope]
    res_maps = attribute_maps(field(field(res, "resource"), "attributes"), res_record, flags)
    return Levels(
        res,
        res_record,
        scope,
        scope_res,
        leaf,
        leaf_scope,
        leaf_res,
        res_record[leaf_res],
        res_maps,
        flags,
    )


def record_offsets(owner: np.ndarray, n: int) -> list[int]:
    """Where each of `n` requests' rows start, given each row's request (in order)."""
    counts = np.bincount(owner, minlength=n) if len(owner) else np.zeros(n, dtype=np.int64)
    return [0, *np.cumsum(counts).tolist()]


Tables = Mapping[str, Rows]
Outcome = Tables | DecodeError


@dataclass
class Decoded:
    """A batch's rows per table, of the requests not `flagged` (left to the row
    decoder): request `i` owns rows `offsets[name][i]` up to `offsets[name][i + 1]`."""

    tables: dict[str, pa.Table]
    offsets: dict[str, list[int]]
    flagged: set[int]

    def rows_of(self, i: int) -> Tables:
        """Request `i`'s rows of every table: slices of the batch's tables."""
        return {
            name: ArrowRows(TABLES[name], data, self.offsets[name][i], self.count(name, i))
            for name, data in self.tables.items()
        }

    def count(self, name: str, i: int) -> int:
        return self.offsets[name][i + 1] - self.offsets[name][i]


def decode_batch(
    records: list[bytes],
    columnar: Callable[[list[bytes]], Decoded],
    row_decoder: Callable[[bytes | None], Tables],
) -> list[Outcome]:
    """Each request's tables from `columnar` (slices of the batch's Arrow tables), or,
    for one it flags, what `row_decoder` gives it: its rows or its `DecodeError`."""
    decoded: Decoded | None
    try:
        decoded = columnar(records)
    except STOPPING:
        raise
    except BaseException:
        # The columnar parser refusing what protobuf took, a bug here, or a panic in the
        # Rust parser (a BaseException): the row decoder stores the batch as it always did
        # (slower), rather than the partition replaying it forever.
        log.exception("batch decode failed; decoding request by request")
        decoded = None
    out: list[Outcome] = []
    for i, raw in enumerate(records):
        if decoded is not None and i not in decoded.flagged:
            out.append(decoded.rows_of(i))
            continue
        try:
            out.append(row_decoder(raw))
        except DecodeError as exc:
            out.append(exc)
        except STOPPING:
            raise
        except BaseException as exc:
            log.exception("row decoder failed on a request of the batch")
            out.append(decoder_failure(exc))
    return out


def parse_batch(handler: Any, records: Sequence[bytes]) -> pa.RecordBatch:
    with PARSER_LOCK:
        batch: pa.RecordBatch = handler.list_to_record_batch(list(records))
    return batch
