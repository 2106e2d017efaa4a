"""Sharded stages without a cluster: which shard takes what (every row, file and line
in exactly one shard, for any shard count), the stages run shard by shard as the pods
of an Indexed Job run them, the commit (one COMPLETE with the shards summed, nothing
loaded after a failed shard), and the spec's rules for parallelism."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lineagehub.api import (
    STAGE_CONFIG_ENV,
    ParentRun,
    PipelineRunSpec,
    RunRef,
    SinkSpec,
    SourceSpec,
    StageConfig,
    StageName,
    TransformSpec,
    new_run_id,
)
from lineagehub.api.pipelinerun import PipelineRunRequest
from lineagehub.api.shards import (
    COMPLETION_INDEX_ENV,
    byte_range,
    part_path,
    shard_range,
    shard_traceparent,
    stage_span_id,
)
from lineagehub.topics import LINEAGE_TOPIC, SPANS_TOPIC
from pipeline_runner.cli import stage_main
from pipeline_runner.shard_source import Shard, line_span, read_lines

# --------------------------------------------------------------------------- assignment


@given(units=st.integers(0, 500), shards=st.integers(1, 70))
def test_every_unit_is_in_exactly_one_shard_in_order(units: int, shards: int) -> None:
    taken = [u for i in range(shards) for u in shard_range(units, shards, i)]
    assert taken == list(range(units))  # each once, contiguous, in index order
    sizes = [len(shard_range(units, shards, i)) for i in range(shards)]
    assert max(sizes) - min(sizes) <= 1


def test_shard_range_refuses_impossible_shards() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        shard_range(3, 0, 0)
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        shard_range(3, 3, 3)


lines_text = st.lists(
    st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"x")), min_size=0, max_size=40
).map(b"\n".join)


@settings(max_examples=300)
@given(data=lines_text, trailing=st.booleans(), body=st.integers(0, 30), shards=st.integers(1, 9))
def test_every_line_goes_to_exactly_one_byte_range(
    data: bytes, trailing: bool, body: int, shards: int
) -> None:
    """Lines start at `body` (after a header) or after a newline; the shards' byte
    ranges, snapped to line starts, cover the body exactly once, whole lines only."""
    text = data + (b"\n" if trailing else b"")
    start = min(body, len(text))
    start = line_span(text, start, start)[0]  # the body starts at a line start
    pieces = []
    for i in range(shards):
        a, b = line_span(text, *byte_range(start, len(text), shards, i))
        a, b = max(a, start), max(b, start)
        pieces.append(text[a:b])
    assert b"".join(pieces) == text[start:]
    whole = [piece for piece in pieces if piece]
    assert all(piece.endswith(b"\n") for piece in whole[:-1])  # no line is cut


@settings(max_examples=200)
@given(data=lines_text, trailing=st.booleans(), header=st.booleans(), shards=st.integers(1, 9))
def test_reading_a_shard_from_the_file_gives_its_byte_range_lines(
    data: bytes, trailing: bool, header: bool, shards: int
) -> None:
    """What a shard reads from disk (seeking, not the whole file) is `line_span` of the
    whole text, and the shards together read every line after the header once."""
    text = data + (b"\n" if trailing else b"")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_bytes(text)
        pieces = [read_lines(str(path), Shard(i, shards), header) for i in range(shards)]
    body = line_span(text, 1, 1)[0] if header else 0
    for i, piece in enumerate(pieces):
        a, b = line_span(text, *byte_range(body, len(text), shards, i))
        assert piece == text[max(a, body) : max(b, body)]
    assert b"".join(pieces) == text[body:]


def test_parts_and_span_ids() -> None:
    assert part_path("/ws", "extract", 0, 1) == "/ws/extract.parquet"
    assert part_path("/ws", "extract", 2, 3) == "/ws/extract.parts/part-00002-of-00003.parquet"
    trace = "ab" * 16
    span = stage_span_id(trace, "run-1")
    assert len(span) == 16 and span != stage_span_id(trace, "run-2")
    assert shard_traceparent(f"00-{trace}-{'cd' * 8}-01", "run-1") == f"00-{trace}-{span}-01"


# --------------------------------------------------------------------------- spec rules

BASE: dict[str, Any] = {
    "source": {"uri": "file:///data/in.csv", "format": "csv"},
    "sink": {"uri": "file:///data/out.parquet", "format": "parquet"},
}


@pytest.mark.parametrize("model", [PipelineRunSpec, PipelineRunRequest])
@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"parallelism": 0}, ["parallelism must be at least 1", "set 1 for one pod"]),
        ({"stages": {"extract": {"parallelism": -2}}}, ["at least 1, not -2"]),
        ({"stages": {"load": {"parallelism": 2}}}, ["load is not sharded", "remove stages.load"]),
        (
            {"parallelism": 2, "transform": {"deduplicate": {}}},
            ["deduplicate and unique", "stages.transform.parallelism to 1"],
        ),
        (
            {
                "stages": {"transform": {"parallelism": 4}},
                "transform": {"quality": [{"type": "unique", "column": "id"}]},
            },
            ["deduplicate and unique"],
        ),
    ],
)
def test_bad_parallelism_is_refused_naming_field_and_fix(
    model: type[PipelineRunSpec | PipelineRunRequest], extra: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(ValidationError) as err:
        model.model_validate({**BASE, **extra})
    text = str(err.value)
    for word in words:
        assert word in text


def test_parallelism_per_stage() -> None:
    spec = PipelineRunSpec.model_validate(
        {
            **BASE,
            "parallelism": 3,
            "stages": {"transform": {"parallelism": 1}},
            "transform": {"deduplicate": {}},  # fine: the transform is one pod
        }
    )
    assert [spec.stage_policy(s).parallelism for s in StageName] == [3, 1, 1]
    assert PipelineRunSpec.model_validate(BASE).stage_policy(StageName.EXTRACT).parallelism == 1


# --------------------------------------------------------------------------- stages

ROWS = 50


def orders(n: int = ROWS) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "order_id": list(range(n)),
            "customer": [f"c{i % 7}" for i in range(n)],
            "amount": [None if i % 5 == 0 else i * 1.5 for i in range(n)],
        }
    )


Published = list[tuple[str, dict[str, Any] | bytes]]


class Harness:
    """Runs stages as their pods would: one `stage_main` per shard, each with its
    JOB_COMPLETION_INDEX, printing what it would publish."""

    def __init__(
        self, tmp: Path, mp: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.tmp, self.mp, self.capsys = tmp, mp, capsys
        self.parent = new_run_id()
        self.stage_ids = {s: new_run_id() for s in StageName}

    def config(
        self, stage: StageName, source: SourceSpec, shards: int, parts: int, name: str
    ) -> StageConfig:
        return StageConfig(
            run_id=self.stage_ids[stage],
            stage=stage,
            pipeline_run=RunRef(namespace="test", name=name),
            source=source,
            transform=TransformSpec.model_validate(
                {
                    "filter": "order_id != 3",
                    "quality": [{"type": "not_null", "column": "amount", "severity": "warn"}],
                }
            ),
            sink=SinkSpec(uri=f"file://{self.tmp / name / 'out.parquet'}", format="parquet"),
            workspace=str(self.tmp / name / "ws"),
            openlineage_namespace="tests",
            openlineage_job=f"{name}.{stage.value}",
            parent=ParentRun(run_id=self.parent, namespace="tests", job=name),
            traceparent=f"00-{'ab' * 16}-{'cd' * 8}-01",
            shards=shards,
            input_parts=parts,
        )

    def run(self, cfg: StageConfig, index: int | None = None) -> tuple[int, list[dict[str, Any]]]:
        self.mp.setenv(STAGE_CONFIG_ENV, cfg.to_env_value())
        self.mp.setenv("LINEAGEHUB_TERMINATION_LOG", str(self.tmp / "termination"))
        self.mp.delenv("KAFKA_BOOTSTRAP", raising=False)
        self.mp.delenv("TRACEPARENT", raising=False)
        if index is None:
            self.mp.delenv(COMPLETION_INDEX_ENV, raising=False)
        else:
            self.mp.setenv(COMPLETION_INDEX_ENV, str(index))
        self.capsys.readouterr()
        code = stage_main([cfg.stage.value, "--emit", "console"])
        out = self.capsys.readouterr().out
        events = [
            json.loads(line.split("] ", 1)[1])
            for line in out.splitlines()
            if line.startswith(f"[{LINEAGE_TOPIC} ")
        ]
        return code, events

    def pipeline(
        self, source: SourceSpec, shards: int, name: str, fail: int | None = None
    ) -> dict[StageName, list[dict[str, Any]]]:
        """extract and transform in `shards` pods each, then load; `fail` breaks the
        input of that transform shard first."""
        events: dict[StageName, list[dict[str, Any]]] = {}
        before = 1
        for stage in StageName:
            count = 1 if stage is StageName.LOAD else shards
            cfg = self.config(stage, source, count, before, name)
            events[stage] = []
            codes = []
            for i in range(count):
                if stage is StageName.TRANSFORM and fail == i:
                    Path(part_path(cfg.workspace, "extract", i, shards)).write_bytes(b"broken")
                code, got = self.run(cfg, i if count > 1 else None)
                codes.append(code)
                events[stage] += got
            if any(codes):
                return events
            before = count
        return events


@pytest.fixture
def harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Harness:
    return Harness(tmp_path, monkeypatch, capsys)


def _csv(tmp: Path) -> SourceSpec:
    path = tmp / "in" / "orders.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    orders().write_csv(path)
    return SourceSpec(uri=f"file://{path}", format="csv")


def _ndjson(tmp: Path) -> SourceSpec:
    path = tmp / "in" / "orders.ndjson"
    path.parent.mkdir(parents=True, exist_ok=True)
    orders().write_ndjson(path)
    return SourceSpec(uri=f"file://{path}", format="ndjson")


def _parquet(tmp: Path) -> SourceSpec:
    path = tmp / "in" / "orders.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    orders().write_parquet(path, row_group_size=7)  # 8 row groups
    return SourceSpec(uri=f"file://{path}", format="parquet")


def _glob(tmp: Path) -> SourceSpec:
    folder = tmp / "in" / "daily"
    folder.mkdir(parents=True, exist_ok=True)
    frame = orders()
    for day, start in enumerate(range(0, ROWS, 20)):
        frame.slice(start, 20).write_csv(folder / f"orders-{day:02d}.csv")
    (folder / "notes.txt").write_text("not a match")
    return SourceSpec(uri=f"file://{folder}/orders-*.csv", format="csv")


SOURCES: dict[str, Callable[[Path], SourceSpec]] = {
    "csv byte ranges": _csv,
    "ndjson byte ranges": _ndjson,
    "parquet row groups": _parquet,
    "csv glob": _glob,
}


def _out(harness: Harness, name: str) -> pl.DataFrame:
    return pl.read_parquet(harness.tmp / name / "out.parquet")


@pytest.mark.parametrize("shards", [2, 3, 8])
@pytest.mark.parametrize("kind", list(SOURCES))
def test_sharded_run_loads_what_one_pod_loads_row_for_row(
    harness: Harness, kind: str, shards: int
) -> None:
    source = SOURCES[kind](harness.tmp)
    harness.pipeline(source, 1, "single")
    events = harness.pipeline(source, shards, "sharded")
    single, sharded = _out(harness, "single"), _out(harness, "sharded")
    assert sharded.height == ROWS - 1  # the filter drops one row
    assert sharded.equals(single)
    # One run per stage in lineage: START from shard 0, COMPLETE once, from the commit.
    for stage in (StageName.EXTRACT, StageName.TRANSFORM):
        types = [e["eventType"] for e in events[stage]]
        assert types == ["START", "COMPLETE"], (stage, types)
        assert {e["run"]["runId"] for e in events[stage]} == {harness.stage_ids[stage]}


def test_commit_sums_the_shards_statistics(harness: Harness) -> None:
    events = harness.pipeline(_csv(harness.tmp), 3, "sharded")
    extract = events[StageName.EXTRACT][-1]
    stats = extract["outputs"][0]["outputFacets"]["outputStatistics"]
    assert stats["rowCount"] == ROWS
    transform = events[StageName.TRANSFORM][-1]
    metrics = transform["inputs"][0]["inputFacets"]["dataQualityMetrics"]
    assert metrics["rowCount"] == ROWS
    nulls = sum(1 for i in range(ROWS) if i % 5 == 0)
    assert metrics["columnMetrics"]["amount"]["nullCount"] == nulls
    assert transform["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == ROWS - 1
    (check,) = transform["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert check["success"] is False and check["actual"] == str(nulls)  # 0 and 3 hold nulls


def test_more_shards_than_units_leave_empty_shards(harness: Harness) -> None:
    source = _glob(harness.tmp)  # 3 files, 8 shards: 5 shards read nothing
    events = harness.pipeline(source, 8, "sharded")
    assert _out(harness, "sharded").height == ROWS - 1
    stats = events[StageName.EXTRACT][-1]["outputs"][0]["outputFacets"]["outputStatistics"]
    assert stats["rowCount"] == ROWS


def test_a_failed_shard_commits_nothing_and_nothing_is_loaded(harness: Harness) -> None:
    events = harness.pipeline(_csv(harness.tmp), 3, "sharded", fail=1)
    types = [e["eventType"] for e in events[StageName.TRANSFORM]]
    assert "COMPLETE" not in types
    assert types.count("FAIL") == 1
    assert StageName.LOAD not in events  # a failed stage starts no next stage
    ledger = harness.tmp / "sharded" / "ws" / "transform.parts"
    assert not list(ledger.glob(".results-*/committed"))
    assert not (harness.tmp / "sharded" / "out.parquet").exists()
    assert not (
        harness.tmp / "sharded" / "ws" / "transform.parts" / "part-00001-of-00003.parquet"
    ).exists()


def test_load_refuses_a_missing_part(harness: Harness) -> None:
    source = _csv(harness.tmp)
    for stage in (StageName.EXTRACT, StageName.TRANSFORM):
        for i in range(3):
            harness.run(
                harness.config(stage, source, 3, 1 if stage is StageName.EXTRACT else 3, "x"), i
            )
    load = harness.config(StageName.LOAD, source, 1, 3, "x")
    Path(part_path(load.workspace, "transform", 2, 3)).unlink()
    code, events = harness.run(load)
    assert code != 0
    assert events[-1]["eventType"] == "FAIL"
    assert "part-00002-of-00003" in json.dumps(events[-1])
    assert not (harness.tmp / "x" / "out.parquet").exists()


def test_an_empty_source_fails_the_commit(harness: Harness) -> None:
    path = harness.tmp / "in" / "empty.csv"
    path.parent.mkdir(parents=True)
    path.write_text("order_id,customer,amount\n")
    source = SourceSpec(uri=f"file://{path}", format="csv")
    cfg = harness.config(StageName.EXTRACT, source, 2, 1, "empty")
    assert harness.run(cfg, 0)[0] == 0  # an empty shard is fine on its own
    code, events = harness.run(cfg, 1)  # the sum is not
    assert code != 0
    assert events[-1]["eventType"] == "FAIL"
    assert "no data rows" in json.dumps(events[-1])


def test_a_sharded_stage_without_an_index_fails_naming_it(harness: Harness) -> None:
    cfg = harness.config(StageName.EXTRACT, _csv(harness.tmp), 3, 1, "noindex")
    code, events = harness.run(cfg, None)
    assert code != 0
    assert COMPLETION_INDEX_ENV in json.dumps(events[-1])


def test_shard_spans_hang_under_the_stage_span(harness: Harness) -> None:
    cfg = harness.config(StageName.EXTRACT, _csv(harness.tmp), 2, 1, "spans")
    harness.mp.setenv(STAGE_CONFIG_ENV, cfg.to_env_value())
    harness.mp.setenv("LINEAGEHUB_TERMINATION_LOG", str(harness.tmp / "termination"))
    harness.mp.setenv(COMPLETION_INDEX_ENV, "1")
    harness.capsys.readouterr()
    assert stage_main(["extract", "--emit", "console"]) == 0
    out = harness.capsys.readouterr().out
    spans = [x.split("] ", 1)[1] for x in out.splitlines() if x.startswith(f"[{SPANS_TOPIC} ")]
    (shard,) = [x for x in spans if x.startswith("span 'shard ")]
    assert shard.startswith("span 'shard 2/2 extract' ")
    assert f"parent={stage_span_id('ab' * 16, cfg.run_id)} " in shard
    assert not any(x.startswith("span 'stage ") for x in spans)  # the operator's to export


def test_a_csv_with_line_breaks_in_quotes_is_not_cut_into_byte_ranges(harness: Harness) -> None:
    path = harness.tmp / "in" / "notes.csv"
    path.parent.mkdir(parents=True)
    rows = [f'{i},"plain ""quoted"" text {i}"' for i in range(40)]
    rows[25] = '25,"a note\nover two lines"'
    path.write_text("order_id,note\n" + "\n".join(rows) + "\n")
    source = SourceSpec(uri=f"file://{path}", format="csv")
    cfg = harness.config(StageName.EXTRACT, source, 2, 1, "quoted")
    assert harness.run(cfg, 0)[0] == 0  # doubled quotes alone are fine
    code, events = harness.run(cfg, 1)
    assert code != 0
    text = json.dumps(events[-1])
    assert "line break" in text and "parallelism to 1" in text


@pytest.mark.parametrize("shards", [1, 2])
def test_a_glob_reads_files_whose_names_hold_url_characters(harness: Harness, shards: int) -> None:
    folder = harness.tmp / "in" / "odd"
    folder.mkdir(parents=True)
    frame = orders()
    names = ["2026#01.csv", "a%2Fb.csv", "c d?.csv"]  # sorted: the glob's order
    for i, name in enumerate(names):
        frame.slice(i * 20, 20).write_csv(folder / name)
    events = harness.pipeline(SourceSpec(uri=f"file://{folder}/*.csv", format="csv"), shards, "odd")
    assert [e["eventType"] for e in events[StageName.LOAD]] == ["START", "COMPLETE"]
    assert _out(harness, "odd")["order_id"].to_list() == [i for i in range(ROWS) if i != 3]
