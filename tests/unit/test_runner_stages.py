"""The stage runner, one stage at a time, through `stage_main` as a Job runs it: exit
code, one-line reason, termination message, OpenLineage events (printed with
`--emit console`) and nothing half-written."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from lineagehub.api import (
    STAGE_CONFIG_ENV,
    ParentRun,
    RunRef,
    SinkSpec,
    SourceSpec,
    StageConfig,
    StageName,
    TransformSpec,
    new_run_id,
)
from lineagehub.topics import LINEAGE_TOPIC
from pipeline_runner.cli import stage_main

ORDERS = """order_id,customer,amount,currency,status
1,acme,10.5,EUR,completed
2,globex,20.0,USD,cancelled
3,initech,,EUR,completed
3,initech,30.0,EUR,completed
4,wayne,99.9,GBP,completed
"""


@dataclass
class StageOutput:
    code: int
    stdout: str
    stderr: str
    termination: dict[str, Any]
    events: list[dict[str, Any]]

    @property
    def last(self) -> dict[str, Any]:
        return self.events[-1]


def make_config(
    tmp_path: Path,
    stage: StageName,
    *,
    source: SourceSpec | None = None,
    transform: TransformSpec | None = None,
    sink: SinkSpec | None = None,
    parent_run_id: str | None = None,
) -> StageConfig:
    parent = parent_run_id or new_run_id()
    return StageConfig(
        run_id=new_run_id(),
        stage=stage,
        pipeline_run=RunRef(namespace="test", name="orders"),
        source=source or SourceSpec(uri=f"file://{tmp_path / 'in' / 'orders.csv'}", format="csv"),
        transform=transform or TransformSpec(),
        sink=sink
        or SinkSpec(uri=f"file://{tmp_path / 'out' / 'orders.parquet'}", format="parquet"),
        workspace=str(tmp_path / "ws"),
        openlineage_namespace="tests",
        openlineage_job=f"orders.{stage.value}",
        parent=ParentRun(run_id=parent, namespace="tests", job="orders"),
        traceparent=f"00-{'ab' * 16}-{'cd' * 8}-01",
    )


RunStage = Callable[[StageConfig], StageOutput]


@pytest.fixture
def run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> RunStage:
    def go(cfg: StageConfig) -> StageOutput:
        term = tmp_path / f"termination-{cfg.stage.value}"
        monkeypatch.setenv(STAGE_CONFIG_ENV, cfg.to_env_value())
        monkeypatch.setenv("LINEAGEHUB_TERMINATION_LOG", str(term))
        monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
        monkeypatch.delenv("TRACEPARENT", raising=False)
        capsys.readouterr()
        code = stage_main([cfg.stage.value, "--emit", "console"])
        out = capsys.readouterr()
        events = [
            json.loads(line.split("] ", 1)[1])
            for line in out.out.splitlines()
            if line.startswith(f"[{LINEAGE_TOPIC} ")
        ]
        return StageOutput(code, out.out, out.err, json.loads(term.read_text()), events)

    return go


def write_source(tmp_path: Path, text: str = ORDERS, name: str = "orders.csv") -> Path:
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def leftovers(*dirs: Path) -> list[str]:
    """Temporary files a stage may have left behind."""
    return [p.name for d in dirs if d.exists() for p in d.iterdir() if p.name.startswith(".")]


def assert_failed(out: StageOutput, kind: str, *words: str) -> None:
    assert out.code != 0
    lines = [line for line in out.stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, out.stderr
    assert kind in lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert "fix:" in lines[0]
    assert out.termination["errorKind"] == kind
    assert out.termination["error"]
    assert [e["eventType"] for e in out.events] == ["START", "FAIL"]
    facet = out.last["run"]["facets"]["errorMessage"]
    assert facet["message"] == out.termination["error"]
    assert facet["programmingLanguage"] == "python"


# --------------------------------------------------------------------------- happy path


def test_three_stages_in_a_row(tmp_path: Path, run: RunStage) -> None:
    write_source(tmp_path)
    transform = TransformSpec.model_validate(
        {
            "rename": {"customer": "client"},
            "cast": {"amount": "float64"},
            "derived": [{"name": "gross", "expr": "amount * 2"}],
            "filter": "status <> 'cancelled'",
            "dropNulls": ["amount"],
            "deduplicate": {"columns": ["order_id"]},
            "quality": [
                {"type": "unique", "column": "order_id"},
                {"type": "range", "column": "amount", "max": 50, "severity": "warn"},
            ],
        }
    )
    parent = new_run_id()
    outs = {}
    for stage in StageName:
        cfg = make_config(tmp_path, stage, transform=transform, parent_run_id=parent)
        outs[stage] = out = run(cfg)
        assert out.code == 0, out.stderr
        assert [e["eventType"] for e in out.events] == ["START", "COMPLETE"]
        for e in out.events:
            assert e["run"]["runId"] == cfg.run_id
            parent_facet = e["run"]["facets"]["parent"]
            assert parent_facet["run"]["runId"] == parent
            assert parent_facet["root"]["run"]["runId"] == parent
            root_job = parent_facet["root"]["job"]
            assert (root_job["namespace"], root_job["name"]) == ("tests", "orders")
            assert e["job"]["facets"]["jobType"]["jobType"] == "STAGE"
            assert e["job"]["facets"]["jobType"]["integration"] == "LINEAGE_HUB"

    ext = outs[StageName.EXTRACT]
    assert ext.termination["recordsIn"] == ext.termination["recordsOut"] == 5
    assert ext.last["inputs"][0]["namespace"] == "file"
    assert ext.last["inputs"][0]["name"] == str(tmp_path / "in" / "orders.csv")
    # The intermediate is named by the pipeline (every run's workspace has the same path).
    out = ext.last["outputs"][0]
    assert (out["namespace"], out["name"]) == ("lineage-hub-workspace", "tests/orders/extract")
    tr_in = outs[StageName.TRANSFORM].last["inputs"][0]
    assert (tr_in["namespace"], tr_in["name"]) == (out["namespace"], out["name"])
    # Each stage event carries the run's trace (make_config's traceparent).
    assert ext.last["run"]["facets"]["lineagehub_trace"]["traceId"] == "ab" * 16

    tr = outs[StageName.TRANSFORM]
    assert tr.termination["recordsIn"] == 5
    assert tr.termination["recordsOut"] == 3  # cancelled, null amount, duplicate id gone
    names = [f["name"] for f in tr.termination["outputSchema"]]
    assert names == ["order_id", "client", "amount", "currency", "status", "gross"]
    warn = next(q for q in tr.termination["quality"] if q["name"] == "range_amount")
    assert warn["success"] is False and warn["failedRows"] == 1 and warn["sample"] == ["99.9"]
    (inp,) = tr.last["inputs"]
    metrics = inp["inputFacets"]["dataQualityMetrics"]
    assert metrics["rowCount"] == 5
    assert metrics["columnMetrics"]["amount"]["nullCount"] == 1
    assertions = inp["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert {a["name"]: a["success"] for a in assertions} == {
        "unique_order_id": True,
        "range_amount": False,
    }
    (outp,) = tr.last["outputs"]
    lineage = outp["facets"]["columnLineage"]["fields"]
    assert lineage["client"]["inputFields"][0]["field"] == "customer"
    assert lineage["gross"]["inputFields"][0]["field"] == "amount"
    assert outp["outputFacets"]["outputStatistics"]["rowCount"] == 3
    assert [f["name"] for f in outp["facets"]["schema"]["fields"]][:2] == ["order_id", "client"]

    ld = outs[StageName.LOAD]
    assert ld.termination["recordsOut"] == 3
    sink = tmp_path / "out" / "orders.parquet"
    assert pl.read_parquet(sink).height == 3
    assert ld.last["outputs"][0]["name"] == str(sink)
    assert ld.last["outputs"][0]["outputFacets"]["outputStatistics"]["size"] == sink.stat().st_size


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson", "parquet"])
def test_extract_reads_every_format(tmp_path: Path, run: RunStage, fmt: str) -> None:
    frame = pl.DataFrame({"id": [1, 2, 3], "name": ["a", "b", None]})
    path = tmp_path / "in" / f"data.{fmt}"
    path.parent.mkdir(parents=True)
    writers: dict[str, Callable[[Path], object]] = {
        "csv": frame.write_csv,
        "json": frame.write_json,
        "ndjson": frame.write_ndjson,
        "parquet": frame.write_parquet,
    }
    writers[fmt](path)
    cfg = make_config(
        tmp_path, StageName.EXTRACT, source=SourceSpec(uri=f"file://{path}", format=fmt)
    )
    out = run(cfg)
    assert out.code == 0, out.stderr
    written = pl.read_parquet(tmp_path / "ws" / "extract.parquet")
    assert written.equals(frame)
    assert out.termination["outputSchema"] == [
        {"name": "id", "type": "Int64"},
        {"name": "name", "type": "String"},
    ]


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path: Path, run: RunStage) -> None:
    out = run(make_config(tmp_path, StageName.EXTRACT))
    assert_failed(out, "InputNotFound", str(tmp_path / "in" / "orders.csv"))
    assert leftovers(tmp_path / "ws") == []
    assert not (tmp_path / "ws" / "extract.parquet").exists()


def test_truncated_parquet(tmp_path: Path, run: RunStage) -> None:
    path = tmp_path / "in" / "orders.parquet"
    path.parent.mkdir(parents=True)
    pl.DataFrame({"x": list(range(1000))}).write_parquet(path)
    path.write_bytes(path.read_bytes()[:300])
    cfg = make_config(
        tmp_path, StageName.EXTRACT, source=SourceSpec(uri=f"file://{path}", format="parquet")
    )
    out = run(cfg)
    assert_failed(out, "InputInvalid", str(path), "parquet")
    assert leftovers(tmp_path / "ws") == []


def test_ragged_csv(tmp_path: Path, run: RunStage) -> None:
    write_source(tmp_path, "a,b\n1,2\n3,4,5\n")
    out = run(make_config(tmp_path, StageName.EXTRACT))
    assert_failed(out, "InputInvalid", "orders.csv", "more fields")
    assert not (tmp_path / "ws" / "extract.parquet").exists()
    assert leftovers(tmp_path / "ws") == []


@pytest.mark.parametrize("text", ["", "order_id,customer\n"], ids=["zero-bytes", "header-only"])
def test_empty_source(tmp_path: Path, run: RunStage, text: str) -> None:
    write_source(tmp_path, text)
    out = run(make_config(tmp_path, StageName.EXTRACT))
    assert_failed(out, "InputInvalid", "orders.csv", "empty" if not text else "no data rows")
    assert not (tmp_path / "ws" / "extract.parquet").exists()
    assert leftovers(tmp_path / "ws") == []


def test_source_over_size_limit(
    tmp_path: Path, run: RunStage, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_source(tmp_path)
    monkeypatch.setenv("LINEAGEHUB_MAX_SOURCE_BYTES", "64")
    out = run(make_config(tmp_path, StageName.EXTRACT))
    assert_failed(out, "SizeLimitExceeded", "orders.csv", "LINEAGEHUB_MAX_SOURCE_BYTES")
    assert not (tmp_path / "ws" / "extract.parquet").exists()


def _extracted(tmp_path: Path, run: RunStage, text: str = ORDERS) -> None:
    write_source(tmp_path, text)
    assert run(make_config(tmp_path, StageName.EXTRACT)).code == 0


def test_wrong_type_in_cast(tmp_path: Path, run: RunStage) -> None:
    _extracted(tmp_path, run, "id,amount\n1,2.5\n2,abc\n")
    spec = TransformSpec.model_validate({"cast": {"amount": "float64"}})
    out = run(make_config(tmp_path, StageName.TRANSFORM, transform=spec))
    assert_failed(out, "TransformError", "orders.csv", "amount")
    assert not (tmp_path / "ws" / "transform.parquet").exists()
    assert leftovers(tmp_path / "ws") == []


def test_unknown_column_in_expression(tmp_path: Path, run: RunStage) -> None:
    _extracted(tmp_path, run)
    spec = TransformSpec.model_validate({"derived": [{"name": "x", "expr": "price * 2"}]})
    out = run(make_config(tmp_path, StageName.TRANSFORM, transform=spec))
    assert_failed(out, "TransformError", "orders.csv", "price", "transform.derived[0].expr")
    assert not (tmp_path / "ws" / "transform.parquet").exists()


def test_quality_check_fails(tmp_path: Path, run: RunStage) -> None:
    _extracted(tmp_path, run)
    spec = TransformSpec.model_validate(
        {
            "quality": [
                {"name": "small", "type": "range", "column": "amount", "max": 50},
                {"type": "not_null", "column": "amount", "severity": "warn"},
            ]
        }
    )
    out = run(make_config(tmp_path, StageName.TRANSFORM, transform=spec))
    assert_failed(out, "QualityCheckFailed", "orders.csv", "small")
    quality = {q["name"]: q for q in out.termination["quality"]}
    assert quality["small"]["failedRows"] == 1
    assert quality["small"]["sample"] == ["99.9"]
    assert quality["not_null_amount"]["severity"] == "warn"
    assert quality["not_null_amount"]["failedRows"] == 1
    assertions = out.last["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert {a["name"]: a["success"] for a in assertions} == {
        "small": False,
        "not_null_amount": False,
    }
    assert not (tmp_path / "ws" / "transform.parquet").exists()
    assert leftovers(tmp_path / "ws") == []
    # The load stage has nothing to load: the sink is never touched.
    load = run(make_config(tmp_path, StageName.LOAD))
    assert load.code != 0
    assert load.termination["errorKind"] == "InputNotFound"
    assert not (tmp_path / "out").exists()


def test_transform_without_extract(tmp_path: Path, run: RunStage) -> None:
    out = run(make_config(tmp_path, StageName.TRANSFORM))
    assert_failed(out, "InputNotFound", "extract.parquet", "run the extract stage first")


def test_bad_stage_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    term = tmp_path / "termination"
    monkeypatch.setenv(STAGE_CONFIG_ENV, '{"stage": "extract"}')
    monkeypatch.setenv("LINEAGEHUB_TERMINATION_LOG", str(term))
    assert stage_main(["extract", "--emit", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LINEAGEHUB_STAGE_CONFIG" in err[0]
    assert json.loads(term.read_text())["errorKind"] == "InternalError"


def test_config_for_another_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = make_config(tmp_path, StageName.LOAD)
    monkeypatch.setenv(STAGE_CONFIG_ENV, cfg.to_env_value())
    monkeypatch.setenv("LINEAGEHUB_TERMINATION_LOG", str(tmp_path / "t"))
    assert stage_main(["extract", "--emit", "none"]) == 2
    assert "not extract" in capsys.readouterr().err


def test_no_kafka_warns_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_source(tmp_path)
    cfg = make_config(tmp_path, StageName.EXTRACT)
    monkeypatch.setenv(STAGE_CONFIG_ENV, cfg.to_env_value())
    monkeypatch.setenv("LINEAGEHUB_TERMINATION_LOG", str(tmp_path / "t"))
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    assert stage_main(["extract"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["warning: KAFKA_BOOTSTRAP is not set: lineage and telemetry are not published"]
    assert json.loads((tmp_path / "t").read_text())["recordsOut"] == 5


def test_csv_value_that_does_not_fit_the_inferred_type(tmp_path: Path, run: RunStage) -> None:
    rows = "".join(f"{i},x\n" for i in range(12_000))
    write_source(tmp_path, "id,name\n" + rows + "abc,y\n")
    out = run(make_config(tmp_path, StageName.EXTRACT))
    assert_failed(out, "InputInvalid", "orders.csv", "abc", "inferred")
    assert not (tmp_path / "ws" / "extract.parquet").exists()
    assert leftovers(tmp_path / "ws") == []
