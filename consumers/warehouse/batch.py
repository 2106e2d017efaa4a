"""A batch of OpenLineage records -> the warehouse tables as Arrow, in one pass.

The writer's decoder for the lineage topic. A record is only checked as it arrives
(it has a value, under the size limit) and left `Pending`; when its batch is flushed,
`decode_lineage_batch` reads every event with the rules of `decode.py` (same checks,
same values: `decode_lineage` is the reference it is tested against, row for row, in
chdb) but appends each value straight to one list per column of the batch, so no dict
per row is built and each table becomes one Arrow table. Each record keeps its slice of
those tables, for record-by-record inserts (`OtelConsumer._isolate`).

A record whose event cannot be stored, or whose decoding raises anything else (a bug),
leaves no row behind: its columns are cut back to where they were, and it gets its
`DecodeError` (`decoder_error` for the unexpected), dead-lettered once by the consumer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loaded with the first batch: the writer at rest holds no Arrow
    import pyarrow as pa

from consumers.otel.columns import ArrowRows, Pending, Rows, arrow_schema
from consumers.otel.ddl import Table
from consumers.otel.decode import STOPPING, DecodeError, decoder_failure
from consumers.warehouse.ddl import EDGES, EVENTS, IO
from consumers.warehouse.decode import MAX_RECORD_BYTES, event_row, io_and_links, read_event

# A record counts toward the batch's row limit by its size (its rows are known only
# once the batch is decoded): one per KiB, about what an event's rows take as Arrow.
ROW_BYTES = 1024

Outcome = Mapping[str, ArrowRows] | DecodeError

# The columns of an `io` or `edges` row that are its event's (the same values as the
# event's `lineage_events` row): taken from that table by the event's index, not
# repeated per row in Python.
_FROM_EVENT = frozenset({"EventHash", "EventTime", "EventType", "RunId", "JobNamespace", "JobName"})
_IO_OWN = tuple(c for c in IO.columns if c not in _FROM_EVENT)
_EDGE_LINK = (
    "Src",
    "Dst",
    "Kind",
    "TransformType",
    "TransformSubtype",
    "TransformDescription",
    "Masking",
)
assert set(_EDGE_LINK) | _FROM_EVENT >= set(EDGES.columns)
_EVENT = "_event"  # the column of a row's event index


def decode_lineage_pending(raw: bytes | None) -> Mapping[str, Rows | Pending]:
    """The writer's decoder: what can be told of a record alone, at once; its rows with
    its batch (`decode_lineage_batch`)."""
    if raw is None:
        raise DecodeError("empty_record", "the record has no value")
    if len(raw) > MAX_RECORD_BYTES:
        raise DecodeError("too_large", f"{len(raw)} bytes, the limit is {MAX_RECORD_BYTES}")
    return {EVENTS.name: Pending(raw, 1 + len(raw) // ROW_BYTES, decode_lineage_batch)}


class _Columns:
    """One list per column of one table, for a whole batch (for `io` and `edges`, the
    event's own columns are one list of event indexes)."""

    __slots__ = ("cols", "rows", "table")

    def __init__(self, table: Table) -> None:
        self.table = table
        own = (
            table.columns if table is EVENTS else [c for c in table.columns if c not in _FROM_EVENT]
        )
        self.cols: dict[str, list[Any]] = {c: [] for c in own}
        if table is not EVENTS:
            self.cols[_EVENT] = []
        self.rows = 0

    def cut(self) -> None:
        """Drop whatever a failed record appended past the last whole row."""
        for values in self.cols.values():
            del values[self.rows :]

    def to_arrow(self, events: pa.Table | None = None) -> pa.Table:
        import pyarrow as pa

        schema = arrow_schema(self.table)
        if events is None:
            arrays = [pa.array(self.cols[f.name], f.type) for f in schema]
        else:
            index = pa.array(self.cols[_EVENT], pa.int32())
            arrays = [
                events.column(f.name).take(index)
                if f.name in _FROM_EVENT
                else pa.array(self.cols[f.name], f.type)
                for f in schema
            ]
        return pa.Table.from_arrays(arrays, schema=schema)


def _append(events: _Columns, io: _Columns, edges: _Columns, raw: bytes) -> None:
    event, ev = read_event(raw)
    io_rows, links = io_and_links(event, ev)
    row = event_row(event, ev)
    index = events.rows
    for column, values in events.cols.items():
        values.append(row[column])
    if io_rows:
        for column in _IO_OWN:
            io.cols[column].extend([r[column] for r in io_rows])
        io.cols[_EVENT].extend([index] * len(io_rows))
    if links:
        for column, cells in zip(_EDGE_LINK, zip(*links, strict=True), strict=True):
            edges.cols[column].extend(cells)
        edges.cols[_EVENT].extend([index] * len(links))
    events.rows += 1
    io.rows += len(io_rows)
    edges.rows += len(links)


def decode_lineage_batch(records: list[bytes]) -> list[Outcome]:
    """Each record's tables (slices of the batch's Arrow tables) or its `DecodeError`."""
    tables = (_Columns(EVENTS), _Columns(IO), _Columns(EDGES))
    spans: list[tuple[int, int, int] | DecodeError] = []
    for raw in records:
        before = (tables[0].rows, tables[1].rows, tables[2].rows)
        try:
            _append(*tables, raw)
        except DecodeError as exc:
            spans.append(exc)
        except STOPPING:
            raise
        except BaseException as exc:  # a bug must not stop the partition: dead-letter it
            spans.append(decoder_failure(exc))
        else:
            spans.append(before)
            continue
        for columns in tables:
            columns.cut()
    try:
        first = tables[0].to_arrow()
        data = [first, *(columns.to_arrow(first) for columns in tables[1:])]
    except STOPPING:
        raise
    except BaseException as exc:
        # A value Arrow cannot take (a bug: the rules make every value storable). Each
        # record alone, so only the one at fault is refused, and the partition goes on.
        if len(records) == 1:
            return [decoder_failure(exc)]
        return [decode_lineage_batch([raw])[0] for raw in records]
    ends = [columns.rows for columns in tables]
    out: list[Outcome] = []
    starts: list[int] | None = None
    # A record's slice ends where the next stored record's starts (or the batch ends).
    for span in reversed(spans):
        if isinstance(span, DecodeError):
            out.append(span)
            continue
        stops = ends if starts is None else starts
        starts = list(span)
        out.append(
            {
                columns.table.name: ArrowRows(columns.table, table, start, stop - start)
                for columns, table, start, stop in zip(tables, data, starts, stops, strict=True)
            }
        )
    out.reverse()
    return out
