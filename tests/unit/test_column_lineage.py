"""Column-level lineage derived from a transform spec, table-driven."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lineagehub.api import TransformSpec
from pipeline_runner.column_lineage import Transformation, column_lineage
from pipeline_runner.transform_plan import TransformPlanError

ROOT = Path(__file__).resolve().parents[2]
INPUT = ["id", "name", "amount", "currency", "created_at"]

IDENT, R, C, D = (
    Transformation.IDENTITY,
    Transformation.RENAME,
    Transformation.CAST,
    Transformation.DERIVED,
)

CASES: list[tuple[str, dict[str, Any], dict[str, tuple[tuple[str, ...], Transformation]]]] = [
    # (id, transform, expected {output: (inputs, transformation)}) - only the listed outputs
    ("identity", {}, {c: ((c,), IDENT) for c in INPUT}),
    (
        "rename",
        {"rename": {"created_at": "ordered_at"}},
        {"ordered_at": (("created_at",), R), "id": (("id",), IDENT)},
    ),
    ("cast", {"cast": {"amount": "float64"}}, {"amount": (("amount",), C)}),
    (
        "rename-then-cast",
        {"rename": {"amount": "amt"}, "cast": {"amt": "int64"}},
        {"amt": (("amount",), C)},
    ),
    (
        "derived-one-input",
        {"derived": [{"name": "gross", "expr": "amount * 1.2"}]},
        {"gross": (("amount",), D), "amount": (("amount",), IDENT)},
    ),
    (
        "derived-two-inputs",
        {"derived": [{"name": "label", "expr": "concat(name, currency)"}]},
        {"label": (("name", "currency"), D)},
    ),
    (
        "derived-case",
        {"derived": [{"name": "big", "expr": "CASE WHEN amount > 100 THEN name ELSE 'x' END"}]},
        {"big": (("name", "amount"), D)},
    ),
    ("derived-literal", {"derived": [{"name": "one", "expr": "1"}]}, {"one": ((), D)}),
    (
        "derived-of-derived",
        {"derived": [{"name": "g", "expr": "amount * 2"}, {"name": "h", "expr": "g + id"}]},
        {"h": (("id", "amount"), D)},
    ),
    (
        "derived-of-renamed",
        {"rename": {"amount": "amt"}, "derived": [{"name": "g", "expr": "amt * 2"}]},
        {"g": (("amount",), D)},
    ),
    (
        "derived-plain-column-copy",
        {"derived": [{"name": "key", "expr": "id"}]},
        {"key": (("id",), R), "id": (("id",), IDENT)},
    ),
    (
        "derived-overwrites",
        {"derived": [{"name": "amount", "expr": "amount * 100"}]},
        {"amount": (("amount",), D)},
    ),
    (
        "select-restricts",
        {"select": ["currency", "id"]},
        {"currency": (("currency",), IDENT), "id": (("id",), IDENT)},
    ),
]


@pytest.mark.parametrize(
    ("transform", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_column_lineage(
    transform: dict[str, Any], expected: dict[str, tuple[tuple[str, ...], Transformation]]
) -> None:
    lineage = column_lineage(TransformSpec.model_validate(transform), INPUT)
    for column, (inputs, kind) in expected.items():
        origin = lineage.fields[column]
        assert (origin.inputs, origin.transformation) == (inputs, kind), column


def test_select_sets_output_order() -> None:
    lineage = column_lineage(TransformSpec.model_validate({"select": ["currency", "id"]}), INPUT)
    assert list(lineage.fields) == ["currency", "id"]


def test_indirect_inputs_of_row_steps() -> None:
    spec = TransformSpec.model_validate(
        {
            "rename": {"created_at": "ts"},
            "filter": "ts > '2025-01-01' AND amount > 0",
            "dropNulls": ["name"],
            "deduplicate": {"columns": ["id"]},
        }
    )
    lineage = column_lineage(spec, INPUT)
    assert lineage.indirect == {
        "filter": ("amount", "created_at"),  # source column order
        "dropNulls": ("name",),
        "deduplicate": ("id",),
    }


def test_derived_expression_is_kept() -> None:
    spec = TransformSpec.model_validate({"derived": [{"name": "g", "expr": "amount * 1.2"}]})
    assert column_lineage(spec, INPUT).fields["g"].expression == "amount * 1.2"


def test_bad_sql_names_the_field() -> None:
    spec = TransformSpec.model_validate({"derived": [{"name": "g", "expr": "amount +* 1"}]})
    with pytest.raises(TransformPlanError, match=r"derived\[0\]"):
        column_lineage(spec, INPUT)


def test_openlineage_facet_shape() -> None:
    doc = yaml.safe_load((ROOT / "examples" / "pipelinerun.yaml").read_text())
    spec = TransformSpec.model_validate(doc["spec"]["transform"])
    header = (ROOT / "examples" / "data" / "orders.csv").read_text().splitlines()[0].split(",")
    facet = column_lineage(spec, header).to_openlineage("file", "/data/examples/orders.csv")
    assert list(facet["fields"]) == spec.select
    gross = facet["fields"]["gross"]["inputFields"]
    assert gross == [
        {
            "namespace": "file",
            "name": "/data/examples/orders.csv",
            "field": "amount",
            "transformations": [
                {
                    "type": "DIRECT",
                    "subtype": "TRANSFORMATION",
                    "masking": False,
                    "description": "amount * 1.2",
                }
            ],
        }
    ]
    renamed = facet["fields"]["ordered_at"]["inputFields"][0]
    assert renamed["field"] == "created_at"
    customer = facet["fields"]["customer"]["inputFields"][0]["transformations"][0]
    assert customer["subtype"] == "IDENTITY" and "description" not in customer
    indirect = {(d["field"], d["transformations"][0]["type"]) for d in facet["dataset"]}
    assert ("status", "INDIRECT") in indirect and ("order_id", "INDIRECT") in indirect
