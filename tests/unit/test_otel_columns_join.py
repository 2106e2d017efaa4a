"""`columns.join`: a batch's pieces (slices of the batch decoders' Arrow tables, and rows
the row decoder gave) become one insert holding exactly the pieces' rows, in order."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.otel.arrow_spans import decode_trace_batch
from consumers.otel.columns import ArrowRows, Columns, join
from consumers.otel.ddl import TRACES
from consumers.otel.decode import DecodeError, decode_trace_columns
from consumers.samples import run_trace


def _table(batch: int) -> pa.Table:
    """One batch's `otel_traces` table, as the Arrow batch decoder gives it."""
    raws = [run_trace(f"run-{batch}-{i}").SerializeToString() for i in range(3)]
    (first, *_rest) = decode_trace_batch(raws)
    assert not isinstance(first, DecodeError)
    rows = first[TRACES.name]
    assert isinstance(rows, ArrowRows)
    return rows.data


_DATA = [_table(0), _table(1)]
_EAGER = decode_trace_columns(run_trace("eager", children=1).SerializeToString())[TRACES.name]


@st.composite
def pieces(draw: st.DrawFn) -> list[ArrowRows | Columns]:
    """Slices of two batches' tables (often following each other, sometimes not, some
    empty) and row-decoder columns, in any order."""
    out: list[ArrowRows | Columns] = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["next", "slice", "columns"]))
        if kind == "columns":
            assert isinstance(_EAGER, Columns)
            out.append(_EAGER)
            continue
        data = _DATA[draw(st.integers(0, 1))]
        previous = out[-1] if out else None
        if kind == "next" and isinstance(previous, ArrowRows):
            data, start = previous.data, previous.start + previous.length
        else:
            start = draw(st.integers(0, data.num_rows))
        length = draw(st.integers(0, data.num_rows - start))
        out.append(ArrowRows(TRACES, data, start, length))
    return out


@settings(max_examples=150, deadline=None)
@given(pieces())
def test_join_holds_every_piece_in_order(parts: list[ArrowRows | Columns]) -> None:
    joined = join(TRACES, parts)
    assert isinstance(
        joined, ArrowRows if any(isinstance(p, ArrowRows) for p in parts) else Columns
    )
    expected = pa.concat_tables([p.to_arrow() for p in parts]).combine_chunks()
    got = joined.to_arrow().combine_chunks()
    assert len(joined) == sum(len(p) for p in parts) == got.num_rows
    assert got.equals(expected)
