"""Sharded stages as the operator sees them: one result from many pods, and the stage
span their spans hang under.

A sharded stage is an Indexed Job. Each pod writes its shard's result to its
termination message; the stage's result is their sum (rows in and out, failed rows per
quality check), or the first failed shard's error. The shards' spans are children of
a stage span whose id every party derives (`lineagehub.api.shards.stage_span_id`);
the operator exports that span when it sees the Job end, so the trace shows the stage
once with a span per shard under it, whether the stage succeeded or failed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from lineagehub.api.pipelinerun import Phase, PipelineRun, PipelineRunStatus, StageStatus
from lineagehub.api.shards import stage_span_id
from lineagehub.shard_quality import Verdict, merge
from lineagehub.telemetry.spans import FixedSpan, parse_traceparent
from lineagehub_operator.kube import pod_outcome
from lineagehub_operator.manifests import stage_run_id

#: The annotation the Job controller puts on each pod of an Indexed Job.
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def _index(pod: Mapping[str, Any]) -> int:
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(INDEX_ANNOTATION, "0")
    return int(raw) if str(raw).isdigit() else 0


def latest_per_index(pods: Iterable[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    """The newest pod of each completion index (a retried shard has several)."""
    out: dict[int, Mapping[str, Any]] = {}
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp", "")):
        out[_index(pod)] = pod
    return dict(sorted(out.items()))


def _sum(values: list[Any]) -> int | None:
    ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    return sum(ints) if len(ints) == len(values) else None


def _verdict(q: dict[str, Any]) -> Verdict:
    key = (str(q.get("name")), str(q.get("type")), str(q.get("column")), str(q.get("severity")))
    sample = q.get("sample")
    return Verdict(
        key,
        bool(q.get("success", True)),
        int(q.get("failedRows") or 0),
        [str(s) for s in sample] if isinstance(sample, list) else [],
    )


def _quality(shards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each check's verdicts over the shards, by the rule the committing shard's COMPLETE
    event uses too (`lineagehub.shard_quality`)."""
    checks = [
        [q for q in shard.get("quality") or [] if isinstance(q, dict)]
        if isinstance(shard.get("quality"), list)
        else []
        for shard in shards
    ]
    return [
        {**m.first, "failedRows": m.failed_rows, "success": m.success, "sample": m.sample}
        for m in merge(checks, _verdict)
    ]


def combined_outcome(
    pods: Iterable[Mapping[str, Any]], shards: int
) -> tuple[str | None, str | None]:
    """(termination message, pod reason) of the whole stage, from its shards' pods."""
    latest = latest_per_index(pods)
    results: list[dict[str, Any]] = []
    for index in range(shards):
        pod = latest.get(index)
        message, reason = pod_outcome(dict(pod)) if pod is not None else (None, None)
        try:
            data = json.loads(message) if message else {}
        except ValueError:
            data = {"error": message.strip().splitlines()[-1] if message else None}
        if not isinstance(data, dict):
            data = {}
        if data.get("error") or reason:
            error = data.get("error") or f"pod {reason}"
            failed = {**data, "error": f"shard {index + 1}/{shards}: {error}"}
            return json.dumps(failed), reason
        results.append(data)
    first = results[0] if results else {}
    # The stage ended with its last shard (RFC 3339 UTC times, all of one format: the
    # latest sorts last); unknown if a shard did not say.
    ends = [r["finishedAt"] for r in results if isinstance(r.get("finishedAt"), str)]
    total = {
        **first,
        "finishedAt": max(ends) if ends and len(ends) == len(results) else None,
        "recordsIn": _sum([r.get("recordsIn") for r in results]),
        "recordsOut": _sum([r.get("recordsOut") for r in results]),
        "bytesWritten": _sum([r.get("bytesWritten") for r in results]),
        "quality": _quality(results),
    }
    return json.dumps(total), None


def newly_finished(
    before: PipelineRunStatus | None, after: PipelineRunStatus, run: PipelineRun
) -> list[StageStatus]:
    """The sharded stages that `after` records as finished and `before` did not."""
    out = []
    for stage in after.stages:
        if not stage.phase.finished or run.spec.stage_policy(stage.name).parallelism == 1:
            continue
        earlier = before.stage(stage.name) if before is not None else None
        if earlier is None or not earlier.phase.finished:
            out.append(stage)
    return out


def stage_span(run: PipelineRun, stage: StageStatus, job: str) -> FixedSpan | None:
    """The span of a sharded stage, the parent of its shards' spans. It spans the
    stage's recorded times (the operator's, to the millisecond, else the Job's) and
    nothing of the pass that publishes it: the operator publishes it once the status
    holding those times is written, so any pass publishing it again (a restart) sends
    the very same span. None for a stage with no recorded start (it never ran)."""
    status = run.status
    start = stage.start_time_precise or stage.start_time
    if status is None or not status.traceparent or not status.run_id or start is None:
        return None
    trace_id, root_span_id = parse_traceparent(status.traceparent)
    child_run_id = stage_run_id(status.run_id, stage.name)
    policy = run.spec.stage_policy(stage.name)
    attributes: dict[str, str | int | float | bool] = {
        "lineagehub.run_id": status.run_id,
        "lineagehub.stage": stage.name.value,
        "lineagehub.pipeline": job,
        "lineagehub.stage_run_id": child_run_id,
        "lineagehub.shards": policy.parallelism,
        "lineagehub.pipelinerun": run.metadata.name or "",
        "k8s.namespace.name": run.metadata.namespace or "",
    }
    for key, value in (
        ("lineagehub.records_in", stage.records_in),
        ("lineagehub.records_out", stage.records_out),
    ):
        if value is not None:
            attributes[key] = value
    return FixedSpan(
        name=f"stage {stage.name.value}",
        trace_id=trace_id,
        span_id=stage_span_id(trace_id, child_run_id),
        parent_span_id=root_span_id,
        start=start,
        end=max(start, stage.completion_time_precise or stage.completion_time or start),
        ok=stage.phase == Phase.SUCCEEDED,
        message="" if stage.phase == Phase.SUCCEEDED else stage.message or stage.reason or "",
        attributes=attributes,
    )
