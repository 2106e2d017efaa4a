"""A stage process loads only what its stage needs: no HTTP client, Kubernetes client,
web framework, Kafka client it does not publish with, openlineage-python or OTLP
exporter. Asserted on `sys.modules` of a real stage process, not on time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lineagehub.api import STAGE_CONFIG_ENV, SourceSpec, StageName
from tests.unit.test_runner_stages import make_config, write_source

#: Top-level packages no stage may load, whatever its source.
NEVER = {
    "kopf",
    "kubernetes",
    "fastapi",
    "starlette",
    "uvicorn",
    "requests",
    "urllib3",
    "openlineage",
    "trio",
    "grpc",
    "yaml",
    "pandas",
    "lineagehub_operator",
    "consumers",
    "gateway",
    "stack",
}
#: Loaded only by the stages that use them.
ONLY_WHEN_NEEDED = {
    "httpx",  # an http(s) source
    "httpcore",
    "aiokafka",  # publishing to Kafka
    "chdb",  # a clickhouse sink
    "clickhouse_driver",
}
#: Module prefixes no stage loads before its work is done.
NOT_BEFORE_THE_WORK = ("opentelemetry.exporter",)

MODULES = "import json, sys; print(json.dumps(sorted(sys.modules)))"


def _python(code: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Run `code` in a fresh interpreter; its exit code and the modules it had loaded
    (the JSON list on its last line of output)."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parents[2],
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    return proc.returncode, json.loads(lines[-1])


def _tops(modules: list[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_the_stage_entry_point_imports_nothing_heavy() -> None:
    code, modules = _python(f"import pipeline_runner.cli\n{MODULES}")
    assert code == 0
    tops = _tops(modules)
    assert "pipeline_runner" in tops and "polars" in tops  # the dump is of this process
    assert not tops & (NEVER | ONLY_WHEN_NEEDED), sorted(tops & (NEVER | ONLY_WHEN_NEEDED))
    assert not [m for m in modules if m.startswith(NOT_BEFORE_THE_WORK)]


def test_a_file_stage_run_to_its_end_loads_no_network_client(tmp_path: Path) -> None:
    source = write_source(tmp_path)
    cfg = make_config(
        tmp_path,
        StageName.EXTRACT,
        source=SourceSpec(uri=f"file://{source}", format="csv"),
    )
    env = {
        STAGE_CONFIG_ENV: cfg.to_env_value(),
        "LINEAGEHUB_TERMINATION_LOG": str(tmp_path / "termination"),
    }
    script = (
        "import sys\n"
        "from pipeline_runner.cli import stage_main\n"
        "code = stage_main(['extract', '--emit', 'console'])\n"
        "print()\n"
        f"{MODULES}\n"
        "sys.exit(code)\n"
    )
    code, modules = _python(script, env)
    assert code == 0
    assert json.loads((tmp_path / "termination").read_text())["recordsOut"] == 5
    tops = _tops(modules)
    assert not tops & (NEVER | ONLY_WHEN_NEEDED), sorted(tops & (NEVER | ONLY_WHEN_NEEDED))


@pytest.mark.parametrize(
    ("module", "brings"),
    [("pipeline_runner.download", "httpx"), ("pipeline_runner.emit", "aiokafka")],
)
def test_what_a_stage_loads_on_demand_is_really_heavy(module: str, brings: str) -> None:
    """The control: the modules kept out of the entry point do bring those packages."""
    loader = (
        "from pipeline_runner.emit import KafkaEmitter; KafkaEmitter('localhost:1')"
        if brings == "aiokafka"
        else f"import {module}"
    )
    _, modules = _python(f"{loader}\n{MODULES}")
    assert brings in _tops(modules)
