"""The Grafana dashboards: valid JSON bound to the provisioned ClickHouse datasource, and
every panel's SQL run for real (chdb) on the tables the otel consumer writes."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers.otel.backend import ChdbBackend
from consumers.otel.ddl import TABLES
from consumers.otel.decode import decode_trace_tables
from consumers.samples import T0, run_trace

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "lineagehub-clickhouse"}
WINDOW = (946_684_800, 4_102_444_800)  # 2000-01-01 .. 2100-01-01, as Grafana's macros give


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def panels() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in DASHBOARDS:
        for panel in load(path)["panels"]:
            yield f"{path.stem}:{panel['title']}", panel


def expand(sql: str, variables: dict[str, str]) -> str:
    """Grafana's ClickHouse plugin macros and the `${var:singlequote}` variables, expanded."""
    start, end = WINDOW
    sql = re.sub(
        r"\$__timeFilter\((\w+)\)",
        lambda m: f"{m[1]} >= toDateTime({start}) AND {m[1]} <= toDateTime({end})",
        sql,
    )
    sql = re.sub(
        r"\$__timeInterval\((\w+)\)",
        lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL 60 second)",
        sql,
    )
    for name, value in variables.items():
        sql = sql.replace(f"${{{name}:singlequote}}", f"'{value}'")
    assert "$" not in sql, sql
    return sql


def test_dashboards_exist() -> None:
    assert {p.name for p in DASHBOARDS} == {"pipeline-runs.json", "traces.json"}
    assert (ROOT / "charts" / "lineage-hub" / "dashboards").resolve() == (
        ROOT / "dashboards"
    ).resolve()


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_json_shape(path: Path) -> None:
    dash = load(path)
    assert dash["uid"].startswith("lineagehub-") and len(dash["uid"]) <= 40
    assert dash["title"] and dash["schemaVersion"] >= 36
    assert "id" not in dash  # provisioned dashboards get their id from Grafana
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE
            assert target["editorType"] == "sql" and target["rawSql"].strip()
    for var in dash["templating"]["list"]:
        assert var["datasource"] == DATASOURCE
        assert var["allValue"] == "__all"


def test_panels_cover_the_issue() -> None:
    titles = {title.split(":", 1)[1] for title, _ in panels()}
    for wanted in (
        "Success rate",
        "Run duration p50 / p95",
        "Records processed per hour",
        "Errors by stage",
        "Stages per pipeline: duration and records",
        "Spans per service",
        "Slowest spans",
        "Error spans",
    ):
        assert wanted in titles


@pytest.fixture(scope="module")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChdbBackend]:
    """chdb with the consumer's tables and two decoded runs plus runner metrics."""
    backend = ChdbBackend(str(tmp_path_factory.mktemp("chdb")), database="otel")
    await backend.setup()
    for i, run_id in enumerate(("run-ok", "run-2")):
        tables = decode_trace_tables(run_trace(run_id, pipeline=f"orders-{i}").SerializeToString())
        for name, rows in tables.items():
            await backend.insert(TABLES[name], rows, f"{run_id}/{name}")
    # A failed stage span, as a runner reports an error.
    await backend.query(
        "INSERT INTO otel.pipeline_runs (RunId, Stage, Pipeline, ServiceName, StartTime, "
        "EndTime, DurationNs, Status, StatusMessage) VALUES ('run-bad', 'transform', "
        f"'orders-0', 'lineage-hub-runner', fromUnixTimestamp64Nano({T0}), "
        f"fromUnixTimestamp64Nano({T0 + 5_000_000}), 5000000, 'Error', 'quality check failed')"
    )
    await backend.query(
        "INSERT INTO otel.otel_traces (Timestamp, TraceId, SpanId, SpanName, ServiceName, "
        f"Duration, StatusCode, StatusMessage) VALUES (fromUnixTimestamp64Nano({T0}), 't-bad', "
        "'s-bad', 'stage transform', 'lineage-hub-runner', 5000000, 'Error', 'boom')"
    )
    attrs = "map('lineagehub.pipeline', 'orders-0', 'lineagehub.stage', 'transform')"
    for metric, value in (("lineagehub.rows.rejected", 3), ("lineagehub.quality.failed_rows", 2)):
        await backend.query(
            "INSERT INTO otel.otel_metrics_sum (ServiceName, MetricName, Attributes, "
            f"StartTimeUnix, TimeUnix, Value, AggregationTemporality, IsMonotonic) VALUES "
            f"('lineage-hub-runner', '{metric}', {attrs}, fromUnixTimestamp64Nano({T0}), "
            f"fromUnixTimestamp64Nano({T0 + 1000}), {value}, 2, true)"
        )
    await backend.query(
        "INSERT INTO otel.otel_metrics_gauge (ServiceName, MetricName, Attributes, TimeUnix, "
        "Value) VALUES ('lineage-hub-runner', 'lineagehub.process.memory.peak', "
        f"{attrs}, fromUnixTimestamp64Nano({T0}), 123456789)"
    )
    yield backend
    await backend.close()


def in_db(sql: str) -> str:
    """The datasource's default database is `otel`; name it where the panel leaves it out."""
    return re.sub(
        r"\b(FROM|JOIN)\s+(pipeline_runs|otel_\w+)\b",
        lambda m: f"{m[1]} otel.{m[2]}",
        sql,
    )


@pytest.mark.parametrize(("title", "panel"), list(panels()), ids=[t for t, _ in panels()])
@pytest.mark.parametrize("selection", ["__all", "orders-0"])
async def test_panel_sql_runs_and_returns_rows(
    store: ChdbBackend, title: str, panel: dict[str, Any], selection: str
) -> None:
    variables = {"pipeline": selection, "service": "__all"}
    if selection != "__all":
        variables["service"] = "lineage-hub-runner" if "traces" in title else "__all"
    for target in panel["targets"]:
        rows = await store.query(in_db(expand(target["rawSql"], variables)))
        assert rows, f"{title}: no rows"
        if target["format"] == 0:  # time series: a `time` column first
            assert next(iter(rows[0])) == "time", title


async def test_variable_queries(store: ChdbBackend) -> None:
    for path in DASHBOARDS:
        for var in load(path)["templating"]["list"]:
            rows = await store.query(in_db(var["query"]))
            assert rows, var["name"]
