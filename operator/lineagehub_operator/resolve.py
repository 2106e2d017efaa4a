"""A run with `pipelineRef`: its Pipeline is read once, when the run starts, and the
resolved spec (params filled in) is written to `status.pipelineSpec`. The run executes
that copy from then on, so editing or deleting the Pipeline never changes a started run.

Pure: the daemon reads the Pipeline and writes the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from lineagehub.api.params import ParamError
from lineagehub.api.pipeline import Pipeline, resolve
from lineagehub.api.pipelinerun import (
    CONDITION_SUCCEEDED,
    TERMINAL_PHASES,
    ConditionStatus,
    Phase,
    PipelineBody,
    PipelineRunStatus,
    Reason,
    set_condition,
)
from lineagehub.datasets import redact_text
from lineagehub_operator.decide import nothing_to_record


@dataclass(frozen=True)
class Unresolvable:
    """Why the run cannot start: the reason for its `Succeeded` condition, and what to fix."""

    reason: Reason
    message: str


def pipeline_name(body: Mapping[str, Any]) -> str | None:
    """The Pipeline a run refers to, if it refers to one."""
    ref = (body.get("spec") or {}).get("pipelineRef")
    name = ref.get("name") if isinstance(ref, dict) else None
    return name if isinstance(name, str) else None


def needs_resolution(body: Mapping[str, Any]) -> bool:
    """A pipelineRef run that has not snapshot its Pipeline yet and has not ended."""
    status = body.get("status") or {}
    return (
        pipeline_name(body) is not None
        and "pipelineSpec" not in status
        and status.get("phase") not in {p.value for p in TERMINAL_PHASES}
    )


def resolve_run(
    pipeline: Mapping[str, Any] | None, body: Mapping[str, Any]
) -> PipelineBody | Unresolvable:
    """The spec the run executes, or why there is none (the message names the field)."""
    name = pipeline_name(body) or ""
    namespace = (body.get("metadata") or {}).get("namespace") or ""
    if pipeline is None:
        return Unresolvable(
            Reason.PIPELINE_NOT_FOUND,
            f"spec.pipelineRef.name: there is no Pipeline {name} in namespace {namespace};"
            " create it or correct the name",
        )
    try:
        parsed = Pipeline.model_validate(pipeline)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return Unresolvable(
            Reason.INVALID_PIPELINE,
            f"spec.pipelineRef.name: Pipeline {name} is invalid ({where}: {first['msg']});"
            " correct the Pipeline",
        )
    params = (body.get("spec") or {}).get("params")
    try:
        return resolve(parsed, params if isinstance(params, dict) else None)
    except ParamError as err:
        return Unresolvable(Reason.INVALID_PARAMS, str(err))


def unresolvable_status(
    body: Mapping[str, Any], why: Unresolvable, now: datetime
) -> dict[str, Any]:
    """The run ends Failed before anything ran: there is no lineage or trace to wait for."""
    generation = (body.get("metadata") or {}).get("generation")
    message = redact_text(why.message)
    conditions = set_condition(
        [],
        type_=CONDITION_SUCCEEDED,
        status=ConditionStatus.FALSE,
        reason=why.reason,
        message=message,
        observed_generation=generation,
        at=now,
    )
    conditions = nothing_to_record(
        conditions,
        why.reason,
        "The run could not start: it has no lineage or trace to record",
        generation,
        now,
    )
    status = PipelineRunStatus(
        phase=Phase.FAILED,
        conditions=conditions,
        completion_time=now,
        observed_generation=generation,
    )
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)
