"""The Grafana dashboards: valid JSON bound to the provisioned ClickHouse datasource, and
every panel's SQL run for real (chdb) on the tables the otel consumer writes: sample
traces, and a real run of the three stages whose spans and metrics the consumer's
decoder turns into rows (the run-detail dashboard is checked on that run). The
"lineage-hub: itself" dashboard reads the services' own /metrics through Prometheus:
each PromQL expression is checked against the series the gateway and the consumers
export (names, types, labels), rendered by their own metric objects."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumers.otel.backend import ChdbBackend
from consumers.otel.ddl import TABLES, Table
from consumers.otel.decode import decode_metrics, decode_trace_tables
from consumers.samples import T0, run_trace
from consumers.warehouse.ddl import LINEAGE_SCHEMA
from consumers.warehouse.decode import decode_lineage
from lineagehub.api import QualityCheck, SourceSpec, StageName, TransformSpec, new_run_id
from lineagehub.telemetry.lineage import run_event
from lineagehub.telemetry.spans import FixedSpan, encode
from lineagehub.topics import LINEAGE_TOPIC, METRICS_TOPIC, SPANS_TOPIC
from pipeline_runner.emit import MemoryEmitter
from pipeline_runner.runner import Delivery, run_stage
from pipeline_runner.settings import Settings
from tests.unit.test_metrics_inventory import consumer_scrape, gateway_scrape, operator_scrape
from tests.unit.test_runner_stages import make_config

ROOT = Path(__file__).resolve().parents[2]
SELF = ROOT / "dashboards" / "lineage-hub-itself.json"
DASHBOARDS = sorted(p for p in (ROOT / "dashboards").glob("*.json") if p != SELF)  # SQL ones
PROMETHEUS = {"type": "prometheus", "uid": "lineagehub-prometheus"}
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
    assert {p.name for p in (ROOT / "dashboards").glob("*.json")} == {
        "lineage.json",
        "lineage-hub-itself.json",
        "pipeline-runs.json",
        "run-detail.json",
        "traces.json",
    }
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
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE
        else:  # the hidden base URLs of links, set by the chart
            assert var["type"] == "constant" and var["hide"] == 2
            assert var["name"] in {"marquez_url", "jaeger_url"}
            assert var["query"].startswith("http")
        if var.get("includeAll"):
            assert var["allValue"] == "__all"
    used = {m for text in _variable_uses(dash) for m in re.findall(r"\$\{(\w+)", text)}
    declared = {v["name"] for v in dash["templating"]["list"]}
    assert used - BUILTIN <= declared, used - BUILTIN - declared


BUILTIN = {"__value", "__url_time_range"}


def _variable_uses(dash: dict[str, Any]) -> Iterator[str]:
    """Every text Grafana interpolates: SQL, variable queries, dashboard and data links."""
    for var in dash["templating"]["list"]:
        yield str(var.get("query", ""))
    for link in dash["links"]:
        yield link["url"]
    for panel in dash["panels"]:
        for target in panel["targets"]:
            yield target["rawSql"]
        for override in panel["fieldConfig"]["overrides"]:
            for prop in override["properties"]:
                if prop["id"] == "links":
                    yield from (link["url"] for link in prop["value"])


def test_run_detail_links_to_marquez_and_jaeger() -> None:
    dash = load(ROOT / "dashboards" / "run-detail.json")
    (run_id,) = [v for v in dash["templating"]["list"] if v["name"] == "run_id"]
    assert run_id["type"] == "query" and not run_id["multi"] and not run_id["includeAll"]
    urls = {link["title"]: link["url"] for link in dash["links"]}
    # The same links the operator writes into status.lineage / status.trace.
    assert urls["Lineage in Marquez"] == "${marquez_url}/api/v1/jobs/runs/${run_id}"
    assert urls["Trace in Jaeger"] == "${jaeger_url}/trace/${trace_id}"
    data_links = {
        (panel["title"], override["matcher"]["options"]): prop["value"][0]["url"]
        for panel in dash["panels"]
        for override in panel["fieldConfig"]["overrides"]
        for prop in override["properties"]
        if prop["id"] == "links"
    }
    assert data_links[("Run", "TraceId")] == "${jaeger_url}/trace/${__value.raw}"
    assert data_links[("Run", "RunId")] == "${marquez_url}/api/v1/jobs/runs/${__value.raw}"
    assert data_links[("Spans", "SpanId")].startswith("${jaeger_url}/trace/${trace_id}")
    # The runs overview links each run here.
    overview = load(ROOT / "dashboards" / "pipeline-runs.json")
    recent = next(p for p in overview["panels"] if p["title"] == "Recent runs")
    (link,) = [
        prop["value"][0]
        for o in recent["fieldConfig"]["overrides"]
        if o["matcher"]["options"] == "RunId"
        for prop in o["properties"]
    ]
    assert link["url"].startswith(f"/d/{dash['uid']}/run-detail?var-run_id=${{__value.raw}}")


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
        "Stage duration p50 / p95",
        "Rows rejected and failing quality checks",
        "Peak memory per stage",
        # run-detail
        "Run",
        "Stages",
        "Spans",
        "Trace",
        "Quality verdicts",
        "Rows per stage: processed, rejected, failing quality checks",
        "Resources per stage: peak memory, bytes read and written",
        # lineage
        "Datasets written per hour",
        "Dataset freshness",
        "Failed runs by job",
        "Schema changes",
        "Column lineage of the chosen dataset",
        "Runs and their traces",
    ):
        assert wanted in titles, wanted


@pytest.fixture(scope="module")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChdbBackend]:
    """chdb with the consumer's tables and two decoded runs plus runner metrics."""
    backend = ChdbBackend(str(tmp_path_factory.mktemp("chdb")), database="otel")
    await backend.setup()
    await backend.setup(LINEAGE_SCHEMA.create("otel", 0))
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


EXAMPLE_DATA = ROOT / "examples" / "data" / "orders.csv"
TRACE_ID, ROOT_SPAN = "ab" * 16, "cd" * 8  # make_config's traceparent


@pytest.fixture(scope="module")
async def real_run(store: ChdbBackend, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The three stages run for real on the example orders (with quality checks, one of
    which warns: the GBP orders), their spans and metrics decoded as the otel consumer
    does, plus the run's root span as the operator emits it. Returns the run id."""
    tmp = tmp_path_factory.mktemp("run")
    emitter = MemoryEmitter()
    delivery = Delivery(emitter)
    run_id = new_run_id()
    spec = TransformSpec.model_validate(
        {
            "cast": {"order_id": "int64", "amount": "float64"},
            "filter": "status <> 'cancelled'",
            "dropNulls": ["customer", "amount"],
            "deduplicate": {"columns": ["order_id"], "keep": "first"},
            "quality": [
                QualityCheck.model_validate({"type": "not_null", "column": "order_id"}),
                QualityCheck.model_validate(
                    {
                        "type": "accepted_values",
                        "column": "currency",
                        "values": ["EUR", "USD"],
                        "severity": "warn",
                    }
                ),
            ],
        }
    )
    started = datetime.now(UTC)
    for stage in StageName:
        cfg = make_config(
            tmp,
            stage,
            source=SourceSpec(uri=f"file://{EXAMPLE_DATA}", format="csv"),
            transform=spec,
            parent_run_id=run_id,
        )
        done = await run_stage(cfg, delivery, Settings())
        assert done.result.ok, done.result.error
    root = FixedSpan(
        name="PipelineRun orders",
        trace_id=TRACE_ID,
        span_id=ROOT_SPAN,
        start=started,
        end=datetime.now(UTC),
        attributes={"lineagehub.run_id": run_id, "lineagehub.pipeline": "orders"},
    )
    run_level = [
        run_event(state, run_id=run_id, namespace="lineage-hub", job="orders", event_time=at)
        for state, at in (("START", started), ("COMPLETE", datetime.now(UTC)))
    ]
    records = [
        *emitter.records,
        (SPANS_TOPIC, TRACE_ID, encode([root], "lineage-hub-operator")),
        *((LINEAGE_TOPIC, run_id, event) for event in run_level),
    ]
    lineage_records = 0
    for i, (topic, _, value) in enumerate(records):
        schema: Mapping[str, Table] = TABLES
        if topic == SPANS_TOPIC:
            tables = decode_trace_tables(value)
        elif topic == METRICS_TOPIC:
            tables = {k: v for k, v in decode_metrics(value).items() if k in TABLES}
        elif topic == LINEAGE_TOPIC:  # the stages' own OpenLineage events, as emitted
            tables, schema = decode_lineage(value), LINEAGE_SCHEMA.tables
            lineage_records += 1
        else:
            continue
        for name, rows in tables.items():
            await store.insert(schema[name], rows, f"real-{i}/{name}")
    assert lineage_records == 2 * 3 + 2  # START + COMPLETE per stage, and the run's own
    return run_id


def in_db(sql: str) -> str:
    """The datasource's default database is `otel`; name it where the panel leaves it out."""
    return re.sub(
        r"\b(FROM|JOIN)\s+(pipeline_runs|otel_\w+|lineage_\w+)\b",
        lambda m: f"{m[1]} otel.{m[2]}",
        sql,
    )


async def sink_of(store: ChdbBackend) -> str:
    """The real run's sink dataset (`ns:name`), as the dashboard's variable offers it."""
    (row,) = await store.query(
        "SELECT DISTINCT concat(DatasetNamespace, ':', DatasetName) AS d FROM otel.lineage_io "
        "WHERE Direction = 'output' AND endsWith(DatasetName, '/out/orders.parquet')"
    )
    return str(row["d"])


@pytest.mark.parametrize(("title", "panel"), list(panels()), ids=[t for t, _ in panels()])
@pytest.mark.parametrize("selection", ["__all", "orders-0"])
async def test_panel_sql_runs_and_returns_rows(
    store: ChdbBackend, real_run: str, title: str, panel: dict[str, Any], selection: str
) -> None:
    variables = {
        "pipeline": selection,
        "service": "__all",
        "run_id": real_run,
        "dataset": await sink_of(store),
    }
    if selection != "__all":
        variables["service"] = "lineage-hub-runner" if "traces" in title else "__all"
    for target in panel["targets"]:
        rows = await store.query(in_db(expand(target["rawSql"], variables)))
        assert rows, f"{title}: no rows"
        if target["format"] == 0:  # time series: a `time` column first
            assert next(iter(rows[0])) == "time", title


async def test_variable_queries(store: ChdbBackend, real_run: str) -> None:
    for path in DASHBOARDS:
        for var in load(path)["templating"]["list"]:
            if var["type"] != "query":
                continue
            rows = await store.query(in_db(expand(var["query"], {"run_id": real_run})))
            assert rows, var["name"]
    run_ids = next(v for v in run_detail()["templating"]["list"] if v["name"] == "run_id")
    newest = (await store.query(in_db(run_ids["query"])))[0]
    assert newest == {"RunId": real_run}  # the newest run first
    trace_var = next(v for v in run_detail()["templating"]["list"] if v["name"] == "trace_id")
    (trace,) = await store.query(in_db(expand(trace_var["query"], {"run_id": real_run})))
    assert trace == {"TraceId": TRACE_ID}


def run_detail() -> dict[str, Any]:
    return load(ROOT / "dashboards" / "run-detail.json")


RUN_DETAIL_COLUMNS = {
    "Run": [
        "RunId",
        "Pipeline",
        "Status",
        "StartTime",
        "EndTime",
        "duration_s",
        "TraceId",
        "StatusMessage",
    ],
    "Stages": [
        "Stage",
        "Status",
        "StartTime",
        "EndTime",
        "duration_s",
        "records_in",
        "records_out",
        "attempt",
        "stage_run_id",
        "StatusMessage",
        "SpanId",
    ],
    "Stage durations": ["Stage", "duration_s"],
    "Trace": [
        "traceID",
        "spanID",
        "parentSpanID",
        "serviceName",
        "operationName",
        "startTime",
        "duration",
        "tags",
        "serviceTags",
    ],
    "Spans": [
        "Timestamp",
        "ServiceName",
        "SpanName",
        "stage",
        "duration_ms",
        "StatusCode",
        "StatusMessage",
        "rows",
        "bytes",
        "SpanId",
        "ParentSpanId",
    ],
    "Quality verdicts": ["Timestamp", "checks", "failed", "verdict", "StatusMessage"],
    "Rows per stage: processed, rejected, failing quality checks": ["stage", "metric", "rows"],
    "Resources per stage: peak memory, bytes read and written": ["stage", "metric", "value"],
}


async def run_detail_rows(store: ChdbBackend, run_id: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for panel in run_detail()["panels"]:
        (target,) = panel["targets"]
        out[panel["title"]] = await store.query(in_db(expand(target["rawSql"], {"run_id": run_id})))
    return out


async def test_run_detail_panels_on_a_real_run(store: ChdbBackend, real_run: str) -> None:
    rows = await run_detail_rows(store, real_run)
    assert set(rows) == set(RUN_DETAIL_COLUMNS)
    for title, columns in RUN_DETAIL_COLUMNS.items():
        assert rows[title], f"{title}: no rows"
        assert list(rows[title][0]) == columns, title

    (run,) = rows["Run"]
    assert (run["RunId"], run["Pipeline"], run["TraceId"]) == (real_run, "orders", TRACE_ID)
    assert run["Status"] == "Ok"
    stages = rows["Stages"]
    assert [s["Stage"] for s in stages] == ["extract", "transform", "load"]
    assert all(s["Status"] != "Error" for s in stages)
    extract, transform, load = stages
    assert extract["records_out"] == transform["records_in"]
    assert transform["records_out"] == load["records_in"] == load["records_out"]
    assert transform["records_out"] < transform["records_in"]  # filtered, deduplicated
    spans = {(s["stage"], s["SpanName"]) for s in rows["Spans"]}
    assert ("", "PipelineRun orders") in spans
    assert {("transform", "stage transform"), ("", "validate"), ("", "write")} <= spans
    assert {t["traceID"] for t in rows["Trace"]} == {TRACE_ID}
    (verdict,) = rows["Quality verdicts"]
    assert (verdict["checks"], verdict["verdict"]) == (2, "warn")
    assert verdict["failed"] == 1
    counters = {
        (r["stage"], r["metric"]): r["rows"]
        for r in rows["Rows per stage: processed, rejected, failing quality checks"]
    }
    assert counters[("transform", "lineagehub.rows.rejected")] > 0
    assert counters[("transform", "lineagehub.quality.failed_rows")] > 0
    assert counters[("load", "lineagehub.rows.processed")] == load["records_out"]
    resources = {
        (r["stage"], r["metric"])
        for r in rows["Resources per stage: peak memory, bytes read and written"]
    }
    for stage in ("extract", "transform", "load"):
        assert (stage, "lineagehub.process.memory.peak") in resources
        assert (stage, "lineagehub.bytes.read") in resources


async def test_run_detail_of_an_unknown_run_is_empty(store: ChdbBackend, real_run: str) -> None:
    rows = await run_detail_rows(store, "no-such-run")
    assert not any(rows.values()), {k: v for k, v in rows.items() if v}


# ---------------------------------------------------------------- lineage-hub itself


def exported_series() -> dict[str, tuple[str, frozenset[str]]]:
    """Every series the gateway, the consumers and the operator export, as their own
    metric objects render it once each metric has a value (the metrics inventory's
    scrapes): sample name -> (family type, label names, `le` included for buckets)."""
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for text in (gateway_scrape(), consumer_scrape(), operator_scrape()):
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[sample.name] = (family.type, frozenset(sample.labels))
    return out


FUNCTIONS = {"sum", "rate", "histogram_quantile", "by"}
SELECTOR = re.compile(r"\b(lineagehub_\w+)\s*(?:\{([^}]*)\})?\s*(\[[^\]]*\])?")
BY = re.compile(r"\bby\s*\(([^)]*)\)")
MATCHER = re.compile(r"\s*(\w+)\s*(=~|!~|!=|=)\s*\"[^\"]*\"\s*")


def self_targets() -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in load(SELF)["panels"]:
        for target in panel["targets"]:
            yield f"{panel['title']} {target['refId']}", target


def test_self_dashboard_shape() -> None:
    dash = load(SELF)
    assert dash["uid"] == "lineagehub-itself" and dash["schemaVersion"] >= 36
    assert "id" not in dash
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["datasource"] == PROMETHEUS, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == PROMETHEUS and target["expr"].strip()
    # The chart provisions the datasource under the uid the panels name.
    template = (ROOT / "charts" / "lineage-hub" / "templates" / "grafana.yaml").read_text()
    assert f"uid: {PROMETHEUS['uid']}" in template and "type: prometheus" in template


def test_self_dashboard_covers_the_issue() -> None:
    exprs = {title: target["expr"] for title, target in self_targets()}
    wanted = {
        "requests by route": ("lineagehub_gateway_http_requests_total", "route"),
        "latency by route": ("lineagehub_gateway_http_request_duration_seconds_bucket", "route"),
        "errors by route": ('status=~"5.."', "route"),
        "consumer lag per topic": ("lineagehub_consumer_lag", "topic"),
        "batch size per topic": ("lineagehub_consumer_batches_total", "topic"),
        "store latency per topic": ("lineagehub_consumer_store_seconds_bucket", "topic"),
        "DLQ rate per topic": ("lineagehub_consumer_dead_lettered_total", "topic"),
        "operator reconcile latency": ("lineagehub_operator_reconcile_seconds_bucket", "le"),
    }
    for what, (needle, label) in wanted.items():
        hits = [e for e in exprs.values() if needle in e and label in _by_labels(e)]
        assert hits, what
    assert any(e.startswith("sum(lineagehub_operator_queued_runs") for e in exprs.values())


def _by_labels(expr: str) -> set[str]:
    return {label.strip() for group in BY.findall(expr) for label in group.split(",")}


def _balanced(expr: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for char in re.sub(r'"[^"]*"', "", expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


@pytest.mark.parametrize(
    ("title", "target"), list(self_targets()), ids=[t for t, _ in self_targets()]
)
def test_self_dashboard_promql_reads_exported_series(title: str, target: dict[str, Any]) -> None:
    """Each metric name is one the services export, rated when it is a counter or
    histogram bucket and read as is when a gauge; each label matched, grouped by or
    shown in the legend is one the series carry; quantiles keep `le`; both sides of a
    ratio group alike; only known functions are called."""
    series = exported_series()
    expr = target["expr"]
    assert _balanced(expr), title
    called = set(re.findall(r"\b([a-z_]+)\s*\(", expr))
    assert called <= FUNCTIONS, called - FUNCTIONS
    selectors = SELECTOR.findall(expr)
    assert selectors, title
    common: frozenset[str] | None = None
    for name, matchers, window in selectors:
        assert name in series, f"{title}: {name} is not exported"
        kind, labels = series[name]
        if kind in {"counter", "histogram"}:  # buckets, sums and counts count up too
            assert window and f"rate({name}" in expr.replace(" ", ""), f"{title}: rate {name}"
        else:
            assert kind == "gauge" and not window, f"{title}: {name} is a {kind}"
        for matcher in filter(None, matchers.split(",")):
            match = MATCHER.fullmatch(matcher)
            assert match and match[1] in labels, f"{title}: {matcher} on {name}"
        without_le = labels - {"le"}
        common = without_le if common is None else common & without_le
    assert common is not None
    groups = [{label.strip() for label in group.split(",")} for group in BY.findall(expr)]
    for group in groups:
        assert group - {"le"} <= common, f"{title}: by {group - common}"
    if "histogram_quantile" in expr:
        assert all("le" in group for group in groups), f"{title}: a quantile needs le"
    if " / " in expr:
        assert len({frozenset(g) for g in groups}) == 1, f"{title}: sides group differently"
    legend = set(re.findall(r"\{\{(\w+)\}\}", target["legendFormat"]))
    assert legend <= set().union(*groups) - {"le"}, f"{title}: legend {legend}"
