"""The rules of a PipelineRun's spec that span fields, as plain functions: the pydantic
models (`pipelinerun`) and the manifest's pydantic-free reader (`run_reader`) apply
these same ones, as `stage_rules` does for a stage's config. Each raises `ValueError`
saying what is wrong."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from lineagehub.api.enums import CheckType, StageName

PARALLELISM_FIX = "set 1 for one pod, or N to split the stage's input across N pods"
LOAD_NOT_SHARDED = (
    "load is not sharded (one pod commits every shard's rows at once, all or nothing):"
    " remove stages.load.parallelism"
)
GLOBAL_TRANSFORM = (
    "deduplicate and unique checks need every row in one pod: set"
    " spec.stages.transform.parallelism to 1 (extract can stay sharded), or remove them"
)
SAME_URI = "sink.uri must differ from source.uri"
NOT_RESOLVED = "spec.pipelineRef: the Pipeline is not resolved yet (no status.pipelineSpec)"

#: What a run decides for itself (`RunControls`), by wire name: a run with pipelineRef
#: keeps these over its Pipeline's spec.
CONTROL_FIELDS = (
    "pipelineRef",
    "params",
    "rerun",
    "ttlSecondsAfterFinished",
    "suspend",
    "cancel",
)


def at_least_one_pod(value: int) -> int:
    """A stage's parallelism (its pods), refused below 1."""
    if value < 1:
        raise ValueError(f"parallelism must be at least 1, not {value}: {PARALLELISM_FIX}")
    return value


def check_load_not_sharded(load_parallelism: int | None) -> None:
    if load_parallelism is not None:
        raise ValueError(LOAD_NOT_SHARDED)


def stage_parallelism(stage: StageName, override: int | None, default: int | None) -> int:
    """Pods of `stage`: its override, else the spec-wide value, else 1 (load: always 1)."""
    if stage is StageName.LOAD:
        return 1
    if override is not None:
        return override
    return default or 1


def sharding_problem(
    transform_shards: int, deduplicate: object | None, check_types: Iterable[CheckType]
) -> str | None:
    """Why a transform of `transform_shards` pods cannot run, or None when it can: a
    deduplicate or a unique check needs every row in one pod."""
    if transform_shards <= 1:
        return None
    needs_all = deduplicate is not None or any(t == CheckType.UNIQUE for t in check_types)
    return GLOBAL_TRANSFORM if needs_all else None


def check_body(source_uri: str | None, sink_uri: str | None, sharding: str | None) -> None:
    """What a run's source, sink and transform must satisfy together (`sharding`: what
    `sharding_problem` found)."""
    if source_uri is not None and sink_uri == source_uri:
        raise ValueError(SAME_URI)
    if sharding is not None:
        raise ValueError(sharding)


def resolved(data: Any, controls: Collection[str]) -> Any:
    """The run as it executes: for a run with pipelineRef, its spec is the Pipeline's
    snapshot in `status.pipelineSpec` with the run's own `controls` (fields, by wire and
    Python name) over it; any other data as it is."""
    if not isinstance(data, dict):
        return data
    spec, status = data.get("spec"), data.get("status")
    if not isinstance(spec, dict) or not ({"pipelineRef", "pipeline_ref"} & spec.keys()):
        return data
    snapshot = status.get("pipelineSpec") if isinstance(status, dict) else None
    if not isinstance(snapshot, dict):
        raise ValueError(NOT_RESOLVED)
    own = {k: v for k, v in spec.items() if k in controls}
    return {**data, "spec": {**snapshot, **own}}
