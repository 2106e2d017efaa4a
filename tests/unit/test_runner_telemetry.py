"""Lineage and telemetry of the runner: events valid per the OpenLineage schema the
consumer enforces, spans forming one trace under the run's root span, metrics, and the
termination message's size bound."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from consumers.lineage.validate import ValidEvent, validate
from lineagehub.api import QualityCheck, StageName, TransformSpec, new_run_id
from lineagehub.topics import LINEAGE_TOPIC, METRICS_TOPIC, SPANS_TOPIC
from pipeline_runner.emit import MemoryEmitter, describe_metrics
from pipeline_runner.errors import ErrorKind
from pipeline_runner.quality import violation_mask
from pipeline_runner.result import QualityOutcome, StageResult
from pipeline_runner.runner import Delivery, run_stage
from pipeline_runner.settings import Settings
from pipeline_runner.transform_plan import run_quality_checks
from tests.loopback_http import QuietHandler, serving
from tests.unit.test_runner_stages import ORDERS, make_config, write_source

TRACE = "ab" * 16
ROOT_SPAN = "cd" * 8

SPEC = TransformSpec.model_validate(
    {
        "cast": {"amount": "float64"},
        "filter": "status <> 'cancelled'",
        "quality": [{"type": "not_null", "column": "amount", "severity": "warn"}],
    }
)


async def _pipeline(tmp_path: Path, emitter: MemoryEmitter, spec: TransformSpec = SPEC) -> str:
    write_source(tmp_path, ORDERS)
    parent = new_run_id()
    delivery = Delivery(emitter)
    for stage in StageName:
        cfg = make_config(tmp_path, stage, transform=spec, parent_run_id=parent)
        run = await run_stage(cfg, delivery, Settings())
        if not run.result.ok:
            break
    return parent


async def test_events_are_valid_openlineage(tmp_path: Path) -> None:
    emitter = MemoryEmitter()
    await _pipeline(tmp_path, emitter)
    lineage = [(k, v) for t, k, v in emitter.records if t == LINEAGE_TOPIC]
    assert len(lineage) == 6
    for key, value in lineage:
        checked = validate(value)
        assert isinstance(checked, ValidEvent), checked
        assert checked.run_id == key  # keyed by the stage run id
    types = [json.loads(v)["eventType"] for _, v in lineage]
    assert types == ["START", "COMPLETE"] * 3


async def test_fail_event_is_valid_and_carries_the_error(tmp_path: Path) -> None:
    emitter = MemoryEmitter()
    bad = TransformSpec.model_validate({"select": ["nope"]})
    await _pipeline(tmp_path, emitter, bad)
    events = emitter.lineage()
    assert [e["eventType"] for e in events] == ["START", "COMPLETE", "START", "FAIL"]
    fail = next(v for t, _, v in emitter.records if t == LINEAGE_TOPIC and b'"FAIL"' in v)
    assert isinstance(validate(fail), ValidEvent)
    facet = json.loads(fail)["run"]["facets"]["errorMessage"]
    assert "nope" in facet["message"] and "fix:" in facet["message"]


async def test_spans_form_one_trace_under_the_root(tmp_path: Path) -> None:
    emitter = MemoryEmitter()
    parent = await _pipeline(tmp_path, emitter)
    keys = [k for t, k, _ in emitter.records if t == SPANS_TOPIC]
    assert keys == [TRACE] * 3
    spans = [
        span
        for request in emitter.spans()
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    assert {s.trace_id.hex() for s in spans} == {TRACE}
    stage_spans = {s.name: s for s in spans if s.name.startswith("stage ")}
    assert set(stage_spans) == {"stage extract", "stage transform", "stage load"}
    for span in stage_spans.values():
        assert span.parent_span_id.hex() == ROOT_SPAN
        attrs = {kv.key: kv.value for kv in span.attributes}
        assert attrs["lineagehub.run_id"].string_value == parent
        assert attrs["lineagehub.pipeline"].string_value == "orders"
        assert attrs["lineagehub.stage_run_id"].string_value
        assert attrs["lineagehub.records_out"].int_value > 0
    by_parent: dict[str, list[str]] = {}
    for s in spans:
        by_parent.setdefault(s.parent_span_id.hex(), []).append(s.name)
    transform_id = stage_spans["stage transform"].span_id.hex()
    assert by_parent[transform_id] == ["read", "transform", "validate", "write"]
    assert by_parent[stage_spans["stage extract"].span_id.hex()] == ["read", "write"]
    write = next(s for s in spans if s.name == "write" and s.parent_span_id.hex() == transform_id)
    attrs = {kv.key: kv.value for kv in write.attributes}
    assert attrs["lineagehub.rows"].int_value == 4
    assert attrs["lineagehub.bytes"].int_value > 0
    resource = {
        kv.key: kv.value.string_value
        for kv in emitter.spans()[0].resource_spans[0].resource.attributes
    }
    assert resource["service.name"] == "lineage-hub-runner"


async def test_metrics(tmp_path: Path) -> None:
    emitter = MemoryEmitter()
    await _pipeline(tmp_path, emitter)
    assert {k for t, k, _ in emitter.records if t == METRICS_TOPIC} == {"lineage-hub-runner"}
    transform_metrics = [v for t, _, v in emitter.records if t == METRICS_TOPIC][1]
    lines = "\n".join(describe_metrics(transform_metrics))
    for name in (
        "lineagehub.rows.processed",
        "lineagehub.rows.rejected",
        "lineagehub.quality.failed_rows",
        "lineagehub.stage.duration",
        "lineagehub.bytes.read",
        "lineagehub.bytes.written",
        "lineagehub.process.memory.peak",
    ):
        assert name in lines
    assert "lineagehub.rows.processed (sum, {row}) 4" in lines
    assert "lineagehub.rows.rejected (sum, {row}) 1" in lines


async def test_unreachable_broker_keeps_the_data_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class Down(MemoryEmitter):
        async def send(self, topic: str, key: str, value: bytes) -> None:
            raise ConnectionError("broker down")

    write_source(tmp_path, ORDERS)
    delivery = Delivery(Down())
    run = await run_stage(make_config(tmp_path, StageName.EXTRACT), delivery, Settings())
    assert run.result.ok
    assert delivery.lost == 4 and delivery.sent == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broker down" in err[0]


def _oversized_result(passing: int = 0) -> StageResult:
    """A stage failed by its last quality check, whose result is far past 4096 bytes."""
    failed = [
        QualityOutcome(
            name=f"check_{i}",
            type="regex",
            column="c",
            severity="fail" if i == 99 else "warn",
            success=False,
            failed_rows=i,
            message="m",
            sample=["x" * 500] * 5,
        )
        for i in range(100)
    ]
    passed = [
        QualityOutcome(f"ok_{i}", "not_null", "id", "fail", True, 0, "", []) for i in range(passing)
    ]
    return StageResult(
        stage=StageName.TRANSFORM,
        records_in=10,
        records_out=0,
        output_schema=[(f"column_{i:03d}_with_a_long_name", "String") for i in range(200)],
        quality=passed + failed,
        error="e" * 3000,
        error_kind=ErrorKind.QUALITY_CHECK_FAILED,
    )


def test_termination_message_stays_under_4096_bytes() -> None:
    text = _oversized_result(passing=3).termination_message()
    assert len(text.encode()) <= 4096
    data = json.loads(text)
    assert data["errorKind"] == "QualityCheckFailed"
    assert data["stage"] == "transform"
    assert (data["recordsIn"], data["recordsOut"]) == (10, 0)
    assert data["error"].startswith("eee")
    # Whatever is kept of the checks carries no samples and no passing check.
    assert all(q["sample"] == [] and q["success"] is False for q in data["quality"])


def test_termination_message_keeps_the_check_that_failed_the_stage() -> None:
    data = json.loads(_oversized_result(passing=3).termination_message())
    kept = {q["name"]: q for q in data["quality"]}
    assert "check_99" in kept, sorted(kept)
    assert (kept["check_99"]["severity"], kept["check_99"]["failedRows"]) == ("fail", 99)
    assert not any(name.startswith("ok_") for name in kept)
    # Failed checks outrank the schema: the schema goes first.
    assert data["outputSchema"] == [] or len(kept) == 100


def test_a_long_error_is_cut_before_the_check_that_failed_the_stage_is_dropped() -> None:
    blocking = QualityOutcome("amount_positive", "range", "amount", "fail", False, 7, "m", [])
    result = StageResult(
        stage=StageName.TRANSFORM,
        quality=[blocking],
        error="x" * 5000,
        error_kind=ErrorKind.QUALITY_CHECK_FAILED,
    )
    text = result.termination_message()
    assert len(text.encode()) <= 4096
    data = json.loads(text)
    assert [q["name"] for q in data["quality"]] == ["amount_positive"]
    assert 0 < len(data["error"]) <= 512


def test_small_message_keeps_samples() -> None:
    result = StageResult(
        stage=StageName.TRANSFORM,
        quality=[QualityOutcome("n", "unique", "id", "warn", False, 2, "m", ["1", "2"])],
    )
    data = json.loads(result.termination_message())
    assert data["quality"][0]["sample"] == ["1", "2"]
    assert set(data) == {
        "stage",
        "recordsIn",
        "recordsOut",
        "outputSchema",
        "quality",
        "bytesWritten",
        "durationSeconds",
        "error",
        "errorKind",
    }


@pytest.mark.parametrize(
    "check",
    [
        {"type": "not_null", "column": "v"},
        {"type": "unique", "column": "v"},
        {"type": "range", "column": "v", "min": 2, "max": 3},
        {"type": "accepted_values", "column": "v", "values": ["1", "2"]},
        {"type": "regex", "column": "v", "pattern": "^[12]$"},
    ],
)
def test_violation_mask_agrees_with_the_plan(check: dict[str, object]) -> None:
    frame = pl.DataFrame({"v": [1, 2, 2, 3, None, 4]})
    qc = QualityCheck.model_validate(check)
    (counted,) = run_quality_checks(frame, [qc])
    assert frame.filter(violation_mask(qc)).height == counted.failed_rows


async def test_otlp_direct_to_a_collector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    received: dict[str, list[bytes]] = {}

    class Collector(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.setdefault(self.path, []).append(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

    with serving(Collector) as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("LINEAGEHUB_OTLP_DIRECT", "1")
        settings = Settings.from_env()
        assert settings.otlp_direct
        write_source(tmp_path, ORDERS)
        run = await run_stage(
            make_config(tmp_path, StageName.EXTRACT), Delivery(MemoryEmitter()), settings
        )
        assert run.result.ok
    assert set(received) == {"/v1/traces", "/v1/metrics"}
    names = {
        span.name
        for body in received["/v1/traces"]
        for rs in ExportTraceServiceRequest.FromString(body).resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    }
    assert names == {"stage extract", "read", "write"}
