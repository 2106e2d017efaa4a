"""A re-run: a new PipelineRun with `spec.rerun` continues an earlier, finished run from
one of its stages. The earlier run is read once, when the re-run starts; the stages
before the chosen one are recorded as `Succeeded` (reason `Reused`) with the earlier
run's figures and never get a Job, and the re-run works in the earlier run's workspace,
where their outputs are. A re-run that starts at extract reuses nothing and works in a
workspace of its own.

On a cluster that workspace is a PersistentVolumeClaim: a re-run that reuses one is
refused when the claim is gone (a succeeded run releases its claim; a deleted run's claim
goes with it) and, once accepted, becomes an additional owner of the claim, so deleting
the earlier run does not take the claim away while the re-run needs it.

Pure: the daemon reads the earlier run and writes the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from lineagehub.api.pipelinerun import (
    API_GROUP,
    API_VERSION,
    KIND,
    STAGES,
    TERMINAL_PHASES,
    Phase,
    PipelineRun,
    PipelineRunSpec,
    PipelineRunStatus,
    Reason,
    RerunStatus,
    StageName,
    StageStatus,
)
from lineagehub_operator.config import OperatorConfig
from lineagehub_operator.manifests import openlineage_names
from lineagehub_operator.naming import child_name
from lineagehub_operator.resolve import Unresolvable


def rerun_of(body: Mapping[str, Any]) -> str | None:
    """The earlier run a run re-runs, if it is a re-run."""
    rerun = (body.get("spec") or {}).get("rerun")
    name = rerun.get("of") if isinstance(rerun, dict) else None
    return name if isinstance(name, str) else None


def needs_source(body: Mapping[str, Any]) -> bool:
    """A re-run that has not read its earlier run yet and has not ended."""
    status = body.get("status") or {}
    return (
        rerun_of(body) is not None
        and "rerunOf" not in status
        and status.get("phase") not in {p.value for p in TERMINAL_PHASES}
    )


def reused_workspace(earlier_body: Mapping[str, Any]) -> str:
    """The run whose workspace holds an earlier run's stage outputs: its own, or the
    one it re-ran in turn."""
    status = earlier_body.get("status") or {}
    rerun_status = status.get("rerunOf")
    workspace = rerun_status.get("workspace") if isinstance(rerun_status, dict) else None
    if isinstance(workspace, str) and workspace:
        return workspace
    return str((earlier_body.get("metadata") or {}).get("name") or "")


def reused_claim_name(earlier_body: Mapping[str, Any]) -> str:
    """The workspace claim a re-run of `earlier_body` would reuse."""
    return child_name(reused_workspace(earlier_body), "workspace")


def adopted_claim(
    fields: Mapping[str, Any], body: Mapping[str, Any], config: OperatorConfig
) -> str | None:
    """The claim a re-run that `continue_run` accepted must become an owner of: the
    earlier run's, when the re-run reuses outputs on a claim (not a host folder)."""
    if config.workspace_host_path:
        return None
    workspace = (fields.get("rerunOf") or {}).get("workspace")
    own = (body.get("metadata") or {}).get("name")
    if not isinstance(workspace, str) or workspace == own:
        return None
    return child_name(workspace, "workspace")


def claim_owner(body: Mapping[str, Any]) -> dict[str, Any]:
    """The re-run as an additional, non-controlling owner of the claim it reuses."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "controller": False,
        "blockOwnerDeletion": False,
    }


def _claim_gone(claim: Mapping[str, Any] | None) -> bool:
    return claim is None or bool((claim.get("metadata") or {}).get("deletionTimestamp"))


def _invalid(field: str, message: str) -> Unresolvable:
    return Unresolvable(Reason.INVALID_RERUN, f"spec.rerun.{field}: {message}")


def _parts_differ(
    mine: PipelineRunSpec, theirs: PipelineRunSpec, reused: StageName, name: str
) -> str | None:
    """Why the re-run cannot read the reused stage's parts (one per shard), if it cannot."""
    want, have = mine.stage_policy(reused).parallelism, theirs.stage_policy(reused).parallelism
    if want == have:
        return None
    return (
        f"the {reused.value} parallelism is {want}, but PipelineRun {name}'s {reused.value}"
        f" output the re-run reuses is in {have} parts: set spec.parallelism (or"
        f" spec.stages.{reused.value}.parallelism) to {have}, or start at {reused.value}"
    )


def _reused(stage: StageStatus, earlier: str) -> StageStatus:
    return stage.model_copy(
        update={
            "reason": Reason.REUSED.value,
            "message": f"output of PipelineRun {earlier} reused",
            "attempts": 0,
        }
    )


def continue_run(
    earlier_body: Mapping[str, Any] | None,
    body: Mapping[str, Any],
    config: OperatorConfig,
    *,
    claim: Mapping[str, Any] | None = None,
) -> dict[str, Any] | Unresolvable:
    """The status fields that start the re-run (`rerunOf`, the reused stages and, for a
    pipelineRef run, the earlier run's `pipelineSpec`), or why it cannot start.

    `claim` is the workspace claim the re-run would reuse as the API server holds it
    (None: there is none); it is not read when the workspace is a host folder."""
    name = rerun_of(body) or ""
    namespace = (body.get("metadata") or {}).get("namespace") or ""
    if earlier_body is None:
        return _invalid("of", f"there is no PipelineRun {name} in namespace {namespace}")
    try:
        earlier = PipelineRun.model_validate(earlier_body)
    except ValidationError:
        return _invalid("of", f"PipelineRun {name} has no spec it ran; nothing to reuse")
    status = earlier.status or PipelineRunStatus()
    if status.phase not in TERMINAL_PHASES or status.run_id is None:
        return _invalid(
            "of", f"PipelineRun {name} has not finished ({status.phase}); re-run it once it has"
        )
    done = [s for s in STAGES if (found := status.stage(s)) and found.phase == Phase.SUCCEEDED]
    given = (body.get("spec") or {}).get("rerun", {}).get("fromStage")
    if given is None:
        pending = [s for s in STAGES if s not in done]
        if not pending:
            return _invalid(
                "fromStage",
                f"every stage of PipelineRun {name} succeeded; name the stage to start from",
            )
        start = pending[0]
    else:
        start = StageName(given)
    before = STAGES[: start.position]
    missing = [s.value for s in before if s not in done]
    if missing:
        return _invalid(
            "fromStage",
            f"stage {missing[0]} of PipelineRun {name} did not succeed, so the re-run must"
            f" start at {missing[0]} or earlier",
        )
    fields: dict[str, Any] = {}
    spec = body.get("spec") or {}
    if "pipelineRef" in spec:
        for key in ("pipelineRef", "params"):
            if spec.get(key) != earlier_body["spec"].get(key):
                return Unresolvable(
                    Reason.INVALID_RERUN,
                    f"spec.{key}: differs from PipelineRun {name}'s; a re-run runs what the"
                    " earlier run ran",
                )
        if status.pipeline_spec is not None:
            fields["pipelineSpec"] = status.pipeline_spec.wire()
    else:
        try:
            own_spec = PipelineRunSpec.model_validate({**spec, "rerun": None})
        except ValidationError:
            return _invalid("of", "the re-run's own spec is invalid")
        mine = own_spec.body()
        theirs = earlier.spec
        if StageName.EXTRACT in before and mine.source != theirs.source:
            return _invalid(
                "of",
                f"spec.source differs from PipelineRun {name}'s, whose extract output the"
                " re-run reuses: read the same source, or start at extract",
            )
        if StageName.TRANSFORM in before and mine.transform != theirs.transform:
            return _invalid(
                "of",
                f"spec.transform differs from PipelineRun {name}'s, whose transform output"
                " the re-run reuses: keep it, or start at transform",
            )
        if before and (parts := _parts_differ(own_spec, earlier.spec, before[-1], name)):
            return _invalid("of", parts)
    own = str((body.get("metadata") or {}).get("name") or "")
    workspace = reused_workspace(earlier_body) if before else own
    if before and not config.workspace_host_path and _claim_gone(claim):
        why = (
            "a run that succeeded releases its workspace claim"
            if status.phase == Phase.SUCCEEDED and workspace == name
            else "it went with the run that made it, or was never made"
        )
        return _invalid(
            "of",
            f"the workspace claim {child_name(workspace, 'workspace')} that holds the"
            f" {before[-1].value} output of PipelineRun {name} is gone ({why}): start the"
            " re-run at extract (spec.rerun.fromStage: extract)",
        )
    ol_namespace, job = openlineage_names(earlier, config)
    fields["rerunOf"] = RerunStatus(
        name=name,
        run_id=status.run_id,
        namespace=ol_namespace,
        job=job,
        from_stage=start,
        workspace=workspace,
    ).wire()
    fields["stages"] = [
        _reused(found, name).wire()
        if s in before and (found := status.stage(s))
        else StageStatus(name=s).wire()
        for s in STAGES
    ]
    return fields
