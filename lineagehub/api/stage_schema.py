"""The stage config's schema as the pydantic-free reader (`stage_reader`) walks it,
generated from the models (`python -m lineagehub.api.generate` writes it to
`stage_config.schema.json`; `--check` finds it stale). How a schema is made compact:
`schema_compact`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lineagehub.api import stage_spec
from lineagehub.api.schema_compact import compact_schema

SCHEMA_PATH = Path("lineagehub") / "api" / "stage_config.schema.json"


def build_stage_schema() -> dict[str, Any]:
    return compact_schema(stage_spec.StageConfig, stage_spec)
