"""The operator's side of pipelineRef: resolving a run's Pipeline, failing it naming the
field, keeping the snapshot, one OpenLineage job per Pipeline, the Pipeline on the trace."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from lineagehub_operator.config import OperatorConfig
from lineagehub_operator.decide import RunIds, decide
from lineagehub_operator.manifests import openlineage_names, stage_config
from lineagehub_operator.resolve import (
    Unresolvable,
    needs_resolution,
    resolve_run,
    unresolvable_status,
)
from lineagehub_operator.run_telemetry import pipeline_attribute

from lineagehub.api.pipelinerun import (
    CONDITION_LINEAGE_RECORDED,
    CONDITION_SUCCEEDED,
    PipelineBody,
    PipelineRun,
    PipelineRunStatus,
    Reason,
    StageName,
)

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
IDS = RunIds(
    run_id="019ac0f0-0000-7000-8000-000000000001",
    trace_id="0af7651916cd43dd8448eb211c80319c",
    span_id="b7ad6b7169203331",
)
PIPELINE: dict[str, Any] = {
    "apiVersion": "lineagehub.io/v1alpha1",
    "kind": "Pipeline",
    "metadata": {"name": "orders", "namespace": "ns"},
    "spec": {
        "params": [{"name": "date", "type": "date"}],
        "source": {"uri": "file:///data/in/$(params.date).csv", "format": "csv"},
        "sink": {"uri": "file:///data/out/$(params.date).parquet", "format": "parquet"},
    },
}


def run_body(name: str = "r1", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "generation": 1},
        "spec": {"pipelineRef": {"name": "orders"}, "params": {"date": "2026-11-30"}, **spec},
    }


def resolved(body: dict[str, Any]) -> PipelineRun:
    outcome = resolve_run(PIPELINE, body)
    assert isinstance(outcome, PipelineBody)
    return PipelineRun.model_validate({**body, "status": {"pipelineSpec": outcome.wire()}})


def test_needs_resolution_once_and_only_for_ref_runs() -> None:
    assert needs_resolution(run_body())
    assert not needs_resolution({**run_body(), "status": {"pipelineSpec": {}}})
    assert not needs_resolution({**run_body(), "status": {"phase": "Failed"}})
    inline: dict[str, Any] = {"spec": {"source": {}, "sink": {}}}
    assert not needs_resolution(inline)


@pytest.mark.parametrize(
    ("pipeline", "params", "reason", "words"),
    [
        (None, {"date": "2026-11-30"}, Reason.PIPELINE_NOT_FOUND, ["spec.pipelineRef.name"]),
        ("broken", {"date": "2026-11-30"}, Reason.INVALID_PIPELINE, ["Pipeline orders"]),
        (PIPELINE, {}, Reason.INVALID_PARAMS, ["spec.params.date", "requires"]),
        (PIPELINE, {"date": "x"}, Reason.INVALID_PARAMS, ["spec.params.date", "YYYY-MM-DD"]),
        (PIPELINE, {"date": "2026-11-30", "x": "1"}, Reason.INVALID_PARAMS, ["spec.params.x"]),
    ],
)
def test_unresolvable_runs_fail_naming_the_field(
    pipeline: Any, params: dict[str, str], reason: Reason, words: list[str]
) -> None:
    if pipeline == "broken":
        pipeline = copy.deepcopy(PIPELINE)
        pipeline["spec"]["source"]["uri"] = "file:///data/$(params.day).csv"
    body = run_body(params=params)
    outcome = resolve_run(pipeline, body)
    assert isinstance(outcome, Unresolvable)
    assert outcome.reason == reason
    for word in words:
        assert word in outcome.message
    status = PipelineRunStatus.model_validate(unresolvable_status(body, outcome, T0))
    assert status.phase == "Failed"
    succeeded = status.condition(CONDITION_SUCCEEDED)
    assert succeeded is not None and succeeded.reason == reason
    assert succeeded.message == outcome.message
    # Nothing ran: lineage and trace are not waited for.
    recorded = status.condition(CONDITION_LINEAGE_RECORDED)
    assert recorded is not None and recorded.status == "False"


def test_the_first_reconcile_keeps_the_snapshot() -> None:
    run = resolved(run_body())
    decision = decide(run, {}, T0, IDS)
    assert decision.status.run_id == IDS.run_id
    assert run.status is not None and run.status.pipeline_spec is not None
    assert decision.status.pipeline_spec == run.status.pipeline_spec
    wire = decision.status.model_dump(mode="json", by_alias=True, exclude_none=False)
    assert wire["pipelineSpec"]["source"]["uri"] == "file:///data/in/2026-11-30.csv"


def test_every_run_of_a_pipeline_is_the_same_openlineage_job() -> None:
    config = OperatorConfig()
    first = resolved(run_body("r1"))
    second = resolved(run_body("r2", params={"date": "2026-12-01"}))
    assert openlineage_names(first, config) == openlineage_names(second, config)
    assert openlineage_names(first, config)[1] == "orders"
    started = first.model_copy(update={"status": decide(first, {}, T0, IDS).status})
    cfg = stage_config(started, StageName.EXTRACT, config)
    assert cfg.openlineage_job == "orders.extract"
    assert cfg.parent is not None and cfg.parent.job == "orders"
    assert cfg.source.uri == "file:///data/in/2026-11-30.csv"


def test_the_root_span_names_the_pipeline() -> None:
    assert pipeline_attribute(resolved(run_body())) == {"lineagehub.pipeline.name": "orders"}
    inline = PipelineRun.model_validate(
        {
            "metadata": {"name": "x"},
            "spec": {
                "source": {"uri": "file:///a.csv", "format": "csv"},
                "sink": {"uri": "file:///b.csv", "format": "csv"},
            },
        }
    )
    assert pipeline_attribute(inline) == {}
