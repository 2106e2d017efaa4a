"""chdb is a real ClickHouse engine in process: DDL, inserts and deduplication for real."""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from chdb import session as _chdb_session
from clickhouse_driver.block import RowOrientedBlock
from clickhouse_driver.bufferedwriter import BufferedSocketWriter
from clickhouse_driver.connection import ServerInfo
from clickhouse_driver.context import Context
from clickhouse_driver.streams.native import BlockOutputStream
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from consumers.otel.backend import BackendError, ChdbBackend, NativeBackend, to_json_each_row
from consumers.otel.columns import Columns
from consumers.otel.ddl import (
    EXP_HISTOGRAM,
    GAUGE,
    HISTOGRAM,
    PIPELINE_RUNS,
    SUM,
    SUMMARY,
    TABLES,
    TRACES,
    create_statements,
    insert_prefix,
)
from consumers.otel.decode import (
    decode_metric_columns,
    decode_metrics,
    decode_trace_columns,
    decode_trace_tables,
)
from consumers.samples import T0, metrics_request, run_trace, span, traces_request

# chdb's session API is only partly annotated.
chdb_session: Any = _chdb_session


@pytest.fixture
async def chdb(tmp_path: Path) -> AsyncIterator[ChdbBackend]:
    backend = ChdbBackend(str(tmp_path / "chdb"), database="otel")
    await backend.setup()
    yield backend
    await backend.close()


async def insert_tables(b: ChdbBackend, tables: dict[str, Any], token: str) -> None:
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
        "otel_metrics_exponential_histogram",
        "otel_metrics_summary",
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


class ChdbNativeClient:
    """Stands in for `clickhouse_driver.Client`, answered by ClickHouse itself (chdb).

    An INSERT's rows go through clickhouse-driver's own Native block writer, for the
    column types the table really has (what a server sends back as the sample block),
    and ClickHouse reads that block as the Native format, with the settings the driver
    would send along. Everything else is run as it is. So what NativeBackend hands the
    driver must be what the tables take: integer nanoseconds for DateTime64(9), dicts
    for the maps, equal-length lists for a Nested column.
    """

    def __init__(self, session: Any, folder: Path, **kwargs: Any) -> None:
        self.session = session
        self.folder = folder
        self.kwargs = kwargs
        self.inserts: list[tuple[str, int]] = []
        context = Context()
        context.server_info = ServerInfo("chdb", 0, 0, 0, 0, "UTC", "chdb", 0)
        context.settings = {}
        context.client_settings = {
            "strings_as_bytes": False,
            "strings_encoding": "utf-8",
            "use_numpy": False,
        }
        self.context = context

    @staticmethod
    def _settings(settings: dict[str, Any] | None) -> str:
        if not settings:
            return ""
        parts = [
            f"{k} = {v}" if isinstance(v, int) else f"{k} = '{v}'" for k, v in settings.items()
        ]
        return " SETTINGS " + ", ".join(parts)

    def _rows(self, sql: str) -> list[list[Any]]:
        text = str(self.session.query(sql, "JSONCompactEachRow"))
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def execute(
        self,
        sql: str,
        data: list[tuple[Any, ...]] | None = None,
        settings: dict[str, Any] | None = None,
        with_column_types: bool = False,
    ) -> Any:
        if data is not None:
            return self._insert(sql, data, settings)
        if with_column_types:
            text = str(self.session.query(sql, "JSONCompactEachRowWithNamesAndTypes"))
            names, types, *rows = (json.loads(line) for line in text.splitlines())
            return [tuple(r) for r in rows], list(zip(names, types, strict=True))
        self.session.query(sql + self._settings(settings))
        return []

    def _insert(
        self, sql: str, data: list[tuple[Any, ...]], settings: dict[str, Any] | None
    ) -> int:
        head = re.fullmatch(r"INSERT INTO `(\w+)`\.`(\w+)` \((.*)\) VALUES", sql)
        assert head is not None, sql
        database, table, column_list = head.groups()
        names = [c.strip().strip("`") for c in column_list.split(",")]
        types = dict(
            self._rows(
                "SELECT name, type FROM system.columns "
                f"WHERE database = '{database}' AND table = '{table}'"
            )
        )
        block = RowOrientedBlock([(n, types[n]) for n in names], list(data))
        sink = _Bytes()
        writer = BufferedSocketWriter(sink, 1 << 16)
        BlockOutputStream(writer, self.context).write(block)
        path = self.folder / f"block-{len(self.inserts)}.native"
        path.write_bytes(sink.data.getvalue())
        self.session.query(
            f"{sql.removesuffix(' VALUES')} SELECT * FROM file('{path}', 'Native')"
            + self._settings(settings)
        )
        self.inserts.append((table, len(data)))
        return len(data)

    def disconnect(self) -> None:
        pass


class _Bytes:
    """The socket BufferedSocketWriter flushes into."""

    def __init__(self) -> None:
        self.data = io.BytesIO()

    def sendall(self, chunk: bytes) -> None:
        self.data.write(chunk)


async def test_native_backend_rows_land_in_clickhouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = chdb_session.Session(str(tmp_path / "chdb"))
    clients: list[ChdbNativeClient] = []

    def client(**kwargs: Any) -> ChdbNativeClient:
        clients.append(ChdbNativeClient(session, tmp_path, **kwargs))
        return clients[-1]

    monkeypatch.setattr("clickhouse_driver.Client", client)  # the backend imports it when opened
    try:
        b = NativeBackend("clickhouse://u:p%40ss@ch.local:9440/telemetry?secure=true")
        (driver,) = clients
        assert driver.kwargs["host"] == "ch.local" and driver.kwargs["port"] == 9440
        assert driver.kwargs["user"] == "u" and driver.kwargs["password"] == "p@ss"
        assert driver.kwargs["secure"] is True
        assert b.database == "telemetry"
        await b.setup()
        tables = await b.query("SELECT name FROM system.tables WHERE database = 'telemetry'")
        assert {r["name"] for r in tables} >= {t.name for t in TABLES.values()}

        request = run_trace("run-n", children=1)
        root_span = request.resource_spans[0].scope_spans[0].spans[0]
        traces = decode_trace_tables(request.SerializeToString())
        metrics = decode_metrics(metrics_request(run_id="run-n").SerializeToString())
        for _ in range(2):  # the second time is a redelivery: the same tokens
            for name, rows in {**traces, **metrics}.items():
                await b.insert(TABLES[name], rows, f"native/{name}")
        assert len(driver.inserts) == 2 * 5

        (root,) = await b.query(
            "SELECT toUnixTimestamp64Nano(Timestamp) AS ns, SpanKind, SpanAttributes, "
            "Duration, ParentSpanId FROM telemetry.otel_traces "
            f"WHERE SpanId = '{root_span.span_id.hex()}'"
        )
        assert int(root["ns"]) == T0  # integer nanoseconds, not seconds or microseconds
        assert (root["SpanKind"], root["ParentSpanId"]) == ("Server", "")
        assert int(root["Duration"]) == 40_000_000
        assert root["SpanAttributes"] == {
            "lineagehub.run_id": "run-n",
            "lineagehub.pipeline": "orders",
        }
        counts = await b.query(
            "SELECT (SELECT count() FROM telemetry.otel_traces) AS spans, "
            "(SELECT count() FROM telemetry.otel_traces_trace_id_ts) AS lookups, "
            "(SELECT count() FROM telemetry.pipeline_runs) AS runs, "
            "(SELECT count() FROM telemetry.otel_metrics_histogram) AS histograms"
        )
        assert {k: int(v) for k, v in counts[0].items()} == {
            "spans": 1 + 3 * 2,
            "lookups": 1,
            "runs": 4,
            "histograms": 1,
        }
        (transform,) = await b.query(
            "SELECT SpanName, RecordsIn, RecordsOut, Status, "
            "toUnixTimestamp64Nano(EndTime) - toUnixTimestamp64Nano(StartTime) AS ns "
            "FROM telemetry.pipeline_runs FINAL WHERE RunId = 'run-n' AND Stage = 'transform'"
        )
        assert transform["SpanName"] == "stage transform"
        assert (transform["RecordsIn"], transform["RecordsOut"]) == (200, 199)
        assert (transform["Status"], int(transform["ns"])) == ("Ok", 9_000_000)
        (h,) = await b.query(
            "SELECT Count, Sum, BucketCounts, ExplicitBounds, Min, Max, "
            "`Exemplars.TraceId` AS ex, toUnixTimestamp64Nano(TimeUnix) AS ns, "
            "AggregationTemporality FROM telemetry.otel_metrics_histogram"
        )
        assert (int(h["Count"]), h["Sum"], h["Min"], h["Max"]) == (3, 4.5, 0.5, 2.0)
        assert [int(c) for c in h["BucketCounts"]] == [1, 2, 0]
        assert h["ExplicitBounds"] == [1, 2]
        assert h["ex"] == ["0102030405060708090a0b0c0d0e0f10"]
        assert (int(h["ns"]), h["AggregationTemporality"]) == (T0, 1)
        (s,) = await b.query("SELECT Value, IsMonotonic FROM telemetry.otel_metrics_sum")
        assert s == {"Value": 99.5, "IsMonotonic": True}
    finally:
        session.close()


def every_metric_type() -> bytes:
    """The sample gauge, sum and histogram, plus a summary and an exponential histogram."""
    request = metrics_request(run_id="run-m")
    metrics = request.resource_metrics[0].scope_metrics[0].metrics
    summary = metrics.add(name="latency", unit="s")
    point = summary.summary.data_points.add(
        start_time_unix_nano=T0 - 10, time_unix_nano=T0 + 1, count=4, sum=2.5, flags=1
    )
    point.quantile_values.add(quantile=0.5, value=0.6)
    point.quantile_values.add(quantile=0.99, value=1.5)
    point.attributes.add(key="stage", value=AnyValue(string_value="load"))
    exp = metrics.add(name="bytes", unit="By")
    exp.exponential_histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    ep = exp.exponential_histogram.data_points.add(
        start_time_unix_nano=T0 - 10, time_unix_nano=T0 + 2, count=6, scale=3, zero_count=1
    )
    ep.sum, ep.min = 30.5, 0.25  # `max` left unset: stored as 0, as the exporter does
    ep.positive.offset, ep.negative.offset = -2, 4
    ep.positive.bucket_counts.extend([1, 2, 0])
    ep.negative.bucket_counts.extend([2])
    ep.exemplars.add(time_unix_nano=T0, as_int=7, span_id=bytes(range(1, 9)))
    return request.SerializeToString()


async def test_every_metric_type_is_stored(chdb: ChdbBackend) -> None:
    """No OTLP metric type is left without a table: summaries and exponential histograms
    land in the exporter's tables, every field where the exporter puts it."""
    tables = decode_metric_columns(every_metric_type())
    assert {name: len(c) for name, c in tables.items()} == {
        t.name: 1 for t in (GAUGE, SUM, HISTOGRAM, EXP_HISTOGRAM, SUMMARY)
    }
    await insert_tables(chdb, dict(tables), "all-types")
    (s,) = await chdb.query(
        "SELECT ServiceName, MetricName, MetricUnit, Attributes, Count, Sum, Flags, "
        "ValueAtQuantiles.Quantile AS q, ValueAtQuantiles.Value AS v, "
        "toUnixTimestamp64Nano(TimeUnix) AS ns FROM otel.otel_metrics_summary"
    )
    assert s == {
        "ServiceName": "pipeline-runner",
        "MetricName": "latency",
        "MetricUnit": "s",
        "Attributes": {"stage": "load"},
        "Count": 4,
        "Sum": 2.5,
        "Flags": 1,
        "q": [0.5, 0.99],
        "v": [0.6, 1.5],
        "ns": T0 + 1,
    }
    (e,) = await chdb.query(
        "SELECT Count, Sum, Scale, ZeroCount, PositiveOffset, PositiveBucketCounts, "
        "NegativeOffset, NegativeBucketCounts, Min, Max, AggregationTemporality, "
        "Exemplars.Value AS ev, Exemplars.SpanId AS es, Exemplars.TraceId AS et "
        "FROM otel.otel_metrics_exponential_histogram"
    )
    assert e == {
        "Count": 6,
        "Sum": 30.5,
        "Scale": 3,
        "ZeroCount": 1,
        "PositiveOffset": -2,
        "PositiveBucketCounts": [1, 2, 0],
        "NegativeOffset": 4,
        "NegativeBucketCounts": [2],
        "Min": 0.25,
        "Max": 0,
        "AggregationTemporality": 1,
        "ev": [7],
        "es": ["0102030405060708"],
        "et": [""],
    }


def rich_trace() -> bytes:
    """Spans with every kind of cell: typed and nested attributes, events with
    attributes, links, unicode, an empty parent."""
    tid = bytes(range(1, 17))
    root = span(tid, bytes(range(1, 9)), "räkna ✓", attributes={"n": 3, "ok": True, "r": 0.5})
    child = span(tid, bytes(range(2, 10)), "child", parent=bytes(range(1, 9)), start=T0 + 7)
    one = ArrayValue(values=[AnyValue(int_value=1)])
    child.attributes.add(key="list", value=AnyValue(array_value=one))
    child.events.add(time_unix_nano=T0 + 8, name="retry").attributes.add(
        key="attempt", value=AnyValue(int_value=2)
    )
    child.events.add(time_unix_nano=T0 + 9, name="done")
    child.links.add(trace_id=tid, span_id=bytes(range(1, 9)), trace_state="k=v").attributes.add(
        key="why", value=AnyValue(string_value="follows")
    )
    return traces_request([root, child], service="svc", region="eu").SerializeToString()


async def test_columns_store_what_json_rows_store(chdb: ChdbBackend) -> None:
    """The columnar path (decoder -> Arrow) and the row path it replaced (row dicts as
    JSONEachRow, parsed by ClickHouse) store identical rows: DISTINCT sees one copy."""
    raw = rich_trace()
    spans = decode_trace_columns(raw)[TRACES.name]
    assert isinstance(spans, Columns)
    await chdb.insert(TRACES, spans, "arrow")
    rows = decode_trace_tables(raw)[TRACES.name]
    await chdb.query_text(
        f"{insert_prefix('otel', TRACES)} SETTINGS insert_deduplication_token = 'json', "
        f"session_timezone = 'UTC' FORMAT JSONEachRow\n{to_json_each_row(TRACES, rows)}"
    )
    assert await count(chdb, "SELECT count() FROM otel.otel_traces") == 4
    assert await count(chdb, "SELECT count() FROM (SELECT DISTINCT * FROM otel.otel_traces)") == 2
    (child,) = await chdb.query(
        "SELECT SpanAttributes, Events.Attributes AS ea, Links.Attributes AS la, "
        "toUnixTimestamp64Nano(Events.Timestamp[2]) AS t2 FROM otel.otel_traces "
        "WHERE SpanName = 'child' LIMIT 1"
    )
    assert child == {
        "SpanAttributes": {"list": "[1]"},
        "ea": [{"attempt": "2"}, {}],
        "la": [{"why": "follows"}],
        "t2": T0 + 9,
    }


async def test_rows_a_column_type_cannot_hold_are_the_rows_fault(chdb: ChdbBackend) -> None:
    """A row missing a column, or text that is not UTF-8, fails the insert as the data's
    fault (not transient): the consumer isolates and dead-letters that record alone."""
    (good,) = decode_trace_tables(rich_trace())[TRACES.name][:1]
    missing = {k: v for k, v in good.items() if k != "SpanName"}
    broken = {**good, "SpanName": "bad \ud800"}
    for rows in ([missing], [broken]):
        with pytest.raises(BackendError) as caught:
            await chdb.insert(TRACES, rows, "bad")
        assert not caught.value.transient
    assert await count(chdb, "SELECT count() FROM otel.otel_traces") == 0


async def test_a_killed_writers_spooled_batch_is_removed_on_open(tmp_path: Path) -> None:
    """A batch file left behind by a process killed mid-insert is not kept forever (the
    batch itself is replayed from Kafka)."""
    first = ChdbBackend(str(tmp_path / "spool"), database="otel")
    await first.close()
    stale = tmp_path / "spool" / "lineagehub-spool" / "insert-left.arrow"
    stale.write_bytes(b"partial")
    again = ChdbBackend(str(tmp_path / "spool"), database="otel")
    try:
        assert not stale.exists()
        await again.setup()
        await again.insert(TRACES, decode_trace_tables(rich_trace())[TRACES.name], "t")
        assert await count(again, "SELECT count() FROM otel.otel_traces") == 2
        assert list(stale.parent.iterdir()) == []  # nothing left after an insert either
    finally:
        await again.close()
