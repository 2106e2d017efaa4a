"""The PipelineRun API models, imported by the operator, the runner, the consumers
and the gateway. Imports only pydantic and the standard library.

The stage's part of the API (`stage_spec`) is imported at once; the run-level models
(`pipelinerun`: spec, status, the resource) when one of them is first asked for, so a
stage process, which needs none of them, does not create their classes."""

from typing import TYPE_CHECKING

from lineagehub.api.stage_spec import (
    API_GROUP,
    API_GROUP_VERSION,
    API_VERSION,
    CONDITION_SUCCEEDED,
    KIND,
    PLURAL,
    STAGE_CONFIG_ENV,
    STAGES,
    CastType,
    CheckType,
    ConditionStatus,
    DerivedColumn,
    ParentRun,
    Phase,
    QualityCheck,
    Reason,
    RunRef,
    Severity,
    SinkFormat,
    SinkSpec,
    SourceFormat,
    SourceSpec,
    StageConfig,
    StageName,
    TransformSpec,
    WriteMode,
    new_run_id,
)

if TYPE_CHECKING:
    from lineagehub.api.pipelinerun import (
        Condition,
        DatasetRef,
        LineageStatus,
        PipelineRun,
        PipelineRunSpec,
        PipelineRunStatus,
        StagePolicy,
        StageStatus,
        TraceStatus,
        progress,
        set_condition,
    )

#: Names this package takes from `pipelinerun` when first asked for.
_RUN_LEVEL = frozenset(
    {
        "Condition",
        "DatasetRef",
        "LineageStatus",
        "PipelineRun",
        "PipelineRunSpec",
        "PipelineRunStatus",
        "StagePolicy",
        "StageStatus",
        "TraceStatus",
        "progress",
        "set_condition",
    }
)


def __getattr__(name: str) -> object:
    if name in _RUN_LEVEL:
        from lineagehub.api import pipelinerun

        return getattr(pipelinerun, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "API_GROUP",
    "API_GROUP_VERSION",
    "API_VERSION",
    "CONDITION_SUCCEEDED",
    "KIND",
    "PLURAL",
    "STAGES",
    "STAGE_CONFIG_ENV",
    "CastType",
    "CheckType",
    "Condition",
    "ConditionStatus",
    "DatasetRef",
    "DerivedColumn",
    "LineageStatus",
    "ParentRun",
    "Phase",
    "PipelineRun",
    "PipelineRunSpec",
    "PipelineRunStatus",
    "QualityCheck",
    "Reason",
    "RunRef",
    "Severity",
    "SinkFormat",
    "SinkSpec",
    "SourceFormat",
    "SourceSpec",
    "StageConfig",
    "StageName",
    "StagePolicy",
    "StageStatus",
    "TraceStatus",
    "TransformSpec",
    "WriteMode",
    "new_run_id",
    "progress",
    "set_condition",
]
