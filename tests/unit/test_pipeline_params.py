"""Pipeline parameters and the PipelineRun forms (inline or pipelineRef), on the models."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from lineagehub.api.params import (
    CEL_VALUE_MATCHES,
    ParamError,
    ParamType,
    references,
    substitute,
    type_problem,
)
from lineagehub.api.pipeline import Pipeline, param_values, resolve
from lineagehub.api.pipelinerun import PipelineRun, PipelineRunRequest
from stack.paths import REPO_ROOT

SPEC: dict[str, Any] = {
    "params": [
        {"name": "date", "type": "date", "description": "The partition"},
        {"name": "region", "default": "eu"},
        {"name": "limit", "type": "integer", "default": "100"},
    ],
    "source": {"uri": "file:///data/in/$(params.region)/$(params.date).csv", "format": "csv"},
    "transform": {"filter": "amount < $(params.limit)"},
    "sink": {"uri": "file:///data/out/$(params.date).parquet", "format": "parquet"},
}


def pipeline(**changes: Any) -> Pipeline:
    spec = copy.deepcopy(SPEC) | changes
    meta = {"name": "orders", "namespace": "ns"}
    return Pipeline.model_validate({"metadata": meta, "spec": spec})


@pytest.mark.parametrize(
    ("kind", "value", "ok"),
    [
        (ParamType.STRING, "", True),
        (ParamType.STRING, "any text at all", True),
        (ParamType.INTEGER, "42", True),
        (ParamType.INTEGER, "-7", True),
        (ParamType.INTEGER, "4.2", False),
        (ParamType.INTEGER, "", False),
        (ParamType.NUMBER, "2.5", True),
        (ParamType.NUMBER, "1e3", True),
        (ParamType.NUMBER, "nan", False),
        (ParamType.NUMBER, "inf", False),
        (ParamType.NUMBER, "two", False),
        (ParamType.BOOLEAN, "true", True),
        (ParamType.BOOLEAN, "True", False),
        (ParamType.BOOLEAN, "1", False),
        (ParamType.DATE, "2026-11-30", True),
        (ParamType.DATE, "2026-02-30", False),
        (ParamType.DATE, "20261130", False),
        (ParamType.DATE, "2026-11-30T00:00:00", False),
        # What the API server's rules reject as a default, a run's value may not be either.
        (ParamType.INTEGER, "7\n", False),
        (ParamType.INTEGER, "\u0663", False),  # Arabic-Indic three: ASCII digits only
        (ParamType.NUMBER, "1_000", False),
        (ParamType.NUMBER, " 2.5 ", False),
        (ParamType.NUMBER, "2.5\n", False),
        (ParamType.NUMBER, ".5", True),
        (ParamType.NUMBER, "5.", True),
        (ParamType.NUMBER, "1e999", False),  # the pattern's, but not finite
        (ParamType.DATE, "2026-11-30\n", False),
    ],
)
def test_type_problem(kind: ParamType, value: str, ok: bool) -> None:
    assert (type_problem(kind, value) is None) == ok


def _as_the_api_server_matches(kind: ParamType) -> re.Pattern[str]:
    """The CEL rule's regex, with RE2's `$` (end of text only) written as Python's `\\Z`."""
    rule = CEL_VALUE_MATCHES[kind]
    found = re.fullmatch(r"self\.default\.matches\('\^(.*)\$'\)", rule)
    assert found is not None, rule
    return re.compile(f"^(?:{found.group(1)})\\Z")


@pytest.mark.parametrize("kind", [ParamType.INTEGER, ParamType.NUMBER, ParamType.DATE])
@given(value=st.text(alphabet="0123456789+-.eE_ \n\t\u00b2\u0663x", max_size=12))
def test_a_run_value_passes_where_the_api_server_passes_a_default(
    kind: ParamType, value: str
) -> None:
    cel_ok = _as_the_api_server_matches(kind).search(value) is not None
    ours_ok = type_problem(kind, value) is None
    if ours_ok:
        assert cel_ok, value
    elif cel_ok:  # stricter only where the pattern cannot see: a finite number, a real date
        assert kind in (ParamType.NUMBER, ParamType.DATE), value


def test_references_and_substitute_walk_every_text() -> None:
    doc = {"a": "x$(params.p)y$(params.q)", "b": [{"c": "$(params.p)"}, 3], "d": True}
    assert list(references(doc)) == [("spec.a", "p"), ("spec.a", "q"), ("spec.b[0].c", "p")]
    assert substitute(doc, {"p": "1", "q": "2"}) == {
        "a": "x1y2",
        "b": [{"c": "1"}, 3],
        "d": True,
    }


def test_resolve_fills_in_params_and_names_the_job_after_the_pipeline() -> None:
    body = resolve(pipeline(), {"date": "2026-11-30"})
    assert body.source.uri == "file:///data/in/eu/2026-11-30.csv"
    assert body.sink.uri == "file:///data/out/2026-11-30.parquet"
    assert body.transform.filter == "amount < 100"
    assert body.openlineage.job == "orders"
    again = resolve(pipeline(), {"date": "2026-12-01", "region": "us", "limit": "5"})
    assert again.source.uri == "file:///data/in/us/2026-12-01.csv"
    assert again.openlineage.job == body.openlineage.job  # one job, one history
    named = resolve(pipeline(openlineage={"job": "orders-daily"}), {"date": "2026-11-30"})
    assert named.openlineage.job == "orders-daily"


@pytest.mark.parametrize(
    ("given", "field", "words"),
    [
        ({"date": "2026-11-30", "dat": "x"}, "spec.params.dat", ["no parameter dat", "date"]),
        ({}, "spec.params.date", ["requires parameter date", "set spec.params.date"]),
        ({"date": "yesterday"}, "spec.params.date", ["not a date", "YYYY-MM-DD"]),
        ({"date": "2026-11-30", "limit": "ten"}, "spec.params.limit", ["integer"]),
        ({"date": "2026 11 30"}, "spec.params.date", ["not a date"]),
        # A valid string, but it makes the source URI invalid once filled in.
        ({"date": "2026-11-30", "region": "e u"}, "spec.params", ["spec.source.uri"]),
    ],
)
def test_bad_params_name_the_field_and_the_fix(
    given: dict[str, str], field: str, words: list[str]
) -> None:
    with pytest.raises(ParamError) as err:
        resolve(pipeline(), given)
    assert err.value.field == field
    for word in words:
        assert word in err.value.message


def test_defaults_fill_in_and_given_values_win() -> None:
    assert param_values(pipeline(), {"date": "2026-11-30"}) == {
        "date": "2026-11-30",
        "region": "eu",
        "limit": "100",
    }
    assert param_values(pipeline(), {"date": "2026-11-30", "limit": "7"})["limit"] == "7"


def test_pipeline_rejects_undeclared_references_and_bad_defaults() -> None:
    with pytest.raises(ValidationError, match=r"spec.source.uri uses \$\(params.day\)"):
        pipeline(source={"uri": "file:///d/$(params.day).csv", "format": "csv"})
    with pytest.raises(ValidationError, match="default must be an integer"):
        pipeline(params=[*SPEC["params"][:2], {"name": "limit", "type": "integer", "default": "x"}])
    with pytest.raises(ValidationError, match="same name"):
        pipeline(params=[*SPEC["params"], {"name": "date"}])


INLINE = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun.yaml").read_text())["spec"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"pipelineRef": {"name": "p"}, "source": INLINE["source"]}, "takes source from its"),
        ({"ttlSecondsAfterFinished": 5}, "needs source; or set pipelineRef"),
        ({"source": INLINE["source"]}, "needs sink; or set pipelineRef"),
        ({"pipelineRef": {"name": "p"}, "stages": {}}, "takes stages from its Pipeline"),
        ({**INLINE, "params": {"a": "b"}}, "params apply only"),
    ],
)
def test_request_is_inline_or_a_ref(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PipelineRunRequest.model_validate(spec)


def test_request_accepts_both_forms() -> None:
    PipelineRunRequest.model_validate(INLINE)
    PipelineRunRequest.model_validate({"pipelineRef": {"name": "p"}, "params": {"d": "1"}})


def test_a_ref_run_executes_its_snapshot_with_its_own_controls() -> None:
    snapshot = resolve(pipeline(), {"date": "2026-11-30"}).wire()
    body: dict[str, Any] = {
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": {"pipelineRef": {"name": "orders"}, "params": {"date": "2026-11-30"}},
        "status": {"pipelineSpec": snapshot},
    }
    run = PipelineRun.model_validate(body)
    assert run.spec.source.uri == "file:///data/in/eu/2026-11-30.csv"
    assert run.spec.pipeline_ref is not None and run.spec.pipeline_ref.name == "orders"
    assert run.spec.cancel is False
    # Controls come from the live spec, never from the snapshot.
    body["spec"] = {**body["spec"], "cancel": True, "suspend": True}
    live = PipelineRun.model_validate(body)
    assert live.spec.cancel and live.spec.suspend
    assert live.status is not None and live.status.pipeline_spec is not None
    assert live.request().model_dump(by_alias=True, exclude_none=True, exclude_defaults=True) == {
        "pipelineRef": {"name": "orders"},
        "params": {"date": "2026-11-30"},
        "suspend": True,
        "cancel": True,
    }


@pytest.mark.parametrize("status", [None, {}, {"pipelineSpec": "x"}, ["no"], {"phase": "Running"}])
def test_an_unresolved_ref_run_is_a_validation_error(status: Any) -> None:
    body = {"metadata": {"name": "r"}, "spec": {"pipelineRef": {"name": "p"}}, "status": status}
    with pytest.raises(ValidationError):
        PipelineRun.model_validate(body)


def test_example_pipeline_and_ref_run_validate() -> None:
    docs = list(yaml.safe_load_all((REPO_ROOT / "examples" / "pipeline.yaml").read_text()))
    found = Pipeline.model_validate(next(d for d in docs if d["kind"] == "Pipeline"))
    run = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun-ref.yaml").read_text())
    request = PipelineRunRequest.model_validate(run["spec"])
    assert request.pipeline_ref is not None
    assert request.pipeline_ref.name == found.metadata.name
    body = resolve(found, request.params)
    assert "$(params." not in body.model_dump_json()
