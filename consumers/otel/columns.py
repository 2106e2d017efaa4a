"""Rows of one ClickHouse table held as columns: one Python list per column.

Decoders append to the lists; the backend turns them into one Arrow table (a C
loop per column, no Python object per row) that ClickHouse reads in place. Maps
and arrays are kept flat so that appending and concatenating stay list operations:

* a scalar column is `(values,)`;
* `map`: `(sizes, keys, values)`, one size per row;
* `a:<kind>` (an array): `(sizes, items)`;
* `a:map` (an array of maps, e.g. `Events.Attributes`): `(sizes, map sizes, keys, values)`.

A column's kind comes from `Table.kinds` (`s` String when not listed).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from consumers.otel.ddl import Table

if TYPE_CHECKING:  # imported where used: a process that never builds Arrow never loads it
    import pyarrow as pa

Row = dict[str, Any]
Slots = tuple[list[Any], ...]

# How each kind travels in Arrow (see `ddl.Table.kinds`). Times are epoch nanoseconds
# with no zone on the Arrow type: chdb converts zoned timestamps row by row (3x slower);
# the inserts run with session_timezone = 'UTC'.
_KIND_TYPES = {
    "s": "string",
    "t": "timestamp_ns",
    "u64": "uint64",
    "i64": "int64",
    "n64": "int64",  # Nullable(Int64): None is null
    "u32": "uint32",
    "i32": "int32",
    "u8": "uint8",
    "f64": "float64",
    "bool": "bool_",
}


@functools.cache
def _scalar(kind: str) -> pa.DataType:
    import pyarrow as pa

    name = _KIND_TYPES[kind]
    return pa.timestamp("ns") if name == "timestamp_ns" else getattr(pa, name)()


@functools.cache
def _map_type() -> pa.DataType:
    import pyarrow as pa

    return pa.map_(pa.string(), pa.string())


_WIDTH = {"map": 3, "a:map": 4}


def _width(kind: str) -> int:
    return _WIDTH.get(kind, 2 if kind.startswith("a:") else 1)


_EMPTY: dict[int, Callable[[], Slots]] = {
    1: lambda: ([],),
    2: lambda: ([], []),
    3: lambda: ([], [], []),
    4: lambda: ([], [], [], []),
}


@functools.cache
def _widths(table: Table) -> tuple[tuple[str, int], ...]:
    return tuple((c, _width(table.kind(c))) for c in table.columns)


class Columns:
    """Rows of `table`, column by column (see the module docstring for the layout)."""

    __slots__ = ("cols", "length", "table")

    def __init__(self, table: Table) -> None:
        self.table = table
        self.cols: dict[str, Slots] = {c: _EMPTY[w]() for c, w in _widths(table)}
        self.length = 0

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return f"Columns({self.table.name}, {self.length} rows)"

    # ---- building ------------------------------------------------------------------------

    def append(self, row: Mapping[str, Any]) -> None:
        """One row given as a dict (every column of the table; KeyError if one is missing)."""
        for column, slots in self.cols.items():
            _put(self.table.kind(column), slots, row[column])
        self.length += 1

    @classmethod
    def from_rows(cls, table: Table, rows: Iterable[Mapping[str, Any]]) -> Columns:
        out = cls(table)
        for row in rows:
            out.append(row)
        return out

    def put(self, column: str, value: Any) -> None:
        """One cell of the row being built (the caller counts the row in `length`)."""
        _put(self.table.kind(column), self.cols[column], value)

    def repeat(self, values: Mapping[str, Any], n: int) -> None:
        """The same cells in `n` rows (a resource's and a metric's columns for its points)."""
        for column, value in values.items():
            slots = self.cols[column]
            if len(slots) == 1:
                slots[0].extend([value] * n)
            elif len(slots) == 2:
                slots[0].extend([len(value)] * n)
                slots[1].extend(list(value) * n)
            elif len(slots) == 3:
                slots[0].extend([len(value)] * n)
                slots[1].extend(list(value) * n)
                slots[2].extend(list(value.values()) * n)
            else:
                raise TypeError(f"{column}: arrays of maps are not repeated")

    def extend(self, other: Columns) -> None:
        for column, slots in self.cols.items():
            for mine, theirs in zip(slots, other.cols[column], strict=True):
                mine.extend(theirs)
        self.length += other.length

    @classmethod
    def concat(cls, table: Table, parts: Iterable[Columns]) -> Columns:
        out = cls(table)
        for part in parts:
            out.extend(part)
        return out

    # ---- reading -------------------------------------------------------------------------

    def rows(self) -> list[Row]:
        """The rows as dicts (maps as dicts, arrays as lists; times as integer ns)."""
        kind = self.table.kind
        per_column = {c: _unflatten(kind(c), s) for c, s in self.cols.items()}
        return [{c: values[i] for c, values in per_column.items()} for i in range(self.length)]

    def head(self, n: int) -> Columns:
        """The first `n` rows."""
        out = Columns(self.table)
        n = min(n, self.length)
        for column, slots in self.cols.items():
            out.cols[column] = _head(slots, n)
        out.length = n
        return out

    def to_arrow(self) -> pa.Table:
        """One Arrow table, columns in the table's order, named as ClickHouse names them."""
        import pyarrow as pa

        arrays = [_arrow(self.table.kind(c), s) for c, s in self.cols.items()]
        return pa.Table.from_arrays(arrays, names=list(self.table.columns))


def _put(kind: str, slots: Slots, value: Any) -> None:
    if len(slots) == 1:
        slots[0].append(value)
    elif kind == "map":
        slots[0].append(len(value))
        slots[1].extend(value.keys())
        slots[2].extend(value.values())
    elif kind == "a:map":
        slots[0].append(len(value))
        for item in value:
            slots[1].append(len(item))
            slots[2].extend(item.keys())
            slots[3].extend(item.values())
    else:
        slots[0].append(len(value))
        slots[1].extend(value)


def _head(slots: Slots, n: int) -> Slots:
    """The slots of the first `n` rows: a level's sizes say how many items the next holds."""
    if len(slots) == 1:
        return (slots[0][:n],)
    sizes = slots[0][:n]
    m = sum(sizes)
    if len(slots) == 2:
        return (sizes, slots[1][:m])
    if len(slots) == 3:
        return (sizes, slots[1][:m], slots[2][:m])
    inner = slots[1][:m]
    k = sum(inner)
    return (sizes, inner, slots[2][:k], slots[3][:k])


def _split(sizes: Sequence[int], items: Sequence[Any]) -> list[list[Any]]:
    out, at = [], 0
    for size in sizes:
        out.append(list(items[at : at + size]))
        at += size
    return out


def _maps(sizes: Sequence[int], keys: Sequence[str], values: Sequence[str]) -> list[dict[str, str]]:
    pairs = _split(sizes, list(zip(keys, values, strict=True)))
    return [dict(p) for p in pairs]


def _unflatten(kind: str, slots: Slots) -> list[Any]:
    if len(slots) == 1:
        return list(slots[0])
    if kind == "map":
        return _maps(*slots)
    if kind == "a:map":
        maps = _maps(*slots[1:])
        return _split(slots[0], maps)
    return _split(slots[0], slots[1])


def _offsets(sizes: list[int]) -> pa.Array:
    import pyarrow as pa

    return pa.array(itertools.accumulate(sizes, initial=0), pa.int32())


def _map_array(sizes: list[int], keys: list[str], values: list[str]) -> pa.Array:
    import pyarrow as pa

    return pa.MapArray.from_arrays(
        _offsets(sizes),
        pa.array(keys, pa.string()),
        pa.array(values, pa.string()),
        type=_map_type(),
    )


def _arrow_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    if kind == "map":
        return _map_type()
    if kind == "a:map":
        return pa.list_(_map_type())
    if kind.startswith("a:"):
        return pa.list_(_scalar(kind[2:]))
    return _scalar(kind)


@functools.cache
def arrow_schema(table: Table) -> pa.Schema:
    """The Arrow schema of `Columns(table).to_arrow()`, for tables built otherwise."""
    import pyarrow as pa

    return pa.schema([pa.field(c, _arrow_type(table.kind(c))) for c in table.columns])


def _arrow(kind: str, slots: Slots) -> pa.Array:
    import pyarrow as pa

    if len(slots) == 1:
        return pa.array(slots[0], _scalar(kind))
    if kind == "map":
        return _map_array(*slots)
    if kind == "a:map":
        return pa.ListArray.from_arrays(_offsets(slots[0]), _map_array(*slots[1:]))
    return pa.ListArray.from_arrays(_offsets(slots[0]), pa.array(slots[1], _scalar(kind[2:])))


class ArrowRows:
    """Rows of one table as a slice of an Arrow table (a batch decoded at once, see
    `arrow_spans`): each record of the batch owns its slice, for record-by-record inserts."""

    __slots__ = ("data", "length", "start", "table")

    def __init__(self, table: Table, data: pa.Table, start: int = 0, length: int = -1) -> None:
        self.table = table
        self.data = data
        self.start = start
        self.length = data.num_rows - start if length < 0 else length

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return f"ArrowRows({self.table.name}, {self.length} rows)"

    def to_arrow(self) -> pa.Table:
        return self.data.slice(self.start, self.length)

    def head(self, n: int) -> ArrowRows:
        return ArrowRows(self.table, self.data, self.start, min(n, self.length))

    def rows(self) -> list[Row]:
        """The rows as `Columns.rows` gives them (times as integer ns, maps as dicts)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        arrow = self.to_arrow()
        out: dict[str, list[Any]] = {}
        for name in self.table.columns:
            kind = self.table.kind(name)
            column = arrow[name]
            if kind in ("t", "a:t"):
                column = pc.cast(column, pa.int64() if kind == "t" else pa.list_(pa.int64()))
            values = column.to_pylist()
            if kind == "map":
                values = [dict(v) for v in values]
            elif kind == "a:map":
                values = [[dict(m) for m in v] for v in values]
            out[name] = values
        return [{c: out[c][i] for c in self.table.columns} for i in range(self.length)]


class Pending:
    """A record's rows still to decode, with the rest of its batch, by `batch` (raw
    records -> each one's rows, or the `DecodeError` that refuses it). `spans` is what
    batching counts: the most rows the record adds to one table, so a batch's
    `max_batch_rows` bounds each of its inserts (a metric request's points spread over
    five tables)."""

    __slots__ = ("batch", "raw", "spans")

    def __init__(self, raw: bytes, spans: int, batch: Callable[[list[bytes]], list[Any]]) -> None:
        self.raw = raw
        self.spans = spans
        self.batch = batch

    def __len__(self) -> int:
        return self.spans


Rows = Sequence[Mapping[str, Any]] | Columns | ArrowRows


def join(table: Table | None, parts: Sequence[Rows]) -> Rows:
    """The rows of `parts` as one insert: columns when every part is, an Arrow table when
    any part is one (slices of one table that follow each other taken as one), else dicts."""
    if table is not None and all(isinstance(p, Columns) for p in parts):
        return Columns.concat(table, (p for p in parts if isinstance(p, Columns)))
    if table is not None and any(isinstance(p, ArrowRows) for p in parts):
        return _join_arrow(table, parts)
    return [row for p in parts for row in (p if isinstance(p, Sequence) else p.rows())]


def _join_arrow(table: Table, parts: Sequence[Rows]) -> ArrowRows:
    import pyarrow as pa

    pieces: list[pa.Table] = []
    data: pa.Table | None = None  # the run of slices that follow each other: [start, end)
    start = end = 0
    for p in parts:
        if isinstance(p, ArrowRows):
            if p.data is data and p.start == end:
                end += p.length
                continue
            if data is not None:
                pieces.append(data.slice(start, end - start))
            data, start, end = p.data, p.start, p.start + p.length
            continue
        if data is not None:
            pieces.append(data.slice(start, end - start))
            data = None
        if len(p):
            columns = p if isinstance(p, Columns) else Columns.from_rows(table, p)
            pieces.append(columns.to_arrow())
    if data is not None:
        if not pieces:
            return ArrowRows(table, data, start, end - start)
        pieces.append(data.slice(start, end - start))
    if not pieces:
        return ArrowRows(table, arrow_schema(table).empty_table())
    return ArrowRows(table, pa.concat_tables(pieces).combine_chunks())


def head(rows: Rows, n: int) -> Rows:
    """The first `n` rows, in the form they came in."""
    if isinstance(rows, Columns | ArrowRows):
        return rows.head(n)
    return list(rows[:n])
