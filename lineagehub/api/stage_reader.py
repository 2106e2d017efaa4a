"""A stage's config (`LINEAGEHUB_STAGE_CONFIG`) read and validated without pydantic.

A stage process validates its config before any work, and pydantic alone (its import,
the models' classes and validators) costs it ~75 ms of CPU at start-up. This reader
walks the models' own JSON schema instead (`stage_config.schema.json`, generated from
them: names, types, bounds, patterns, enums, defaults, unknown fields refused) with the
walker it shares with the manifest's reader (`schema_walk`), applies the models'
cross-field rules (`stage_rules`), then hands back plain objects with the models'
attribute names and enums (`View`): what the runner reads.

It is at least as strict as the models: what it accepts, they accept and read the same
(a property test holds it to that). It is stricter in one way only: it takes JSON
types as they are (no number given as a string, no boolean as a number), as the
operator writes them. Every error names its field (`sink.mode: ...`); all are reported.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lineagehub.api import enums
from lineagehub.api import stage_rules as rules
from lineagehub.api.enums import STAGE_CONFIG_ENV, StageName
from lineagehub.api.schema_walk import Schema, SchemaError, View

SCHEMA_FILE = Path(__file__).with_name("stage_config.schema.json")

__all__ = [
    "SCHEMA_FILE",
    "STAGE_RULES",
    "STAGE_VIEWS",
    "QualityCheckView",
    "StageConfigError",
    "StageConfigView",
    "View",
    "read_stage_config",
    "read_stage_config_data",
    "stage_config_from_env",
]


class StageConfigError(SchemaError):
    """The config is not valid: each error with the field it is about."""

    subject = "config"


class StageConfigView(View):
    workspace: str

    def intermediate_path(self, stage: StageName) -> str:
        return rules.intermediate_path(self.workspace, stage)


class QualityCheckView(View):
    name: str | None
    type: enums.CheckType
    column: str

    @property
    def display_name(self) -> str:
        return rules.display_name(self.name, self.type, self.column)


#: The stage's models' views and cross-field rules, by model title (the manifest's
#: reader reads a run's source, transform and sink by these too).
STAGE_VIEWS: dict[str, type[View]] = {
    "StageConfig": StageConfigView,
    "QualityCheck": QualityCheckView,
}
STAGE_RULES: dict[str, Callable[[Any], None]] = {
    "SourceSpec": lambda v: rules.check_s3_only(v.uri, v.s3),
    "SinkSpec": lambda v: rules.check_sink(v.uri, v.format, v.s3),
    "QualityCheck": lambda v: rules.check_quality(v.type, v.min, v.max, v.values, v.pattern),
    "TransformSpec": lambda v: rules.check_transform(
        list(v.rename.values()) if v.rename else None,
        [d.name for d in v.derived] if v.derived else None,
    ),
}


@functools.cache
def _schema(from_json: bool) -> Schema:
    defs = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))["$defs"]
    return Schema(defs, views=STAGE_VIEWS, rules=STAGE_RULES, from_json=from_json)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_stage_config(raw: str) -> StageConfigView:
    """The config in `raw` (JSON), or `StageConfigError` naming every field in error."""
    try:
        data = json.loads(raw, parse_constant=_no_constant)
        # A lone surrogate (`"\\ud800"`) is invalid JSON to the models' parser.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise StageConfigError([((), "Invalid JSON: a lone surrogate in a string")]) from None
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise StageConfigError([((), f"Invalid JSON: {exc}")]) from None
    return _read(data, from_json=True)


def read_stage_config_data(data: Any) -> StageConfigView:
    """The config `data` (Python's objects, as the models validate them with
    `model_validate`), or `StageConfigError` naming every field in error: how
    `lineage-hub run` makes each of its stages' configs."""
    return _read(data, from_json=False)


def _read(data: Any, *, from_json: bool) -> StageConfigView:
    try:
        view = _schema(from_json).read(data, "StageConfig")
    except SchemaError as exc:
        raise StageConfigError(exc.errors) from None
    assert isinstance(view, StageConfigView)
    return view


def stage_config_from_env(environ: dict[str, str]) -> StageConfigView:
    raw = environ.get(STAGE_CONFIG_ENV)
    if not raw:
        raise ValueError(f"{STAGE_CONFIG_ENV} is not set")
    return read_stage_config(raw)
