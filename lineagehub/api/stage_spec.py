"""The stage's part of the `PipelineRun` API: what a run reads, does and writes (source,
transform, sink and their parts), the enums, bounds and helpers the whole API shares,
and `StageConfig`, what one stage Job is given.

A stage process imports this module and not `pipelinerun`, whose run-level models
(spec, status, the resource) it never uses: each pydantic model costs its class
creation on import, and a stage makes a dozen, not forty. `pipelinerun` re-exports
everything here, so the API reads as one module. See `pipelinerun` for the rules
every model follows (camelCase wire names, CEL and pydantic validators in step).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    JsonValue,
    PlainSerializer,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from lineagehub.api import stage_rules as rules
from lineagehub.api.docstrings import describe_fields
from lineagehub.api.enums import (
    STAGE_CONFIG_ENV,
    CastType,
    CheckType,
    KeepRow,
    Severity,
    SinkFormat,
    SourceFormat,
    StageName,
    WriteMode,
)
from lineagehub.api.shards import MAX_PARALLELISM

JsonDict = dict[str, JsonValue]

API_GROUP = "lineagehub.io"
API_VERSION = "v1alpha1"
API_GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
KIND = "PipelineRun"
LIST_KIND = "PipelineRunList"
PLURAL = "pipelineruns"
SINGULAR = "pipelinerun"
SHORT_NAMES: tuple[str, ...] = ("plr", "plrun")
CATEGORIES: tuple[str, ...] = ("lineagehub",)

#: The condition type that summarises a run (Unknown while it runs, then True/False).
CONDITION_SUCCEEDED = "Succeeded"
#: Marquez holds the run (COMPLETED/FAILED) with its datasets: written after the run ends.
CONDITION_LINEAGE_RECORDED = "LineageRecorded"
#: The run's spans reached ClickHouse and Jaeger: written after the run ends.
CONDITION_TRACE_RECORDED = "TraceRecorded"

# Bounds. Every string and list that a CEL rule reads is bounded, so the API
# server's cost estimate for the rules stays within its budget.
MAX_URI = 2048
MAX_NAME = 253
MAX_COLUMN = 256
MAX_EXPR = 4096
MAX_COLUMNS = 256
MAX_MAP_ENTRIES = 64
MAX_DERIVED = 64
MAX_CHECKS = 128
MAX_ACCEPTED_VALUES = 256
MAX_MESSAGE = 32768
MAX_RETRIES = 10
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
MAX_PARAM_VALUE = 1024

SOURCE_URI_PATTERN = r"^(file|http|https|s3)://[^\s]+$"
SINK_URI_PATTERN = r"^(file|s3|clickhouse)://[^\s]+$"
HTTP_URL_PATTERN = r"^https?://[^\s]+$"
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
UUID7_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
TRACE_ID_PATTERN = r"^[0-9a-f]{32}$"
TRACEPARENT_PATTERN = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
PROGRESS_PATTERN = r"^[0-9]+/[0-9]+$"
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


# --------------------------------------------------------------------------- helpers


def cel(
    rule: str,
    message: str,
    *,
    field_path: str | None = None,
    reason: str | None = None,
) -> JsonDict:
    """One `x-kubernetes-validations` entry."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    if reason is not None:
        entry["reason"] = reason
    return entry


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes `metav1.Time`."""
    return _as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_precise_time(value: datetime) -> str:
    """RFC 3339 in UTC to the millisecond (truncated), e.g. `2026-12-01T04:00:05.123Z`:
    what `format_time` gives with the milliseconds kept."""
    utc = _as_utc(value)
    return f"{utc.strftime('%Y-%m-%dT%H:%M:%S')}.{utc.microsecond // 1000:03d}Z"


def now() -> datetime:
    """The current time, truncated to seconds, in UTC."""
    return datetime.now(UTC).replace(microsecond=0)


ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_COLUMN)]
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_COLUMN, pattern=IDENTIFIER_PATTERN)
]
SqlExpr = Annotated[str, StringConstraints(min_length=1, max_length=MAX_EXPR)]
K8sName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
Quantity = Annotated[
    int | Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN)],
    Field(json_schema_extra={"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN}),
]
Time = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(format_time, return_type=str, when_used="json"),
]
PreciseTime = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(format_precise_time, return_type=str, when_used="json"),
]
ColumnSet = Annotated[
    list[ColumnName],
    AfterValidator(rules.unique),
    Field(max_length=MAX_COLUMNS, json_schema_extra={"x-kubernetes-list-type": "set"}),
]


class ApiModel(BaseModel):
    """Base: camelCase on the wire, snake_case in Python, docstrings as descriptions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
        defer_build=True,
    )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The JSON schema, each field described by its docstring (read only now, not on
        import: see `docstrings`)."""
        json_schema = handler(core_schema)
        describe_fields(cls, handler.resolve_ref_schema(json_schema))
        return json_schema

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, JSON types, no unset optionals."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(ApiModel):
    """Status objects tolerate fields they don't know (written by a newer operator)."""

    model_config = ConfigDict(extra="ignore")


# --------------------------------------------------------------------------- spec


class SecretKeyRef(ApiModel):
    """Where the S3 credentials are: keys of a Secret in the run's namespace."""

    name: K8sName
    """Name of the Secret."""
    access_key_id_key: K8sName = "AWS_ACCESS_KEY_ID"
    """Key of the Secret that holds the access key id."""
    secret_access_key_key: K8sName = "AWS_SECRET_ACCESS_KEY"
    """Key of the Secret that holds the secret access key."""
    session_token_key: K8sName | None = None
    """Key of the Secret that holds a session token, if the credentials are temporary."""


class S3Options(ApiModel):
    """Connection settings for `s3://` URIs."""

    endpoint: (
        Annotated[str, StringConstraints(max_length=MAX_URI, pattern=HTTP_URL_PATTERN)] | None
    ) = None
    """Endpoint URL of an S3-compatible store (e.g. MinIO); AWS when unset."""
    region: Annotated[str, StringConstraints(max_length=64)] | None = None
    """Region of the bucket."""
    credentials_secret_ref: SecretKeyRef | None = None
    """Secret holding the credentials; the stage's environment (e.g. IAM role) when unset."""


_S3_ONLY = cel(
    "!has(self.s3) || self.uri.startsWith('s3://')", rules.S3_ONLY_MESSAGE, field_path=".s3"
)


class SourceSpec(ApiModel):
    """The data a run reads."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_S3_ONLY]})

    uri: Annotated[str, StringConstraints(max_length=MAX_URI, pattern=SOURCE_URI_PATTERN)]
    """Where to read: `file://` (the run's workspace or a mounted volume), `http(s)://`,
    or `s3://bucket/key`."""
    format: SourceFormat
    """Encoding of the source: csv, json (one array of objects), ndjson or parquet."""
    s3: S3Options | None = None
    """Endpoint, region and credentials for an `s3://` URI."""

    @model_validator(mode="after")
    def _check(self) -> SourceSpec:
        rules.check_s3_only(self.uri, self.s3)
        return self


class SinkSpec(ApiModel):
    """Where a run writes its result."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _S3_ONLY,
                cel(
                    "(self.format == 'clickhouse') == self.uri.startsWith('clickhouse://')",
                    rules.CLICKHOUSE_MESSAGE,
                    field_path=".format",
                ),
            ]
        }
    )

    uri: Annotated[str, StringConstraints(max_length=MAX_URI, pattern=SINK_URI_PATTERN)]
    """Where to write: `file://path`, `s3://bucket/key` or
    `clickhouse://host:port/database/table`."""
    format: SinkFormat
    """Encoding of the result: parquet, csv, ndjson, or clickhouse (rows into a table)."""
    mode: WriteMode = WriteMode.OVERWRITE
    """`overwrite` replaces what is there (safe to retry); `append` adds to it."""
    s3: S3Options | None = None
    """Endpoint, region and credentials for an `s3://` URI."""

    @model_validator(mode="after")
    def _check(self) -> SinkSpec:
        rules.check_sink(self.uri, self.format, self.s3)
        return self


class DerivedColumn(ApiModel):
    """A new column computed from a SQL expression over the row."""

    name: Identifier
    """Name of the new column (replaces a column of the same name)."""
    expr: SqlExpr
    """SQL expression, e.g. `amount * 1.2` or `upper(currency)`."""


class Deduplicate(ApiModel):
    """Drop repeated rows."""

    columns: ColumnSet | None = None
    """Columns that identify a row; all columns when unset."""
    keep: KeepRow = KeepRow.FIRST
    """Which row of each group of duplicates survives."""


class QualityCheck(ApiModel):
    """A data-quality check run on the transformed data before it is loaded."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.type != 'range' || has(self.min) || has(self.max)",
                    "a range check needs min, max or both",
                ),
                cel(
                    "!has(self.min) || !has(self.max) || self.min <= self.max",
                    "min must not exceed max",
                    field_path=".min",
                ),
                cel(
                    "(has(self.min) || has(self.max)) ? self.type == 'range' : true",
                    "min and max apply only to range checks",
                ),
                cel(
                    "(self.type == 'accepted_values') == has(self.values)",
                    "values is required for accepted_values checks and applies only to them",
                ),
                cel(
                    "(self.type == 'regex') == has(self.pattern)",
                    "pattern is required for regex checks and applies only to them",
                ),
            ]
        }
    )

    name: Annotated[str, StringConstraints(max_length=MAX_COLUMN)] | None = None
    """A name for reports; `<type>_<column>` when unset."""
    type: CheckType
    """What to check: not_null, unique, range, accepted_values or regex."""
    column: ColumnName
    """The column checked."""
    severity: Severity = Severity.FAIL
    """`fail` fails the run when the check fails; `warn` only records it."""
    min: float | None = None
    """Lowest allowed value (inclusive), for range checks."""
    max: float | None = None
    """Highest allowed value (inclusive), for range checks."""
    values: (
        Annotated[
            list[Annotated[str, StringConstraints(max_length=MAX_COLUMN)]],
            Field(min_length=1, max_length=MAX_ACCEPTED_VALUES),
        ]
        | None
    ) = None
    """Allowed values, for accepted_values checks; compared with the column read as text."""
    pattern: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    """Regular expression every non-null value must match, for regex checks."""

    @property
    def display_name(self) -> str:
        return rules.display_name(self.name, self.type, self.column)

    @model_validator(mode="after")
    def _check(self) -> QualityCheck:
        rules.check_quality(self.type, self.min, self.max, self.values, self.pattern)
        return self


_RENAME_UNIQUE = cel(
    "self.all(k, self.all(j, k == j || self[k] != self[j]))",
    "two columns cannot be renamed to the same name",
)


class TransformSpec(ApiModel):
    """Declarative transform, applied in this fixed order: rename, cast, derived,
    filter, dropNulls, deduplicate, select; then the quality checks run on the result.
    Later steps see the names given by earlier ones."""

    rename: (
        Annotated[
            dict[ColumnName, ColumnName],
            Field(
                max_length=MAX_MAP_ENTRIES,
                json_schema_extra={"x-kubernetes-validations": [_RENAME_UNIQUE]},
            ),
        ]
        | None
    ) = None
    """Old name to new name."""
    cast: Annotated[dict[ColumnName, CastType], Field(max_length=MAX_MAP_ENTRIES)] | None = None
    """Column to type; a value that does not convert fails the transform."""
    derived: (
        Annotated[
            list[DerivedColumn],
            Field(
                max_length=MAX_DERIVED,
                json_schema_extra={
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                },
            ),
        ]
        | None
    ) = None
    """Columns computed from SQL expressions, in order (a later one may use an earlier one)."""
    filter: SqlExpr | None = None
    """SQL boolean expression; rows for which it is not true are dropped."""
    drop_nulls: ColumnSet | None = None
    """Rows with a null in any of these columns are dropped."""
    deduplicate: Deduplicate | None = None
    """Drop repeated rows."""
    select: ColumnSet | None = None
    """The output columns, in order; all columns when unset."""
    quality: Annotated[list[QualityCheck], Field(max_length=MAX_CHECKS)] | None = None
    """Data-quality checks run on the transformed data."""

    @model_validator(mode="after")
    def _check(self) -> TransformSpec:
        rules.check_transform(
            list(self.rename.values()) if self.rename else None,
            [d.name for d in self.derived] if self.derived else None,
        )
        return self


# --------------------------------------------------------------------------- stage config


class ParentRun(ApiModel):
    """The run-level OpenLineage run a stage's run belongs to (the parent run facet)."""

    run_id: Annotated[str, StringConstraints(pattern=UUID7_PATTERN)]
    """Run id of the parent (the PipelineRun's runId)."""
    namespace: str
    """OpenLineage namespace of the parent job."""
    job: str
    """OpenLineage name of the parent job."""


class RunRef(ApiModel):
    """The PipelineRun a stage works for."""

    namespace: str
    """Kubernetes namespace of the PipelineRun."""
    name: str
    """Name of the PipelineRun."""
    uid: str | None = None
    """UID of the PipelineRun."""


class StageConfig(ApiModel):
    """Everything one stage Job needs. The operator writes it (env `LINEAGEHUB_STAGE_CONFIG`,
    JSON); the runner reads it. The local CLI builds the same thing without a cluster."""

    run_id: Annotated[str, StringConstraints(pattern=UUID7_PATTERN)]
    """OpenLineage run id of this stage's run."""
    stage: StageName
    """Which stage to run."""
    attempt: Annotated[int, Field(ge=1)] = 1
    """Attempt number, from 1."""
    pipeline_run: RunRef
    """The PipelineRun this stage belongs to."""
    source: SourceSpec
    """The run's source."""
    transform: TransformSpec = TransformSpec()
    """The run's transform."""
    sink: SinkSpec
    """The run's sink."""
    workspace: Annotated[str, StringConstraints(min_length=1)]
    """Directory shared by the run's stages; intermediate data lives here."""
    openlineage_namespace: str
    """OpenLineage namespace of the stage's job."""
    openlineage_job: str
    """OpenLineage name of the stage's job, e.g. `orders.extract`."""
    parent: ParentRun | None = None
    """The run-level OpenLineage run (parent run facet)."""
    traceparent: Annotated[str, StringConstraints(pattern=TRACEPARENT_PATTERN)] | None = None
    """W3C traceparent of the run's root span; the stage's spans are its children."""
    shards: Annotated[int, Field(ge=1, le=MAX_PARALLELISM)] = 1
    """Pods of this stage (an Indexed Job when more than 1); each takes the shard its
    `JOB_COMPLETION_INDEX` names."""
    input_parts: Annotated[int, Field(ge=1, le=MAX_PARALLELISM)] = 1
    """Parts the stage before left in the workspace (its number of shards)."""

    def intermediate_path(self, stage: StageName) -> str:
        """The Parquet file `stage` leaves in the workspace for the next one."""
        return rules.intermediate_path(self.workspace, stage)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> StageConfig:
        env = os.environ if environ is None else environ
        raw = env.get(STAGE_CONFIG_ENV)
        if not raw:
            raise ValueError(f"{STAGE_CONFIG_ENV} is not set")
        return cls.model_validate_json(raw)

    def to_env_value(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)
