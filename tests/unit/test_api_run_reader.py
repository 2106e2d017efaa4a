"""The PipelineRun manifest's pydantic-free reader (`lineagehub.api.run_reader`) against
the model it stands for: what it accepts `PipelineRun.model_validate` accepts and reads
the same; what the model refuses it refuses, naming a field the model names; and what
it refuses that the model accepts is only what the model converts (a number given as
text, say: in strict mode the model refuses it too) or a status. Checked on a rich
manifest and on every kind of damage to it, with the values a YAML file can give."""

from __future__ import annotations

import copy
import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lineagehub.api import PipelineRun
from lineagehub.api.run_reader import ManifestError, read_pipelinerun
from lineagehub.api.run_schema import RUN_SCHEMA_PATH, build_run_schema
from lineagehub.api.schema_walk import View
from tests.damage import changed, damages
from tests.unit.test_api_stage_reader import BASE as STAGE
from tests.unit.test_api_stage_reader import same

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BASE: dict[str, Any] = {
    "apiVersion": "lineagehub.io/v1alpha1",
    "kind": "PipelineRun",
    "metadata": {
        "name": "orders",
        "namespace": "ns",
        "generation": 3,
        "labels": {"team": "data"},
        "annotations": {"note": "x"},
    },
    "spec": {
        # the stage config's rich source, transform and sink
        **copy.deepcopy({k: STAGE[k] for k in ("source", "transform", "sink")}),
        "image": "lineage-hub:dev",
        "imagePullPolicy": "IfNotPresent",
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": 2}},
        "parallelism": 4,
        "stages": {
            "defaults": {"retries": 2, "timeoutSeconds": 600},
            "extract": {"retries": 3, "parallelism": 8, "resources": {"limits": {"cpu": 1}}},
            "transform": {"parallelism": 1, "timeoutSeconds": 300},
            "load": {"retries": 0},
        },
        "openlineage": {"namespace": "tests", "job": "orders"},
        "params": {"date": "2026-11-30"},
        "rerun": {"of": "orders-1", "fromStage": "transform"},
        "ttlSecondsAfterFinished": 86400,
        "suspend": False,
        "cancel": False,
    },
}

#: What pydantic adds to a field's location inside a union or a map's key.
_TAG = re.compile(r"^(\[key\]|int|str|float|bool|none|(constrained|function|lax)-.*)$")


def both(data: Any) -> tuple[Any, Any]:
    """(the reader's value or error, the model's value or error) for `data`."""
    try:
        ours: Any = read_pipelinerun(copy.deepcopy(data))
    except ManifestError as exc:
        ours = exc
    try:
        theirs: Any = PipelineRun.model_validate(copy.deepcopy(data))
    except ValidationError as exc:
        theirs = exc
    return ours, theirs


def fields_named(error: ValidationError) -> set[str]:
    """The fields the model's errors are about, as the reader spells them."""
    return {".".join(str(p) for p in e["loc"] if not _TAG.match(str(p))) for e in error.errors()}


def _bytes_as_object(value: Any) -> Any:
    """Bytes, which the model decodes to text (a conversion), as what strict refuses."""
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    raise TypeError(f"{type(value).__name__} is nothing the model converts")


def named_within(ours: ManifestError, fields: set[str]) -> bool:
    """Whether the reader names one of `fields`, or a place inside one (the model may
    convert the parts of a value, say text given as bytes, then refuse it whole)."""
    for loc, _ in ours.errors:
        place = ".".join(str(p) for p in loc)
        if any(place == f or place.startswith(f"{f}.") or not f for f in fields):
            return True
    return False


def converted_only(data: Any) -> bool:
    """Whether the model accepts `data` only by converting a value (strict, it refuses)."""
    try:
        raw = json.dumps(data, default=_bytes_as_object)
    except (TypeError, ValueError):  # a date: nothing the model converts
        return False
    try:
        PipelineRun.model_validate_json(raw, strict=True)
    except ValidationError:
        return True
    return False


def test_the_schema_file_is_generated_from_the_models() -> None:
    from lineagehub.api import run_reader

    on_disk = json.loads(run_reader.SCHEMA_FILE.read_text())
    assert run_reader.SCHEMA_FILE.as_posix().endswith(RUN_SCHEMA_PATH.as_posix())
    assert on_disk == build_run_schema()


def test_a_rich_manifest_reads_as_the_model_reads_it() -> None:
    ours, theirs = both(BASE)
    assert isinstance(theirs, PipelineRun), str(theirs)
    assert same(ours, theirs)
    quality = theirs.spec.transform.quality or []
    assert [q.display_name for q in ours.spec.transform.quality] == [
        q.display_name for q in quality
    ]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("pipelinerun*.yaml")), ids=lambda p: p.name)
def test_the_examples_read_as_the_model_reads_them(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    ours, theirs = both(doc)
    if isinstance(theirs, ValidationError):  # pipelinerun-ref: not resolved yet
        assert isinstance(ours, ManifestError)
        assert str(ours).startswith("manifest: Value error, spec.pipelineRef: ")
    else:
        assert same(ours, theirs)


def test_defaults_are_the_models() -> None:
    """A manifest with only its required fields: every default as the model fills it in
    (metadata from its factory, the transform, stages and OpenLineage naming empty)."""
    bare = {
        "spec": {
            "source": {"uri": "file:///in.csv", "format": "csv"},
            "sink": {"uri": "file:///out.parquet", "format": "parquet"},
        }
    }
    ours, theirs = both(bare)
    assert isinstance(theirs, PipelineRun)
    assert same(ours, theirs)


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("spec", "sink", "mode"), "sideways", "spec.sink.mode: "),
        (("spec", "parallelism"), 0, "spec.parallelism: Value error, parallelism must be"),
        (("spec", "stages", "extract", "parallelism"), -1, "spec.stages.extract.parallelism: "),
        (("spec", "stages", "load"), {"parallelism": 2}, "spec.stages: Value error, load is"),
        (("spec", "stages", "transform", "parallelism"), 2, "spec: Value error, deduplicate"),
        (("spec", "sink"), {"uri": "s3://bucket/in/orders.csv", "format": "csv"}, "spec: Value"),
        (("spec", "resources", "limits", "cpu"), 0.5, "spec.resources.limits.cpu: "),
        (("spec", "resources", "requests", "cpu"), "lots", "spec.resources.requests.cpu: "),
        (("spec", "pipelineRef"), {"name": "p"}, "manifest: Value error, spec.pipelineRef: "),
        (("spec", "colour"), "red", "spec.colour: Extra inputs"),
        (("apiVersion",), "v1", "apiVersion: Input should be 'lineagehub.io/v1alpha1'"),
        (("metadata", "labels"), {"team": 1}, "metadata.labels.team: "),
        (("metadata", 7), "x", "metadata.7: Keys should be strings"),
        (("spec", "source", "uri"), "s3://bucket/\ud800", "spec.source.uri: "),
        (("spec", "transform", "quality", 1, "max"), 10**400, "spec.transform.quality.1.max: "),
        (("spec", "transform", "quality", 1, "min"), 2e6, "spec.transform.quality.1: Value"),
    ],
)
def test_bad_fields_are_named(path: tuple[Any, ...], value: Any, named: str) -> None:
    ours, theirs = both(changed(BASE, path, value))
    assert isinstance(theirs, ValidationError)
    assert isinstance(ours, ManifestError) and named in str(ours), str(ours)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "ttlSecondsAfterFinished"), "86400"),  # a number as text
        (("spec", "suspend"), 0),  # a flag as a number
        (("spec", "stages", "defaults", "retries"), True),  # a number as a flag
        (("spec", "resources", "limits", "cpu"), True),
        (("status",), {}),  # the operator's: the model's to read
    ],
)
def test_what_only_the_model_converts_is_refused(path: tuple[Any, ...], value: Any) -> None:
    ours, theirs = both(changed(BASE, path, value))
    assert isinstance(theirs, PipelineRun)
    assert isinstance(ours, ManifestError)
    assert f"{'.'.join(map(str, path))}: " in str(ours)


def test_a_lone_surrogate_is_the_models_only_where_they_check_the_string() -> None:
    """In an unchecked string (metadata.name) the model keeps a lone surrogate, in a
    checked one it refuses it; the reader keeps it where the model does."""
    ours, theirs = both({**BASE, "metadata": {"name": "a\ud800"}})
    assert isinstance(theirs, PipelineRun) and same(ours, theirs)


def test_a_cycle_is_refused_in_one_line() -> None:
    data = copy.deepcopy(BASE)
    cycle: list[Any] = []
    cycle.append(cycle)
    data["spec"]["transform"]["select"] = cycle
    ours, theirs = both(data)
    assert isinstance(theirs, ValidationError)
    assert isinstance(ours, ManifestError) and "\n" not in str(ours)


WORDS = [
    "",
    "x",
    "csv",
    "clickhouse",
    "append",
    "range",
    "unique",
    "warn",
    "float64",
    "last",
    "transform",
    "Always",
    "file:///a.csv",
    "s3://b/k",
    "s3://bucket/in/orders.csv",
    "clickhouse://h:1/d/t",
    "100m",
    "1Gi",
    "amount",
    "order_id",
    "5",
    "1.5",
    "true",
    "lineagehub.io/v1alpha1",
    "PipelineRun",
    "x" * 257,
]
#: The scalars a YAML document gives: numbers of any size, flags, text, dates, bytes.
YAML_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=300)
    | st.sampled_from([0, -1, 1, 2, 64, 65])  # about the bounds of a count of pods
    | st.sampled_from([2**63, -(2**63) - 1, 10**30, 10**400])
    | st.floats(allow_nan=False, width=32)
    | st.sampled_from([2.0**63, 1e19, 9.2e18, 1.0, 0.0])
    | st.sampled_from(WORDS)
    | st.sampled_from([datetime.date(2026, 11, 30), b"bytes"])
)
YAML_VALUES = st.recursive(
    YAML_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["name", "type", "uri", "cpu", "parallelism", "x", 1]),
            inner,
            max_size=3,
        )
    ),
    max_leaves=6,
)
#: Fields an object may gain: known ones it lacks here (optional fields, or another
#: model's), their Python names, a status, the pipelineRef, and unknown ones (a number
#: too: a YAML key need not be text).
ADDED: list[str | int] = [
    "mode",
    "s3",
    "name",
    "values",
    "pattern",
    "min",
    "max",
    "keep",
    "columns",
    "load",
]
ADDED += ["parallelism", "resources", "pipelineRef", "pipeline_ref", "status", "drop_nulls"]
ADDED += ["image_pull_policy", "ttl_seconds_after_finished", "api_version", "unknownField", 3]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=damages(BASE, YAML_VALUES, ADDED))
def test_any_damage_is_judged_as_the_model_judges_it(case: tuple[Any, Any]) -> None:
    data, value = case
    ours, theirs = both(data)
    if isinstance(ours, View):  # accepted: the model accepts it too, and reads it the same
        assert isinstance(theirs, PipelineRun), str(theirs)
        assert same(ours, theirs)
    elif isinstance(theirs, ValidationError):  # both refuse: a field it names is named
        assert named_within(ours, fields_named(theirs)), (str(ours), fields_named(theirs))
    else:  # refused where the model accepts: only what it converts, or a status
        assert converted_only(data) or data.get("status") is not None, (value, str(ours))
