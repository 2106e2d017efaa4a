"""Sharded stages on the real API server, Job controller, process kubelet, Kafka and
consumers: extract and transform run as Indexed Jobs whose pods run at once on the one
node, each reading its shard (JOB_COMPLETION_INDEX); load commits every shard's rows or
none; lineage shows one run per stage with the shards' statistics summed, and the trace
a span per shard under the stage's span."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from stack import supervisor
from stack.pieces import app
from stack.registry import select
from tests.helpers import Obj, get, wait_until

pytestmark = pytest.mark.e2e
Kubectl = Callable[..., Any]
ROWS = 3000


@pytest.fixture(scope="module")
def operator(stack: Any) -> None:
    supervisor.up(select(["operator", "consume-otel"]))


def orders(n: int = ROWS) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "order_id": list(range(n)),
            "customer": [f"customer{i % 13}" for i in range(n)],
            "amount": [None if i % 7 == 0 else round(i * 0.75, 2) for i in range(n)],
            "currency": [("EUR", "USD", "GBP")[i % 3] for i in range(n)],
        }
    )


def manifest(name: str, ns: str, source: str, parallelism: int, **spec: Any) -> Obj:
    return {
        "apiVersion": "lineagehub.io/v1alpha1",
        "kind": "PipelineRun",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "source": {"uri": source, "format": "csv"},
            "transform": {
                "cast": {"amount": "float64"},
                "filter": "currency <> 'GBP'",
                "quality": [{"type": "not_null", "column": "amount", "severity": "warn"}],
            },
            "sink": {"uri": f"file:///data/output/{ns}/{name}.parquet", "format": "parquet"},
            "parallelism": parallelism,
            "stages": {"defaults": {"retries": 0, "timeoutSeconds": 300}},
            **spec,
        },
    }


def finished(kubectl: Kubectl, ns: str, name: str, *verdicts: str) -> Obj:
    """The run's status once it ended (and, if asked, once those verdicts are in)."""

    def check() -> Obj | None:
        status: Obj = get(kubectl, "pipelinerun", name, "-n", ns).get("status") or {}
        if status.get("phase") not in ("Succeeded", "Failed", "Cancelled"):
            return None
        conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
        return status if all(conditions.get(v) in ("True", "False") for v in verdicts) else None

    found: Obj = wait_until(check, timeout=240, every=0.5)
    return found


def sql(stack: Any, query: str) -> list[Obj]:
    request = urllib.request.Request(
        stack.env["CLICKHOUSE_HTTP_URL"], data=query.encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return [json.loads(line) for line in response.read().decode().splitlines() if line]


def jobs(kubectl: Kubectl, ns: str, run: str) -> dict[str, Obj]:
    items = get(kubectl, "jobs", "-n", ns, "-l", f"lineagehub.io/pipelinerun={run}")["items"]
    return {j["metadata"]["labels"]["lineagehub.io/stage"]: j for j in items}


def write_input(ns: str, name: str, frame: pl.DataFrame) -> str:
    folder = app.data_volume() / "input" / ns
    folder.mkdir(parents=True, exist_ok=True)
    frame.write_csv(folder / name)
    return f"file:///data/input/{ns}/{name}"


def output(ns: str, name: str) -> Path:
    return app.data_volume() / "output" / ns / f"{name}.parquet"


def test_four_shards_load_what_one_pod_loads_row_for_row(
    operator: None, kubectl: Kubectl, namespace: str
) -> None:
    source = write_input(namespace, "orders.csv", orders())
    kubectl("apply", "-f", "-", input=json.dumps(manifest("single", namespace, source, 1)))
    kubectl("apply", "-f", "-", input=json.dumps(manifest("sharded", namespace, source, 4)))
    single = finished(kubectl, namespace, "single")
    sharded = finished(kubectl, namespace, "sharded")
    assert (single["phase"], sharded["phase"]) == ("Succeeded", "Succeeded"), sharded

    expected = pl.read_parquet(output(namespace, "single"))
    loaded = pl.read_parquet(output(namespace, "sharded"))
    kept = orders().filter(pl.col("currency") != "GBP").height
    assert loaded.height == expected.height == kept
    assert loaded.equals(expected)  # same rows, same order

    by_stage = {s["name"]: s for s in sharded["stages"]}
    assert by_stage["extract"]["recordsIn"] == by_stage["extract"]["recordsOut"] == ROWS
    assert by_stage["transform"]["recordsOut"] == by_stage["load"]["recordsOut"] == kept
    assert all(s["attempts"] == 1 for s in sharded["stages"])
    made = jobs(kubectl, namespace, "sharded")
    for stage in ("extract", "transform"):
        spec, status = made[stage]["spec"], made[stage]["status"]
        assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == (
            "Indexed",
            4,
            4,
        )
        assert status["succeeded"] == 4 and status["completedIndexes"] == "0-3"
    assert made["load"]["spec"]["completionMode"] == "NonIndexed"  # the API default


def test_lineage_sums_the_shards_and_the_trace_has_a_span_per_shard(
    operator: None, stack: Any, kubectl: Kubectl, namespace: str
) -> None:
    source = write_input(namespace, "orders.csv", orders())
    doc = manifest("traced", namespace, source, 3, openlineage={"job": f"shards-{namespace}"})
    kubectl("apply", "-f", "-", input=json.dumps(doc))
    status = finished(kubectl, namespace, "traced", "LineageRecorded", "TraceRecorded")
    assert status["phase"] == "Succeeded", status
    verdicts = {c["type"]: c for c in status["conditions"]}
    assert verdicts["LineageRecorded"]["status"] == "True", verdicts["LineageRecorded"]
    assert verdicts["TraceRecorded"]["status"] == "True", verdicts["TraceRecorded"]

    job = f"shards-{namespace}"
    events = sql(
        stack,
        "SELECT JobName, EventType, Payload FROM otel.lineage_events"
        f" WHERE JobName IN ('{job}.extract', '{job}.transform') ORDER BY EventTime",
    )
    by_job: dict[str, list[Obj]] = {}
    for e in events:
        by_job.setdefault(e["JobName"], []).append(e)
    for stage in ("extract", "transform"):
        types = sorted(e["EventType"] for e in by_job[f"{job}.{stage}"])
        assert types == ["COMPLETE", "START"], (stage, types)  # one run, one COMPLETE
    (extract,) = [e for e in by_job[f"{job}.extract"] if e["EventType"] == "COMPLETE"]
    stats = json.loads(extract["Payload"])["outputs"][0]["outputFacets"]["outputStatistics"]
    assert stats["rowCount"] == ROWS
    (transform,) = [e for e in by_job[f"{job}.transform"] if e["EventType"] == "COMPLETE"]
    payload = json.loads(transform["Payload"])
    metrics = payload["inputs"][0]["inputFacets"]["dataQualityMetrics"]
    nulls = orders()["amount"].null_count()
    assert metrics["rowCount"] == ROWS
    assert metrics["columnMetrics"]["amount"]["nullCount"] == nulls
    (check,) = payload["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"]
    kept_nulls = orders().filter(pl.col("currency") != "GBP")["amount"].null_count()
    assert check["actual"] == str(kept_nulls)

    spans = sql(
        stack,
        "SELECT SpanName, SpanId, ParentSpanId FROM otel.otel_traces"
        f" WHERE TraceId = '{status['traceId']}'",
    )
    for stage in ("extract", "transform"):
        (parent,) = [s for s in spans if s["SpanName"] == f"stage {stage}"]
        shards = sorted(s["SpanName"] for s in spans if s["ParentSpanId"] == parent["SpanId"])
        assert shards == [f"shard {i}/3 {stage}" for i in (1, 2, 3)], shards
    assert len([s for s in spans if s["SpanName"] == "stage load"]) == 1


def test_a_failed_shard_fails_the_stage_and_nothing_is_committed(
    operator: None, kubectl: Kubectl, namespace: str
) -> None:
    folder = app.data_volume() / "input" / namespace / "daily"
    folder.mkdir(parents=True)
    frame = orders(300)
    for day in range(3):
        frame.slice(day * 100, 100).write_csv(folder / f"orders-{day}.csv")
    with (folder / "orders-1.csv").open("a") as f:
        f.write("1,acme,1.0,EUR,one field too many\n")  # shard 2 of 3 cannot read it
    source = f"file:///data/input/{namespace}/daily/orders-*.csv"
    kubectl("apply", "-f", "-", input=json.dumps(manifest("broken", namespace, source, 3)))
    status = finished(kubectl, namespace, "broken")
    assert status["phase"] == "Failed"
    stages = {s["name"]: s for s in status["stages"]}
    extract = stages["extract"]
    assert (extract["phase"], extract["attempts"]) == ("Failed", 1), extract
    assert "shard 2/3: " in extract["message"] and "orders-" in extract["message"], extract
    assert stages["transform"]["phase"] == stages["load"]["phase"] == "Pending"
    assert list(jobs(kubectl, namespace, "broken")) == ["extract"]  # nothing after it
    assert not output(namespace, "broken").exists()
    ledger = app.workspaces() / namespace / "broken" / "extract.parts"
    assert not list(ledger.glob(".results-*/committed"))


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"parallelism": 0}, ["spec.parallelism", "at least 1", "set 1 for one pod"]),
        ({"stages": {"extract": {"parallelism": 0}}}, ["spec.stages.extract.parallelism"]),
        ({"parallelism": 65}, ["spec.parallelism", "64"]),
        (
            {"stages": {"load": {"parallelism": 2}}},
            ["spec.stages.load.parallelism", "load is not sharded"],
        ),
        (
            {"parallelism": 2, "transform": {"deduplicate": {}}},
            ["spec.transform", "stages.transform.parallelism to 1"],
        ),
    ],
)
def test_the_api_server_refuses_bad_parallelism_naming_field_and_fix(
    stack: Any, kubectl: Kubectl, namespace: str, spec: Obj, words: list[str]
) -> None:
    doc = manifest("bad", namespace, "file:///data/in.csv", 1)
    doc["spec"].update(spec)
    pipeline = {**doc, "kind": "Pipeline"}  # the same body, held for many runs
    for obj in (doc, pipeline):
        refused = kubectl("apply", "-f", "-", input=json.dumps(obj), check=False)
        assert refused.returncode != 0, obj["kind"]
        for word in words:
            assert word in refused.stderr, (obj["kind"], refused.stderr)
