"""Pipeline metrics from ClickHouse's `pipeline_runs` table (written by the otel consumer).

`pipeline_runs` has one row per (run, stage) and a run-level row with `Stage = ''`
(columns: RunId, Stage, Pipeline, ServiceName, TraceId, SpanId, SpanName, StartTime,
EndTime, DurationNs, Status, StatusMessage, RecordsIn, RecordsOut, Attributes);
it is a ReplacingMergeTree, read with `FINAL`. `Status` holds the span status names
`Ok` / `Error` / `Unset`: a run counts as failed when its run-level span is `Error`.

Two ways in: a ClickHouse server over the native protocol (`CLICKHOUSE_URL`), or a
chdb folder this process owns (chdb lets one process open a folder; the local stack's
otel consumer holds its own, so the gateway cannot read that one).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlparse

from lineagehub.clickhouse_http import QueryFailed, query_rows
from lineagehub.warehouse_sql import quote

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class MetricsUnavailable(Exception):
    pass


class MetricsStore(Protocol):
    async def pipeline_metrics(
        self, window_s: int, pipeline: str | None
    ) -> list[dict[str, Any]]: ...
    async def ping(self) -> None: ...
    async def rows(self, sql: str) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


def metrics_sql(database: str, window_s: int, pipeline: str | None) -> str:
    """One row per pipeline: runs, outcomes, run durations and records, over `window_s`."""
    if not _IDENT.match(database):
        raise ValueError(f"bad database name {database!r}")
    where = f"StartTime >= now64(9) - toIntervalSecond({int(window_s)})"
    if pipeline is not None:
        where += f" AND Pipeline = {quote(pipeline)}"
    run = "Stage = ''"
    return f"""
SELECT
    Pipeline AS pipeline,
    uniqExactIf(RunId, {run}) AS runs,
    countIf({run} AND Status != 'Error') AS succeeded,
    countIf({run} AND Status = 'Error') AS failed,
    round(avgIf(DurationNs, {run}) / 1e9, 3) AS avg_duration_s,
    round(quantileExactIf(0.5)(DurationNs, {run}) / 1e9, 3) AS p50_duration_s,
    round(quantileExactIf(0.95)(DurationNs, {run}) / 1e9, 3) AS p95_duration_s,
    round(maxIf(DurationNs, {run}) / 1e9, 3) AS max_duration_s,
    sumIf(ifNull(RecordsIn, 0), Stage = 'extract') AS records_in,
    sumIf(ifNull(RecordsOut, 0), Stage = 'load') AS records_out,
    toString(maxIf(EndTime, {run})) AS last_finished
FROM {database}.pipeline_runs FINAL
WHERE {where}
GROUP BY Pipeline
ORDER BY Pipeline
"""


def shape(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON-friendly rows with a success rate (None when no run finished)."""
    out = []
    for r in rows:
        runs = int(r["runs"])
        succeeded = int(r["succeeded"])
        out.append(
            {
                "pipeline": r["pipeline"],
                "runs": runs,
                "succeeded": succeeded,
                "failed": int(r["failed"]),
                "successRate": round(succeeded / runs, 4) if runs else None,
                "durationSeconds": {
                    "avg": _num(r["avg_duration_s"]),
                    "p50": _num(r["p50_duration_s"]),
                    "p95": _num(r["p95_duration_s"]),
                    "max": _num(r["max_duration_s"]),
                },
                "recordsIn": int(r["records_in"]),
                "recordsOut": int(r["records_out"]),
                "lastFinished": r["last_finished"] if runs else None,
            }
        )
    return out


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number  # NaN when there are no rows


class _SqlStore:
    """The metrics queries, over whichever ClickHouse a subclass talks to."""

    database: str

    def _query(self, sql: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def pipeline_metrics(self, window_s: int, pipeline: str | None) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(self._query, metrics_sql(self.database, window_s, pipeline))
        return shape(rows)

    async def ping(self) -> None:
        await asyncio.to_thread(self._query, "SELECT 1")

    async def rows(self, sql: str) -> list[dict[str, Any]]:
        """Any read query's rows (the lineage API's queries)."""
        return await asyncio.to_thread(self._query, sql)


class NativeStore(_SqlStore):
    """`clickhouse://user:password@host:9000/database?secure=false`."""

    def __init__(self, url: str, database: str = "otel", timeout_s: float = 10.0) -> None:
        from clickhouse_driver import Client

        parsed = urlparse(url)
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        self.database = parsed.path.lstrip("/") or database
        self._client = Client(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 9000,
            user=unquote(parsed.username or "default"),
            password=unquote(parsed.password or ""),
            secure=options.get("secure", "false").lower() == "true",
            connect_timeout=min(5.0, timeout_s),
            send_receive_timeout=timeout_s,
        )
        self._lock = threading.Lock()

    def _query(self, sql: str) -> list[dict[str, Any]]:
        with self._lock:
            try:
                rows, columns = self._client.execute(sql, with_column_types=True)
            except Exception as exc:
                self._client.disconnect()
                raise MetricsUnavailable(
                    f"ClickHouse: {type(exc).__name__}: {exc}"[:1000]
                ) from None
        names = [c[0] for c in columns]
        return [dict(zip(names, row, strict=True)) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._client.disconnect()


class ChdbStore(_SqlStore):
    """An embedded ClickHouse folder owned by this process."""

    def __init__(self, path: str, database: str = "otel") -> None:
        from chdb import session

        self.database = database
        self._session: Any = session.Session(path)  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()

    def _query(self, sql: str) -> list[dict[str, Any]]:
        with self._lock:
            try:
                text = str(self._session.query(sql, "JSONEachRow"))
            except Exception as exc:
                raise MetricsUnavailable(f"chdb: {exc}"[:1000]) from None
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def close(self) -> None:
        with self._lock:
            self._session.close()


class HttpStore(_SqlStore):
    """ClickHouse's HTTP interface: a ClickHouse server (`http://user:pw@host:8123/?database=otel`)
    or, on the local stack, the chdb folder's owner answering the same protocol
    (`consumers/sql_http.py`). Queries are sent read-only."""

    def __init__(self, url: str, database: str = "otel", timeout_s: float = 15.0) -> None:
        options = {k: v[-1] for k, v in parse_qs(urlparse(url).query).items()}
        self.database = options.get("database") or database
        self._url = url
        self._timeout_s = timeout_s

    def _query(self, sql: str) -> list[dict[str, Any]]:
        try:
            return query_rows(self._url, sql, self.database, self._timeout_s)
        except QueryFailed as exc:
            raise MetricsUnavailable(str(exc)[:1000]) from None

    def close(self) -> None:
        pass


UNCONFIGURED = (
    "no ClickHouse configured: set CLICKHOUSE_URL (clickhouse://host:9000/otel) or "
    "CLICKHOUSE_HTTP_URL (http://host:8123/?database=otel, or the otel consumer's health port "
    "on the local stack). "
    "The local stack's embedded ClickHouse (chdb) is held by the otel consumer and "
    "cannot be opened by a second process."
)
