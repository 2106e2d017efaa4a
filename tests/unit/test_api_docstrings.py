"""Field descriptions come from attribute docstrings when a JSON schema is made, and only
then: importing the API or validating a stage config reads no source and builds no
model a stage does not use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import Field

from lineagehub.api import STAGE_CONFIG_ENV, StageName
from lineagehub.api.docstrings import field_docstrings
from lineagehub.api.pipelinerun import ApiModel, SourceSpec
from tests.unit.test_runner_stages import make_config

ROOT = Path(__file__).resolve().parents[2]


class Parent(ApiModel):
    plain: int = 0
    """The parent's text."""
    kept: int = 0
    """Inherited as it is."""


class Child(Parent):
    plain: int = 1
    """The child's own text."""
    explicit: int = Field(default=0, description="Given in the field.")
    """Not used: an explicit description wins."""
    undocumented: int = 0
    camel_case_name: str = ""
    """Keyed by its alias on the wire."""


def _props(schema: dict[str, Any], model: str) -> dict[str, Any]:
    node = schema if schema.get("title") == model else schema["$defs"][model]
    props: dict[str, Any] = node["properties"]
    return props


def test_each_field_is_described_by_the_docstring_under_it() -> None:
    props = _props(Child.model_json_schema(by_alias=True), "Child")
    assert props["plain"]["description"] == "The child's own text."
    assert props["kept"]["description"] == "Inherited as it is."
    assert props["explicit"]["description"] == "Given in the field."
    assert "description" not in props["undocumented"]
    assert props["camelCaseName"]["description"] == "Keyed by its alias on the wire."
    by_name = _props(Child.model_json_schema(by_alias=False), "Child")
    assert by_name["camel_case_name"]["description"] == "Keyed by its alias on the wire."


def test_nested_models_are_described_where_they_are_used() -> None:
    class Holder(ApiModel):
        source: SourceSpec
        """Where the data is."""

    schema = Holder.model_json_schema(by_alias=True)
    assert schema["properties"]["source"]["description"] == "Where the data is."
    uri = schema["$defs"]["SourceSpec"]["properties"]["uri"]["description"]
    assert uri.startswith("Where to read: `file://`")


def test_a_multi_line_docstring_is_dedented_as_pydantic_does() -> None:
    assert field_docstrings(SourceSpec)["uri"] == (
        "Where to read: `file://` (the run's workspace or a mounted volume), `http(s)://`,\n"
        "or `s3://bucket/key`."
    )


_PROBE = """
import json, os, sys
from lineagehub.api import StageConfig, stage_spec
from lineagehub.api.docstrings import module_docstrings
cfg = StageConfig.from_env()
imported = "lineagehub.api.pipelinerun" in sys.modules
from lineagehub.api import pipelinerun
built = sorted(
    name for module in (stage_spec, pipelinerun) for name, obj in vars(module).items()
    if isinstance(obj, type) and issubclass(obj, pipelinerun.BaseModel)
    and obj.__module__ == module.__name__ and obj.__pydantic_complete__
)
read_before = module_docstrings.cache_info().currsize
pipelinerun.PipelineRunStatus.model_json_schema()
print(json.dumps({"built": built, "read_before": read_before, "imported": imported,
                  "read_after": module_docstrings.cache_info().currsize}))
"""


def test_a_stage_config_builds_only_its_models_and_reads_no_source(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, StageName.EXTRACT)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", STAGE_CONFIG_ENV: cfg.to_env_value()},
        timeout=120,
    )
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "StageConfig" in found["built"]
    # The run's object, spec and status are never built by a stage.
    for unused in ("PipelineRun", "PipelineRunSpec", "PipelineRunStatus", "StageStatus"):
        assert unused not in found["built"], found["built"]
    assert found["imported"] is False  # the run-level models' module is not even imported
    assert found["read_before"] == 0
    assert found["read_after"] >= 1
