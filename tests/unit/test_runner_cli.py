"""`lineage-hub run`: a whole PipelineRun manifest in one process."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from lineagehub.topics import LINEAGE_TOPIC
from pipeline_runner.cli import main, map_uri, parse_mounts, run_manifest
from pipeline_runner.emit import MemoryEmitter

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _mounts(tmp_path: Path) -> list[str]:
    return [f"/data/examples={EXAMPLES / 'data'}", f"/data/output={tmp_path / 'output'}"]


def test_run_example_with_console_events(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = run_manifest(
        str(EXAMPLES / "pipelinerun.yaml"),
        workspace=str(tmp_path / "ws"),
        emit="console",
        mounts=_mounts(tmp_path),
        stdout=out,
        stderr=err,
    )
    text = out.getvalue()
    assert code == 0, err.getvalue()
    events = [
        json.loads(line.split("] ", 1)[1])
        for line in text.splitlines()
        if line.startswith(f"[{LINEAGE_TOPIC} ")
    ]
    jobs = [(e["job"]["name"], e["eventType"]) for e in events]
    assert jobs == [
        ("orders-daily", "START"),
        ("orders-daily.extract", "START"),
        ("orders-daily.extract", "COMPLETE"),
        ("orders-daily.transform", "START"),
        ("orders-daily.transform", "COMPLETE"),
        ("orders-daily.load", "START"),
        ("orders-daily.load", "COMPLETE"),
        ("orders-daily", "COMPLETE"),
    ]
    run_id = events[0]["run"]["runId"]
    assert all(
        e["run"]["facets"]["parent"]["run"]["runId"] == run_id
        for e in events
        if e["job"]["name"] != "orders-daily"
    )
    assert (tmp_path / "output" / "orders-daily.parquet").is_file()
    assert f"run id:   {run_id}" in text
    assert "trace id: " in text
    for stage in ("extract", "transform", "load"):
        assert f"{stage} ok:" in text
    assert "span 'PipelineRun orders-daily'" in text


def test_run_quality_fail_example(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    emitter = MemoryEmitter()
    code = run_manifest(
        str(EXAMPLES / "pipelinerun-quality-fail.yaml"),
        workspace=str(tmp_path / "ws"),
        mounts=_mounts(tmp_path),
        stdout=out,
        stderr=err,
        emitter=emitter,
    )
    assert code == 1
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and "QualityCheckFailed" in lines[0] and "amount_below_100" in lines[0]
    assert [(e["job"]["name"], e["eventType"]) for e in emitter.lineage()][-2:] == [
        ("orders-quality-fail.transform", "FAIL"),
        ("orders-quality-fail", "FAIL"),
    ]
    assert not (tmp_path / "output").exists()
    assert "QualityCheckFailed" in out.getvalue()


def test_bad_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("apiVersion: lineagehub.io/v1alpha1\nkind: PipelineRun\nspec: {}\n")
    assert main([str(path), "--emit", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "source" in err[0]


def test_mounts() -> None:
    mounts = parse_mounts(["/data=/tmp/d", "/data/output=/tmp/o"])
    assert map_uri("file:///data/output/x.parquet", mounts) == "file:///tmp/o/x.parquet"
    assert map_uri("file:///data/in.csv", mounts) == "file:///tmp/d/in.csv"
    assert map_uri("file:///other/in.csv", mounts) == "file:///other/in.csv"
    assert map_uri("https://h/data/in.csv", mounts) == "https://h/data/in.csv"
    with pytest.raises(ValueError, match="--mount"):
        parse_mounts(["data=/tmp"])


def test_runner_imports_stay_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pkgutil, importlib, pipeline_runner\n"
        "for m in pkgutil.iter_modules(pipeline_runner.__path__):\n"
        "    if m.name != '__main__':  # runs a stage\n"
        "        importlib.import_module('pipeline_runner.' + m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
        "{'kopf', 'kubernetes', 'lineagehub_operator', 'consumers', 'stack', 'gateway'})\n"
        "print(bad)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert proc.stdout.strip() == "[]"
