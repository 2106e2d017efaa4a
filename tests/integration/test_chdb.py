"""ClickHouse through chdb in the stack's state dir: the column types the OTel tables use."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from chdb import session

if TYPE_CHECKING:
    from tests.conftest import StackHandle

pytestmark = pytest.mark.dataplane


def _open(path: Path) -> Any:
    """A chdb session on `path` (chdb ships without complete type hints)."""
    return session.Session(str(path))  # type: ignore[no-untyped-call]


def _rows(sess: Any, sql: str) -> list[dict[str, object]]:
    text = str(sess.query(sql, "JSONEachRow"))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_mergetree_roundtrip_persists_across_sessions(stack: StackHandle) -> None:
    assert stack.env["CLICKHOUSE_BACKEND"] == "chdb"
    assert Path(stack.env["CLICKHOUSE_CHDB_PATH"]).is_dir()
    # A folder of its own beside the stack's: the otel consumer, when it runs, holds
    # the stack's folder, and chdb admits one process per folder.
    path = Path(stack.env["LINEAGE_HUB_STATE"]) / "data" / f"chdb-test-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    db = f"t_{uuid.uuid4().hex[:10]}"

    first = _open(path)
    try:
        first.query(f"CREATE DATABASE {db}")
        first.query(
            f"""
            CREATE TABLE {db}.spans (
                Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
                ServiceName LowCardinality(String),
                SpanName LowCardinality(String),
                SpanAttributes Map(LowCardinality(String), String),
                Duration UInt64
            ) ENGINE = MergeTree
            PARTITION BY toDate(Timestamp)
            ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
            """
        )
        first.query(
            f"""
            INSERT INTO {db}.spans VALUES
              ('2026-01-02 03:04:05.123456789', 'runner', 'extract',
               {{'rows': '10', 'stage': 'extract'}}, 1500),
              ('2026-01-02 03:04:06.000000001', 'runner', 'load', {{'stage': 'load'}}, 2500),
              ('2026-01-02 03:04:07.5', 'operator', 'reconcile', map(), 10)
            """
        )
        rows = _rows(
            first,
            f"""
            SELECT ServiceName, count() AS n, sum(Duration) AS total,
                   max(toString(Timestamp)) AS last
            FROM {db}.spans GROUP BY ServiceName ORDER BY ServiceName
            """,
        )
        assert [(r["ServiceName"], int(str(r["n"]))) for r in rows] == [
            ("operator", 1),
            ("runner", 2),
        ]
        assert rows[1]["last"] == "2026-01-02 03:04:06.000000001"  # nanoseconds kept
        stage = _rows(
            first, f"SELECT SpanAttributes['rows'] AS r FROM {db}.spans WHERE SpanName = 'extract'"
        )
        assert stage == [{"r": "10"}]
    finally:
        first.close()

    second = _open(path)
    try:
        types = _rows(
            second,
            f"""
            SELECT name, type FROM system.columns
            WHERE database = '{db}' AND table = 'spans' ORDER BY position
            """,
        )
        assert {str(t["name"]): t["type"] for t in types} == {
            "Timestamp": "DateTime64(9)",
            "ServiceName": "LowCardinality(String)",
            "SpanName": "LowCardinality(String)",
            "SpanAttributes": "Map(LowCardinality(String), String)",
            "Duration": "UInt64",
        }
        engine = _rows(
            second, f"SELECT engine FROM system.tables WHERE database = '{db}' AND name = 'spans'"
        )
        assert engine == [{"engine": "MergeTree"}]
        (count,) = _rows(second, f"SELECT count() AS n FROM {db}.spans")
        assert int(str(count["n"])) == 3
    finally:
        second.query(f"DROP DATABASE IF EXISTS {db}")
        second.close()
