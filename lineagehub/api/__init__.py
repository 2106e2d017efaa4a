"""The PipelineRun API models, imported by the operator, the runner, the consumers
and the gateway. Imports only pydantic and the standard library.

The enums (`enums`) are imported at once, without pydantic; the models when one of
them is first asked for: the stage's part (`stage_spec`), or the run-level models
(`pipelinerun`: spec, status, the resource), which a stage process never uses. So a
stage's work, which keys and compares by the enums, loads no pydantic, and neither
does its config's validation (`stage_reader`, from the models' generated JSON schema).
A submodule (`shards`, `egress`) loads no model either."""

from typing import TYPE_CHECKING

from lineagehub.api.enums import (
    STAGE_CONFIG_ENV,
    STAGES,
    CastType,
    CheckType,
    ConditionStatus,
    Phase,
    Reason,
    Severity,
    SinkFormat,
    SourceFormat,
    StageName,
    WriteMode,
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
    from lineagehub.api.run_ids import new_run_id
    from lineagehub.api.stage_spec import (
        API_GROUP,
        API_GROUP_VERSION,
        API_VERSION,
        CONDITION_SUCCEEDED,
        KIND,
        PLURAL,
        DerivedColumn,
        ParentRun,
        QualityCheck,
        RunRef,
        SinkSpec,
        SourceSpec,
        StageConfig,
        TransformSpec,
    )

#: Names this package takes from `stage_spec` when first asked for.
_STAGE_LEVEL = frozenset(
    {
        "API_GROUP",
        "API_GROUP_VERSION",
        "API_VERSION",
        "CONDITION_SUCCEEDED",
        "KIND",
        "PLURAL",
        "DerivedColumn",
        "ParentRun",
        "QualityCheck",
        "RunRef",
        "SinkSpec",
        "SourceSpec",
        "StageConfig",
        "TransformSpec",
    }
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
    if name == "new_run_id":  # no model: no pydantic
        from lineagehub.api.run_ids import new_run_id

        return new_run_id
    if name in _STAGE_LEVEL:
        from lineagehub.api import stage_spec

        return getattr(stage_spec, name)
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
