"""`lineage-hub run` reads its manifest without pydantic (`run_reader`) and gives each
stage the config a stage Job would get (read by `stage_reader`): a run with a good
manifest imports no pydantic before its first stage, and prints what it always did. A
manifest that reader refuses is the models' to judge: their one-line error naming the
field, or, for what they alone accept (a number given as text), their reading."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from lineagehub.api import ParentRun, PipelineRun, RunRef, StageConfig, StageName
from pipeline_runner import cli
from pipeline_runner.emit import MemoryEmitter
from pipeline_runner.errors import one_line
from tests.unit.test_api_stage_reader import same

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE = EXAMPLES / "pipelinerun.yaml"
#: The example's summary rows (durations as `Ns`, the workspace as `WS`).
EXAMPLE_ROWS = [
    ["extract", "ok", "51", "51", "0", "Ns", "file://WS/extract.parquet"],
    ["transform", "ok", "51", "37", "14", "Ns", "file://WS/transform.parquet"],
    ["load", "ok", "37", "37", "0", "Ns", "file://WS/output/orders-daily.parquet"],
]
PARENT = "01a22e7b-2035-7a23-8a00-fa4ae216e7ab"
TRACEPARENT = f"00-{'ab' * 16}-{'cd' * 8}-01"
_IMPORT = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$")


def _example(tmp_path: Path, name: str, change: Any = None) -> Path:
    """The example manifest, changed by `change(doc)`, written as `name`."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    if change is not None:
        change(doc)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def _run_process(manifest: Path, ws: Path) -> tuple[int, list[str]]:
    """`lineage-hub run MANIFEST --emit none` as its own process, with every import it
    makes written in order among its output lines (`-X importtime`)."""
    script = Path(sys.executable).with_name("lineage-hub")
    mounts = [
        "--mount",
        f"/data/examples={EXAMPLES / 'data'}",
        "--mount",
        f"/data/output={ws}/output",
    ]
    proc = subprocess.run(
        [str(script), "run", str(manifest), "--emit", "none", "--workspace", str(ws), *mounts],
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
        cwd=ROOT,
    )
    return proc.returncode, proc.stdout.splitlines()


def _before_the_first_stage(lines: list[str]) -> set[str]:
    """The top-level packages imported before the first stage started."""
    first = next(i for i, line in enumerate(lines) if line.startswith("[1/3] extract ..."))
    found = (_IMPORT.match(line) for line in lines[:first])
    return {m.group(1).split(".")[0] for m in found if m}


def _summary(lines: list[str], ws: Path) -> list[list[str]]:
    """The summary table's rows, durations and the workspace made alike."""
    header = next(i for i, line in enumerate(lines) if line.startswith("stage "))
    rows = []
    for line in lines[header + 2 : header + 5]:
        text = re.sub(r"\b\d+\.\d+s\b", "Ns", line.replace(str(ws), "WS"))
        rows.append(re.split(r"\s{2,}", text.strip()))
    return rows


def test_a_run_imports_no_pydantic_before_its_first_stage(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    code, lines = _run_process(EXAMPLE, ws)
    assert code == 0, "\n".join(line for line in lines if not _IMPORT.match(line))
    before = _before_the_first_stage(lines)
    assert "pipeline_runner" in before and "yaml" in before  # the record is this run's
    assert not before & {"pydantic", "pydantic_core"}, "pydantic before the first stage"
    assert any(line.startswith("PipelineRun orders-daily: run ") for line in lines)
    assert _summary(lines, ws) == EXAMPLE_ROWS


def test_a_manifest_only_the_models_read_runs_with_pydantic_and_prints_the_same(
    tmp_path: Path,
) -> None:
    """The control: a number given as text is the models' to read, so that run does
    import pydantic before its first stage, and does what the manifest says."""

    def as_text(doc: dict[str, Any]) -> None:
        doc["spec"]["ttlSecondsAfterFinished"] = "86400"

    ws = tmp_path / "ws"
    code, lines = _run_process(_example(tmp_path, "run.yaml", as_text), ws)
    assert code == 0
    assert "pydantic" in _before_the_first_stage(lines)
    assert _summary(lines, ws) == EXAMPLE_ROWS


def _mounts(tmp_path: Path) -> list[str]:
    return [f"/data/examples={EXAMPLES / 'data'}", f"/data/output={tmp_path / 'output'}"]


@pytest.fixture
def model_reads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The documents `PipelineRun.model_validate` is asked to read from now on."""
    asked: list[Any] = []
    original = PipelineRun.model_validate

    def spy(obj: Any, **kwargs: Any) -> PipelineRun:
        asked.append(obj)
        return original(obj, **kwargs)

    monkeypatch.setattr(PipelineRun, "model_validate", spy)
    return asked


@pytest.mark.parametrize("maximum", [100, "100"])
def test_a_value_only_the_models_convert_runs_as_they_read_it(
    tmp_path: Path, model_reads: list[Any], maximum: Any
) -> None:
    """The quality example's maximum given as text (the models read 100.0): the run is
    the same, failing its check, and only then are the models asked."""
    doc = yaml.safe_load((EXAMPLES / "pipelinerun-quality-fail.yaml").read_text())
    doc["spec"]["transform"]["quality"][0]["max"] = maximum
    manifest = tmp_path / "run.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    out, err = io.StringIO(), io.StringIO()
    code = cli.run_manifest(
        str(manifest),
        workspace=str(tmp_path / "ws"),
        mounts=_mounts(tmp_path),
        stdout=out,
        stderr=err,
        emitter=MemoryEmitter(),
    )
    assert code == 1
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and "QualityCheckFailed" in lines[0] and "amount_below_100" in lines[0]
    assert len(model_reads) == (1 if isinstance(maximum, str) else 0)


def _sharded(doc: dict[str, Any]) -> None:
    doc["spec"]["stages"]["transform"] = {"parallelism": 2}


BAD: list[tuple[str, Any, str]] = [
    ("mode", lambda d: d["spec"]["sink"].update(mode="sideways"), "spec.sink.mode"),
    ("no-sink", lambda d: d["spec"].pop("sink"), "spec.sink"),
    ("same-uri", lambda d: d["spec"]["sink"].update(uri=d["spec"]["source"]["uri"]), "sink.uri"),
    ("pods", lambda d: d["spec"].update(parallelism=0), "spec.parallelism"),
    ("load", lambda d: d["spec"]["stages"].update(load={"parallelism": 2}), "stages.load"),
    ("sharded", _sharded, "spec.stages.transform.parallelism"),
    ("unknown", lambda d: d["spec"].update(colour="red"), "spec.colour"),
    ("version", lambda d: d.update(apiVersion="v1"), "apiVersion"),
    ("ref", lambda d: d["spec"].update(pipelineRef={"name": "p"}), "spec.pipelineRef"),
]


@pytest.mark.parametrize(("change", "field"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_manifest_fails_with_the_models_one_line_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Any, field: str
) -> None:
    path = _example(tmp_path, "run.yaml", change)
    with pytest.raises(ValidationError) as caught:
        PipelineRun.model_validate(yaml.safe_load(path.read_text()))
    mounts = [arg for mount in _mounts(tmp_path) for arg in ("--mount", mount)]
    assert cli.main([str(path), "--emit", "none", *mounts]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"lineage-hub run: {one_line(str(caught.value), 2000)}"]
    assert field in err[0]


@pytest.mark.parametrize("name", ["pipelinerun.yaml", "pipelinerun-quality-fail.yaml"])
def test_each_stage_gets_the_config_it_always_got(
    name: str, tmp_path: Path, model_reads: list[Any]
) -> None:
    """Read without pydantic, the manifest gives each stage the config the models gave
    (`StageConfig` built from `PipelineRun`, the local URIs put in unchecked), and the
    same as when the models read the manifest."""
    path = EXAMPLES / name
    fast = cli.load_manifest(str(path))
    assert model_reads == []  # read without the models
    run = PipelineRun.model_validate(yaml.safe_load(path.read_text()))
    # A local path may hold what a manifest's URI may not (a space): it is not checked.
    source_uri, sink_uri = "file:///my data/in.csv", "file:///out/x.parquet"

    def config(manifest: cli.RunManifest, stage: StageName) -> StageConfig:
        return cli.stage_config(
            manifest,
            stage,
            name="orders",
            workspace=str(tmp_path),
            namespace="tests",
            job="orders",
            run_id=PARENT,
            traceparent=TRACEPARENT,
            source_uri=source_uri,
            sink_uri=sink_uri,
        )

    for stage in StageName:
        ours, by_models = config(fast, stage), config(cli.RunManifest.of_model(run), stage)
        assert ours.run_id != by_models.run_id  # a new stage run each time
        before = StageConfig(  # what the runner was given before
            run_id=ours.run_id,
            stage=stage,
            pipeline_run=RunRef(namespace="local", name="orders"),
            source=run.spec.source.model_copy(update={"uri": source_uri}),
            transform=run.spec.transform,
            sink=run.spec.sink.model_copy(update={"uri": sink_uri}),
            workspace=str(tmp_path),
            openlineage_namespace="tests",
            openlineage_job=f"orders.{stage.value}",
            parent=ParentRun(run_id=PARENT, namespace="tests", job="orders"),
            traceparent=TRACEPARENT,
        )
        assert same(ours, before)
        assert same(by_models, before.model_copy(update={"run_id": by_models.run_id}))
