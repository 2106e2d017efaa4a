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
from typing import Any

import pyarrow as pa

from consumers.otel.ddl import Table

Row = dict[str, Any]
Slots = tuple[list[Any], ...]

# Epoch nanoseconds. No zone on the Arrow type: chdb converts zoned timestamps row by
# row (3x slower); the inserts run with session_timezone = 'UTC'.
_TIME = pa.timestamp("ns")
_SCALARS: dict[str, pa.DataType] = {
    "s": pa.string(),
    "t": _TIME,
    "u64": pa.uint64(),
    "i64": pa.int64(),
    "n64": pa.int64(),  # Nullable(Int64): None is null
    "u32": pa.uint32(),
    "i32": pa.int32(),
    "u8": pa.uint8(),
    "f64": pa.float64(),
    "bool": pa.bool_(),
}
_MAP = pa.map_(pa.string(), pa.string())
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
    return pa.array(itertools.accumulate(sizes, initial=0), pa.int32())


def _map_array(sizes: list[int], keys: list[str], values: list[str]) -> pa.Array:
    return pa.MapArray.from_arrays(
        _offsets(sizes), pa.array(keys, pa.string()), pa.array(values, pa.string()), type=_MAP
    )


def _arrow(kind: str, slots: Slots) -> pa.Array:
    if len(slots) == 1:
        return pa.array(slots[0], _SCALARS[kind])
    if kind == "map":
        return _map_array(*slots)
    if kind == "a:map":
        return pa.ListArray.from_arrays(_offsets(slots[0]), _map_array(*slots[1:]))
    return pa.ListArray.from_arrays(_offsets(slots[0]), pa.array(slots[1], _SCALARS[kind[2:]]))


Rows = Sequence[Mapping[str, Any]] | Columns


def join(table: Table | None, parts: Sequence[Rows]) -> Rows:
    """The rows of `parts` as one insert: columns when every part is, else dicts."""
    if table is not None and all(isinstance(p, Columns) for p in parts):
        return Columns.concat(table, (p for p in parts if isinstance(p, Columns)))
    return [row for p in parts for row in (p.rows() if isinstance(p, Columns) else p)]


def head(rows: Rows, n: int) -> Rows:
    """The first `n` rows, in the form they came in."""
    return rows.head(n) if isinstance(rows, Columns) else list(rows[:n])
