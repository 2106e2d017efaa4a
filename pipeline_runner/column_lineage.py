"""Column-level lineage of a declarative transform, derived from the spec alone.

For every output column: the input columns it comes from and how (identity, rename,
cast, derived). SQL expressions are read with polars' expression metadata
(`pl.sql_expr(expr).meta.root_names()`), so nothing is guessed from the text.
Row-level steps (filter, dropNulls, deduplicate) do not change where a column's
values come from; the input columns they read are reported as `indirect`, which
OpenLineage carries as dataset-level INDIRECT lineage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import polars as pl

from pipeline_runner.transform_plan import sql

if TYPE_CHECKING:
    from lineagehub.api import TransformSpec


class Transformation(StrEnum):
    """How an output column relates to its inputs, from weakest to strongest change."""

    IDENTITY = "identity"
    RENAME = "rename"
    CAST = "cast"
    DERIVED = "derived"


_RANK = {t: i for i, t in enumerate(Transformation)}


def _stronger(a: Transformation, b: Transformation) -> Transformation:
    return a if _RANK[a] >= _RANK[b] else b


@dataclass(frozen=True)
class ColumnOrigin:
    """Where one output column comes from."""

    inputs: tuple[str, ...]
    """Input columns (names as read from the source), in source column order."""
    transformation: Transformation
    expression: str | None = None
    """The SQL expression, for derived columns."""


@dataclass(frozen=True)
class ColumnLineage:
    """Output column → origin, in output order, plus the inputs that select rows."""

    fields: dict[str, ColumnOrigin]
    indirect: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Row-level step (`filter`, `dropNulls`, `deduplicate`) → input columns it reads."""

    def to_openlineage(self, namespace: str, name: str) -> dict[str, Any]:
        """The `fields` and `dataset` parts of an OpenLineage ColumnLineageDatasetFacet
        (1-2-0) for a single input dataset `namespace`/`name`."""

        def ref(column: str, subtype: str, description: str | None) -> dict[str, Any]:
            transformation: dict[str, Any] = {
                "type": "INDIRECT" if subtype == "FILTER" else "DIRECT",
                "subtype": subtype,
                "masking": False,
            }
            if description:
                transformation["description"] = description
            return {
                "namespace": namespace,
                "name": name,
                "field": column,
                "transformations": [transformation],
            }

        fields: dict[str, Any] = {}
        for out, origin in self.fields.items():
            subtype = (
                "IDENTITY"
                if origin.transformation in (Transformation.IDENTITY, Transformation.RENAME)
                else "TRANSFORMATION"
            )
            description = origin.expression or (
                None if origin.transformation is Transformation.IDENTITY else origin.transformation
            )
            fields[out] = {"inputFields": [ref(c, subtype, description) for c in origin.inputs]}
        dataset: list[dict[str, Any]] = []
        seen: set[str] = set()
        for step, columns in self.indirect.items():
            for column in columns:
                if column not in seen:
                    seen.add(column)
                    dataset.append(ref(column, "FILTER", step))
        return {"fields": fields, "dataset": dataset}


def _merge(columns: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    out: list[str] = []
    for group in columns:
        out.extend(c for c in group if c not in out)
    return tuple(out)


def column_lineage(spec: TransformSpec, input_columns: Sequence[str]) -> ColumnLineage:
    """The lineage of every output column of `spec` applied to `input_columns`.

    Unknown column references are ignored here; `transform_plan.compile_transform`
    reports them as errors.
    """
    state: dict[str, ColumnOrigin] = {
        c: ColumnOrigin(inputs=(c,), transformation=Transformation.IDENTITY) for c in input_columns
    }

    order = {c: i for i, c in enumerate(input_columns)}

    def inputs_of(names: Sequence[str]) -> tuple[str, ...]:
        merged = _merge([state[n].inputs for n in names if n in state])
        return tuple(sorted(merged, key=order.__getitem__))

    if spec.rename:
        renamed: dict[str, ColumnOrigin] = {}
        for col, origin in state.items():
            new = spec.rename.get(col, col)
            kind = origin.transformation
            if new != col:
                kind = _stronger(kind, Transformation.RENAME)
            renamed[new] = ColumnOrigin(origin.inputs, kind, origin.expression)
        state = renamed

    for col in spec.cast or {}:
        if col in state:
            origin = state[col]
            state[col] = ColumnOrigin(
                origin.inputs,
                _stronger(origin.transformation, Transformation.CAST),
                origin.expression,
            )

    for i, derived in enumerate(spec.derived or []):
        expr = sql(derived.expr, f"transform.derived[{i}].expr")
        roots = expr.meta.root_names()
        if expr.meta.is_column() and roots and roots[0] in state:
            # A plain column reference is a copy under another name.
            origin = state[roots[0]]
            moved = derived.name != roots[0] or origin.transformation is Transformation.RENAME
            kind = _stronger(
                origin.transformation,
                Transformation.RENAME if moved else Transformation.IDENTITY,
            )
            state[derived.name] = ColumnOrigin(origin.inputs, kind, origin.expression)
        else:
            state[derived.name] = ColumnOrigin(
                inputs_of(roots), Transformation.DERIVED, derived.expr
            )

    indirect: dict[str, tuple[str, ...]] = {}
    if spec.filter:
        indirect["filter"] = inputs_of(_roots(spec.filter, "transform.filter"))
    if spec.drop_nulls:
        indirect["dropNulls"] = inputs_of(spec.drop_nulls)
    if spec.deduplicate is not None:
        subset = spec.deduplicate.columns or list(state)
        indirect["deduplicate"] = inputs_of(subset)

    if spec.select:
        state = {c: state[c] for c in spec.select if c in state}
    return ColumnLineage(fields=state, indirect={k: v for k, v in indirect.items() if v})


def _roots(expr: str, where: str) -> list[str]:
    parsed: pl.Expr = sql(expr, where)
    return parsed.meta.root_names()


def identity_lineage(columns: Sequence[str], namespace: str, name: str) -> dict[str, Any]:
    """Column lineage of a stage that copies its input (extract, load): every output
    field comes unchanged from the input field of the same name, so the field graph runs
    unbroken from the source through the intermediates to the sink."""
    return {
        "fields": {
            c: {
                "inputFields": [
                    {
                        "namespace": namespace,
                        "name": name,
                        "field": c,
                        "transformations": [
                            {"type": "DIRECT", "subtype": "IDENTITY", "masking": False}
                        ],
                    }
                ]
            }
            for c in columns
        }
    }
