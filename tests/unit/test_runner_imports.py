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
    "aiokafka",  # the services' Kafka client; a stage publishes through librdkafka
}
#: Loaded only by the stages that use them.
ONLY_WHEN_NEEDED = {
    "httpx",  # an http(s) source
    "httpcore",
    "confluent_kafka",  # publishing to Kafka
    "chdb",  # a clickhouse sink
    "clickhouse_driver",
}
#: Module prefixes no stage loads before its work is done (the spans are recorded
#: without the OpenTelemetry SDK; the protobuf encoders come after the work).
NOT_BEFORE_THE_WORK = (
    "opentelemetry.exporter",
    "opentelemetry.sdk",
    "opentelemetry.proto",
    "google.protobuf",
)

MODULES = "import json, sys; print(json.dumps(sorted(sys.modules)))"


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter from the project's root (`env` added)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parents[2],
    )


def _python(code: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Run `code` in a fresh interpreter; its exit code and the modules it had loaded
    (the JSON list on its last line of output)."""
    proc = run_python(code, env)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    return proc.returncode, json.loads(lines[-1])


def _tops(modules: list[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_the_stage_entry_point_imports_nothing_heavy() -> None:
    code, modules = _python(f"import pipeline_runner.cli\n{MODULES}")
    assert code == 0
    tops = _tops(modules)
    assert "pipeline_runner" in tops  # the dump is of this process
    # the config is read without pydantic (`lineagehub.api.stage_reader`)
    assert "pydantic" not in tops and "pydantic_core" not in tops
    assert "polars" not in tops  # the work is imported once the config is known good
    assert not tops & (NEVER | ONLY_WHEN_NEEDED), sorted(tops & (NEVER | ONLY_WHEN_NEEDED))
    assert not [m for m in modules if m.startswith(NOT_BEFORE_THE_WORK)]
    assert "lineagehub.api.pipelinerun" not in modules  # the run-level models: not a stage's


def test_the_work_of_a_stage_loads_no_pydantic() -> None:
    """The stage's work keys and compares by the API's enums (`lineagehub.api.enums`)
    and takes the config's models only as types: of the API, only its config's
    validation (in `pipeline_runner.cli`) needs pydantic."""
    code, modules = _python(
        "import pipeline_runner.runner, pipeline_runner.download, lineagehub.api.shards\n"
        "from lineagehub.api import STAGES, StageName\n"
        f"{MODULES}"
    )
    assert code == 0
    assert "pipeline_runner.stages" in modules  # the dump is of the work's modules
    assert "pydantic" not in _tops(modules) and "pydantic_core" not in _tops(modules)
    assert not [m for m in modules if m.startswith("lineagehub.api.") and "spec" in m]


def test_the_api_package_gives_its_models_on_demand() -> None:
    """`from lineagehub.api import StageConfig` still works (the models are made when
    first asked for), and the enums are the same objects either way."""
    from lineagehub import api
    from lineagehub.api import enums, stage_spec

    assert api.StageConfig is stage_spec.StageConfig
    assert api.StageName is enums.StageName
    assert stage_spec.StageConfig.model_fields["stage"].annotation is enums.StageName
    with pytest.raises(AttributeError):
        _ = api.NoSuchModel


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
    # spans and metrics were written (the console shows them) without the SDK
    assert "opentelemetry.proto.collector.trace.v1.trace_service_pb2" in modules
    # (but for the SDK's one-line version module: the resource's telemetry.sdk.version)
    sdk = [m for m in modules if m.startswith("opentelemetry.sdk")]
    assert set(sdk) <= {"opentelemetry.sdk", "opentelemetry.sdk.version"}, sdk
    assert "lineagehub.api.pipelinerun" not in modules


#: Makes the Kafka emitter (its producer, for a closed loopback port) and closes it.
_KAFKA_START = (
    "import asyncio\n"
    "from pipeline_runner.emit import KafkaEmitter\n"
    "asyncio.run(KafkaEmitter('127.0.0.1:1').close())\n"
)


@pytest.mark.parametrize(
    ("loader", "brings"),
    [
        ("import pipeline_runner.download", "httpx"),
        (_KAFKA_START, "confluent_kafka"),
        # the console emitter decodes the spans it prints
        ("from pipeline_runner.emit import describe_spans\ndescribe_spans(b'')", "google.protobuf"),
    ],
)
def test_what_a_stage_loads_on_demand_is_really_heavy(loader: str, brings: str) -> None:
    """The control: what is kept out of the entry point does bring those packages."""
    _, modules = _python(f"{loader}\n{MODULES}")
    assert brings in _tops(modules) | set(modules)


def test_a_stage_encodes_its_spans_and_metrics_without_protobuf() -> None:
    """The OTLP messages are written straight in the wire format: neither protobuf nor
    the OTLP message classes are loaded (the console emitter, which decodes them to
    print them, and the otlp-direct export aside)."""
    code, modules = _python(
        "from pipeline_runner.telemetry import StageTelemetry\n"
        "from pipeline_runner.settings import Settings\n"
        "tel = StageTelemetry(Settings(), traceparent=None)\n"
        "with tel.stage_span('stage extract', {}):\n"
        "    pass\n"
        "tel.record(rows_out=1, rejected=0, quality_failed=0, duration=0.1,"
        " bytes_read=None, bytes_written=None, ok=True)\n"
        "batch = tel.finish()\n"
        "assert batch.spans and batch.metrics\n"
        f"{MODULES}"
    )
    assert code == 0
    assert not [m for m in modules if m.startswith(("google.protobuf", "opentelemetry.proto"))]


def test_the_runner_version_is_the_release_version() -> None:
    import tomllib
    from importlib.metadata import version

    import pipeline_runner

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert pipeline_runner.__version__ == pyproject["project"]["version"]
    assert pipeline_runner.__version__ == version("lineage-hub")
