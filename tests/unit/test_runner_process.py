"""A stage as its container runs it, a whole process: it ends without the interpreter's
teardown, yet everything it writes arrives (stdout, stderr, the termination message)
and exit handlers still run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lineagehub.api import STAGE_CONFIG_ENV, StageConfig, StageName
from tests.unit.test_runner_stages import make_config, write_source

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = {
    "python -m pipeline_runner": ["-m", "pipeline_runner"],
    "lineage-hub stage": ["-m", "lineagehub.cli", "stage"],
}


def run_stage_process(
    tmp_path: Path,
    argv: list[str],
    *,
    source: bool = True,
    env: dict[str, str] | None = None,
    cfg: StageConfig | None = None,
) -> subprocess.CompletedProcess[str]:
    """The extract stage of `make_config` (or `cfg`) as a process (`env` added to its
    environment)."""
    if source:
        write_source(tmp_path)
    cfg = cfg or make_config(tmp_path, StageName.EXTRACT)
    full = {
        **os.environ,
        STAGE_CONFIG_ENV: cfg.to_env_value(),
        "LINEAGEHUB_TERMINATION_LOG": str(tmp_path / "termination"),
    }
    full.pop("KAFKA_BOOTSTRAP", None)
    full.pop("PYTHONUNBUFFERED", None)  # buffered streams, so a missing flush would show
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        env={**full, **(env or {})},
        cwd=ROOT,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_stage_process_delivers_all_it_writes(tmp_path: Path, entry: str) -> None:
    proc = run_stage_process(tmp_path, [*ENTRY_POINTS[entry], "extract", "--emit", "console"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # The console emitter's records, then the stage's own last line.
    assert any(" span 'stage extract' " in line for line in lines)
    assert any("lineagehub.stage.duration" in line for line in lines)
    assert lines[-1].startswith("lineage-hub stage extract: ok, 5 rows in, 5 rows out")
    assert json.loads((tmp_path / "termination").read_text())["recordsOut"] == 5


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_failed_stage_process_says_why_and_exits_1(tmp_path: Path, entry: str) -> None:
    proc = run_stage_process(
        tmp_path, [*ENTRY_POINTS[entry], "extract", "--emit", "none"], source=False
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("lineage-hub stage extract: InputNotFound: ")
    )
    assert json.loads((tmp_path / "termination").read_text())["errorKind"] == "InputNotFound"


def test_exit_handlers_still_run(tmp_path: Path) -> None:
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('exit handler ran'))\n"
        "from pipeline_runner.cli import stage_process\n"
        "stage_process(['extract', '--emit', 'none'])\n"
    )
    proc = run_stage_process(tmp_path, ["-c", script])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "exit handler ran"


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_bad_config_fails_the_process_at_once_naming_the_field(
    tmp_path: Path, entry: str
) -> None:
    """The work's modules are being imported in the background when the config is
    refused: the process still exits 2 with one line naming the field, and the
    termination message says the same."""
    cfg = json.loads(make_config(tmp_path, StageName.EXTRACT).to_env_value())
    cfg["sink"]["mode"] = "sideways"
    env = {
        **os.environ,
        STAGE_CONFIG_ENV: json.dumps(cfg),
        "LINEAGEHUB_TERMINATION_LOG": str(tmp_path / "termination"),
    }
    env.pop("KAFKA_BOOTSTRAP", None)
    proc = subprocess.run(
        [sys.executable, *ENTRY_POINTS[entry], "extract", "--emit", "none"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("lineage-hub stage extract: InternalError: invalid LINEAGEHUB_STAGE")
    assert "sink.mode: " in line
    message = json.loads((tmp_path / "termination").read_text())
    assert "sink.mode: " in message["error"] and proc.stdout == ""
