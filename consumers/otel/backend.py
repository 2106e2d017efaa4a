"""ClickHouse behind one interface: chdb (embedded, the local default) or a server.

Both backends run the same DDL (a `ddl.Schema`'s statements) and the same
`INSERT INTO db.table (columns)` with the same deduplication settings; they differ
only in how the rows travel: chdb reads one Arrow stream per insert (built column by
column from `columns.Columns`), the native protocol takes typed rows from
clickhouse-driver.

An insert takes `Columns` or `ArrowRows` (what the decoders give) or a list of row dicts.

Both clients are blocking, so calls run in a worker thread, one at a time per backend.

Each backend imports its client when it is opened, and chdb's inserts import pyarrow at
the first insert: a process on the native backend never maps chdb (~200 MiB resident).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlparse

import orjson

from consumers.otel.columns import ArrowRows, Columns
from consumers.otel.ddl import Table, create_statements, dedup_settings, insert_prefix

Row = Mapping[str, Any]
Rows = Sequence[Row] | Columns | ArrowRows


class BackendError(Exception):
    """A ClickHouse call failed. `transient`: the store failed, not the rows (retrying
    later can help, dead-lettering never does). A failure that is not transient may still
    be the store's: the consumer tells by whether other rows are accepted meanwhile."""

    def __init__(self, message: str, transient: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code


# ClickHouse error codes that say "the server cannot take writes now", whatever the rows:
# any record would fail the same way, so none of them may be dead-lettered for it.
STORE_SIDE_CODES = frozenset(
    {
        16,  # NO_SUCH_COLUMN_IN_TABLE: the table was changed under us
        47,  # UNKNOWN_IDENTIFIER
        60,  # UNKNOWN_TABLE: dropped, or not created yet
        75,  # CANNOT_WRITE_TO_FILE_DESCRIPTOR: disk full, I/O error
        76,  # CANNOT_OPEN_FILE
        81,  # UNKNOWN_DATABASE
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY: a read-only user or profile
        173,  # CANNOT_ALLOCATE_MEMORY
        192,  # UNKNOWN_USER
        201,  # QUOTA_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        225,  # NO_ZOOKEEPER
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY: replica lost its coordination, read-only disk
        243,  # NOT_ENOUGH_SPACE: disk full (or under min_free_disk_bytes_to_perform_insert)
        252,  # TOO_MANY_PARTS: merges fall behind
        285,  # TOO_FEW_LIVE_REPLICAS
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR: an errno from the OS (ENOSPC, EROFS, ...)
        439,  # CANNOT_SCHEDULE_TASK
        497,  # ACCESS_DENIED: grants changed
        516,  # AUTHENTICATION_FAILED
        774,  # TABLE_IS_PERMANENTLY_READ_ONLY: table_readonly, a read-only disk
        999,  # KEEPER_EXCEPTION
        1000,  # POCO_EXCEPTION: network and file errors below ClickHouse
    }
)
_CODE = re.compile(r"Code: (\d+)\.")


def error_code(text: str) -> int | None:
    """The ClickHouse error code in an exception's text (`Code: 243. DB::Exception: ...`)."""
    match = _CODE.search(text)
    return int(match.group(1)) if match else None


class Backend(Protocol):
    @property
    def database(self) -> str: ...

    async def setup(self, statements: Sequence[str] | None = None) -> None: ...
    async def insert(self, table: Table, rows: Rows, token: str) -> None: ...
    async def query(self, sql: str) -> list[dict[str, Any]]: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


def _ns_text(ns: int) -> str:
    """Integer nanoseconds as 'YYYY-MM-DD hh:mm:ss.nnnnnnnnn' (UTC), exact for DateTime64(9).

    Plain 'seconds.fraction' is ambiguous to ClickHouse's parser for small values.
    """
    sec, frac = divmod(int(ns), 1_000_000_000)
    return _second_text(sec) + f".{frac:09d}"


@functools.lru_cache(maxsize=4096)
def _second_text(sec: int) -> str:
    """A batch's rows share few distinct seconds: format each once."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sec))


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def to_json_each_row(table: Table, rows: Sequence[Row]) -> str:
    lines = []
    columns, times = table.columns, [c for c in table.columns if c in table.time_columns]
    for row in rows:
        out = {col: row[col] for col in columns}
        for col in times:
            value = out[col]
            out[col] = [_ns_text(v) for v in value] if isinstance(value, list) else _ns_text(value)
        for col, value in out.items():
            if type(value) is float and not math.isfinite(value):
                out[col] = _json_value(value)
        try:
            lines.append(orjson.dumps(out))
        except orjson.JSONEncodeError:  # ints past 64 bits, lone surrogates: escaped
            lines.append(json.dumps(out, separators=(",", ":")).encode())
    return b"\n".join(lines).decode()


def _settings_clause(settings: Mapping[str, str | int]) -> str:
    parts = []
    for key, value in settings.items():
        rendered = str(value) if isinstance(value, int) else "'" + _escape(str(value)) + "'"
        parts.append(f"{key} = {rendered}")
    return "SETTINGS " + ", ".join(parts)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _chdb_error(exc: Exception) -> BackendError:
    """Embedded: no network, but the same engine: a read-only table, a full disk, too many
    parts, memory are the store's, whatever the rows."""
    text = str(exc)
    code = error_code(text)
    return BackendError(text[:2000], transient=code in STORE_SIDE_CODES, code=code)


class ChdbBackend:
    """Embedded ClickHouse through chdb's session API, with data kept under `path`.

    chdb allows one open session per process; this object owns it.
    """

    def __init__(self, path: str, database: str = "otel") -> None:
        self.path = path
        self.database = database
        from chdb import session  # chdb's session API is only partly annotated

        self._session: Any = session.Session(path)  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        # Batches on their way in (see `_insert_arrow`), beside the data: writable wherever
        # the data is.
        self._spool = Path(path) / "lineagehub-spool"
        self._spool.mkdir(parents=True, exist_ok=True)
        for stale in self._spool.glob("insert-*.arrow"):  # left by a process that was killed
            stale.unlink(missing_ok=True)

    def _run(self, sql: str, fmt: str = "CSV") -> str:
        with self._lock:
            try:
                result = self._session.query(sql, fmt)
            except Exception as exc:
                raise _chdb_error(exc) from None
        return str(result)

    def _insert_arrow(self, sql: str, table: Table, rows: Rows) -> None:
        import pyarrow as pa

        try:
            columns = (
                rows if isinstance(rows, Columns | ArrowRows) else Columns.from_rows(table, rows)
            )
            arrow = columns.to_arrow()
        except (KeyError, TypeError, ValueError, OverflowError, pa.ArrowException) as exc:
            # The rows themselves (a missing column, a value its type cannot hold, text
            # that is not UTF-8): not the store's fault.
            raise BackendError(f"{type(exc).__name__}: {exc}"[:2000], transient=False) from None
        # ClickHouse reads the batch as an Arrow stream from a private file: parsed in C++
        # with the GIL free, so the next batch decodes meanwhile (2x the `Python()` table
        # function, which reads the Arrow table through Python; chdb's streaming
        # `send_insert` is not used: it reports rows written for an insert the table
        # refused, a constraint for one).
        fd, path = tempfile.mkstemp(prefix="insert-", suffix=".arrow", dir=self._spool)
        try:
            with os.fdopen(fd, "wb") as sink, pa.ipc.new_stream(sink, arrow.schema) as writer:
                writer.write_table(arrow)
            self._run(f"{sql} SELECT * FROM file('{_escape(path)}', ArrowStream)")
        finally:
            Path(path).unlink()

    async def setup(self, statements: Sequence[str] | None = None) -> None:
        """Run `statements` (default: the otel tables' DDL)."""
        for sql in statements if statements is not None else create_statements(self.database):
            await asyncio.to_thread(self._run, sql)

    async def insert(self, table: Table, rows: Rows, token: str) -> None:
        if not len(rows):
            return
        sql = (
            f"{insert_prefix(self.database, table)} "
            f"{_settings_clause({**dedup_settings(token), 'session_timezone': 'UTC'})}"
        )
        await asyncio.to_thread(self._insert_arrow, sql, table, rows)

    async def query(self, sql: str) -> list[dict[str, Any]]:
        text = await self.query_text(sql)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    async def query_text(self, sql: str) -> str:
        """The answer as JSONEachRow text (what the read-only SQL endpoint serves)."""
        return await asyncio.to_thread(self._run, sql, "JSONEachRow")

    async def ping(self) -> bool:
        try:
            await asyncio.to_thread(self._run, "SELECT 1")
        except BackendError:
            return False
        return True

    async def close(self) -> None:
        with self._lock:
            self._session.close()


class NativeBackend:
    """A ClickHouse server over the native protocol (clickhouse-driver).

    `url`: `clickhouse://user:password@host:9000/database?secure=false`.
    """

    def __init__(self, url: str, database: str | None = None) -> None:
        parsed = urlparse(url)
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        self.database = database or (parsed.path.lstrip("/") or "otel")
        from clickhouse_driver import Client

        self._client = Client(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 9000,
            user=unquote(parsed.username or "default"),
            password=unquote(parsed.password or ""),
            secure=options.get("secure", "false").lower() == "true",
            connect_timeout=5,
            send_receive_timeout=60,
        )
        self._lock = threading.Lock()

    def _execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        from clickhouse_driver import errors

        with self._lock:
            try:
                return self._client.execute(sql, *args, **kwargs)
            except (errors.NetworkError, errors.SocketTimeoutError, OSError, EOFError) as exc:
                self._client.disconnect()
                raise BackendError(str(exc)[:2000], transient=True) from None
            except errors.ServerException as exc:
                code = getattr(exc, "code", None)
                transient = code in STORE_SIDE_CODES
                raise BackendError(str(exc)[:2000], transient=transient, code=code) from None
            except Exception as exc:
                # The driver refusing the rows themselves (a value its column type cannot
                # encode, text that is not UTF-8): the data, not the server, so not
                # transient; the consumer retries record by record and dead-letters only
                # a record whose rows fail while other rows are accepted.
                self._client.disconnect()
                raise BackendError(f"{type(exc).__name__}: {exc}"[:2000], transient=False) from None

    async def setup(self, statements: Sequence[str] | None = None) -> None:
        for sql in statements if statements is not None else create_statements(self.database):
            await asyncio.to_thread(self._execute, sql)

    async def insert(self, table: Table, rows: Rows, token: str) -> None:
        if not len(rows):
            return
        dicts = rows if isinstance(rows, Sequence) else rows.rows()
        data = [tuple(row[c] for c in table.columns) for row in dicts]
        await asyncio.to_thread(
            self._execute,
            f"{insert_prefix(self.database, table)} VALUES",
            data,
            settings=dedup_settings(token),
        )

    async def query(self, sql: str) -> list[dict[str, Any]]:
        rows, columns = await asyncio.to_thread(self._execute, sql, with_column_types=True)
        names = [c[0] for c in columns]
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def ping(self) -> bool:
        try:
            await asyncio.to_thread(self._execute, "SELECT 1")
        except BackendError:
            return False
        return True

    async def close(self) -> None:
        await asyncio.to_thread(self._client.disconnect)


def open_backend(
    kind: str, *, chdb_path: str = "", url: str = "", database: str = "otel"
) -> Backend:
    if kind == "chdb":
        if not chdb_path:
            raise ValueError("the chdb backend needs a path (--chdb-path / CLICKHOUSE_CHDB_PATH)")
        return ChdbBackend(chdb_path, database)
    if kind == "native":
        if not url:
            raise ValueError("the native backend needs --clickhouse-url")
        return NativeBackend(url, database)
    raise ValueError(f"unknown ClickHouse backend {kind!r}")
