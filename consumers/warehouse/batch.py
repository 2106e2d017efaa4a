"""A batch of OpenLineage records -> the warehouse tables as Arrow, in one pass.

The writer's decoder for the lineage topic. A record is only checked as it arrives
(it has a value, under the size limit) and left `Pending`; when its batch is flushed,
`decode_lineage_batch` hands the batch to the compiled decoder (`native.py`), which
takes the common events straight into Arrow columns, and reads the ones it declines
with the rules of `decode.py` (same checks, same values: `decode_lineage` is the
reference both are tested against, row for row, in chdb). The Python path keeps each
row as the tuple of cells the rules give, so no dict per row is built, and turns a
table's tuples into its columns once per batch (in C: `map` with an `itemgetter`) and
then into one Arrow table. Each record keeps its slice of those tables, for
record-by-record inserts (`OtelConsumer._isolate`).

A record whose event cannot be stored, or whose decoding raises anything else (a bug),
leaves no row behind: its columns are cut back to where they were, and it gets its
`DecodeError` (`decoder_error` for the unexpected), dead-lettered once by the consumer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from operator import itemgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loaded with the first batch: the writer at rest holds no Arrow
    import pyarrow as pa

from consumers.otel.columns import ArrowRows, Pending, Rows, arrow_schema
from consumers.otel.ddl import Table
from consumers.otel.decode import STOPPING, DecodeError, decoder_failure
from consumers.warehouse import native
from consumers.warehouse.ddl import EDGES, EVENTS, IO
from consumers.warehouse.decode import (
    EVENT_CELLS,
    FROM_EVENT,
    IO_OWN,
    MAX_RECORD_BYTES,
    event_cells,
    io_and_links,
    read_event,
)

log = logging.getLogger(__name__)

# A record counts toward the batch's row limit by its size (its rows are known only
# once the batch is decoded): one per KiB, about what an event's rows take as Arrow.
ROW_BYTES = 1024

Outcome = Mapping[str, ArrowRows] | DecodeError

# The cells of an edge as `decode.Link` gives them; its event's columns (`FROM_EVENT`,
# the same values as the event's `lineage_events` row) are taken from that table by the
# event's index, not repeated per row in Python, as are an io row's.
_EDGE_LINK = (
    "Src",
    "Dst",
    "Kind",
    "TransformType",
    "TransformSubtype",
    "TransformDescription",
    "Masking",
)
assert set(_EDGE_LINK) | set(FROM_EVENT) >= set(EDGES.columns)


def decode_lineage_pending(raw: bytes | None) -> Mapping[str, Rows | Pending]:
    """The writer's decoder: what can be told of a record alone, at once; its rows with
    its batch (`decode_lineage_batch`)."""
    if raw is None:
        raise DecodeError("empty_record", "the record has no value")
    if len(raw) > MAX_RECORD_BYTES:
        raise DecodeError("too_large", f"{len(raw)} bytes, the limit is {MAX_RECORD_BYTES}")
    return {EVENTS.name: Pending(raw, 1 + len(raw) // ROW_BYTES, decode_lineage_batch)}


class _Columns:
    """One table's rows for a whole batch, each as the tuple of cells the rules give
    (`columns` names them), turned into columns once, at the end (`zip(*rows)` in C,
    not a list append per cell); for `io` and `edges`, the index of each row's event;
    for `lineage_events`, each event's canonical JSON as bytes (its `Payload`)."""

    __slots__ = ("columns", "extra", "rows", "table")

    def __init__(self, table: Table, columns: tuple[str, ...]) -> None:
        self.table = table
        self.columns = columns
        self.rows: list[tuple[Any, ...]] = []
        self.extra: list[Any] = []  # event indexes, or payloads

    def __len__(self) -> int:
        return len(self.rows)

    def cut(self, rows: int) -> None:
        """Drop whatever a failed record appended past its batch's first `rows` rows."""
        del self.rows[rows:]
        del self.extra[rows:]

    def to_arrow(self, events: pa.Table | None = None) -> pa.Table:
        import pyarrow as pa

        schema = arrow_schema(self.table)
        width = set(map(len, self.rows))
        if width - {len(self.columns)}:  # a bug in the rules: no column may come out short
            raise ValueError(
                f"{self.table.name}: rows of {sorted(width)} cells, not {len(self.columns)}"
            )
        # A column at a time (one list each), not `zip(*rows)`: its iterator per row
        # woke the cyclic collector about once per 10,000 rows to walk the batch's rows.
        cells = {c: list(map(itemgetter(i), self.rows)) for i, c in enumerate(self.columns)}
        if events is None:  # lineage_events
            cells["Payload"] = self.extra
            arrays = [pa.array(cells.get(f.name, ()), f.type) for f in schema]
        else:
            index = pa.array(self.extra, pa.int32())
            arrays = [
                events.column(f.name).take(index)
                if f.name in FROM_EVENT
                else pa.array(cells.get(f.name, ()), f.type)
                for f in schema
            ]
        return pa.Table.from_arrays(arrays, schema=schema)


def _append(events: _Columns, io: _Columns, edges: _Columns, raw: bytes) -> None:
    event, ev = read_event(raw)
    io_rows, links = io_and_links(event, ev)
    cells = event_cells(event, ev)
    index = len(events.rows)
    events.rows.append(cells)
    events.extra.append(ev.canonical)
    io.rows += io_rows
    io.extra += [index] * len(io_rows)
    edges.rows += links
    edges.extra += [index] * len(links)


_TABLES = (EVENTS, IO, EDGES)


def decode_lineage_batch(records: list[bytes]) -> list[Outcome]:
    """Each record's tables (slices of the batch's Arrow tables) or its `DecodeError`:
    the compiled decoder's where it takes the record, the Python rules' elsewhere."""
    if native.decode_batch is None:
        return _python_batch(records)
    try:
        fast = native.decode_batch(records)
        if fast is None:  # a column past Arrow's 32-bit offsets
            return _python_batch(records)
        taken, *columns = fast
        data = native.tables(_TABLES, columns)
    except STOPPING:
        raise
    except BaseException:  # a bug in the compiled path: the Python rules take the batch
        log.exception("the compiled lineage decoder failed; the Python rules take the batch")
        return _python_batch(records)
    declined = [raw for raw, rows in zip(records, taken, strict=True) if rows is None]
    rest = iter(_python_batch(declined) if declined else ())
    out: list[Outcome] = []
    events, io, edges = data
    at_event = at_io = at_edge = 0  # where the next taken record's rows start
    for rows in taken:
        if rows is None:
            out.append(next(rest))
            continue
        n_io, n_edges = rows
        out.append(
            {
                EVENTS.name: ArrowRows(EVENTS, events, at_event, 1),
                IO.name: ArrowRows(IO, io, at_io, n_io),
                EDGES.name: ArrowRows(EDGES, edges, at_edge, n_edges),
            }
        )
        at_event += 1
        at_io += n_io
        at_edge += n_edges
    return out


def _python_batch(records: list[bytes]) -> list[Outcome]:
    """Each record's tables or its `DecodeError`, by the Python rules."""
    tables = (
        _Columns(EVENTS, EVENT_CELLS),
        _Columns(IO, IO_OWN),
        _Columns(EDGES, _EDGE_LINK),
    )
    spans: list[tuple[int, int, int] | DecodeError] = []
    for raw in records:
        before = (len(tables[0]), len(tables[1]), len(tables[2]))
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
        for columns, rows in zip(tables, before, strict=True):
            columns.cut(rows)
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
        return [_python_batch([raw])[0] for raw in records]
    ends = [len(columns) for columns in tables]
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
