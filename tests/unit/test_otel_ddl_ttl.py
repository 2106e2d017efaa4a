"""The tables' TTL (`ttl_days`), in a real ClickHouse engine (chdb): every table the
consumer makes, `pipeline_runs` included, keeps rows `ttl_days` days and no longer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from consumers.otel.backend import ChdbBackend
from consumers.otel.ddl import PIPELINE_RUNS, create_statements

pytestmark = pytest.mark.asyncio
DAY_NS = 86_400 * 10**9


@pytest.fixture
async def chdb(tmp_path: Path) -> AsyncIterator[ChdbBackend]:
    backend = ChdbBackend(str(tmp_path / "chdb"), database="otel")
    await backend.setup(create_statements("otel", ttl_days=3))
    yield backend
    await backend.close()


def run_row(run_id: str, start_ns: int) -> dict[str, Any]:
    return {
        "RunId": run_id,
        "Stage": "extract",
        "Pipeline": "orders",
        "ServiceName": "stage",
        "TraceId": "01" * 16,
        "SpanId": "02" * 8,
        "SpanName": "stage extract",
        "StartTime": start_ns,
        "EndTime": start_ns + 1000,
        "DurationNs": 1000,
        "Status": "Ok",
        "StatusMessage": "",
        "RecordsIn": 1,
        "RecordsOut": 1,
        "Attributes": {},
    }


async def test_every_table_is_made_with_the_ttl(chdb: ChdbBackend) -> None:
    tables = await chdb.query(
        "SELECT name, create_table_query AS q FROM system.tables "
        "WHERE database = 'otel' AND engine LIKE '%MergeTree'"
    )
    assert "pipeline_runs" in {t["name"] for t in tables}
    without = sorted(t["name"] for t in tables if "toIntervalDay(3)" not in t["q"])
    assert not without, f"tables without the 3-day TTL: {without}"


async def test_pipeline_runs_drop_the_runs_past_the_ttl_and_keep_the_rest(
    chdb: ChdbBackend,
) -> None:
    now = time.time_ns()
    rows = [run_row("old", now - 5 * DAY_NS), run_row("recent", now - 1 * DAY_NS)]
    await chdb.insert(PIPELINE_RUNS, rows, "ttl-test")
    await chdb.query("OPTIMIZE TABLE otel.pipeline_runs FINAL")
    kept = await chdb.query("SELECT RunId FROM otel.pipeline_runs FINAL ORDER BY RunId")
    assert [r["RunId"] for r in kept] == ["recent"]
