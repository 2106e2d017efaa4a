"""chdb is a real ClickHouse engine in process: DDL, inserts and deduplication for real."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from consumers.otel import backend as backend_mod
from consumers.otel.backend import ChdbBackend, NativeBackend, to_json_each_row
from consumers.otel.ddl import (
    GAUGE,
    HISTOGRAM,
    PIPELINE_RUNS,
    SUM,
    TABLES,
    TRACES,
    create_statements,
)
from consumers.otel.decode import decode_metrics, decode_trace_tables
from consumers.samples import T0, metrics_request, run_trace


@pytest.fixture
async def chdb(tmp_path: Path) -> AsyncIterator[ChdbBackend]:
    backend = ChdbBackend(str(tmp_path / "chdb"), database="otel")
    await backend.setup()
    yield backend
    await backend.close()


async def insert_tables(b: ChdbBackend, tables: dict[str, list[Any]], token: str) -> None:
    for name, rows in tables.items():
        await b.insert(TABLES[name], rows, f"{token}/{name}")


async def count(b: ChdbBackend, sql: str) -> int:
    (row,) = await b.query(sql)
    return int(next(iter(row.values())))


async def test_ddl_creates_the_exporter_tables_idempotently(chdb: ChdbBackend) -> None:
    await chdb.setup()  # second run: IF NOT EXISTS everywhere
    names = {
        r["name"]
        for r in await chdb.query("SELECT name FROM system.tables WHERE database = 'otel'")
    }
    assert names == {
        "otel_traces",
        "otel_traces_trace_id_ts",
        "otel_traces_trace_id_ts_mv",
        "otel_metrics_gauge",
        "otel_metrics_sum",
        "otel_metrics_histogram",
        "pipeline_runs",
    }
    cols = await chdb.query(
        "SELECT name, type FROM system.columns WHERE database = 'otel' AND table = 'otel_traces'"
    )
    types = {c["name"]: c["type"] for c in cols}
    assert types["Timestamp"] == "DateTime64(9)"
    assert types["Duration"] == "UInt64"
    assert types["SpanAttributes"] == "Map(LowCardinality(String), String)"
    assert types["Events.Timestamp"] == "Array(DateTime64(9))"
    assert list(types) == list(TRACES.columns)


async def test_spans_round_trip_with_nanoseconds_and_the_lookup_mv(chdb: ChdbBackend) -> None:
    request = run_trace("run-a", children=1)
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    await insert_tables(chdb, decode_trace_tables(request.SerializeToString()), "t/0/0-0")
    rows = await chdb.query(
        "SELECT TraceId, SpanId, ParentSpanId, SpanKind, StatusCode, "
        "toUnixTimestamp64Nano(Timestamp) AS ns, Duration "
        f"FROM otel.otel_traces WHERE TraceId = '{trace_id}' ORDER BY ns, Duration DESC"
    )
    assert len(rows) == 1 + 3 * 2
    root = rows[0]
    assert (root["ParentSpanId"], root["SpanKind"], root["StatusCode"]) == ("", "Server", "Unset")
    assert int(root["ns"]) == T0
    assert all(r["ParentSpanId"] for r in rows[1:])
    lookup = await chdb.query(
        f"SELECT TraceId, toUnixTimestamp(Start) AS s FROM otel.otel_traces_trace_id_ts "
        f"WHERE TraceId = '{trace_id}'"
    )
    assert lookup == [{"TraceId": trace_id, "s": T0 // 1_000_000_000}]


async def test_redelivered_batch_adds_no_rows(chdb: ChdbBackend) -> None:
    batch = decode_trace_tables(run_trace("run-b").SerializeToString())
    metrics = decode_metrics(metrics_request(run_id="run-b").SerializeToString())
    for _ in range(3):
        await insert_tables(chdb, batch, "otel-spans/0/10-19")
        await insert_tables(chdb, metrics, "otel-metrics/1/5-5")
    assert await count(chdb, "SELECT count() FROM otel.otel_traces") == 10
    assert await count(chdb, "SELECT count() FROM otel.otel_traces_trace_id_ts") == 1
    assert await count(chdb, "SELECT count() FROM otel.pipeline_runs") == 4
    for table in (GAUGE, SUM, HISTOGRAM):
        assert await count(chdb, f"SELECT count() FROM otel.{table.name}") == 1
    # A different batch (other token) is new data.
    await insert_tables(
        chdb, decode_trace_tables(run_trace("run-c").SerializeToString()), "x/0/20-29"
    )
    assert await count(chdb, "SELECT count() FROM otel.otel_traces") == 20


async def test_dedup_survives_reopening(tmp_path: Path) -> None:
    batch = decode_trace_tables(run_trace("run-d").SerializeToString())
    for _ in range(2):
        b = ChdbBackend(str(tmp_path / "reopen"), database="otel")
        await b.setup()
        await insert_tables(b, batch, "otel-spans/2/0-0")
        n = await count(b, "SELECT count() FROM otel.otel_traces")
        await b.close()
        assert n == 10


async def test_pipeline_runs_final_keeps_the_stage_span(chdb: ChdbBackend) -> None:
    tables = decode_trace_tables(run_trace("run-e").SerializeToString())
    await insert_tables(chdb, tables, "a")
    # A later batch carries only a child span of the transform stage (same run and stage).
    child = dict(next(r for r in tables[PIPELINE_RUNS.name] if r["Stage"] == "transform"))
    child.update(SpanName="transform.step9", DurationNs=1, RecordsIn=None)
    await chdb.insert(PIPELINE_RUNS, [child], "b")
    rows = await chdb.query(
        "SELECT Stage, SpanName, RecordsIn, RecordsOut, Status FROM otel.pipeline_runs FINAL "
        "WHERE RunId = 'run-e' ORDER BY Stage"
    )
    assert [r["Stage"] for r in rows] == ["", "extract", "load", "transform"]
    transform = rows[-1]
    assert transform == {
        "Stage": "transform",
        "SpanName": "stage transform",
        "RecordsIn": 200,
        "RecordsOut": 199,
        "Status": "Ok",
    }


async def test_metric_values_round_trip(chdb: ChdbBackend) -> None:
    await insert_tables(chdb, decode_metrics(metrics_request().SerializeToString()), "m")
    (h,) = await chdb.query(
        "SELECT Count, Sum, BucketCounts, ExplicitBounds, Min, Max, Exemplars.TraceId AS ex, "
        "toUnixTimestamp64Nano(TimeUnix) AS ns FROM otel.otel_metrics_histogram"
    )
    assert h["Count"] == 3 and h["Sum"] == 4.5
    assert h["BucketCounts"] == [1, 2, 0]
    assert h["ExplicitBounds"] == [1, 2]
    assert h["ex"] == ["0102030405060708090a0b0c0d0e0f10"]
    assert int(h["ns"]) == T0
    (s,) = await chdb.query("SELECT Value, IsMonotonic FROM otel.otel_metrics_sum")
    assert s == {"Value": 99.5, "IsMonotonic": True}


def test_non_finite_floats_and_negative_times_render() -> None:
    row: dict[str, Any] = dict.fromkeys(GAUGE.columns, "")
    row.update(
        {
            "Value": float("nan"),
            "StartTimeUnix": -1,
            "TimeUnix": 5,
            "Exemplars.TimeUnix": [1_000_000_001],
        }
    )
    text = to_json_each_row(GAUGE, [row])
    assert '"Value":"nan"' in text
    assert '"StartTimeUnix":"1969-12-31 23:59:59.999999999"' in text
    assert '"Exemplars.TimeUnix":["1970-01-01 00:00:01.000000001"]' in text


def test_ttl_is_rendered_when_asked() -> None:
    with_ttl = create_statements("otel", ttl_days=7)
    assert any("TTL toDate(Timestamp) + toIntervalDay(7)" in s for s in with_ttl)
    assert not any("TTL" in s for s in create_statements("otel"))


class FakeClient:
    calls: list[tuple[Any, ...]]

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls = []

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((sql, args, kwargs))
        if kwargs.get("with_column_types"):
            return [(1, "a")], [("n", "UInt8"), ("s", "String")]
        return []

    def disconnect(self) -> None:
        pass


async def test_native_backend_sends_the_same_sql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_mod, "Client", FakeClient)
    b = NativeBackend("clickhouse://u:p%40ss@ch.local:9440/telemetry?secure=true")
    client: FakeClient = b._client
    assert client.kwargs["host"] == "ch.local" and client.kwargs["port"] == 9440
    assert client.kwargs["password"] == "p@ss" and client.kwargs["secure"] is True
    assert b.database == "telemetry"
    await b.setup()
    assert [c[0] for c in client.calls] == create_statements("telemetry")
    rows = decode_trace_tables(run_trace("r").SerializeToString())[TRACES.name]
    client.calls.clear()
    await b.insert(TRACES, rows, "tok")
    ((sql, args, kwargs),) = client.calls
    assert sql.startswith("INSERT INTO `telemetry`.`otel_traces` (`Timestamp`, `TraceId`")
    assert sql.endswith(") VALUES")
    assert kwargs["settings"]["insert_deduplication_token"] == "tok"
    assert kwargs["settings"]["deduplicate_blocks_in_dependent_materialized_views"] == 1
    first = args[0][0]
    assert len(first) == len(TRACES.columns)
    assert first[0] == T0  # DateTime64(9) as integer ticks
    assert await b.query("SELECT 1") == [{"n": 1, "s": "a"}]
