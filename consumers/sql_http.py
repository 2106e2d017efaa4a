"""Read-only SQL over HTTP for the process that owns an embedded ClickHouse folder.

chdb admits one process per data folder, so on the local stack the otel consumer
(the writer) is the only one that can read the traces and the lineage warehouse.
It answers a small, compatible subset of ClickHouse's own HTTP interface,
`POST /` with the query as the body and `default_format=JSONEachRow`, so the
gateway reads with one client whether it talks to this or to a ClickHouse server's
HTTP port in a cluster.

Every query runs as a subquery of `SELECT * FROM (...) SETTINGS readonly = 1, ...`:
only one SELECT (no `;`), no writes, no DDL, no table functions (`file()`, `url()`:
readonly forbids them), bounded in time and result size.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

MAX_QUERY_BYTES = 256 * 1024
MAX_EXECUTION_S = 30
MAX_RESULT_ROWS = 1_000_000

Runner = Callable[[str], Awaitable[str]]
_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"", re.DOTALL)


class QueryRefused(ValueError):
    """The query is not one read-only statement; the message says why."""


def guarded(query: str) -> str:
    """`query` wrapped so that it can only read, within limits."""
    text = query.strip().rstrip(";").strip()
    if not text:
        raise QueryRefused("empty query")
    if ";" in _LITERAL.sub("", text):
        raise QueryRefused("one statement per request (no ';')")
    head = text.split(None, 1)[0].upper()
    if head not in {"SELECT", "WITH"}:
        raise QueryRefused(f"only SELECT queries are answered here, not {head[:20]}")
    return (
        f"SELECT * FROM (\n{text}\n) SETTINGS readonly = 1, "
        f"max_execution_time = {MAX_EXECUTION_S}, max_result_rows = {MAX_RESULT_ROWS}, "
        "result_overflow_mode = 'throw'"
    )
