"""The share of the source one extract shard reads.

The source is cut into units, and shard `i` of `n` takes a contiguous run of them
(`lineagehub.api.shards.shard_range`), so the shards' rows in index order are the rows
one pod reads, in the same order:

- a `file://` glob (`file:///data/orders-*.csv`): its files, sorted by path;
- one Parquet file: its row groups;
- one CSV or NDJSON file: byte ranges, each line going to the range that holds its
  first byte (a CSV's header is read by every shard and belongs to none), so a line is
  never split; a CSV whose quoted fields hold line breaks cannot be cut this way;
- anything else (a JSON array, `http(s)://`, `s3://`): one unit, read by shard 0.

Every shard gives its rows the schema one pod infers from the whole source (its first
file), so the parts fit together; a shard with no units yields no rows of that schema.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import polars as pl
from polars.exceptions import PolarsError

from lineagehub.api.enums import SourceFormat
from lineagehub.api.shards import byte_range, shard_range
from lineagehub.datasets import redact_uri
from pipeline_runner.errors import ErrorKind, StageError
from pipeline_runner.settings import Settings
from pipeline_runner.sources import (
    OpenedSource,
    file_path,
    invalid_source,
    open_source,
    scan,
)

if TYPE_CHECKING:
    from lineagehub.api import SourceSpec

GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Shard:
    """Which pod of a sharded stage this is."""

    index: int
    count: int

    @property
    def label(self) -> str:
        return f"{self.index + 1}/{self.count}"


def is_glob(uri: str) -> bool:
    """A `file://` URI naming several files by a pattern."""
    return urlsplit(uri).scheme.lower() == "file" and bool(GLOB_CHARS & set(file_path(uri)))


def glob_files(spec: SourceSpec) -> list[str]:
    """The files a `file://` glob names, sorted; an error when there are none."""
    pattern = file_path(spec.uri)
    root = Path(pattern).anchor or "/"
    files = sorted(str(p) for p in Path(root).glob(pattern[len(root) :]) if p.is_file())
    if not files:
        raise StageError(
            ErrorKind.INPUT_NOT_FOUND,
            f"source {redact_uri(spec.uri)} matches no file",
            "check spec.source.uri's pattern and that the volume holding it is mounted",
        )
    return files


def line_span(data: bytes, start: int, end: int) -> tuple[int, int]:
    """Offsets `[a, b)` of the lines of `data` whose first byte lies in `[start, end)`:
    a line starts at 0 or just after a newline."""

    def line_start_at_or_after(pos: int) -> int:
        if pos <= 0:
            return 0
        newline = data.find(b"\n", pos - 1)
        return len(data) if newline < 0 else newline + 1

    return line_start_at_or_after(start), line_start_at_or_after(end)


def read_lines(path: str, shard: Shard, skip_header: bool) -> bytes:
    """The lines of a text file whose first byte lies in this shard's byte range (as
    `line_span` defines it), reading only those bytes and the line that ends just
    before them. A header line belongs to no shard."""
    with Path(path).open("rb") as f:
        size = f.seek(0, 2)

        def line_start_at_or_after(pos: int) -> int:
            if pos <= 0:
                return 0
            if pos >= size:
                return size
            f.seek(pos - 1)
            f.readline()
            return f.tell()

        body = line_start_at_or_after(1) if skip_header else 0
        start, end = byte_range(body, size, shard.count, shard.index)
        a, b = max(line_start_at_or_after(start), body), max(line_start_at_or_after(end), body)
        f.seek(a)
        return f.read(b - a)


def _text_rows(spec: SourceSpec, path: str, shard: Shard, schema: pl.Schema) -> pl.LazyFrame:
    """This shard's lines of one CSV/NDJSON file, parsed with the whole file's schema."""
    chunk = read_lines(path, shard, skip_header=spec.format is SourceFormat.CSV)
    if not chunk.strip():
        return pl.LazyFrame(schema=schema)
    if spec.format is SourceFormat.CSV and _breaks_in_quotes(chunk):
        raise StageError(
            ErrorKind.INPUT_INVALID,
            f"source {redact_uri(spec.uri)} has a quoted field with a line break, so it cannot"
            " be split into byte ranges",
            "set spec.stages.extract.parallelism to 1, or split the file into several files"
            " and read them with a glob",
        )
    try:
        if spec.format is SourceFormat.CSV:
            frame = pl.read_csv(io.BytesIO(chunk), has_header=False, schema=schema)
        else:
            frame = pl.read_ndjson(io.BytesIO(chunk), schema=schema)
    except (PolarsError, OSError, ValueError) as exc:
        raise invalid_source(spec.uri, spec.format, exc) from exc
    return frame.lazy()


def _breaks_in_quotes(chunk: bytes) -> bool:
    """Whether a line has an odd number of quotes: a quoted field goes on past its end
    (a doubled quote inside a field counts twice, so it never makes a line odd)."""
    return b'"' in chunk and any(line.count(b'"') % 2 for line in chunk.split(b"\n"))


def _row_groups(path: str, shard: Shard) -> tuple[int, int]:
    """(first row, row count) of this shard's row groups of one Parquet file."""
    import pyarrow.parquet as pq  # only here: a stage that does not shard Parquet never loads it

    meta = pq.ParquetFile(path).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    mine = shard_range(len(sizes), shard.count, shard.index)
    return sum(sizes[: mine.start]), sum(sizes[mine.start : mine.stop])


def _scan_files(spec: SourceSpec, files: list[str], schema: pl.Schema) -> pl.LazyFrame:
    """Several files of the source's format, read with one schema, in order."""
    if not files:
        return pl.LazyFrame(schema=schema)
    if spec.format is SourceFormat.CSV:
        return pl.scan_csv(files, schema=schema)
    if spec.format is SourceFormat.NDJSON:
        return pl.scan_ndjson(files, schema=schema)
    if spec.format is SourceFormat.PARQUET:
        return pl.scan_parquet(files)
    return pl.concat([scan(f, spec.format).cast(schema) for f in files]).lazy()


def open_shard(spec: SourceSpec, shard: Shard, workspace: str, settings: Settings) -> OpenedSource:
    """This shard's rows of the source, lazily where the format allows."""
    uri = redact_uri(spec.uri)
    if is_glob(spec.uri):
        files = glob_files(spec)
        # as_uri quotes the name: a `#` or `%` in it stays part of the path
        first_uri = Path(files[0]).as_uri()
        first_spec = copy.copy(spec)  # the source's settings, for its first file
        first_spec.uri = first_uri
        first = open_source(first_spec, "", settings)
        share = shard_range(len(files), shard.count, shard.index)
        mine = files[share.start : share.stop]
        size = sum(Path(f).stat().st_size for f in mine)
        try:
            frame = _scan_files(spec, mine, first.schema)
        except (PolarsError, OSError, ValueError) as exc:
            raise invalid_source(spec.uri, spec.format, exc) from exc
        return OpenedSource(frame=frame, schema=first.schema, bytes_read=size)
    if urlsplit(uri).scheme.lower() != "file" or spec.format is SourceFormat.JSON:
        opened = open_source(spec, workspace, settings, download_name=f".source-{shard.index}")
        if shard.index != 0:
            opened.frame, opened.bytes_read = opened.frame.clear(), 0
        return opened
    whole = open_source(spec, workspace, settings)
    path = file_path(spec.uri)
    try:
        if spec.format is SourceFormat.PARQUET:
            offset, rows = _row_groups(path, shard)
            frame = whole.frame.slice(offset, rows)
        else:
            frame = _text_rows(spec, path, shard, whole.schema)
    except StageError:
        raise
    except (PolarsError, OSError, ValueError) as exc:
        raise invalid_source(spec.uri, spec.format, exc) from exc
    low, high = byte_range(0, whole.bytes_read or 0, shard.count, shard.index)
    return OpenedSource(frame=frame, schema=whole.schema, bytes_read=high - low)
