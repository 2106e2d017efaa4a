"""The stage config's schema as the pydantic-free reader (`stage_reader`) walks it,
generated from the models (`python -m lineagehub.api.generate` writes it to
`stage_config.schema.json`; `--check` finds it stale).

It is the models' own JSON schema (camelCase names, types, bounds, patterns, enums,
defaults), less the text (descriptions, titles) and the CEL rules (the reader applies
the same rules through `stage_rules`), plus each model's Python field names
(`x-python-names`: wire name to attribute)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lineagehub.api import stage_spec

SCHEMA_PATH = Path("lineagehub") / "api" / "stage_config.schema.json"
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


def build_stage_schema() -> dict[str, Any]:
    root = stage_spec.StageConfig.model_json_schema(by_alias=True)
    defs = {**root.pop("$defs"), "StageConfig": root}
    out: dict[str, Any] = {}
    for title, schema in sorted(defs.items()):
        entry = _compact(schema)
        if "properties" in schema:
            model = getattr(stage_spec, title)
            entry["x-python-names"] = {
                field.alias or name: name for name, field in model.model_fields.items()
            }
        out[title] = entry
    return {"$defs": out, "$ref": "#/$defs/StageConfig"}
