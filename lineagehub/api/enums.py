"""The API's enums and the stage order: plain `StrEnum`s, importable without pydantic
(a stage's work compares and keys by them; only its config's validation needs the
models). `stage_spec` and `pipelinerun` re-export every name here."""

from __future__ import annotations

from enum import StrEnum

#: The environment variable through which a stage Job receives its `StageConfig` (JSON).
STAGE_CONFIG_ENV = "LINEAGEHUB_STAGE_CONFIG"


class StageName(StrEnum):
    """The three stages of a run, in the order they run."""

    EXTRACT = "extract"
    TRANSFORM = "transform"
    LOAD = "load"

    @property
    def position(self) -> int:
        """0 for extract, 1 for transform, 2 for load."""
        return STAGES.index(self)


STAGES: tuple[StageName, ...] = (StageName.EXTRACT, StageName.TRANSFORM, StageName.LOAD)


class SourceFormat(StrEnum):
    """How the source is encoded."""

    CSV = "csv"
    JSON = "json"
    NDJSON = "ndjson"
    PARQUET = "parquet"


class SinkFormat(StrEnum):
    """How the sink is written."""

    PARQUET = "parquet"
    CSV = "csv"
    NDJSON = "ndjson"
    CLICKHOUSE = "clickhouse"


class WriteMode(StrEnum):
    """What happens to data already at the sink."""

    APPEND = "append"
    OVERWRITE = "overwrite"


class CastType(StrEnum):
    """Column types a cast can produce."""

    STRING = "string"
    INT32 = "int32"
    INT64 = "int64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"


class KeepRow(StrEnum):
    """Which row of a group of duplicates to keep."""

    FIRST = "first"
    LAST = "last"


class CheckType(StrEnum):
    """Data-quality check kinds."""

    NOT_NULL = "not_null"
    UNIQUE = "unique"
    RANGE = "range"
    ACCEPTED_VALUES = "accepted_values"
    REGEX = "regex"


class Severity(StrEnum):
    """What a failing check does: `fail` fails the run, `warn` records it and goes on."""

    FAIL = "fail"
    WARN = "warn"


class PullPolicy(StrEnum):
    """Image pull policy for the stage containers."""

    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class Phase(StrEnum):
    """Lifecycle phase of a run or of one stage."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in TERMINAL_PHASES


TERMINAL_PHASES: frozenset[Phase] = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED})


class ConditionStatus(StrEnum):
    """metav1.ConditionStatus."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(StrEnum):
    """CamelCase reasons the operator puts on the `Succeeded` condition and on stages."""

    PENDING = "Pending"
    QUEUED = "Queued"
    STARTED = "Started"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    RETRYING = "Retrying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    STAGE_FAILED = "StageFailed"
    STAGE_TIMEOUT = "StageTimeout"
    QUALITY_CHECK_FAILED = "QualityCheckFailed"
    CANCELLED = "Cancelled"
    INVALID_SPEC = "InvalidSpec"
    PIPELINE_NOT_FOUND = "PipelineNotFound"
    INVALID_PIPELINE = "InvalidPipeline"
    INVALID_PARAMS = "InvalidParams"
    INVALID_RERUN = "InvalidRerun"
    REUSED = "Reused"
    POLICY_VIOLATION = "PolicyViolation"
    WORKSPACE_LOST = "WorkspaceLost"
    # LineageRecorded / TraceRecorded
    RECORDED = "Recorded"
    WAITING = "Waiting"
    MARQUEZ_UNAVAILABLE = "MarquezUnavailable"
    MARQUEZ_NOT_CONFIGURED = "MarquezNotConfigured"
    LINEAGE_STORE_UNAVAILABLE = "LineageStoreUnavailable"
    NO_LINEAGE_STORE = "NoLineageStore"
    TRACE_STORE_UNAVAILABLE = "TraceStoreUnavailable"
    NOT_RECORDED = "NotRecorded"
