"""The PipelineRun manifest's schema as the pydantic-free reader (`run_reader`) walks
it, generated from the models (`python -m lineagehub.api.generate` writes it to
`pipelinerun.schema.json`; `--check` finds it stale). How a schema is made compact:
`schema_compact`.

It is `PipelineRun`'s (apiVersion, kind, metadata and the whole spec) but for its
status, which the operator writes and a manifest to run does not carry: there it
must be null (or absent), so a manifest with a status is the models' to read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lineagehub.api import pipelinerun
from lineagehub.api.schema_compact import compact_schema

RUN_SCHEMA_PATH = Path("lineagehub") / "api" / "pipelinerun.schema.json"


def build_run_schema() -> dict[str, Any]:
    return compact_schema(
        pipelinerun.PipelineRun,
        pipelinerun,
        overrides={"status": {"type": "null", "default": None}},
    )
