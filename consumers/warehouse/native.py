"""The compiled decoder (`native/`, Rust through PyO3): the common path of `decode.py`'s
rules, for the writer's batches, straight into Arrow columns.

`decode_batch(records)` reads a batch without the GIL and gives, for each record, its
count of io and edge rows, or None where the Python rules must decide (whatever they
would refuse, and the rare values it does not read: integers past 64 bits, lone
surrogates, a float read as text, case beyond ASCII, a key twice in an object, an
unusual time, nesting past 128 levels); and each table
as the buffers of its columns, which `tables` makes into Arrow without a Python object
per row. The Python rules stay the reference and alone say why a record is refused;
what the compiled path takes it stores exactly as they would (tested row for row,
`tests/unit/test_warehouse_native.py`).

`scripts/setup.sh` and the image build it (`pip install ./native`); where it is not
installed, `decode_batch` is None and every record takes the Python rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from consumers.otel.columns import arrow_schema
from consumers.otel.ddl import Table

if TYPE_CHECKING:
    import pyarrow as pa

#: A column's buffers: ("s", rows, offsets, data) for strings, ("f", rows, values) for
#: fixed-width values, ("n", rows, validity, values, nulls) for nullable int64,
#: ("l", rows, offsets, <an "s" column>) for lists of strings. Each buffer is a
#: read-only `lineagehub_native.Buffer` owning the bytes the decoder wrote (no copy):
#: `pyarrow.py_buffer` keeps it alive while an array reads it.
Buffers = tuple[Any, ...]
#: Per record its count of io and edge rows (None: declined), then each table's columns.
Decoded = tuple[list[tuple[int, int] | None], dict[str, Any], dict[str, Any], dict[str, Any]]

decode_batch: Callable[[list[bytes]], Decoded | None] | None
try:
    from lineagehub_native import decode_batch
except ImportError:  # not built here: the Python rules alone
    decode_batch = None


def tables(schema: Sequence[Table], columns: Sequence[Mapping[str, Buffers]]) -> list[pa.Table]:
    """Each table of `schema` from its columns' buffers (`decode_batch`'s), checked:
    a column missing or left over, or buffers Arrow finds inconsistent, raise."""
    import pyarrow as pa

    out = []
    for table, buffers in zip(schema, columns, strict=True):
        arrow = arrow_schema(table)
        if set(buffers) != set(arrow.names):
            raise ValueError(f"{table.name}: columns {sorted(buffers)}, not {arrow.names}")
        arrays = [_array(f.type, buffers[f.name]) for f in arrow]
        for array in arrays:
            array.validate()
        out.append(pa.Table.from_arrays(arrays, schema=arrow))
    return out


def _array(kind: pa.DataType, buffers: Buffers) -> pa.Array:
    import pyarrow as pa

    tag, rows, *parts = buffers
    if tag == "s":
        offsets, data = parts
        return pa.Array.from_buffers(kind, rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    if tag == "f":
        return pa.Array.from_buffers(kind, rows, [None, pa.py_buffer(parts[0])])
    if tag == "n":
        validity, values, nulls = parts
        return pa.Array.from_buffers(
            kind, rows, [pa.py_buffer(validity), pa.py_buffer(values)], null_count=nulls
        )
    if tag == "l":
        offsets, items = parts
        child = _array(kind.value_type, items)
        return pa.Array.from_buffers(kind, rows, [None, pa.py_buffer(offsets)], children=[child])
    raise ValueError(f"unknown column buffers {tag!r}")
