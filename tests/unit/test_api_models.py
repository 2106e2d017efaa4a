"""The PipelineRun API models: defaults, wire format, validation, helpers."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from lineagehub.api import (
    CONDITION_SUCCEEDED,
    STAGE_CONFIG_ENV,
    STAGES,
    CastType,
    ConditionStatus,
    Phase,
    PipelineRun,
    PipelineRunSpec,
    PipelineRunStatus,
    Reason,
    Severity,
    StageConfig,
    StageName,
    StageStatus,
    WriteMode,
    new_run_id,
    progress,
    set_condition,
)
from lineagehub.api.pipelinerun import UUID7_PATTERN

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def base_spec() -> dict[str, Any]:
    return {
        "source": {"uri": "file:///data/in.csv", "format": "csv"},
        "transform": {
            "rename": {"created_at": "ordered_at"},
            "cast": {"amount": "float64"},
            "derived": [{"name": "gross", "expr": "amount * 1.2"}],
            "filter": "amount > 0",
            "dropNulls": ["amount"],
            "deduplicate": {"columns": ["order_id"]},
            "select": ["order_id", "amount", "gross"],
            "quality": [
                {"type": "not_null", "column": "order_id"},
                {"type": "range", "column": "amount", "min": 0, "max": 100},
                {"type": "accepted_values", "column": "currency", "values": ["EUR"]},
                {"type": "regex", "column": "customer", "pattern": "^[a-z]+$"},
            ],
        },
        "sink": {"uri": "file:///data/out.parquet", "format": "parquet"},
    }


def mutate(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set (or, with value ..., delete) a dotted path; `[n]` indexes lists."""
    out = copy.deepcopy(spec)
    keys: list[str | int] = [
        int(k[1:-1]) if k.startswith("[") else k for k in re.findall(r"\[\d+\]|[^.\[\]]+", path)
    ]
    node: Any = out
    for key in keys[:-1]:
        node = node[key]
    if value is ...:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return out


def test_base_spec_is_valid_and_defaults_apply() -> None:
    spec = PipelineRunSpec.model_validate(base_spec())
    assert spec.sink.mode is WriteMode.OVERWRITE
    assert spec.stages.defaults.retries == 1
    assert spec.stages.defaults.timeout_seconds == 1800
    assert spec.cancel is False
    assert spec.suspend is False
    assert spec.transform.quality is not None
    assert spec.transform.quality[0].severity is Severity.FAIL
    assert spec.transform.cast == {"amount": CastType.FLOAT64}


def test_minimal_spec() -> None:
    spec = PipelineRunSpec.model_validate(
        {
            "source": {"uri": "https://example.org/a.json", "format": "json"},
            "sink": {"uri": "s3://bucket/out.ndjson", "format": "ndjson"},
        }
    )
    assert spec.transform.model_dump(exclude_none=True) == {}
    assert spec.wire()["stages"] == {"defaults": {"retries": 1, "timeoutSeconds": 1800}}


INVALID: list[tuple[str, str, Any, str]] = [
    # (id, path, value, fragment expected in the error)
    ("source-missing", "source", ..., "source"),
    ("sink-missing", "sink", ..., "sink"),
    ("source-scheme", "source.uri", "ftp://host/a.csv", "source.uri"),
    ("source-no-scheme", "source.uri", "/data/in.csv", "source.uri"),
    ("source-format", "source.format", "xlsx", "source.format"),
    ("sink-scheme-http", "sink.uri", "https://example.org/out", "sink.uri"),
    ("sink-format", "sink.format", "avro", "sink.format"),
    ("sink-mode", "sink.mode", "upsert", "sink.mode"),
    ("sink-equals-source", "sink.uri", "file:///data/in.csv", "sink.uri must differ"),
    ("clickhouse-format-file-uri", "sink.format", "clickhouse", "format clickhouse"),
    ("clickhouse-uri-parquet", "sink.uri", "clickhouse://ch:9000/db/t", "format clickhouse"),
    ("s3-options-on-file", "source.s3", {"region": "eu-west-1"}, "s3 options"),
    (
        "s3-endpoint-scheme",
        "sink",
        {"uri": "s3://b/k", "format": "csv", "s3": {"endpoint": "x"}},
        "sink.s3.endpoint",
    ),
    ("unknown-spec-field", "retries", 3, "retries"),
    ("unknown-transform-field", "transform.sort", ["a"], "transform.sort"),
    ("cast-type", "transform.cast", {"amount": "money"}, "transform.cast.amount"),
    ("derived-no-expr", "transform.derived", [{"name": "gross"}], "transform.derived.0.expr"),
    (
        "derived-bad-name",
        "transform.derived",
        [{"name": "gross total", "expr": "1"}],
        "transform.derived.0.name",
    ),
    (
        "derived-duplicate",
        "transform.derived",
        [{"name": "g", "expr": "1"}, {"name": "g", "expr": "2"}],
        "duplicate",
    ),
    ("rename-collision", "transform.rename", {"a": "x", "b": "x"}, "duplicate"),
    ("select-duplicate", "transform.select", ["a", "a"], "transform.select"),
    ("select-empty-name", "transform.select", [""], "transform.select.0"),
    ("filter-empty", "transform.filter", "", "transform.filter"),
    ("dedupe-keep", "transform.deduplicate", {"keep": "middle"}, "transform.deduplicate.keep"),
    ("check-type", "transform.quality.[0].type", "positive", "transform.quality.0.type"),
    ("check-severity", "transform.quality.[0].severity", "error", "transform.quality.0.severity"),
    ("check-no-column", "transform.quality.[0].column", ..., "transform.quality.0.column"),
    ("range-min-gt-max", "transform.quality.[1].min", 500, "min must not exceed max"),
    (
        "range-without-bounds",
        "transform.quality.[1]",
        {"type": "range", "column": "amount"},
        "range check needs",
    ),
    ("bounds-on-not-null", "transform.quality.[0].max", 3, "only to range"),
    ("accepted-without-values", "transform.quality.[2].values", ..., "values is required"),
    ("accepted-empty-values", "transform.quality.[2].values", [], "transform.quality.2.values"),
    ("regex-without-pattern", "transform.quality.[3].pattern", ..., "pattern is required"),
    ("regex-invalid", "transform.quality.[3].pattern", "([a-z", "not a valid regular"),
    ("retries-negative", "stages", {"defaults": {"retries": -1}}, "stages.defaults.retries"),
    ("retries-too-many", "stages", {"load": {"retries": 99}}, "stages.load.retries"),
    ("timeout-zero", "stages", {"extract": {"timeoutSeconds": 0}}, "stages.extract.timeoutSeconds"),
    ("unknown-stage", "stages", {"publish": {"retries": 1}}, "stages.publish"),
    ("ttl-negative", "ttlSecondsAfterFinished", -5, "ttlSecondsAfterFinished"),
    ("quantity", "resources", {"limits": {"memory": "lots"}}, "resources.limits.memory"),
    ("pull-policy", "imagePullPolicy", "Sometimes", "imagePullPolicy"),
    ("cancel-type", "cancel", "maybe", "cancel"),
]


@pytest.mark.parametrize(
    ("path", "value", "fragment"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_specs_are_rejected_naming_the_field(path: str, value: Any, fragment: str) -> None:
    with pytest.raises(ValidationError) as exc:
        PipelineRunSpec.model_validate(mutate(base_spec(), path, value))
    text = str(exc.value)
    # pydantic prints locations dotted: "transform.quality.0.type"
    assert fragment in text, text


def test_enough_invalid_cases() -> None:
    assert len(INVALID) >= 20
    assert len({c[0] for c in INVALID}) == len(INVALID)


def test_snake_case_names_work_in_python() -> None:
    spec = PipelineRunSpec(
        source={"uri": "file:///a.csv", "format": "csv"},
        sink={"uri": "file:///b.csv", "format": "csv"},
        ttl_seconds_after_finished=60,
    )
    assert spec.wire()["ttlSecondsAfterFinished"] == 60
    assert "ttl_seconds_after_finished" not in spec.wire()


def test_wire_round_trip_is_camel_case() -> None:
    spec = PipelineRunSpec.model_validate(base_spec())
    wire = spec.wire()
    assert "dropNulls" in wire["transform"]
    assert PipelineRunSpec.model_validate(wire) == spec
    text = json.dumps(wire)
    for snake in ("drop_nulls", "timeout_seconds", "access_key_id_key", "records_out"):
        assert snake not in text


def test_stage_policy_overrides() -> None:
    spec = PipelineRunSpec.model_validate(
        {
            **base_spec(),
            "resources": {"requests": {"cpu": "100m"}},
            "stages": {
                "defaults": {"retries": 2, "timeoutSeconds": 100},
                "extract": {"retries": 5},
                "load": {"timeoutSeconds": 7, "resources": {"limits": {"memory": "1Gi"}}},
            },
        }
    )
    ex = spec.stage_policy(StageName.EXTRACT)
    tr = spec.stage_policy(StageName.TRANSFORM)
    lo = spec.stage_policy(StageName.LOAD)
    assert (ex.retries, ex.timeout_seconds) == (5, 100)
    assert (tr.retries, tr.timeout_seconds) == (2, 100)
    assert (lo.retries, lo.timeout_seconds) == (2, 7)
    assert tr.resources is not None and tr.resources.requests == {"cpu": "100m"}
    assert lo.resources is not None and lo.resources.limits == {"memory": "1Gi"}


def test_quantities_accept_int_and_string() -> None:
    spec = PipelineRunSpec.model_validate(
        {**base_spec(), "resources": {"requests": {"cpu": 1, "memory": "512Mi"}}}
    )
    assert spec.wire()["resources"]["requests"] == {"cpu": 1, "memory": "512Mi"}


def test_new_run_id_is_uuid7() -> None:
    ms = 1_700_000_000_123
    rid = new_run_id(ms)
    assert re.match(UUID7_PATTERN, rid)
    parsed = uuid.UUID(rid)
    assert parsed.version == 7
    assert parsed.int >> 80 == ms
    assert new_run_id() != new_run_id()
    # Time-ordered: a later millisecond sorts later, as text too.
    assert new_run_id(1) < new_run_id(2) < new_run_id(3)


def test_set_condition_keeps_transition_time_until_status_changes() -> None:
    t0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    t1 = t0 + timedelta(minutes=1)
    t2 = t0 + timedelta(minutes=2)
    conds = set_condition(
        [], type_=CONDITION_SUCCEEDED, status=ConditionStatus.UNKNOWN, reason="Started", at=t0
    )
    conds = set_condition(
        conds,
        type_=CONDITION_SUCCEEDED,
        status=ConditionStatus.UNKNOWN,
        reason=Reason.RUNNING,
        message="extract",
        at=t1,
    )
    assert len(conds) == 1
    assert conds[0].last_transition_time == t0
    assert conds[0].reason == "Running"
    conds = set_condition(
        conds,
        type_=CONDITION_SUCCEEDED,
        status=ConditionStatus.FALSE,
        reason=Reason.STAGE_TIMEOUT,
        observed_generation=2,
        at=t2,
    )
    assert conds[0].last_transition_time == t2
    wire = conds[0].wire()
    assert wire == {
        "type": "Succeeded",
        "status": "False",
        "reason": "StageTimeout",
        "message": "",
        "observedGeneration": 2,
        "lastTransitionTime": "2025-03-01T10:02:00Z",
    }


def test_condition_reason_must_be_camel_case_token() -> None:
    with pytest.raises(ValidationError, match="reason"):
        set_condition([], type_="Succeeded", status=ConditionStatus.TRUE, reason="not ok")


def test_status_parses_and_tolerates_unknown_fields() -> None:
    status = PipelineRunStatus.model_validate(
        {
            "phase": "Running",
            "currentStage": "transform",
            "progress": "1/3",
            "runId": new_run_id(),
            "traceId": "0af7651916cd43dd8448eb211c80319c",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "stages": [
                {
                    "name": "extract",
                    "jobName": "r-extract",
                    "phase": "Succeeded",
                    "attempts": 1,
                    "recordsIn": 51,
                    "recordsOut": 51,
                    "startTime": "2025-03-01T10:00:00Z",
                    "completionTime": "2025-03-01T10:00:05Z",
                },
                {"name": "transform", "phase": "Running", "attempts": 1},
            ],
            "lineage": {
                "namespace": "ns",
                "job": "j",
                "inputs": [{"namespace": "file", "name": "/data/in.csv"}],
                "inMarquez": False,
                "columnLineage": True,
            },
            "trace": {"spanCount": 4, "allStageSpans": False},
            "kopf": {"progress": {}},
        }
    )
    assert status.phase is Phase.RUNNING
    assert status.stage(StageName.EXTRACT) is not None
    assert progress(status.stages) == "1/3"
    assert "kopf" not in status.wire()
    assert status.wire()["stages"][0]["startTime"] == "2025-03-01T10:00:00Z"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("progress", "two of three"),
        ("runId", str(uuid.uuid4())),
        ("traceId", "XYZ"),
        ("traceparent", "01-abc"),
        ("phase", "Done"),
        ("currentStage", "publish"),
    ],
)
def test_status_field_formats(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        PipelineRunStatus.model_validate({field: value})


def test_phase_finished() -> None:
    assert {p for p in Phase if p.finished} == {Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED}
    assert [s.position for s in STAGES] == [0, 1, 2]


def test_progress_counts_succeeded_stages() -> None:
    assert progress([]) == "0/3"
    assert progress([StageStatus(name=StageName.EXTRACT, phase=Phase.SUCCEEDED)]) == "1/3"


def test_stage_config_round_trips_through_env() -> None:
    spec = PipelineRunSpec.model_validate(base_spec())
    cfg = StageConfig(
        run_id=new_run_id(),
        stage=StageName.TRANSFORM,
        pipeline_run={"namespace": "default", "name": "orders"},
        source=spec.source,
        transform=spec.transform,
        sink=spec.sink,
        workspace="/workspace/orders",
        openlineage_namespace="ns",
        openlineage_job="orders.transform",
    )
    env = {STAGE_CONFIG_ENV: cfg.to_env_value()}
    assert '"pipelineRun"' in env[STAGE_CONFIG_ENV]
    back = StageConfig.from_env(env)
    assert back == cfg
    assert back.intermediate_path(StageName.EXTRACT) == "/workspace/orders/extract.parquet"
    with pytest.raises(ValueError, match=STAGE_CONFIG_ENV):
        StageConfig.from_env({})


def test_stage_config_forbids_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="bogus"):
        StageConfig.model_validate({"bogus": 1})


INLINE_EXAMPLES = [
    p
    for p in sorted(EXAMPLES.glob("*.yaml"))
    if (doc := yaml.safe_load(p.read_text()))["kind"] == "PipelineRun"
    and "pipelineRef" not in doc["spec"]
]


@pytest.mark.parametrize("path", INLINE_EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid_pipelineruns(path: Path) -> None:
    """The inline examples (the Pipeline ones are tests/unit/test_pipeline_params.py's)."""
    doc = yaml.safe_load(path.read_text())
    run = PipelineRun.model_validate(doc)
    assert run.metadata.name
    assert run.spec.source.uri.startswith("file://")


def test_example_files_exist() -> None:
    names = {p.name for p in EXAMPLES.glob("*.yaml")}
    assert {
        "pipelinerun.yaml",
        "pipelinerun-quality-fail.yaml",
        "pipelinerun-cancelled.yaml",
    } <= names
    cancelled = yaml.safe_load((EXAMPLES / "pipelinerun-cancelled.yaml").read_text())
    assert cancelled["spec"]["cancel"] is True


def test_example_data() -> None:
    lines = (EXAMPLES / "data" / "orders.csv").read_text().splitlines()
    assert lines[0] == "order_id,customer,amount,currency,status,created_at"
    assert 45 <= len(lines) - 1 <= 60


def test_api_package_imports_nothing_of_ours() -> None:
    code = (
        "import sys, lineagehub.api, lineagehub.api.crd;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('kopf', 'kubernetes', 'polars', 'lineagehub_operator', 'pipeline_runner',"
        " 'consumers', 'gateway', 'stack')"
        " or (m.startswith('lineagehub.') and not m.startswith('lineagehub.api'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        ("SourceSpec", {"format": "csv"}),
        ("SinkSpec", {"format": "parquet"}),
    ],
)
def test_s3_options_go_only_with_an_s3_uri(model: str, fields: dict[str, Any]) -> None:
    from lineagehub import api

    spec = getattr(api, model)
    options = {"region": "eu-west-1"}
    assert spec.model_validate({"uri": "s3://bucket/key", "s3": options, **fields}).s3 is not None
    with pytest.raises(ValidationError, match="s3 options apply only to s3:// URIs"):
        spec.model_validate({"uri": "file:///data/x", "s3": options, **fields})
