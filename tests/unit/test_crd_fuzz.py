"""Property-based fuzz of the admission side of the PipelineRun API.

The operator and the stage runner validate every spec with the pydantic models
(`PipelineRun.model_validate`); the operator's daemon turns a `ValidationError` into an
`InvalidSpec` status and lets nothing else through. So for any JSON at all, validation
either succeeds or raises `ValidationError`: any other exception would crash the daemon
on a spec the API server accepted.

Two generators: arbitrary JSON, and JSON shaped by the CRD's own schema (every known
field, values mostly of the right type with wrong ones mixed in), which reaches the
nested validators (quality checks, transforms, stage overrides).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lineagehub.api.crd import structural_schema
from lineagehub.api.pipelinerun import PipelineRun, PipelineRunSpec, StageConfig

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
ANY_JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)

# Strings that reach the validators' interesting branches.
TRICKY_TEXT = st.sampled_from(
    [
        "",
        "a{99999999999}",  # a regular expression whose repetition count overflows
        "(" * 200,
        "[",
        "file:///data/x.csv",
        "https://u:p@host/x.csv",
        "s3://bucket/key",
        "clickhouse://h:9000/db.t",
        "100m",
        "1Gi",
        "not_null",
        "range",
        "regex",
        "accepted_values",
        "2026-11-30T00:00:00Z",
        "\x00",
        "\ud800",
    ]
)


def _string(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in node:
        return st.sampled_from(node["enum"]) | TRICKY_TEXT
    return st.text(max_size=30) | TRICKY_TEXT


def from_schema(node: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped by a structural schema node, with wrong types mixed in."""
    wrong = JSON_SCALARS if depth > 6 else ANY_JSON
    if node.get("x-kubernetes-int-or-string"):
        return st.integers(-(2**40), 2**40) | _string(node) | wrong
    kind = node.get("type")
    if kind == "object" and "properties" in node:
        props = {
            name: from_schema(sub, depth + 1) for name, sub in sorted(node["properties"].items())
        }
        shaped = st.fixed_dictionaries({}, optional=props)
        return st.one_of(shaped, shaped, shaped, wrong)
    if kind == "object":
        values = from_schema(node.get("additionalProperties") or {}, depth + 1)
        return st.dictionaries(st.text(max_size=12) | TRICKY_TEXT, values, max_size=3) | wrong
    if kind == "array":
        return st.lists(from_schema(node.get("items") or {}, depth + 1), max_size=3) | wrong
    if kind == "string":
        return _string(node) | wrong
    if kind == "integer":
        return st.integers(-(2**64), 2**64) | wrong
    if kind == "number":
        return st.floats(allow_nan=True, allow_infinity=True) | st.integers() | wrong
    if kind == "boolean":
        return st.booleans() | wrong
    return wrong


SCHEMA = structural_schema()
SHAPED_RUN = from_schema(SCHEMA)
SHAPED_SPEC = from_schema(SCHEMA["properties"]["spec"])
FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,  # the same cases on every run: CI never flakes on a draw
)


def admits_or_refuses(
    model: type[PipelineRun] | type[PipelineRunSpec] | type[StageConfig], data: Any
) -> None:
    """Validation admits `data` or raises ValidationError; anything else fails the test."""
    with contextlib.suppress(ValidationError):
        model.model_validate(data)


@FUZZ
@given(ANY_JSON)
def test_arbitrary_json_runs_only_raise_validation_errors(data: Any) -> None:
    admits_or_refuses(PipelineRun, data)


@FUZZ
@given(SHAPED_RUN)
def test_schema_shaped_runs_only_raise_validation_errors(data: Any) -> None:
    admits_or_refuses(PipelineRun, data)


@FUZZ
@given(SHAPED_SPEC)
def test_schema_shaped_specs_only_raise_validation_errors(data: Any) -> None:
    admits_or_refuses(PipelineRunSpec, data)


@FUZZ
@given(SHAPED_SPEC)
def test_a_spec_the_models_admit_round_trips(data: Any) -> None:
    """What the operator writes back (status, stage config) comes from an admitted spec:
    its wire form must validate again, unchanged."""
    try:
        spec = PipelineRunSpec.model_validate(data)
    except ValidationError:
        return
    wire = spec.wire()
    assert PipelineRunSpec.model_validate(wire).wire() == wire


@pytest.mark.parametrize("pattern", ["a{99999999999}", "x{4294967296}", "(?:a{1,99999999999})"])
def test_a_quality_pattern_that_overflows_the_compiler_is_a_validation_error(
    pattern: str,
) -> None:
    """Found by the fuzz above: `re.compile` raises OverflowError (not `re.error`) for a
    repetition count it cannot hold, which escaped validation and crashed the daemon."""
    spec = {
        "source": {"uri": "file:///data/in.csv", "format": "csv"},
        "sink": {"uri": "file:///data/out.parquet", "format": "parquet"},
        "transform": {"quality": [{"type": "regex", "column": "c", "pattern": pattern}]},
    }
    with pytest.raises(ValidationError, match="pattern is not a valid regular expression"):
        PipelineRunSpec.model_validate(spec)


@FUZZ
@given(ANY_JSON)
def test_stage_config_from_arbitrary_json_only_raises_validation_errors(data: Any) -> None:
    """A stage reads its config from the environment: same contract."""
    admits_or_refuses(StageConfig, data)
