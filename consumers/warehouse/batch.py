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
from typing import Any

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

_IO_COLUMNS = IO.columns
# The columns of an edge that come from its event, in `ddl.EDGES` order of appearance.
_EDGE_EVENT = ("RunId", "EventTime", "EventHash", "JobNamespace", "JobName")
_EDGE_LINK = (
    "Src",
    "Dst",
    "Kind",
    "TransformType",
    "TransformSubtype",
    "TransformDescription",
    "Masking",
)


def decode_lineage_pending(raw: bytes | None) -> Mapping[str, Rows | Pending]:
    """The writer's decoder: what can be told of a record alone, at once; its rows with
    its batch (`decode_lineage_batch`)."""
    if raw is None:
        raise DecodeError("empty_record", "the record has no value")
    if len(raw) > MAX_RECORD_BYTES:
        raise DecodeError("too_large", f"{len(raw)} bytes, the limit is {MAX_RECORD_BYTES}")
    return {EVENTS.name: Pending(raw, 1 + len(raw) // ROW_BYTES, decode_lineage_batch)}


class _Columns:
    """One list per column of one table, for a whole batch."""

    __slots__ = ("cols", "rows", "table")

    def __init__(self, table: Table) -> None:
        self.table = table
        self.cols: dict[str, list[Any]] = {c: [] for c in table.columns}
        self.rows = 0

    def cut(self) -> None:
        """Drop whatever a failed record appended past the last whole row."""
        for values in self.cols.values():
            del values[self.rows :]

    def to_arrow(self) -> pa.Table:
        schema = arrow_schema(self.table)
        arrays = [pa.array(self.cols[f.name], f.type) for f in schema]
        return pa.Table.from_arrays(arrays, schema=schema)


def _append(events: _Columns, io: _Columns, edges: _Columns, raw: bytes) -> None:
    event, ev = read_event(raw)
    io_rows, links = io_and_links(event, ev)
    row = event_row(event, ev)
    for column, values in events.cols.items():
        values.append(row[column])
    for column in _IO_COLUMNS:
        io.cols[column].extend([r[column] for r in io_rows])
    if links:
        n = len(links)
        for column, value in zip(
            _EDGE_EVENT, (ev.run_id, ev.time, ev.hash, ev.job_ns, ev.job_name), strict=True
        ):
            edges.cols[column].extend([value] * n)
        for column, cells in zip(_EDGE_LINK, zip(*links, strict=True), strict=True):
            edges.cols[column].extend(cells)
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
        data = [columns.to_arrow() for columns in tables]
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
