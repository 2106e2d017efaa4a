"""The operator's side of sharded stages: an Indexed Job per sharded stage (load never),
the shard counts in each stage's config, one result from the shards' pods, attempts
counted per retry (not per shard), and the stage span the shards' spans hang under."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lineagehub_operator.config import OperatorConfig
from lineagehub_operator.manifests import stage_config, stage_job, stage_run_id, workspace_claim
from lineagehub_operator.observed import StageResult, observe_job
from lineagehub_operator.shards import combined_outcome, newly_finished, stage_span

from lineagehub.api.pipelinerun import (
    Phase,
    PipelineRun,
    PipelineRunStatus,
    StageName,
    StageStatus,
)
from lineagehub.api.shards import stage_span_id

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
RUN_ID = "019ac0f0-0000-7000-8000-000000000001"
TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT = "b7ad6b7169203331"
CONFIG = OperatorConfig(runner_image="lineage-hub-runner:test")


def run(status: dict[str, Any] | None = None, **spec: Any) -> PipelineRun:
    return PipelineRun.model_validate(
        {
            "metadata": {"name": "r1", "namespace": "ns", "uid": "u1"},
            "spec": {
                "source": {"uri": "file:///data/in-*.csv", "format": "csv"},
                "sink": {"uri": "file:///data/out.parquet", "format": "parquet"},
                **spec,
            },
            "status": {"runId": RUN_ID, "traceparent": f"00-{TRACE}-{ROOT}-01", **(status or {})},
        }
    )


def test_sharded_stages_are_indexed_jobs_and_load_is_one_pod() -> None:
    r = run(parallelism=3, stages={"transform": {"parallelism": 2}})
    extract, transform, load = (stage_job(r, s, CONFIG)["spec"] for s in StageName)
    assert (extract["completionMode"], extract["completions"], extract["parallelism"]) == (
        "Indexed",
        3,
        3,
    )
    assert (transform["completions"], transform["parallelism"]) == (2, 2)
    assert "completionMode" not in load and "completions" not in load
    configs = [stage_config(r, s, CONFIG) for s in StageName]
    assert [(c.shards, c.input_parts) for c in configs] == [(3, 1), (2, 3), (1, 2)]


def test_an_unsharded_run_keeps_plain_jobs() -> None:
    spec = stage_job(run(), StageName.EXTRACT, CONFIG)["spec"]
    assert "completionMode" not in spec and "completions" not in spec


def _pod(index: int, message: str | None, created: str, reason: str | None = None) -> Any:
    terminated = {"message": message} if message is not None else {}
    return {
        "metadata": {
            "creationTimestamp": created,
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": {
            "reason": reason,
            "containerStatuses": [{"state": {"terminated": terminated}}],
        },
    }


def _message(rows_in: int, rows_out: int, failed: int = 0, error: str | None = None) -> str:
    check = {
        "name": None,
        "type": "not_null",
        "column": "amount",
        "severity": "warn",
        "success": failed == 0,
        "failedRows": failed,
        "sample": ["null"] * min(failed, 3),
    }
    return json.dumps(
        {"recordsIn": rows_in, "recordsOut": rows_out, "quality": [check], "error": error}
    )


def test_the_stage_result_sums_the_shards_latest_pods() -> None:
    pods = [
        _pod(0, _message(10, 9, failed=2), "2026-11-30T09:00:01Z"),
        _pod(1, _message(0, 0, error="boom"), "2026-11-30T09:00:01Z"),  # retried below
        _pod(1, _message(7, 7), "2026-11-30T09:00:05Z"),
        _pod(2, _message(5, 4, failed=3), "2026-11-30T09:00:01Z"),
    ]
    message, reason = combined_outcome(pods, 3)
    result = StageResult.parse(message)
    assert result is not None and reason is None
    assert (result.records_in, result.records_out, result.error) == (22, 20, None)
    (check,) = result.quality
    assert check["failedRows"] == 5 and check["success"] is False
    assert len(check["sample"]) == 5


def test_a_failed_shard_is_the_stage_error_naming_the_shard() -> None:
    pods = [
        _pod(0, _message(10, 9), "2026-11-30T09:00:01Z"),
        _pod(1, _message(0, 0, error="source x is not valid csv"), "2026-11-30T09:00:01Z"),
        _pod(2, None, "2026-11-30T09:00:01Z", reason="DeadlineExceeded"),
    ]
    message, _ = combined_outcome(pods, 3)
    result = StageResult.parse(message)
    assert result is not None and result.error == "shard 2/3: source x is not valid csv"
    assert combined_outcome(pods[2:], 3)[0] is not None  # shard 1 never ran: an error too
    missing = StageResult.parse(combined_outcome([pods[0]], 2)[0])
    assert missing is not None and missing.records_out is None


def _job(spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "r1-extract",
            "uid": "j",
            "labels": {"lineagehub.io/stage": "extract"},
        },
        "spec": spec,
        "status": status,
    }


def test_attempts_count_retries_not_shards() -> None:
    sharded = {"completions": 3, "completionMode": "Indexed"}
    first = observe_job(_job(sharded, {"active": 3}))
    retried = observe_job(_job(sharded, {"active": 1, "succeeded": 2, "failed": 1}))
    single = observe_job(_job({}, {"failed": 1, "active": 1}))
    assert first is not None and retried is not None and single is not None
    assert (first.attempts, first.shards) == (1, 3)
    assert retried.attempts == 2
    failed = {"failed": 1, "succeeded": 2, "conditions": [{"type": "Failed", "status": "True"}]}
    ended = observe_job(_job(sharded, failed))
    assert ended is not None and ended.attempts == 1  # no retry: one attempt
    assert (single.attempts, single.shards) == (2, 1)


def test_stage_span_is_the_shards_parent_once_the_stage_finished() -> None:
    before = PipelineRunStatus(
        stages=[StageStatus(name=StageName.EXTRACT, phase=Phase.RUNNING, start_time=T0)]
    )
    done = StageStatus(
        name=StageName.EXTRACT,
        phase=Phase.FAILED,
        start_time=T0,
        completion_time=T0 + timedelta(seconds=4),
        message="shard 2/3: boom",
    )
    after = PipelineRunStatus(stages=[done])
    sharded, single = run(parallelism=3), run()
    assert newly_finished(before, after, sharded) == [done]
    assert newly_finished(after, after, sharded) == []  # exported once
    assert newly_finished(before, after, single) == []  # one pod: the pod's own span
    span = stage_span(sharded, done, "orders")
    assert span is not None
    assert span.name == "stage extract" and span.trace_id == TRACE
    assert span.parent_span_id == ROOT
    assert span.span_id == stage_span_id(TRACE, stage_run_id(RUN_ID, StageName.EXTRACT))
    assert not span.ok and span.message == "shard 2/3: boom"
    assert span.attributes["lineagehub.shards"] == 3
    assert span.start == T0 and span.end == T0 + timedelta(seconds=4)  # the Job's end
    # A stage cancelled before it ran has no times to span: no span.
    never = StageStatus(name=StageName.EXTRACT, phase=Phase.CANCELLED)
    assert stage_span(sharded, never, "orders") is None


def test_the_workspace_claim_takes_the_configured_access_mode() -> None:
    shared = OperatorConfig.from_env({"LINEAGEHUB_WORKSPACE_ACCESS_MODE": "ReadWriteMany"})
    assert workspace_claim(run(), shared)["spec"]["accessModes"] == ["ReadWriteMany"]
    default = OperatorConfig.from_env({})
    assert workspace_claim(run(), default)["spec"]["accessModes"] == ["ReadWriteOnce"]
    with pytest.raises(ValueError, match="LINEAGEHUB_WORKSPACE_ACCESS_MODE is 'RWX': use one of"):
        OperatorConfig.from_env({"LINEAGEHUB_WORKSPACE_ACCESS_MODE": "RWX"})


def test_shards_on_a_one_node_workspace_are_scheduled_together() -> None:
    r = run(parallelism=3)
    spec = stage_job(r, StageName.EXTRACT, OperatorConfig.from_env({}))["spec"]["template"]
    (term,) = spec["spec"]["affinity"]["podAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    # The term selects the stage's own pods (so the first one passes by matching itself),
    # and no other stage's.
    assert term["labelSelector"]["matchLabels"] == spec["metadata"]["labels"]
    other = stage_job(r, StageName.TRANSFORM, CONFIG)["spec"]["template"]["metadata"]["labels"]
    assert term["labelSelector"]["matchLabels"].items() - other.items()
    shared = OperatorConfig.from_env({"LINEAGEHUB_WORKSPACE_ACCESS_MODE": "ReadWriteMany"})
    assert "affinity" not in stage_job(r, StageName.EXTRACT, shared)["spec"]["template"]["spec"]
    assert "affinity" not in stage_job(r, StageName.LOAD, CONFIG)["spec"]["template"]["spec"]


def test_shards_stopped_by_a_failed_job_are_not_retries() -> None:
    """With backoffLimit 0 the first failed shard fails the Job, and the Job controller
    stops the shards still running: they count as failed pods but were never replaced,
    so the stage made one attempt (the real stack saw 3 when the others were slower)."""
    ended = {"failed": 3, "conditions": [{"type": "Failed", "status": "True"}]}
    sharded = {"completions": 3, "completionMode": "Indexed"}
    no_retries = observe_job(_job({**sharded, "backoffLimit": 0}, ended))
    assert no_retries is not None and no_retries.attempts == 1
    # One retry allowed: a shard failed, was replaced, failed again; the other two
    # stopped with the Job. Two attempts, not four.
    one_retry = observe_job(_job({**sharded, "backoffLimit": 1}, {**ended, "failed": 4}))
    assert one_retry is not None and one_retry.attempts == 2
