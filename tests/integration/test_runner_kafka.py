"""The runner publishes to the stack's Kafka: a whole run's OpenLineage events come back
valid and in order, and its spans come back as one trace under the run's root span."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from consumers.lineage.validate import ValidEvent, validate
from consumers.testkit import end_offsets
from lineagehub.api import StageName
from lineagehub.topics import LINEAGE_TOPIC, METRICS_TOPIC, PARTITIONS, SPANS_TOPIC
from pipeline_runner.cli import run_manifest
from pipeline_runner.settings import Settings
from tests.integration.test_stage_kafka_recovery import read_between
from tests.unit.test_runner_process import run_stage_process
from tests.unit.test_runner_stages import make_config

if TYPE_CHECKING:
    from tests.conftest import StackHandle

pytestmark = pytest.mark.dataplane

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOPICS = (LINEAGE_TOPIC, SPANS_TOPIC, METRICS_TOPIC)


async def _caught_up(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    for tp, offset in end.items():
        if await consumer.position(tp) < offset:
            return False
    return True


async def test_run_publishes_lineage_and_one_trace(stack: StackHandle, tmp_path: Path) -> None:
    bootstrap = stack.env["KAFKA_BOOTSTRAP"]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        known = await consumer.topics()
        assert set(TOPICS) <= known, f"topics missing: {set(TOPICS) - known}"
        tps = [TopicPartition(t, p) for t in TOPICS for p in range(PARTITIONS)]
        consumer.assign(tps)
        start = await consumer.end_offsets(tps)
        for tp, offset in start.items():
            consumer.seek(tp, offset)

        out, err = io.StringIO(), io.StringIO()
        code = await asyncio.to_thread(
            run_manifest,
            str(EXAMPLES / "pipelinerun.yaml"),
            workspace=str(tmp_path / "ws"),
            emit="kafka",
            mounts=[f"/data/examples={EXAMPLES / 'data'}", f"/data/output={tmp_path / 'out'}"],
            stdout=out,
            stderr=err,
            settings=Settings(kafka_bootstrap=bootstrap),
        )
        assert code == 0, err.getvalue() + out.getvalue()
        assert err.getvalue() == ""  # no delivery warnings
        text = out.getvalue()
        run_id = text.split("run id:   ")[1].split()[0]
        trace_id = text.split("trace id: ")[1].split()[0]

        end = await consumer.end_offsets(tps)
        records: dict[str, list[Any]] = {t: [] for t in TOPICS}
        async with asyncio.timeout(60):
            while not await _caught_up(consumer, end):
                batch = await consumer.getmany(*tps, timeout_ms=1000)
                for tp, messages in batch.items():
                    records[tp.topic] += messages
    finally:
        await consumer.stop()

    # Lineage: 8 events of this run, each valid, keyed by its own run id.
    ours = []
    for m in records[LINEAGE_TOPIC]:
        event = json.loads(m.value)
        facets = event["run"].get("facets", {})
        parent = facets.get("parent", {}).get("run", {}).get("runId")
        if run_id in (event["run"]["runId"], parent):
            checked = validate(m.value)
            assert isinstance(checked, ValidEvent), checked
            assert m.key.decode() == event["run"]["runId"]
            ours.append(event)
    kinds = sorted((e["job"]["name"], e["eventType"]) for e in ours)
    assert kinds == sorted(
        [("orders-daily", t) for t in ("START", "COMPLETE")]
        + [
            (f"orders-daily.{s}", t)
            for s in ("extract", "transform", "load")
            for t in ("START", "COMPLETE")
        ]
    )
    transform = next(
        e
        for e in ours
        if e["job"]["name"] == "orders-daily.transform" and e["eventType"] == "COMPLETE"
    )
    assert "columnLineage" in transform["outputs"][0]["facets"]
    assert "dataQualityAssertions" in transform["inputs"][0]["inputFacets"]

    # Spans: one trace; the stage spans are children of the root span.
    spans = []
    for m in records[SPANS_TOPIC]:
        if m.key.decode() != trace_id:
            continue
        request = ExportTraceServiceRequest.FromString(m.value)
        spans += [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert spans and {s.trace_id.hex() for s in spans} == {trace_id}
    roots = [s for s in spans if not s.parent_span_id]
    assert [r.name for r in roots] == ["PipelineRun orders-daily"]
    root_id = roots[0].span_id
    stage_spans = [s for s in spans if s.name.startswith("stage ")]
    assert sorted(s.name for s in stage_spans) == ["stage extract", "stage load", "stage transform"]
    assert all(s.parent_span_id == root_id for s in stage_spans)
    stage_ids = {s.span_id for s in stage_spans}
    children = [s for s in spans if s.parent_span_id in stage_ids]
    assert len(children) == 2 + 4 + 2
    assert len(spans) == 1 + 3 + 8

    # Metrics: one request per stage, from this run.
    mine = 0
    for m in records[METRICS_TOPIC]:
        metrics = ExportMetricsServiceRequest.FromString(m.value)
        if run_id.encode() in m.value:
            mine += 1
            names = {
                x.name
                for rm in metrics.resource_metrics
                for sm in rm.scope_metrics
                for x in sm.metrics
            }
            assert "lineagehub.stage.duration" in names
    assert mine == 3


@pytest.mark.parametrize(("source", "outcome", "code"), [(True, "COMPLETE", 0), (False, "FAIL", 1)])
async def test_a_stage_process_delivers_each_record_once_start_first(
    stack: StackHandle, tmp_path: Path, source: bool, outcome: str, code: int
) -> None:
    """A stage process as its Job runs it (`python -m pipeline_runner`, telemetry
    required) publishes to the broker: START, then COMPLETE or FAIL, each once and in
    that order on their partition; one record of spans holding the stage's span, one of
    metrics. Its Kafka client is made once the work has started: it loses none of them."""
    bootstrap = stack.env["KAFKA_BOOTSTRAP"]
    cfg = make_config(tmp_path, StageName.EXTRACT)
    run_id = cfg.run_id
    start = await end_offsets(bootstrap, TOPICS)
    proc = await asyncio.to_thread(
        run_stage_process,
        tmp_path,
        ["-m", "pipeline_runner", "extract"],
        source=source,
        env={"KAFKA_BOOTSTRAP": bootstrap, "LINEAGEHUB_TELEMETRY_REQUIRED": "1"},
        cfg=cfg,
    )
    assert proc.returncode == code, proc.stderr
    assert "warning:" not in proc.stderr, proc.stderr
    records = await read_between(bootstrap, start, await end_offsets(bootstrap, TOPICS))

    lineage = sorted(
        (r for r in records if r.topic == LINEAGE_TOPIC and r.key == run_id.encode()),
        key=lambda r: r.offset,
    )
    assert len({r.partition for r in lineage}) == 1
    events = [json.loads(r.value) for r in lineage if r.value is not None]
    assert [e["eventType"] for e in events] == ["START", outcome], events
    assert events[0]["eventTime"] <= events[1]["eventTime"]

    spans = [
        s
        for r in records
        if r.topic == SPANS_TOPIC and r.value is not None and run_id.encode() in r.value
        for rs in ExportTraceServiceRequest.FromString(r.value).resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    stage_spans = [s for s in spans if s.name == "stage extract"]
    assert len(stage_spans) == 1, [s.name for s in spans]
    assert len({s.span_id for s in spans}) == len(spans)  # none twice
    assert cfg.parent is not None  # the metrics carry the run's id, the parent's
    metrics = [
        r
        for r in records
        if r.topic == METRICS_TOPIC
        and r.value is not None
        and cfg.parent.run_id.encode() in r.value
    ]
    assert len(metrics) == 1
