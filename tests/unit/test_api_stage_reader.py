"""The stage's pydantic-free config reader (`lineagehub.api.stage_reader`) against the
models it stands for: what it accepts the models accept and read the same; what the
models refuse it refuses, naming a field the models name. Checked on rich configs and
on every kind of damage to them (any field replaced, dropped or added)."""

from __future__ import annotations

import copy
import json
from enum import Enum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from lineagehub.api import StageConfig, StageName
from lineagehub.api.stage_reader import StageConfigError, View, read_stage_config
from lineagehub.api.stage_schema import SCHEMA_PATH, build_stage_schema
from tests.damage import changed, damages

RUN = "01a22e7b-2035-746b-b290-5b95bafd4961"
PARENT = "01a22e7b-2035-7a23-8a00-fa4ae216e7ab"
BASE: dict[str, Any] = {
    "runId": RUN,
    "stage": "transform",
    "attempt": 2,
    "pipelineRun": {"namespace": "ns", "name": "orders", "uid": "u-1"},
    "source": {
        "uri": "s3://bucket/in/orders.csv",
        "format": "csv",
        "s3": {
            "endpoint": "http://127.0.0.1:9000",
            "region": "eu-west-1",
            "credentialsSecretRef": {"name": "creds", "sessionTokenKey": "TOKEN"},
        },
    },
    "transform": {
        "rename": {"amt": "amount", "cust": "customer"},
        "cast": {"amount": "float64", "day": "date"},
        "derived": [{"name": "gross", "expr": "amount * 1.2"}],
        "filter": "amount > 0",
        "dropNulls": ["customer"],
        "deduplicate": {"columns": ["order_id"], "keep": "last"},
        "select": ["order_id", "customer", "amount", "gross"],
        "quality": [
            {"type": "not_null", "column": "order_id"},
            {"type": "range", "column": "amount", "min": 0, "max": 1e6, "severity": "warn"},
            {"type": "accepted_values", "column": "customer", "values": ["acme", "globex"]},
            {"name": "ids", "type": "regex", "column": "order_id", "pattern": "^[0-9]+$"},
        ],
    },
    "sink": {"uri": "clickhouse://127.0.0.1:9000/db/orders", "format": "clickhouse"},
    "workspace": "/data/ws",
    "openlineageNamespace": "tests",
    "openlineageJob": "orders.transform",
    "parent": {"runId": PARENT, "namespace": "tests", "job": "orders"},
    "traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01",
    "shards": 3,
    "inputParts": 2,
}


def same(view: Any, model: Any) -> bool:
    """Whether the reader's value reads as the model's: the same attributes, values and
    types (an enum member is the same member)."""
    if isinstance(model, BaseModel):
        return isinstance(view, View) and all(
            same(getattr(view, name), getattr(model, name)) for name in type(model).model_fields
        )
    if isinstance(model, list):
        return isinstance(view, list) and len(view) == len(model) and all(map(same, view, model))
    if isinstance(model, dict):
        return (
            isinstance(view, dict)
            and list(view) == list(model)
            and all(same(view[k], model[k]) for k in model)
        )
    if isinstance(model, Enum):
        return view is model
    return type(view) is type(model) and view == model


def both(data: Any) -> tuple[Any, Any]:
    """(the reader's value or error, the models' value or error) for `data` as JSON."""
    raw = json.dumps(data)
    try:
        ours: Any = read_stage_config(raw)
    except StageConfigError as exc:
        ours = exc
    try:
        theirs: Any = StageConfig.model_validate_json(raw)
    except ValidationError as exc:
        theirs = exc
    return ours, theirs


def test_the_schema_file_is_generated_from_the_models() -> None:
    from lineagehub.api import stage_reader

    on_disk = json.loads(stage_reader.SCHEMA_FILE.read_text())
    assert stage_reader.SCHEMA_FILE.as_posix().endswith(SCHEMA_PATH.as_posix())
    assert on_disk == build_stage_schema()


@pytest.mark.parametrize("by_alias", [True, False])
def test_a_rich_config_reads_as_the_model_reads_it(by_alias: bool) -> None:
    model = StageConfig.model_validate(BASE)
    view = read_stage_config(model.model_dump_json(by_alias=by_alias, exclude_none=True))
    assert same(view, model)
    assert view.intermediate_path(StageName.EXTRACT) == model.intermediate_path(StageName.EXTRACT)
    quality = model.transform.quality or []
    assert [q.display_name for q in view.transform.quality] == [q.display_name for q in quality]


def test_defaults_are_the_models() -> None:
    """A config with only its required fields: every default as the model fills it in
    (the transform an empty one, the optional fields None, the counts 1)."""
    bare = {k: v for k, v in BASE.items() if k in {"runId", "stage", "pipelineRun", "workspace"}}
    bare |= {
        "source": {"uri": "file:///in.csv", "format": "csv"},
        "sink": {"uri": "file:///out.parquet", "format": "parquet"},
        "openlineageNamespace": "tests",
        "openlineageJob": "orders.extract",
    }
    ours, theirs = both(bare)
    assert isinstance(theirs, StageConfig)
    assert same(ours, theirs)


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("sink", "mode"), "sideways", "sink.mode: "),
        (("source", "uri"), "file://x\n", "source.uri: "),  # `$` is the very end
        (("attempt",), 0, "attempt: "),
        (("shards",), 999, "shards: "),
        # given under its wire name and its Python name: the second is an unknown field
        (("transform", "drop_nulls"), None, "transform.drop_nulls: Extra inputs"),
        (("transform", "select", 0), "x" * 257, "transform.select.0: "),
        (("transform", "rename"), {"x" * 257: "a"}, "transform.rename.xxx"),
        (("source", "uri"), "s3://" + "x" * 2048, "source.uri: "),
        (("transform", "select"), ["a", "a"], "transform.select: Value error, duplicate"),
        (("transform", "rename"), {"a": "x", "b": "x"}, "transform: Value error, duplicate"),
        (("transform", "quality", 1, "min"), 2e6, "transform.quality.1: Value error, min"),
        (("sink", "format"), "parquet", "sink: Value error, format clickhouse"),
        (("source", "uri"), "file:///in.csv", "source: Value error, s3 options"),
        (("transform", "quality", 3, "pattern"), "(", "transform.quality.3: Value error"),
    ],
)
def test_bad_fields_are_named(path: tuple[str | int, ...], value: Any, named: str) -> None:
    ours, theirs = both(changed(BASE, path, value))
    assert isinstance(theirs, ValidationError)
    assert isinstance(ours, StageConfigError) and named in str(ours), str(ours)


@pytest.mark.parametrize("value", [True, "2"])
def test_numbers_are_json_numbers(value: Any) -> None:
    """Stricter than the models on one point: a count given as a flag or as text is
    refused (the operator writes numbers; the models would take 1 or 2)."""
    ours, theirs = both({**BASE, "shards": value})
    assert isinstance(theirs, StageConfig)
    assert isinstance(ours, StageConfigError) and "shards: " in str(ours)


def test_unknown_and_missing_fields_are_named() -> None:
    data = copy.deepcopy(BASE)
    del data["workspace"]
    data["source"]["color"] = "red"
    with pytest.raises(StageConfigError) as caught:
        read_stage_config(json.dumps(data))
    assert str(caught.value) == (
        "source.color: Extra inputs are not permitted; workspace: Field required"
    )


def test_not_json_is_refused_in_one_line() -> None:
    for raw in ("{", '{"attempt": NaN}', "[]"):
        with pytest.raises(StageConfigError) as caught:
            read_stage_config(raw)
        assert "\n" not in str(caught.value)


def _text_with(path: tuple[str | int, ...], placeholder: str, raw_value: str) -> str:
    """BASE as JSON with the value at `path` given as the raw JSON text `raw_value`."""
    data = changed(BASE, path, placeholder)
    return json.dumps(data).replace(json.dumps(placeholder), raw_value, 1)


@pytest.mark.parametrize(
    ("raw_value", "named"),
    [
        ('"s3://bucket/in/\\ud800.csv"', "config: Invalid JSON"),  # a lone surrogate
        ("[" * 100_000 + "]" * 100_000, "config: Invalid JSON"),  # nested past any limit
    ],
)
def test_json_the_models_cannot_parse_is_refused_as_they_refuse_it(
    raw_value: str, named: str
) -> None:
    raw = _text_with(("source", "uri"), "@@", raw_value)
    with pytest.raises(ValidationError, match="Invalid JSON"):
        StageConfig.model_validate_json(raw)
    with pytest.raises(StageConfigError) as caught:
        read_stage_config(raw)
    assert str(caught.value).startswith(named) and "\n" not in str(caught.value)


def test_a_number_past_a_doubles_range_reads_as_the_models_read_it() -> None:
    raw = _text_with(("transform", "quality", 1, "max"), "@@", "1" + "0" * 400)
    theirs = StageConfig.model_validate_json(raw)
    assert same(read_stage_config(raw), theirs)


@pytest.mark.parametrize(
    "raw_value",
    ["9223372036854775808.0", "-9223372036854775808.0", "1e19", "1e300", "9.2e18", "-9.2e18"],
)
def test_an_integral_float_is_an_integer_only_within_64_bits(raw_value: str) -> None:
    """The models take 9.2e18 as an integer and refuse an integral float at or past
    2**63 (their int64 parse); the reader draws the line at the same place."""
    raw = _text_with(("attempt",), "@@", raw_value)
    try:
        theirs: Any = StageConfig.model_validate_json(raw)
    except ValidationError as exc:
        theirs = exc
    if isinstance(theirs, ValidationError):
        why = "exceeded maximum size" if "int_parsing_size" in str(theirs) else "greater than"
        with pytest.raises(StageConfigError, match=rf"^attempt: .*{why}"):
            read_stage_config(raw)
    else:
        assert abs(theirs.attempt) < 2**63
        assert same(read_stage_config(raw), theirs)


def test_whitespace_is_the_models_whitespace() -> None:
    # The information separators \x1c-\x1f are whitespace to Python's `\s`, not to the
    # models' regex: a URI holding one is the models' to accept; a space is refused.
    raw = _text_with(("source", "uri"), "@@", '"s3://bucket/in/a\\u001cb.csv"')
    assert same(read_stage_config(raw), StageConfig.model_validate_json(raw))
    ours, theirs = both({**BASE, "source": {**BASE["source"], "uri": "s3://bucket/a b.csv"}})
    assert isinstance(theirs, ValidationError)
    assert isinstance(ours, StageConfigError) and "source.uri: " in str(ours)


WORDS = [
    "",
    "x",
    "csv",
    "parquet",
    "clickhouse",
    "append",
    "range",
    "regex",
    "warn",
    "float64",
    "first",
    "extract",
    "file:///a.csv",
    "s3://b/k",
    "http://h/x",
    "clickhouse://h:1/d/t",
    "amount",
    "order_id",
    "5",
    "1.5",
    "true",
    RUN,
    "x" * 257,
    "s3://" + "x" * 2048,
]
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=300)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    # Integral floats about a signed 64-bit integer's bounds, which the models refuse.
    | st.sampled_from([2.0**63, -(2.0**63), 1e19, 1e300, 9.2e18, -9.2e18])
    | st.sampled_from(WORDS)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["name", "type", "uri", "x", "min"]), inner, max_size=3)
    ),
    max_leaves=6,
)


#: Fields an object may gain: known ones it lacks here (optional fields, or another
#: model's), their Python names, and unknown ones.
ADDED = ["mode", "s3", "name", "values", "pattern", "min", "max", "uid", "keep", "columns"]
ADDED += ["session_token_key", "drop_nulls", "input_parts", "unknownField"]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=damages(BASE, JSON_VALUES, ADDED))
def test_any_damage_is_judged_as_the_models_judge_it(case: tuple[Any, Any]) -> None:
    data, value = case
    ours, theirs = both(data)
    if isinstance(ours, View):  # accepted: the models accept it too, and read it the same
        assert isinstance(theirs, StageConfig), str(theirs)
        assert same(ours, theirs)
    elif isinstance(theirs, ValidationError):  # both refuse: a field they name is named
        locs = {".".join(str(p) for p in e["loc"] if p != "[key]") for e in theirs.errors()}
        named = any(f"{loc}: " in str(ours) for loc in locs)
        # (or it refused the value's type first, where they coerced it and then refused)
        assert named or isinstance(value, bool | str), (str(ours), locs)
    else:  # refused where the models would coerce: only a number or flag given as text/flag
        assert isinstance(value, bool | str), (value, str(ours))
