"""The `Pipeline` API (`lineagehub.io/v1alpha1`): a reusable run spec with parameters.

A Pipeline holds what a PipelineRun would hold inline (source, transform, sink,
stages, resources, OpenLineage naming) and declares parameters; a PipelineRun with
`pipelineRef` + `params` runs it. Its texts name parameters as `$(params.NAME)`.
Every run of one Pipeline is the same OpenLineage job (the Pipeline's name unless
`openlineage.job` says otherwise), so its runs form one history.

Like `pipelinerun.py`, this imports only the standard library and pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from lineagehub.api.params import (
    CEL_VALUE_MATCHES,
    SCHEDULE_VALUE_PATTERN,
    ParamError,
    ParamType,
    context_problem,
    fill_context,
    references,
    schedule_context,
    substitute,
    type_problem,
)
from lineagehub.api.pipelinerun import (
    API_GROUP_VERSION,
    IDENTIFIER_PATTERN,
    MAX_COLUMN,
    MAX_MAP_ENTRIES,
    SHARDED_TRANSFORM_RULE,
    ApiModel,
    ColumnName,
    Condition,
    JsonDict,
    ObjectMeta,
    OpenLineageSpec,
    ParamValue,
    Phase,
    PipelineBody,
    StatusModel,
    Time,
    cel,
)

KIND = "Pipeline"
LIST_KIND = "PipelineList"
PLURAL = "pipelines"
SINGULAR = "pipeline"
SHORT_NAMES: tuple[str, ...] = ("pl",)
MAX_DESCRIPTION = 1024
MAX_HISTORY = 100
MAX_RECENT_RUNS = 20
#: Five whitespace-separated cron fields, or one of the @ macros; cron checks the rest.
CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|hourly)|\S+(\s+\S+){4})$"
#: On a run the schedule created: the time it was scheduled for (RFC 3339).
SCHEDULED_TIME_ANNOTATION = "lineagehub.io/scheduled-time"
#: Any due time: the context references' values have one shape whatever the time, so a
#: scheduleParams value type-checked with this one is type-checked for every run.
_SAMPLE_DUE = datetime(2000, 1, 1, tzinfo=UTC)
_CONTEXT_HELP = "$(context.scheduledTime) or $(context.scheduledDate)"


class ConcurrencyPolicy(StrEnum):
    """What a scheduled run does when an earlier one is still active (as CronJob)."""

    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


def _default_fits(kind: ParamType) -> JsonDict:
    return cel(
        f"!has(self.default) || self.type != '{kind.value}' || {CEL_VALUE_MATCHES[kind]}",
        f"default must be {type_problem(kind, '') or kind.value} for a {kind.value} parameter",
        field_path=".default",
    )


class ParamSpec(ApiModel):
    """A parameter of a Pipeline: runs give its value in `spec.params.<name>`."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [_default_fits(k) for k in CEL_VALUE_MATCHES]
        }
    )

    name: Annotated[
        str, StringConstraints(min_length=1, max_length=MAX_COLUMN, pattern=IDENTIFIER_PATTERN)
    ]
    """Name, used as `$(params.<name>)` in the Pipeline's texts."""
    type: ParamType = ParamType.STRING
    """string, integer, number, boolean (true/false) or date (YYYY-MM-DD); values are
    written as text and checked against it."""
    default: ParamValue | None = None
    """Value when a run does not give one; without a default every run must give it."""
    description: Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION)] | None = None
    """What the parameter means, for people."""

    @model_validator(mode="after")
    def _check_default(self) -> ParamSpec:
        if self.default is not None:
            problem = type_problem(self.type, self.default)
            if problem:
                raise ValueError(f"default must be {problem} for a {self.type} parameter")
        return self


class PipelineSpec(PipelineBody):
    """Desired state of a Pipeline: the spec its runs share, its parameters, and the
    schedule on which it runs itself."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.sink.uri != self.source.uri",
                    "sink.uri must differ from source.uri",
                    field_path=".sink.uri",
                ),
                cel(
                    "!has(self.timeZone) || has(self.schedule)",
                    "timeZone applies only with a schedule",
                    field_path=".timeZone",
                ),
                cel(
                    "!has(self.scheduleParams) || size(self.scheduleParams) == 0"
                    " || has(self.schedule)",
                    "scheduleParams apply only with a schedule: set spec.schedule or remove"
                    " spec.scheduleParams (a run made by hand gives its own params)",
                    field_path=".scheduleParams",
                ),
                cel(
                    "!has(self.scheduleParams) || self.scheduleParams.all(k,"
                    " has(self.params) && self.params.exists(p, p.name == k))",
                    "every scheduleParams key must be a parameter declared in spec.params:"
                    " declare it or correct the name",
                    field_path=".scheduleParams",
                ),
                SHARDED_TRANSFORM_RULE,
            ]
        }
    )

    params: Annotated[
        list[ParamSpec],
        Field(
            max_length=MAX_MAP_ENTRIES,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        ),
    ] = Field(default_factory=list)
    """Parameters the runs fill in; the texts of this spec name them as `$(params.<name>)`,
    e.g. `uri: file:///data/orders-$(params.date).csv`."""

    schedule: Annotated[str, StringConstraints(max_length=256, pattern=CRON_PATTERN)] | None = None
    """Cron schedule on which the operator creates a run (`minute hour day-of-month month
    day-of-week`, or @hourly, @daily, @weekly, @monthly, @yearly); no runs of its own when
    unset. Scheduled runs take their params from `scheduleParams`, else the defaults."""
    time_zone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    """IANA time zone the schedule is read in, e.g. `Europe/Berlin` (UTC when unset); a
    time skipped by a DST change runs at the next valid minute, a repeated one once."""
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.ALLOW
    """When a scheduled run is due while another run of this Pipeline is active: Allow
    starts it anyway, Forbid skips it, Replace cancels the active runs and starts it."""
    starting_deadline_seconds: Annotated[int, Field(ge=0)] | None = None
    """A scheduled run that could not start within this many seconds of its time is
    skipped; without it a missed run starts late (at most one, however many were missed)."""
    schedule_params: Annotated[
        dict[ColumnName, ParamValue],
        Field(
            max_length=MAX_MAP_ENTRIES,
            json_schema_extra={
                "x-kubernetes-validations": [
                    cel(
                        f"self.all(k, self[k].matches('^{SCHEDULE_VALUE_PATTERN}$'))",
                        "a scheduleParams value may use only the context references"
                        f" {_CONTEXT_HELP}: correct or remove any other $(...)",
                    )
                ]
            },
        ),
    ] = Field(default_factory=dict)
    """Params of every scheduled run, by name, which may use `$(context.scheduledTime)`
    (the time the run is due, RFC 3339 in UTC, e.g. `2026-11-30T06:00:00Z`) and
    `$(context.scheduledDate)` (that time's date, YYYY-MM-DD, in `timeZone`), e.g.
    `date: "$(context.scheduledDate)"`. The run is created with the values filled in, so
    its `spec.params` show what it read; a late run gets its due time's values. Only with
    a schedule; parameters left out take their defaults."""
    suspend: bool = False
    """While true the schedule creates no runs (runs already created go on)."""
    successful_runs_history_limit: Annotated[int, Field(ge=0, le=MAX_HISTORY)] = 3
    """Succeeded scheduled runs to keep; older ones (and their Jobs) are deleted, oldest
    first."""
    failed_runs_history_limit: Annotated[int, Field(ge=0, le=MAX_HISTORY)] = 1
    """Failed or cancelled scheduled runs to keep; older ones (and their Jobs) are deleted,
    oldest first."""

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as err:
                raise ValueError(
                    f"unknown time zone {value!r}: use an IANA name such as Europe/Berlin"
                ) from err
        return value

    @model_validator(mode="after")
    def _check_params(self) -> PipelineSpec:
        declared = {p.name for p in self.params}
        if len(declared) != len(self.params):
            raise ValueError("params: two parameters have the same name")
        for path, name in references(self.body().wire()):
            if name not in declared:
                known = ", ".join(sorted(declared)) or "none"
                raise ValueError(
                    f"{path} uses $(params.{name}), which params does not declare (declared:"
                    f" {known}): declare it in spec.params or correct the name"
                )
        self._check_schedule_params()
        return self

    def _check_schedule_params(self) -> None:
        if self.schedule_params and self.schedule is None:
            raise ValueError(
                "scheduleParams apply only with a schedule: set spec.schedule or remove"
                " spec.scheduleParams (a run made by hand gives its own params)"
            )
        declared = {p.name: p for p in self.params}
        sample = schedule_context(_SAMPLE_DUE, None)
        for key, value in sorted(self.schedule_params.items()):
            where = f"spec.scheduleParams.{key}"
            param = declared.get(key)
            if param is None:
                known = ", ".join(sorted(declared)) or "none"
                raise ValueError(
                    f"{where}: {key} is not a parameter of spec.params (declared: {known});"
                    " declare it or correct the name"
                )
            problem = context_problem(value)
            if problem:
                raise ValueError(f"{where}: {problem}")
            filled = fill_context(value, sample)
            problem = type_problem(param.type, filled)
            if problem:
                raise ValueError(
                    f"{where}: {value!r} gives values such as {filled!r}, not {problem} as"
                    f" the {param.type} parameter {key} needs; use {_CONTEXT_HELP} or a"
                    " literal of that type"
                )

    def body(self) -> PipelineBody:
        """The spec without its parameter declarations (texts still hold `$(params...)`)."""
        return PipelineBody.model_validate(self.model_dump(include=set(PipelineBody.model_fields)))


class RunSummary(StatusModel):
    """One run of the Pipeline, as its status lists it."""

    name: str
    """Name of the PipelineRun."""
    phase: Phase | None = None
    """Its phase (unset until the operator has seen it)."""
    scheduled_time: Time | None = None
    """The schedule time it was created for (unset: created by hand)."""
    creation_time: Time | None = None
    """When it was created."""
    completion_time: Time | None = None
    """When it finished."""


class PipelineStatus(StatusModel):
    """Observed state of a Pipeline: its schedule and its runs, written by the operator."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The `.metadata.generation` this status reflects."""
    conditions: Annotated[
        list[Condition],
        Field(
            max_length=8,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        ),
    ] = Field(default_factory=list)
    """`ScheduleValid`: whether the schedule and time zone can be read."""
    last_schedule_time: Time | None = None
    """The schedule time of the latest run the schedule created."""
    next_schedule_time: Time | None = None
    """When the schedule creates its next run (unset: no schedule, or suspended)."""
    last_run: str | None = None
    """Name of the newest run of the Pipeline."""
    last_run_phase: Phase | None = None
    """Phase of the newest run."""
    active: Annotated[list[str], Field(max_length=MAX_RECENT_RUNS)] = Field(default_factory=list)
    """Names of the runs that have not finished (at most 20 listed)."""
    active_count: Annotated[int, Field(ge=0)] = 0
    """How many runs of the Pipeline have not finished."""
    recent_runs: Annotated[list[RunSummary], Field(max_length=MAX_RECENT_RUNS)] = Field(
        default_factory=list
    )
    """The newest runs of the Pipeline, newest first (at most 20)."""


class Pipeline(ApiModel):
    """A Pipeline is a reusable PipelineRun spec with parameters: a PipelineRun with
    `pipelineRef` runs it, and all its runs are one OpenLineage job."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["lineagehub.io/v1alpha1"] = "lineagehub.io/v1alpha1"
    """APIVersion of this representation of the object."""
    kind: Literal["Pipeline"] = "Pipeline"
    """Kind of the object."""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""
    spec: PipelineSpec
    """What every run of the Pipeline does."""
    status: PipelineStatus | None = None
    """Its schedule and its runs (written by the operator)."""


def param_values(pipeline: Pipeline, given: Mapping[str, str] | None) -> dict[str, str]:
    """The value of every declared parameter: given, else its default; checked."""
    name = pipeline.metadata.name or ""
    declared = {p.name: p for p in pipeline.spec.params}
    given = dict(given or {})
    for key in sorted(given):
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ParamError(
                f"spec.params.{key}",
                f"Pipeline {name} has no parameter {key} (it declares: {known});"
                " remove it or correct the name",
            )
    values: dict[str, str] = {}
    for param in pipeline.spec.params:
        value = given.get(param.name, param.default)
        if value is None:
            raise ParamError(
                f"spec.params.{param.name}",
                f"Pipeline {name} requires parameter {param.name} (it has no default);"
                f" set spec.params.{param.name}",
            )
        problem = type_problem(param.type, value)
        if problem:
            raise ParamError(
                f"spec.params.{param.name}",
                f"{value!r} is not a {param.type}: Pipeline {name} declares {param.name}"
                f" {param.type}, so give {problem}",
            )
        values[param.name] = value
    return values


def scheduled_params(pipeline: Pipeline, due: datetime) -> dict[str, str]:
    """The params of the run the schedule creates for `due`: `scheduleParams` with the
    context filled in (the date in the schedule's time zone), checked as a run's are."""
    spec = pipeline.spec
    context = schedule_context(due, spec.time_zone)
    declared = {p.name: p.type for p in spec.params}
    values = {key: fill_context(value, context) for key, value in spec.schedule_params.items()}
    for key, value in sorted(values.items()):
        kind = declared.get(key)
        problem = "a declared parameter" if kind is None else type_problem(kind, value)
        if problem:
            raise ParamError(
                f"spec.scheduleParams.{key}",
                f"for the run due at {context['scheduledTime']} it gives {value!r}, not"
                f" {problem}; correct spec.scheduleParams.{key}",
            )
    return values


def resolve(pipeline: Pipeline, given: Mapping[str, str] | None) -> PipelineBody:
    """The spec a run of `pipeline` with params `given` executes: parameters filled in,
    and the OpenLineage job named after the Pipeline unless the Pipeline names it."""
    values = param_values(pipeline, given)
    body = substitute(pipeline.spec.body().wire(), values)
    openlineage = body.get("openlineage") or {}
    body["openlineage"] = {"job": pipeline.metadata.name, **openlineage}
    try:
        return PipelineBody.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        where = "spec." + ".".join(str(p) for p in first["loc"])
        raise ParamError(
            "spec.params",
            f"with the params filled in, Pipeline {pipeline.metadata.name}'s {where} is"
            f" invalid: {first['msg']}; correct the params or the Pipeline",
        ) from err


__all__ = [
    "API_GROUP_VERSION",
    "KIND",
    "LIST_KIND",
    "PLURAL",
    "SCHEDULED_TIME_ANNOTATION",
    "SHORT_NAMES",
    "SINGULAR",
    "ConcurrencyPolicy",
    "OpenLineageSpec",
    "ParamError",
    "ParamSpec",
    "ParamType",
    "Pipeline",
    "PipelineSpec",
    "PipelineStatus",
    "RunSummary",
    "param_values",
    "resolve",
    "scheduled_params",
]
