"""Write a stage's result to the sink, atomically.

Every sink takes the transform's Parquet file and a mode. Files are written to a
temporary file in the sink's own directory and moved over the target with
`os.replace`, so a reader sees the old file or the new one, never a half-written one
(append copies the old content into the temporary file first). ClickHouse tables are
loaded into a staging table that is then renamed, exchanged with the target
(overwrite) or attached to it part by part (append): the target never holds a partial
load. Appending needs a table of the same structure as the result (one this sink
created, or one made the same way: MergeTree, no partition key, Nullable columns).
`s3://` sinks go through polars' object-store writer (an object appears whole when its
upload completes); they cannot append.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

import polars as pl
from polars.datatypes import DataTypeClass
from polars.exceptions import PolarsError

from lineagehub.api.enums import SinkFormat, WriteMode
from lineagehub.datasets import redact_text, redact_uri
from pipeline_runner.errors import ErrorKind, StageError, first_line
from pipeline_runner.settings import Settings
from pipeline_runner.sources import check_target, file_path, s3_storage_options

if TYPE_CHECKING:
    from lineagehub.api import SinkSpec

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class WriteStats:
    rows: int
    bytes: int | None


class Sink(Protocol):
    """Somewhere a result can be written. `write` is all-or-nothing."""

    uri: str

    def write(self, parquet_path: str, mode: WriteMode) -> WriteStats: ...


def _sink_error(uri: str, what: str, fix: str) -> StageError:
    return StageError(ErrorKind.SINK_ERROR, f"sink {redact_uri(uri)}: {redact_text(what)}", fix)


def count_rows(parquet_path: str) -> int:
    return int(pl.scan_parquet(parquet_path).select(pl.len()).collect().item())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append_bytes(target: Path, part: Path) -> None:
    with target.open("ab") as out, part.open("rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


# --------------------------------------------------------------------------- files


class FileSink:
    """Parquet, CSV or NDJSON at a `file://` path."""

    def __init__(self, uri: str, fmt: SinkFormat) -> None:
        self.uri = uri
        self.format = fmt
        self.path = Path(file_path(uri, "spec.sink.uri"))

    def write(self, parquet_path: str, mode: WriteMode) -> WriteStats:
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _sink_error(
                self.uri,
                f"cannot create directory {path.parent}: {first_line(exc)}",
                "mount a writable volume at the sink's directory",
            ) from exc
        if path.is_dir():
            raise _sink_error(self.uri, "is a directory", "point spec.sink.uri at a file path")
        token = uuid.uuid4().hex[:12]
        tmp = path.parent / f".{path.name}.{token}.tmp"
        part = path.parent / f".{path.name}.{token}.part"
        append = mode is WriteMode.APPEND and path.exists()
        previous = path.stat().st_size if append else 0
        try:
            rows = count_rows(parquet_path)
            src = pl.scan_parquet(parquet_path)
            if self.format is SinkFormat.PARQUET:
                if append:
                    self._check_columns(pl.scan_parquet(path).collect_schema(), src)
                    pl.concat([pl.scan_parquet(path), src], how="vertical").sink_parquet(tmp)
                else:
                    shutil.copyfile(parquet_path, tmp)
            elif self.format is SinkFormat.CSV:
                if append:
                    existing = pl.scan_csv(path, infer_schema=False).collect_schema()
                    self._check_names(existing.names(), src.collect_schema().names())
                    shutil.copyfile(path, tmp)
                    src.sink_csv(part, include_header=False)
                    self._join(tmp, part)
                else:
                    src.sink_csv(tmp)
            elif self.format is SinkFormat.NDJSON:
                if append:
                    shutil.copyfile(path, tmp)
                    src.sink_ndjson(part)
                    self._join(tmp, part)
                else:
                    src.sink_ndjson(tmp)
            else:  # pragma: no cover - sink_for routes clickhouse elsewhere
                raise _sink_error(self.uri, f"format {self.format} is not a file format", "")
            _fsync(tmp)
            tmp.replace(path)  # atomic (os.replace)
            with contextlib.suppress(OSError):
                _fsync(path.parent)
        except StageError:
            raise
        except (PolarsError, OSError, ValueError) as exc:
            raise _sink_error(
                self.uri,
                f"write failed: {first_line(exc)}",
                "check the sink's volume (space, permissions) and that the format can hold "
                "the result's column types (csv holds no nested columns)",
            ) from exc
        finally:
            for leftover in (tmp, part):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        return WriteStats(rows=rows, bytes=path.stat().st_size - previous)

    @staticmethod
    def _join(tmp: Path, part: Path) -> None:
        if not _ends_with_newline(tmp):
            with tmp.open("ab") as out:
                out.write(b"\n")
        _append_bytes(tmp, part)

    def _check_names(self, existing: Sequence[str], ours: Sequence[str]) -> None:
        if list(existing) != list(ours):
            raise _sink_error(
                self.uri,
                f"append needs the same columns; the sink has {list(existing)}, "
                f"the result has {list(ours)}",
                "use mode overwrite or a new sink uri",
            )

    def _check_columns(self, existing: pl.Schema, src: pl.LazyFrame) -> None:
        ours = src.collect_schema()
        self._check_names(existing.names(), ours.names())
        differ = [n for n in ours.names() if ours[n] != existing[n]]
        if differ:
            raise _sink_error(
                self.uri,
                f"append needs the same column types; {differ} differ",
                "cast the columns to the sink's types, or use mode overwrite",
            )


# --------------------------------------------------------------------------- s3


class ObjectStoreSink:
    """An `s3://` object, written by polars' object-store writer (overwrite only).

    Not exercised by the tests: no object store runs on the test machine."""

    def __init__(self, uri: str, fmt: SinkFormat, storage: dict[str, str]) -> None:
        self.uri = uri
        self.format = fmt
        self.storage = storage

    def write(self, parquet_path: str, mode: WriteMode) -> WriteStats:
        if mode is WriteMode.APPEND:
            raise _sink_error(
                self.uri, "objects cannot be appended to", "use mode overwrite or a new key"
            )
        src = pl.scan_parquet(parquet_path)
        try:
            if self.format is SinkFormat.PARQUET:
                src.sink_parquet(self.uri, storage_options=self.storage)
            elif self.format is SinkFormat.CSV:
                src.sink_csv(self.uri, storage_options=self.storage)
            else:
                src.sink_ndjson(self.uri, storage_options=self.storage)
        except (PolarsError, OSError) as exc:
            raise _sink_error(
                self.uri,
                f"upload failed: {first_line(exc)}",
                "check spec.sink.s3 and the credentials",
            ) from exc
        return WriteStats(rows=count_rows(parquet_path), bytes=None)


# --------------------------------------------------------------------------- clickhouse


@dataclass(frozen=True)
class ClickHouseTarget:
    host: str
    port: int
    database: str
    table: str
    user: str
    password: str

    @property
    def qualified(self) -> str:
        return f"{ident(self.database)}.{ident(self.table)}"


def ident(name: str) -> str:
    """`name` as a ClickHouse identifier: backquoted, with every backslash and backquote
    in it escaped, so a column named by a CSV header (`` a` String) ENGINE = ... ``)
    stays one identifier and can never end the quoting and write SQL of its own."""
    if "\x00" in name:
        raise ValueError(f"identifier {name!r} holds a NUL character")
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def parse_clickhouse_uri(uri: str) -> ClickHouseTarget:
    """`clickhouse://[user[:password]@]host[:port]/database.table` (or `/database/table`)."""
    parts = urlsplit(uri)
    path = parts.path.strip("/")
    database, sep, table = path.partition("/") if "/" in path else path.partition(".")
    if not sep or not _IDENT.match(database) or not _IDENT.match(table):
        raise _sink_error(
            uri,
            "the table is not named as database.table",
            "write spec.sink.uri as clickhouse://host:9000/database.table",
        )
    return ClickHouseTarget(
        host=parts.hostname or "localhost",
        port=parts.port or 9000,
        database=database,
        table=table,
        user=unquote(parts.username or os.environ.get("CLICKHOUSE_USER", "default")),
        password=unquote(parts.password or os.environ.get("CLICKHOUSE_PASSWORD", "")),
    )


def clickhouse_type(dtype: pl.DataType | DataTypeClass) -> str:
    """The ClickHouse column type for a polars type (scalars are Nullable)."""
    if isinstance(dtype, pl.List | pl.Array):
        return f"Array({clickhouse_type(dtype.inner)})"
    if isinstance(dtype, pl.Struct):
        inner = ", ".join(f"{ident(f.name)} {clickhouse_type(f.dtype)}" for f in dtype.fields)
        return f"Tuple({inner})"
    return f"Nullable({_scalar_type(dtype)})"


def _scalar_type(dtype: pl.DataType | DataTypeClass) -> str:
    simple: dict[type[pl.DataType], str] = {
        pl.Int8: "Int8",
        pl.Int16: "Int16",
        pl.Int32: "Int32",
        pl.Int64: "Int64",
        pl.UInt8: "UInt8",
        pl.UInt16: "UInt16",
        pl.UInt32: "UInt32",
        pl.UInt64: "UInt64",
        pl.Float32: "Float32",
        pl.Float64: "Float64",
        pl.Boolean: "Bool",
        pl.Date: "Date32",
        pl.Duration: "Int64",
    }
    for kind, name in simple.items():
        if isinstance(dtype, kind):
            return name
    if isinstance(dtype, pl.Datetime):
        precision = {"ms": 3, "us": 6, "ns": 9}[dtype.time_unit or "us"]
        zone = f", {_quote(dtype.time_zone)}" if dtype.time_zone else ""
        return f"DateTime64({precision}{zone})"
    if isinstance(dtype, pl.Decimal):
        return f"Decimal({dtype.precision or 38}, {dtype.scale or 0})"
    return "String"


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ClickHouseBackend(Protocol):
    def execute(self, sql: str) -> None: ...
    def rows(self, sql: str) -> list[tuple[Any, ...]]: ...
    def load_parquet(self, table: str, columns: Sequence[str], parquet_path: str) -> None: ...
    def close(self) -> None: ...


class ChdbBackend:
    """Embedded ClickHouse (chdb) with its data under `path` (one session per process)."""

    def __init__(self, path: str) -> None:
        from chdb import session  # heavy: loaded only for clickhouse sinks

        factory: Any = session.Session  # chdb's session API is only partly annotated
        self._session: Any = factory(path)

    def execute(self, sql: str) -> None:
        self._session.query(sql)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        text = str(self._session.query(sql, "TabSeparated"))
        return [tuple(line.split("\t")) for line in text.splitlines() if line]

    def load_parquet(self, table: str, columns: Sequence[str], parquet_path: str) -> None:
        cols = ", ".join(ident(c) for c in columns)
        self._session.query(
            f"INSERT INTO {table} ({cols}) SELECT {cols} "
            f"FROM file({_quote(str(Path(parquet_path).resolve()))}, Parquet)"
        )

    def close(self) -> None:
        self._session.close()


class DriverBackend:
    """A ClickHouse server over the native protocol (clickhouse-driver).

    Not exercised by the tests: no ClickHouse server runs on the test machine."""

    BATCH = 100_000

    def __init__(self, target: ClickHouseTarget) -> None:
        from clickhouse_driver import Client  # loaded only for clickhouse sinks

        self._client: Any = Client(
            host=target.host, port=target.port, user=target.user, password=target.password
        )

    def execute(self, sql: str) -> None:
        self._client.execute(sql)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._client.execute(sql)]

    def load_parquet(self, table: str, columns: Sequence[str], parquet_path: str) -> None:
        cols = ", ".join(ident(c) for c in columns)
        frame = pl.read_parquet(parquet_path, columns=list(columns))
        for chunk in frame.iter_slices(self.BATCH):
            data = [series.to_list() for series in chunk.iter_columns()]
            self._client.execute(f"INSERT INTO {table} ({cols}) VALUES", data, columnar=True)

    def close(self) -> None:
        self._client.disconnect()


class ClickHouseSink:
    """Rows into a ClickHouse table through a staging table (see the module text)."""

    def __init__(
        self, uri: str, *, chdb_path: str | None = None, backend: ClickHouseBackend | None = None
    ) -> None:
        self.uri = uri
        self.target = parse_clickhouse_uri(uri)
        self._backend = backend
        self._chdb_path = chdb_path

    def _open(self) -> ClickHouseBackend:
        if self._backend is not None:
            return self._backend
        if self._chdb_path:
            return ChdbBackend(self._chdb_path)
        # A server over the network: only one the operator's policy lets a stage reach.
        check_target(self.uri, "sink", ErrorKind.SINK_ERROR)
        return DriverBackend(self.target)

    def write(self, parquet_path: str, mode: WriteMode) -> WriteStats:
        t = self.target
        schema = pl.scan_parquet(parquet_path).collect_schema()
        columns = schema.names()
        staging_name = f"{t.table}__staging_{uuid.uuid4().hex[:12]}"
        staging = f"{ident(t.database)}.{ident(staging_name)}"
        in_staging = f"database = {_quote(t.database)} AND table = {_quote(staging_name)}"
        try:
            backend = self._open()
        except StageError:
            raise
        except Exception as exc:
            raise _sink_error(
                self.uri,
                f"cannot connect: {first_line(exc)}",
                "check the host and port, or set CLICKHOUSE_CHDB_PATH for embedded chdb",
            ) from exc
        created = False
        try:
            backend.execute(f"CREATE DATABASE IF NOT EXISTS {ident(t.database)}")
            exists = backend.rows(f"EXISTS TABLE {t.qualified}")[0][0] in ("1", 1)
            # The staging table always has the result's own types: appending then needs
            # a target of the same structure (ATTACH PARTITION checks it), so a value is
            # never silently converted (or nulled) on its way into an existing table.
            ddl = ", ".join(f"{ident(n)} {clickhouse_type(d)}" for n, d in schema.items())
            backend.execute(f"CREATE TABLE {staging} ({ddl}) ENGINE = MergeTree ORDER BY tuple()")
            created = True
            backend.load_parquet(staging, columns, parquet_path)
            size_rows = backend.rows(
                f"SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND {in_staging}"
            )
            if not exists:
                backend.execute(f"RENAME TABLE {staging} TO {t.qualified}")
                created = False
            elif mode is WriteMode.OVERWRITE:
                backend.execute(f"EXCHANGE TABLES {staging} AND {t.qualified}")
            else:
                parts = backend.rows(
                    f"SELECT DISTINCT partition_id FROM system.parts WHERE active AND {in_staging}"
                )
                for (partition,) in parts:
                    backend.execute(
                        f"ALTER TABLE {t.qualified} ATTACH PARTITION ID {_quote(str(partition))} "
                        f"FROM {staging}"
                    )
        except Exception as exc:
            raise _sink_error(
                self.uri,
                f"load failed: {first_line(exc)}",
                "check that the table's columns match the result, or use mode overwrite",
            ) from exc
        finally:
            if created:
                with contextlib.suppress(Exception):
                    backend.execute(f"DROP TABLE IF EXISTS {staging}")
            backend.close()
        try:
            size: int | None = int(size_rows[0][0]) if size_rows and size_rows[0][0] else None
        except ValueError:
            size = None
        return WriteStats(rows=count_rows(parquet_path), bytes=size)


def sink_for(spec: SinkSpec, settings: Settings) -> Sink:
    scheme = urlsplit(spec.uri).scheme.lower()
    if spec.format is SinkFormat.CLICKHOUSE:
        return ClickHouseSink(spec.uri, chdb_path=settings.chdb_path)
    if scheme == "s3":
        if spec.s3 is not None and spec.s3.endpoint:
            check_target(spec.s3.endpoint, "spec.sink.s3.endpoint", ErrorKind.SINK_ERROR)
        return ObjectStoreSink(spec.uri, spec.format, s3_storage_options(spec.s3))
    return FileSink(spec.uri, spec.format)
