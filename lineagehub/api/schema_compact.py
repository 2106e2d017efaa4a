"""A model's JSON schema as the pydantic-free walker (`schema_walk`) reads it: what
`stage_schema` and `run_schema` generate (`python -m lineagehub.api.generate` writes
them; `--check` finds them stale).

It is the models' own JSON schema (camelCase names, types, bounds, patterns, enums,
defaults, which unknown fields a model refuses), less the text (descriptions, titles)
and the CEL rules (each reader applies the same rules through `stage_rules` and
`run_rules`), plus each model's Python field names (`x-python-names`: wire name to
attribute) and, for a field whose default a factory makes, that default as JSON (the
models' schema leaves it out)."""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

from pydantic import BaseModel, TypeAdapter

#: Keywords of no use to a reader: text, and the CEL rules the API server checks.
_DROPPED = frozenset({"description", "title", "x-kubernetes-validations"})


def _compact(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_compact(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROPPED:
            continue
        if key in {"properties", "$defs"}:
            out[key] = {name: _compact(s) for name, s in value.items()}
        elif key in {"default", "enum"}:
            out[key] = value
        else:
            out[key] = _compact(value)
    return out


def _refs(schema: Any) -> set[str]:
    """The titles of the definitions `schema` refers to (not following them)."""
    if isinstance(schema, list):
        return set().union(*(_refs(s) for s in schema))
    if not isinstance(schema, dict):
        return set()
    found = {schema["$ref"].rsplit("/", 1)[-1]} if isinstance(schema.get("$ref"), str) else set()
    return found.union(*(_refs(v) for k, v in schema.items() if k not in {"default", "enum"}))


def _reachable(defs: Mapping[str, Any], root: str) -> set[str]:
    seen, todo = set(), [root]
    while todo:
        title = todo.pop()
        if title not in seen:
            seen.add(title)
            todo += _refs(defs[title])
    return seen


def _python_names(model: type[BaseModel], properties: Mapping[str, Any]) -> dict[str, str]:
    wire = {field.alias or name: name for name, field in model.model_fields.items()}
    return {alias: name for alias, name in wire.items() if alias in properties}


def _factory_defaults(model: type[BaseModel], entry: dict[str, Any]) -> None:
    for name, field in model.model_fields.items():
        prop = entry["properties"].get(field.alias or name)
        if field.default_factory is not None and prop is not None:
            made = field.get_default(call_default_factory=True)
            prop["default"] = TypeAdapter[Any](field.annotation or Any).dump_python(
                made, mode="json", by_alias=True
            )


def compact_schema(
    root: type[BaseModel], models: ModuleType, *, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`root`'s compact schema: the definitions it reaches, each model's looked up in
    `models` by title; `overrides` replaces properties of `root` (a part its reader
    leaves to the models), and what only they reached is left out."""
    schema = root.model_json_schema(by_alias=True)
    title = root.__name__
    defs = {**schema.pop("$defs", {}), title: schema}
    schema["properties"].update(overrides or {})
    out: dict[str, Any] = {}
    for name in sorted(_reachable(defs, title)):
        entry = _compact(defs[name])
        if "properties" in entry:
            model: type[BaseModel] = getattr(models, name)
            entry["x-python-names"] = _python_names(model, entry["properties"])
            _factory_defaults(model, entry)
        out[name] = entry
    return {"$defs": out, "$ref": f"#/$defs/{title}"}
