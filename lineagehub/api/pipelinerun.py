"""The `PipelineRun` API (`lineagehub.io/v1alpha1`): spec, status and stage config.

These pydantic models are the single source of the API. The CRD in `crds/` is
generated from them (`python -m lineagehub.api.generate`), so every field's
docstring becomes its `kubectl explain` text, and the `x-kubernetes-*` entries
given through `json_schema_extra` end up in the CRD as they are.

On the wire every field is camelCase (`ttlSecondsAfterFinished`); in Python the
snake_case names work too (`populate_by_name`). Cross-field rules exist twice:
as CEL (`x-kubernetes-validations`, enforced by the API server) and as pydantic
validators (enforced by the operator, the runner and the tests). Keep them in step.

This module imports only the standard library and pydantic. The stage's part of
the API (source, transform, sink, `StageConfig`, the enums and bounds) lives in
`stage_spec`, which a stage Job imports alone; it is re-exported here (`__all__`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from lineagehub.api import run_rules as rules
from lineagehub.api.enums import (
    STAGE_CONFIG_ENV,
    STAGES,
    TERMINAL_PHASES,
    CastType,
    CheckType,
    ConditionStatus,
    KeepRow,
    Phase,
    PullPolicy,
    Reason,
    Severity,
    SinkFormat,
    SourceFormat,
    StageName,
    WriteMode,
)
from lineagehub.api.run_ids import new_run_id
from lineagehub.api.shards import MAX_PARALLELISM
from lineagehub.api.stage_spec import (
    API_GROUP,
    API_GROUP_VERSION,
    API_VERSION,
    CATEGORIES,
    CONDITION_LINEAGE_RECORDED,
    CONDITION_REASON_PATTERN,
    CONDITION_SUCCEEDED,
    CONDITION_TRACE_RECORDED,
    CONDITION_TYPE_PATTERN,
    HTTP_URL_PATTERN,
    IDENTIFIER_PATTERN,
    KIND,
    LIST_KIND,
    MAX_ACCEPTED_VALUES,
    MAX_CHECKS,
    MAX_COLUMN,
    MAX_COLUMNS,
    MAX_DERIVED,
    MAX_EXPR,
    MAX_MAP_ENTRIES,
    MAX_MESSAGE,
    MAX_NAME,
    MAX_PARAM_VALUE,
    MAX_RETRIES,
    MAX_TIMEOUT_SECONDS,
    MAX_URI,
    PLURAL,
    PROGRESS_PATTERN,
    QUANTITY_PATTERN,
    SHORT_NAMES,
    SINGULAR,
    SINK_URI_PATTERN,
    SOURCE_URI_PATTERN,
    TRACE_ID_PATTERN,
    TRACEPARENT_PATTERN,
    UUID7_PATTERN,
    ApiModel,
    ColumnName,
    ColumnSet,
    Deduplicate,
    DerivedColumn,
    Identifier,
    JsonDict,
    K8sName,
    ParentRun,
    PreciseTime,
    QualityCheck,
    Quantity,
    RunRef,
    S3Options,
    SecretKeyRef,
    SinkSpec,
    SourceSpec,
    SqlExpr,
    StageConfig,
    StatusModel,
    Time,
    TransformSpec,
    cel,
    format_precise_time,
    format_time,
    now,
)


class ResourceRequirements(ApiModel):
    """Compute resources of a stage container (Kubernetes quantities)."""

    requests: Annotated[dict[K8sName, Quantity], Field(max_length=8)] | None = None
    """Minimum resources, e.g. `cpu: 100m`, `memory: 256Mi`."""
    limits: Annotated[dict[K8sName, Quantity], Field(max_length=8)] | None = None
    """Maximum resources, e.g. `memory: 1Gi`."""


Retries = Annotated[int, Field(ge=0, le=MAX_RETRIES)]
TimeoutSeconds = Annotated[int, Field(ge=1, le=MAX_TIMEOUT_SECONDS)]

Parallelism = Annotated[
    int,
    Field(
        le=MAX_PARALLELISM,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self >= 1", f"parallelism must be at least 1: {rules.PARALLELISM_FIX}")
            ]
        },
    ),
    AfterValidator(rules.at_least_one_pod),
]


class StageDefaults(ApiModel):
    """Retries and timeout for every stage that does not override them."""

    retries: Retries = 1
    """How many times a failed stage is retried (0 = no retry)."""
    timeout_seconds: TimeoutSeconds = 1800
    """Limit for one attempt of a stage, in seconds."""


class StageOverride(ApiModel):
    """Settings for one stage; unset fields fall back to `stages.defaults` and `spec.resources`."""

    retries: Retries | None = None
    """How many times this stage is retried when it fails."""
    timeout_seconds: TimeoutSeconds | None = None
    """Limit for one attempt of this stage, in seconds."""
    resources: ResourceRequirements | None = None
    """Resources of this stage's container."""
    parallelism: Parallelism | None = None
    """Pods (shards) of this stage, overriding `spec.parallelism`: extract and transform
    only; load is always one pod, which commits every shard's rows at once."""


class StagePolicy(BaseModel):
    """The settings that apply to one stage (not part of the wire format)."""

    model_config = ConfigDict(frozen=True)

    retries: int
    timeout_seconds: int
    resources: ResourceRequirements | None
    parallelism: int = 1


class StagesSpec(ApiModel):
    """Per-stage retries and timeouts: defaults, then overrides per stage."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.load) || !has(self.load.parallelism)",
                    rules.LOAD_NOT_SHARDED,
                    field_path=".load.parallelism",
                )
            ]
        }
    )

    defaults: StageDefaults = StageDefaults()
    """Applies to every stage."""
    extract: StageOverride | None = None
    """Overrides for the extract stage."""
    transform: StageOverride | None = None
    """Overrides for the transform stage."""
    load: StageOverride | None = None
    """Overrides for the load stage."""

    @model_validator(mode="after")
    def _check(self) -> StagesSpec:
        rules.check_load_not_sharded(self.load.parallelism if self.load else None)
        return self

    def parallelism(self, stage: StageName, default: int | None) -> int:
        """Pods of `stage`: its override, else the spec-wide value, else 1 (load: 1)."""
        override: StageOverride | None = getattr(self, stage.value)
        return rules.stage_parallelism(stage, override.parallelism if override else None, default)


_TRANSFORM_SHARDS = (
    "(has(self.stages) && has(self.stages.transform) && has(self.stages.transform.parallelism)"
    " ? self.stages.transform.parallelism : (has(self.parallelism) ? self.parallelism : 1))"
)
SHARDED_TRANSFORM_RULE = cel(
    f"{_TRANSFORM_SHARDS} <= 1 || !has(self.transform)"
    " || (!has(self.transform.deduplicate) && (!has(self.transform.quality)"
    " || self.transform.quality.all(q, q.type != 'unique')))",
    rules.GLOBAL_TRANSFORM,
    field_path=".transform",
)


def _sharding_problem(
    parallelism: int | None, stages: StagesSpec | None, transform: TransformSpec | None
) -> str | None:
    """Why the transform cannot run in shards, or None when it can (or is not sharded)."""
    shards = (stages or StagesSpec()).parallelism(StageName.TRANSFORM, parallelism)
    if transform is None:
        return None
    return rules.sharding_problem(
        shards, transform.deduplicate, (q.type for q in transform.quality or [])
    )


class OpenLineageSpec(ApiModel):
    """How the run is named in OpenLineage (and so in Marquez)."""

    namespace: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)] | None = None
    """OpenLineage job namespace; the operator's default namespace when unset."""
    job: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)] | None = None
    """OpenLineage job name; the PipelineRun's name when unset. Set it to keep one job
    (and its history) across runs; each stage is the child job `<job>.<stage>`."""


_EXECUTION_FIELDS = ("image", "imagePullPolicy", "resources", "parallelism")
_BODY_FIELDS = ("source", "transform", "sink", "stages", "openlineage", *_EXECUTION_FIELDS)

ParamValue = Annotated[str, StringConstraints(max_length=MAX_PARAM_VALUE)]


class ExecutionSpec(ApiModel):
    """How the stage containers run: image and resources."""

    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    """Container image of the stage Jobs; the operator's runner image when unset."""
    image_pull_policy: PullPolicy | None = None
    """Pull policy of the stage containers; the Kubernetes default when unset."""
    resources: ResourceRequirements | None = None
    """Resources of every stage container, unless a stage overrides them."""
    parallelism: Parallelism | None = None
    """Pods (shards) of extract and transform, each taking a contiguous share of the input
    (files of a glob, Parquet row groups or byte ranges of one file); load commits all the
    shards' rows at once. 1 (one pod per stage) when unset; `stages.<stage>.parallelism`
    overrides it per stage."""


class PipelineBody(ExecutionSpec):
    """What a run does: source, transform, sink, stages and OpenLineage naming. A
    PipelineRun carries it inline; a Pipeline holds it for many runs."""

    source: SourceSpec
    """The data to read."""
    transform: TransformSpec = TransformSpec()
    """What to do with the data, in this fixed order: rename, cast, derived, filter,
    dropNulls, deduplicate, select; then the quality checks run on the result. Each step
    sees the column names the earlier ones gave. When empty the data is copied as it is."""
    sink: SinkSpec
    """Where to write the result."""
    stages: StagesSpec = StagesSpec()
    """Retries and timeouts, with per-stage overrides for extract, transform and load."""
    openlineage: OpenLineageSpec = OpenLineageSpec()
    """OpenLineage namespace and job name of the run."""

    @model_validator(mode="after")
    def _check(self) -> PipelineBody:
        rules.check_body(
            self.source.uri,
            self.sink.uri,
            _sharding_problem(self.parallelism, self.stages, self.transform),
        )
        return self


class PipelineRef(ApiModel):
    """The Pipeline a run runs: a Pipeline in the run's namespace."""

    name: K8sName
    """Name of the Pipeline."""


class RerunSpec(ApiModel):
    """Start from a stage of an earlier, finished run, reusing what its earlier stages
    wrote (their outputs in its workspace) instead of running them again."""

    of: K8sName
    """Name of the earlier PipelineRun (in this run's namespace). Its lineage is this
    run's parent."""
    from_stage: StageName | None = None
    """The stage to start at; when unset, the first stage the earlier run did not finish.
    Every stage before it must have succeeded there."""


class RunControls(ApiModel):
    """What a run decides for itself, whatever it runs: params, TTL, suspend, cancel."""

    pipeline_ref: PipelineRef | None = None
    """Run this Pipeline (of the run's namespace) instead of an inline spec: the run takes
    its source, transform, sink, stages, resources and OpenLineage naming from it. Set
    either pipelineRef or source and sink, not both."""
    params: (
        Annotated[
            dict[ColumnName, ParamValue],
            Field(max_length=MAX_MAP_ENTRIES),
        ]
        | None
    ) = None
    """Values of the Pipeline's parameters, by name (as text: `date: "2026-11-30"`); a
    parameter the Pipeline gives a default may be left out. Only with pipelineRef."""
    rerun: RerunSpec | None = None
    """Re-run an earlier run from one of its stages (`lineage-hub rerun RUN --from STAGE`
    writes it): the stages before are not run again. The spec must read and transform
    what the earlier run did."""
    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] | None = None
    """Delete the run this many seconds after it finished; kept until deleted when unset."""
    suspend: bool = False
    """While true no new stage starts (a running stage finishes); set false to go on."""
    cancel: bool = False
    """Set true to cancel the run: the running stage is stopped and the run ends Cancelled.
    Cannot be undone."""


_CANCEL_FINAL = cel(
    "!oldSelf.cancel || self.cancel", "cancel cannot be undone", field_path=".cancel"
)


class PipelineRunSpec(RunControls, PipelineBody):
    """Desired state of a PipelineRun: what to read, how to transform it, where to write it.

    This is the spec a run executes: the inline spec, or, for a run with `pipelineRef`,
    the Pipeline's resolved spec (from `status.pipelineSpec`) with the run's own
    controls. The wire form, where either half may be absent, is `PipelineRunRequest`."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.sink.uri != self.source.uri",
                    "sink.uri must differ from source.uri",
                    field_path=".sink.uri",
                ),
                _CANCEL_FINAL,
            ]
        }
    )

    def body(self) -> PipelineBody:
        """The part a Pipeline could hold (what `status.pipelineSpec` snapshots)."""
        return PipelineBody.model_validate(self.model_dump(include=set(PipelineBody.model_fields)))

    def stage_policy(self, stage: StageName) -> StagePolicy:
        """Retries, timeout and resources for `stage`, overrides applied."""
        override: StageOverride | None = getattr(self.stages, stage.value)
        d = self.stages.defaults
        if override is None:
            return StagePolicy(
                retries=d.retries,
                timeout_seconds=d.timeout_seconds,
                resources=self.resources,
                parallelism=self.stages.parallelism(stage, self.parallelism),
            )
        return StagePolicy(
            retries=d.retries if override.retries is None else override.retries,
            timeout_seconds=(
                d.timeout_seconds if override.timeout_seconds is None else override.timeout_seconds
            ),
            resources=self.resources if override.resources is None else override.resources,
            parallelism=self.stages.parallelism(stage, self.parallelism),
        )


_HAS_BODY = " || ".join(f"has(self.{f})" for f in _BODY_FIELDS)


class PipelineRunRequest(RunControls, ExecutionSpec):
    """Desired state of a PipelineRun, as written: either an inline spec (source, sink and
    what goes with them) or a `pipelineRef` to a Pipeline with `params`."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.pipelineRef) || has(self.source)",
                    "an inline spec needs source; or set pipelineRef to run a Pipeline",
                    field_path=".source",
                ),
                cel(
                    "has(self.pipelineRef) || has(self.sink)",
                    "an inline spec needs sink; or set pipelineRef to run a Pipeline",
                    field_path=".sink",
                ),
                cel(
                    f"!has(self.pipelineRef) || !({_HAS_BODY})",
                    "a run with pipelineRef takes source, transform, sink, stages, openlineage,"
                    " image, imagePullPolicy, resources and parallelism from its Pipeline:"
                    " remove them from the run, or drop pipelineRef",
                    field_path=".pipelineRef",
                ),
                cel(
                    "!has(self.params) || has(self.pipelineRef)",
                    "params apply only to a run with pipelineRef",
                    field_path=".params",
                ),
                cel(
                    "!has(self.source) || !has(self.sink) || self.sink.uri != self.source.uri",
                    "sink.uri must differ from source.uri",
                    field_path=".sink.uri",
                ),
                SHARDED_TRANSFORM_RULE,
                _CANCEL_FINAL,
            ]
        },
    )

    source: SourceSpec | None = None
    """The data to read (inline spec)."""
    transform: TransformSpec | None = None
    """What to do with the data (inline spec), in this fixed order: rename, cast, derived,
    filter, dropNulls, deduplicate, select; then the quality checks run on the result. Each
    step sees the column names the earlier ones gave. When unset the data is copied as it is."""
    sink: SinkSpec | None = None
    """Where to write the result (inline spec)."""
    stages: StagesSpec | None = None
    """Retries and timeouts, with per-stage overrides for extract, transform and load
    (inline spec; 1 retry and 1800 s per attempt when unset)."""
    openlineage: OpenLineageSpec | None = None
    """OpenLineage namespace and job name of the run (inline spec)."""

    @model_validator(mode="after")
    def _check(self) -> PipelineRunRequest:
        if self.pipeline_ref is None:
            for name, value in (("source", self.source), ("sink", self.sink)):
                if value is None:
                    raise ValueError(
                        f"an inline spec needs {name}; or set pipelineRef to run a Pipeline"
                    )
        if self.pipeline_ref is not None:
            given = sorted(self.model_dump(by_alias=True, exclude_none=True).keys() & _BODY_FIELDS)
            if given:
                raise ValueError(
                    f"a run with pipelineRef takes {', '.join(given)} from its Pipeline:"
                    " remove them from the run, or drop pipelineRef"
                )
        elif self.params is not None:
            raise ValueError("params apply only to a run with pipelineRef")
        rules.check_body(
            self.source.uri if self.source else None,
            self.sink.uri if self.sink else None,
            _sharding_problem(self.parallelism, self.stages, self.transform),
        )
        return self


# --------------------------------------------------------------------------- status


class Condition(StatusModel):
    """A metav1.Condition."""

    type: Annotated[str, StringConstraints(max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    """Type of condition in CamelCase, e.g. `Succeeded`."""
    status: ConditionStatus
    """True, False or Unknown."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The `.metadata.generation` the condition was set for."""
    last_transition_time: Time
    """When the condition last changed from one status to another."""
    reason: Annotated[
        str, StringConstraints(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)
    ]
    """Programmatic CamelCase identifier for the last transition, e.g. `StageTimeout`."""
    message: Annotated[str, StringConstraints(max_length=MAX_MESSAGE)] = ""
    """Human-readable details of the last transition."""


MAX_SAMPLE_VALUES = 5
MAX_SAMPLE_CHARS = 200


class QualityVerdict(StatusModel):
    """The outcome of one data-quality check, as the transform stage reported it."""

    name: Annotated[str, StringConstraints(max_length=MAX_COLUMN)] | None = None
    """The check's name, when it has one."""
    type: CheckType
    """not_null, unique, range, accepted_values or regex."""
    column: Annotated[str, StringConstraints(max_length=MAX_COLUMN)]
    """The column checked."""
    severity: Severity
    """fail or warn."""
    success: bool
    """Whether every row passed."""
    failed_rows: Annotated[int, Field(ge=0)] | None = None
    """Rows that failed the check."""
    sample: Annotated[
        list[Annotated[str, StringConstraints(max_length=MAX_SAMPLE_CHARS)]],
        Field(max_length=MAX_SAMPLE_VALUES),
    ] = Field(default_factory=list)
    """A few of the values that failed it (for people; trimmed by the stage)."""

    @field_validator("sample", mode="before")
    @classmethod
    def _trim_sample(cls, value: object) -> object:
        """Keep the first values, each cut to size: a longer sample never costs the verdict."""
        if isinstance(value, list):
            return [str(v)[:MAX_SAMPLE_CHARS] for v in value[:MAX_SAMPLE_VALUES]]
        return value


class StageStatus(StatusModel):
    """What happened in one stage."""

    name: StageName
    """The stage: extract, transform or load."""
    job_name: K8sName | None = None
    """Name of the stage's Job (of its latest attempt)."""
    phase: Phase = Phase.PENDING
    """Pending, Running, Succeeded, Failed or Cancelled."""
    attempts: Annotated[int, Field(ge=0)] = 0
    """Attempts started so far."""
    start_time: Time | None = None
    """When the first attempt started."""
    completion_time: Time | None = None
    """When the stage finished."""
    start_time_precise: PreciseTime | None = None
    """When the operator started the stage, to the millisecond (RFC 3339 with fractional
    seconds; `startTime` keeps whole seconds, as Kubernetes times do): the pass that
    decided to create its Job, just before creating it (for the run's first stage,
    before its START event and the run's ConfigMap and workspace claim). Kept when the
    Job is created again (after an operator restart, or the Job deleted)."""
    completion_time_precise: PreciseTime | None = None
    """When the stage ended, to the millisecond, as its pod said in its termination
    message (a sharded stage: its last shard; a cancelled stage: when the operator
    cancelled it). When its pod did not say, absent (its Job's whole-second
    `completionTime` is its end), or the operator's own time when Kubernetes kept no
    end either. `completionTimePrecise` minus `startTimePrecise` is the stage's
    duration, pod start-up included."""
    records_in: Annotated[int, Field(ge=0)] | None = None
    """Rows the stage read."""
    records_out: Annotated[int, Field(ge=0)] | None = None
    """Rows the stage wrote."""
    reason: (
        Annotated[str, StringConstraints(max_length=1024, pattern=CONDITION_REASON_PATTERN)] | None
    ) = None
    """CamelCase reason of the stage's last transition, e.g. `StageTimeout`."""
    message: Annotated[str, StringConstraints(max_length=MAX_MESSAGE)] | None = None
    """Human-readable details, e.g. the failure from the Job's termination message."""
    quality: Annotated[list[QualityVerdict], Field(max_length=MAX_CHECKS)] | None = None
    """Data-quality verdicts of the transform stage."""
    columns: (
        Annotated[
            list[Annotated[str, StringConstraints(max_length=MAX_COLUMN)]],
            Field(max_length=MAX_COLUMNS),
        ]
        | None
    ) = None
    """Names of the columns the stage wrote, in order."""


class DatasetRef(StatusModel):
    """An OpenLineage dataset."""

    namespace: str
    """Dataset namespace, e.g. `file` or `s3://bucket`."""
    name: str
    """Dataset name, e.g. the path."""


class LineageStatus(StatusModel):
    """Where the run's lineage is."""

    namespace: str | None = None
    """OpenLineage job namespace."""
    job: str | None = None
    """OpenLineage job name."""
    run_id: Annotated[str, StringConstraints(pattern=UUID7_PATTERN)] | None = None
    """OpenLineage run id (same as `status.runId`)."""
    inputs: list[DatasetRef] = Field(default_factory=list)
    """Datasets read."""
    outputs: list[DatasetRef] = Field(default_factory=list)
    """Datasets written."""
    marquez_url: str | None = None
    """Link to the run's job in the Marquez UI."""
    in_marquez: bool | None = None
    """Whether Marquez has the run (checked through its API; null: no Marquez configured,
    or not asked yet)."""
    in_clickhouse: bool | None = None
    """Whether the ClickHouse lineage warehouse has the run in its final state (null: not
    configured, or not asked yet)."""
    stores: list[str] = Field(default_factory=list)
    """The lineage stores that hold the run in its final state (`ClickHouse`, `Marquez`)."""
    column_lineage: bool | None = None
    """Whether column-level lineage was recorded for the run (in any store)."""


class TraceStatus(StatusModel):
    """Where the run's trace is."""

    trace_id: Annotated[str, StringConstraints(pattern=TRACE_ID_PATTERN)] | None = None
    """W3C trace id (same as `status.traceId`)."""
    jaeger_url: str | None = None
    """Link to the trace in the Jaeger UI."""
    span_count: Annotated[int, Field(ge=0)] | None = None
    """Spans of this trace seen in ClickHouse (null: not asked yet, or not configured)."""
    all_stage_spans: bool | None = None
    """Whether a span of every finished stage was seen (null: not asked yet)."""


class RerunStatus(StatusModel):
    """The earlier run a re-run continues, as the operator found it when the re-run
    started."""

    name: str
    """Name of the earlier PipelineRun."""
    run_id: Annotated[str, StringConstraints(pattern=UUID7_PATTERN)]
    """Its OpenLineage run id: the parent of this run's lineage."""
    namespace: str
    """OpenLineage namespace of its job."""
    job: str
    """OpenLineage name of its job."""
    from_stage: StageName
    """The stage this run starts at; the stages before reuse the earlier run's outputs."""
    workspace: str
    """The run whose workspace holds those outputs (and this run's)."""


class PipelineRunStatus(StatusModel):
    """Observed state of a PipelineRun, written by the operator."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The `.metadata.generation` this status reflects."""
    phase: Phase | None = None
    """Pending, Running, Succeeded, Failed or Cancelled (for people; tools should read the
    `Succeeded` condition)."""
    conditions: Annotated[
        list[Condition],
        Field(
            max_length=16,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        ),
    ] = Field(default_factory=list)
    """Conditions; `Succeeded` is Unknown while the run goes on, then True or False."""
    current_stage: StageName | None = None
    """The stage running now, or the last one that ran."""
    progress: Annotated[str, StringConstraints(pattern=PROGRESS_PATTERN)] | None = None
    """Finished stages out of all, e.g. `2/3`."""
    stages: Annotated[
        list[StageStatus],
        Field(
            max_length=len(STAGES),
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        ),
    ] = Field(default_factory=list)
    """One entry per stage that started."""
    run_id: Annotated[str, StringConstraints(pattern=UUID7_PATTERN)] | None = None
    """OpenLineage run id (UUIDv7), assigned once."""
    trace_id: Annotated[str, StringConstraints(pattern=TRACE_ID_PATTERN)] | None = None
    """W3C trace id of the run's trace, assigned once."""
    traceparent: Annotated[str, StringConstraints(pattern=TRACEPARENT_PATTERN)] | None = None
    """W3C traceparent of the run's root span, so a restarted operator continues the trace."""
    lineage: LineageStatus | None = None
    """OpenLineage summary and Marquez link."""
    trace: TraceStatus | None = None
    """Trace summary and Jaeger link."""
    start_time: Time | None = None
    """When the run started."""
    completion_time: Time | None = None
    """When the run finished: when its last stage ended, or when it was cancelled (set
    as the cancel is seen, before the run is written Cancelled)."""
    start_time_precise: PreciseTime | None = None
    """When the run started, to the millisecond (RFC 3339 with fractional seconds)."""
    completion_time_precise: PreciseTime | None = None
    """When the run finished, to the millisecond (RFC 3339 with fractional seconds):
    its last stage's `completionTimePrecise`, or when the cancel was seen; absent when
    that stage has none."""
    pipeline_spec: (
        Annotated[
            PipelineBody,
            WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
        ]
        | None
    ) = None
    """For a run with pipelineRef: the Pipeline's spec with the params filled in, as it
    was when the run started. The run executes this copy, so editing the Pipeline later
    never changes a run that has started."""
    rerun_of: RerunStatus | None = None
    """For a re-run: the earlier run it continues and the stage it starts at."""

    def condition(self, type_: str = CONDITION_SUCCEEDED) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def stage(self, name: StageName) -> StageStatus | None:
        return next((s for s in self.stages if s.name == name), None)


def set_condition(
    conditions: Sequence[Condition],
    *,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    observed_generation: int | None = None,
    at: datetime | None = None,
) -> list[Condition]:
    """Upsert a condition by type; `lastTransitionTime` moves only when `status` changes.

    Returns the whole new list (a merge patch replaces lists, so send all of it).
    """
    out: list[Condition] = []
    found = False
    for c in conditions:
        if c.type != type_:
            out.append(c)
            continue
        found = True
        moved = c.status != status
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                observed_generation=observed_generation,
                last_transition_time=(at or now()) if moved else c.last_transition_time,
            )
        )
    if not found:
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                observed_generation=observed_generation,
                last_transition_time=at or now(),
            )
        )
    return out


def progress(stages: Iterable[StageStatus]) -> str:
    """`done/total` over the three stages (succeeded ones count as done)."""
    done = sum(1 for s in stages if s.phase == Phase.SUCCEEDED)
    return f"{done}/{len(STAGES)}"


# --------------------------------------------------------------------------- the object

_TERMINAL = "['Succeeded', 'Failed', 'Cancelled']"
_FROZEN_ONCE_STARTED = ("source", "transform", "sink", "pipelineRef", "params", "rerun")
_CONTROL_FIELDS_ALL = {
    *rules.CONTROL_FIELDS,
    *(name for name in RunControls.model_fields),
}


def _unchanged(field: str) -> str:
    """CEL: `spec.<field>` is as it was (both absent counts as unchanged)."""
    return (
        f"(has(self.spec.{field}) ? has(oldSelf.spec.{field})"
        f" && self.spec.{field} == oldSelf.spec.{field} : !has(oldSelf.spec.{field}))"
    )


class ObjectMeta(BaseModel):
    """The fields of metav1.ObjectMeta the models read; the rest is kept as is."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class _RunObject(ApiModel):
    """The fields a PipelineRun object has besides its spec."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(oldSelf.status) || !has(oldSelf.status.phase)"
                    f" || !(oldSelf.status.phase in {_TERMINAL})"
                    " || self.spec == oldSelf.spec",
                    "spec is immutable once the run has finished",
                    field_path=".spec",
                    reason="FieldValueForbidden",
                ),
                cel(
                    "!has(oldSelf.status) || !has(oldSelf.status.phase)"
                    " || oldSelf.status.phase == 'Pending'"
                    f" || ({' && '.join(_unchanged(f) for f in _FROZEN_ONCE_STARTED)})",
                    "source, transform, sink, pipelineRef, params and rerun cannot change once"
                    " the run has started",
                    field_path=".spec",
                    reason="FieldValueForbidden",
                ),
            ]
        },
    )

    api_version: Literal["lineagehub.io/v1alpha1"] = "lineagehub.io/v1alpha1"
    """APIVersion of this representation of the object."""
    kind: Literal["PipelineRun"] = "PipelineRun"
    """Kind of the object."""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""
    status: PipelineRunStatus | None = None
    """What the run did (written by the operator)."""


class PipelineRunResource(_RunObject):
    """A PipelineRun reads a dataset, transforms it declaratively and writes it, as three
    Jobs (extract, transform, load), with its lineage in OpenLineage and its trace in
    OpenTelemetry linked from its status. Its spec is inline, or a Pipeline it runs."""

    model_config = ConfigDict(title="PipelineRun")

    spec: PipelineRunRequest
    """What the run should do."""


class PipelineRun(_RunObject):
    """A PipelineRun as it executes: `spec` is the inline spec, or for a run with
    `pipelineRef` the Pipeline's resolved spec from `status.pipelineSpec` with the run's
    own controls (params, suspend, cancel, TTL). The CRD's schema is `PipelineRunResource`."""

    spec: PipelineRunSpec
    """What the run does."""

    @model_validator(mode="before")
    @classmethod
    def _resolved(cls, data: Any) -> Any:
        """A run with pipelineRef executes the spec snapshot in its status."""
        return rules.resolved(data, _CONTROL_FIELDS_ALL)

    def request(self) -> PipelineRunRequest:
        """The spec as the run's author wrote it (for a pipelineRef run: without the
        resolved body)."""
        spec = self.spec
        if spec.pipeline_ref is None:
            return PipelineRunRequest.model_validate(spec.model_dump())
        return PipelineRunRequest.model_validate(
            spec.model_dump(include=set(RunControls.model_fields))
        )


__all__ = [
    "API_GROUP",
    "API_GROUP_VERSION",
    "API_VERSION",
    "CATEGORIES",
    "CONDITION_LINEAGE_RECORDED",
    "CONDITION_REASON_PATTERN",
    "CONDITION_SUCCEEDED",
    "CONDITION_TRACE_RECORDED",
    "CONDITION_TYPE_PATTERN",
    "HTTP_URL_PATTERN",
    "IDENTIFIER_PATTERN",
    "KIND",
    "LIST_KIND",
    "MAX_ACCEPTED_VALUES",
    "MAX_CHECKS",
    "MAX_COLUMN",
    "MAX_COLUMNS",
    "MAX_DERIVED",
    "MAX_EXPR",
    "MAX_MAP_ENTRIES",
    "MAX_MESSAGE",
    "MAX_NAME",
    "MAX_PARAM_VALUE",
    "MAX_RETRIES",
    "MAX_SAMPLE_CHARS",
    "MAX_SAMPLE_VALUES",
    "MAX_TIMEOUT_SECONDS",
    "MAX_URI",
    "PLURAL",
    "PROGRESS_PATTERN",
    "QUANTITY_PATTERN",
    "SHARDED_TRANSFORM_RULE",
    "SHORT_NAMES",
    "SINGULAR",
    "SINK_URI_PATTERN",
    "SOURCE_URI_PATTERN",
    "STAGES",
    "STAGE_CONFIG_ENV",
    "TERMINAL_PHASES",
    "TRACEPARENT_PATTERN",
    "TRACE_ID_PATTERN",
    "UUID7_PATTERN",
    "ApiModel",
    "CastType",
    "CheckType",
    "ColumnName",
    "ColumnSet",
    "Condition",
    "ConditionStatus",
    "DatasetRef",
    "Deduplicate",
    "DerivedColumn",
    "ExecutionSpec",
    "Identifier",
    "JsonDict",
    "K8sName",
    "KeepRow",
    "LineageStatus",
    "ObjectMeta",
    "OpenLineageSpec",
    "Parallelism",
    "ParamValue",
    "ParentRun",
    "Phase",
    "PipelineBody",
    "PipelineRef",
    "PipelineRun",
    "PipelineRunRequest",
    "PipelineRunResource",
    "PipelineRunSpec",
    "PipelineRunStatus",
    "PreciseTime",
    "PullPolicy",
    "QualityCheck",
    "QualityVerdict",
    "Quantity",
    "Reason",
    "RerunSpec",
    "RerunStatus",
    "ResourceRequirements",
    "Retries",
    "RunControls",
    "RunRef",
    "S3Options",
    "SecretKeyRef",
    "Severity",
    "SinkFormat",
    "SinkSpec",
    "SourceFormat",
    "SourceSpec",
    "SqlExpr",
    "StageConfig",
    "StageDefaults",
    "StageName",
    "StageOverride",
    "StagePolicy",
    "StageStatus",
    "StagesSpec",
    "StatusModel",
    "Time",
    "TimeoutSeconds",
    "TraceStatus",
    "TransformSpec",
    "WriteMode",
    "cel",
    "format_precise_time",
    "format_time",
    "new_run_id",
    "now",
    "progress",
    "set_condition",
]
