"""Property-based fuzzing of the runner's readers: the extract stage on a CSV, NDJSON,
JSON array or Parquet source, as a stage Job runs it (`stages.extract`).

Inputs are whole tables drawn by Hypothesis (any unicode in names and text, quotes,
separators and line breaks inside values, 64-bit extremes, nulls anywhere), written in
each format by polars; those files with their bytes mutated (flipped, cut, spliced);
and plain random bytes.

The properties: nothing escapes the stage but its own `StageError`, whose one-line
reason names the source and says what is wrong with it; and a good table's rows come
through the stage unchanged, in order.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from lineagehub.api import SourceFormat, SourceSpec, StageName
from pipeline_runner.errors import ErrorKind, StageError
from pipeline_runner.result import StageResult
from pipeline_runner.settings import Settings
from pipeline_runner.stages import extract
from pipeline_runner.telemetry import StageTelemetry
from tests.fuzz import fuzz_settings
from tests.unit.test_runner_stages import make_config

TABLE_EXAMPLES = 120
BYTES_EXAMPLES = 150
MUTATED_EXAMPLES = 150

FUZZ = fuzz_settings(TABLE_EXAMPLES, HealthCheck.data_too_large)

FORMATS = list(SourceFormat)
INT64 = (-(2**63), 2**63 - 1)
#: The kinds a reader may fail with; anything else is a bug.
READER_KINDS = {ErrorKind.INPUT_INVALID, ErrorKind.INPUT_NOT_FOUND}

_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_name = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc", "Zl", "Zp"]),
    min_size=1,
    max_size=10,
)
# A text column in CSV is kept text by a prefix no number or date starts with: CSV has
# no types, and polars infers them from the values.
_CSV_TEXT = "t:"


def _column(kind: str, rows: int, csv: bool) -> st.SearchStrategy[list[Any]]:
    values: st.SearchStrategy[Any]
    if kind == "int":
        values = st.integers(*INT64)
    elif kind == "float":
        values = st.floats(allow_nan=False, allow_infinity=False, width=64)
    elif kind == "bool":
        values = st.booleans()
    else:
        values = _text.map(lambda s: _CSV_TEXT + s) if csv else _text
    return st.lists(st.none() | values, min_size=rows, max_size=rows)


_DTYPES = {"int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean, "text": pl.String}


@st.composite
def tables(draw: st.DrawFn, csv: bool = False) -> pl.DataFrame:
    """A table of 1-30 rows and 1-5 columns of int, float, bool and text values."""
    names = draw(st.lists(_name, min_size=1, max_size=5, unique_by=str.casefold))
    rows = draw(st.integers(1, 30))
    data: dict[str, pl.Series] = {}
    for name in names:
        kind = draw(st.sampled_from(sorted(_DTYPES)))
        values = draw(_column(kind, rows, csv))
        data[name] = pl.Series(name, values, dtype=_DTYPES[kind])
    return pl.DataFrame(data)


def encode(frame: pl.DataFrame, fmt: SourceFormat) -> bytes:
    out = io.BytesIO()
    if fmt is SourceFormat.CSV:
        frame.write_csv(out)
    elif fmt is SourceFormat.NDJSON:
        frame.write_ndjson(out)
    elif fmt is SourceFormat.JSON:
        frame.write_json(out)
    else:
        frame.write_parquet(out)
    return out.getvalue()


def run_extract(data: bytes, fmt: SourceFormat) -> pl.DataFrame | StageError:
    """The extract stage on `data` as a source file: the rows it wrote, or its error."""
    with tempfile.TemporaryDirectory(prefix="reader-fuzz-") as folder:
        return _extract_in(Path(folder), data, fmt)


def _extract_in(tmp_path: Path, data: bytes, fmt: SourceFormat) -> pl.DataFrame | StageError:
    source = tmp_path / "in" / f"source.{fmt.value}"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(data)
    cfg = make_config(
        tmp_path, StageName.EXTRACT, source=SourceSpec(uri=f"file://{source}", format=fmt)
    )
    tel = StageTelemetry(Settings(), traceparent=None)
    result = StageResult(stage=StageName.EXTRACT)
    try:
        extract(cfg, Settings(), tel, result)
    except StageError as exc:
        return exc
    finally:
        tel.finish()
    return pl.read_parquet(cfg.intermediate_path(StageName.EXTRACT))


def assert_clear_error(error: StageError, source_uri_end: str) -> None:
    assert error.kind in READER_KINDS, error.reason
    reason = error.reason
    assert "\n" not in reason
    assert source_uri_end in reason, reason  # names the source
    assert reason.split(source_uri_end, 1)[1].strip(" :;"), reason  # and what is wrong


@pytest.mark.parametrize("fmt", FORMATS, ids=[f.value for f in FORMATS])
@settings(FUZZ)
@given(data=st.data())
def test_a_good_table_comes_through_unchanged(fmt: SourceFormat, data: st.DataObject) -> None:
    frame = data.draw(tables(csv=fmt is SourceFormat.CSV))
    got = run_extract(encode(frame, fmt), fmt)
    assert not isinstance(got, StageError), got.reason
    if fmt is SourceFormat.PARQUET:
        assert_frame_equal(got, frame)
        return
    # Text formats carry no types: a column of nulls only has none to infer.
    for name in frame.columns:
        assert got[name].to_list() == frame[name].to_list(), name
        if frame[name].null_count() < frame.height:
            assert got[name].dtype == frame[name].dtype, name
    assert got.columns == frame.columns


@pytest.mark.parametrize("fmt", FORMATS, ids=[f.value for f in FORMATS])
@settings(FUZZ, max_examples=BYTES_EXAMPLES)
@given(raw=st.binary(min_size=1, max_size=600))
def test_random_bytes_are_read_or_refused_clearly(fmt: SourceFormat, raw: bytes) -> None:
    got = run_extract(raw, fmt)
    if isinstance(got, StageError):
        assert_clear_error(got, f"source.{fmt.value}")


@st.composite
def mutated(draw: st.DrawFn, fmt: SourceFormat) -> bytes:
    """A good file of `fmt` with some of its bytes flipped, cut or spliced."""
    data = bytearray(encode(draw(tables(csv=fmt is SourceFormat.CSV)), fmt))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        how = draw(st.sampled_from(("flip", "cut", "splice", "truncate")))
        if how == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif how == "cut":
            del data[at : at + draw(st.integers(1, 16))]
        elif how == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at:]
    assume(data)
    return bytes(data)


@pytest.mark.parametrize("fmt", FORMATS, ids=[f.value for f in FORMATS])
@settings(FUZZ, max_examples=MUTATED_EXAMPLES)
@given(data=st.data())
def test_a_damaged_file_is_read_or_refused_clearly(fmt: SourceFormat, data: st.DataObject) -> None:
    got = run_extract(data.draw(mutated(fmt)), fmt)
    if isinstance(got, StageError):
        assert_clear_error(got, f"source.{fmt.value}")


def test_a_quoted_header_with_a_doubled_quote_names_the_column_as_written() -> None:
    """Found by the fuzzer: polars reads the header `"a""b"` as the column `a""b`."""
    got = run_extract(b'"a""b","c,d",e\n1,"x""y",3\n', SourceFormat.CSV)
    assert not isinstance(got, StageError), got.reason
    assert got.columns == ['a"b', "c,d", "e"]
    assert got.row(0) == (1, 'x"y', 3)
