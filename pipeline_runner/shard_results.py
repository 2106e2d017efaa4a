"""A sharded stage's result: each shard's `StageResult` as JSON, and their sum.

Lineage shows one run per stage, so the stage's COMPLETE event carries what all its
shards did: rows, bytes and null counts added up, quality checks with their failed
rows added (a check passes when it passed on every shard), the schema and column
lineage of the first shard (all shards share them).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from lineagehub.api.enums import StageName
from lineagehub.shard_quality import Verdict, merge
from pipeline_runner.errors import ErrorKind
from pipeline_runner.result import DatasetInfo, QualityOutcome, StageResult


def to_json(result: StageResult) -> str:
    return json.dumps(dataclasses.asdict(result), separators=(",", ":"))


def _fields(value: Any) -> list[tuple[str, str]] | None:
    return None if value is None else [(str(n), str(t)) for n, t in value]


def _dataset(data: dict[str, Any]) -> DatasetInfo:
    return DatasetInfo(**{**data, "schema": _fields(data.get("schema"))})


def from_json(text: str) -> StageResult:
    data = json.loads(text)
    return StageResult(
        **{
            **data,
            "stage": StageName(data["stage"]),
            "output_schema": _fields(data.get("output_schema")) or [],
            "quality": [QualityOutcome(**q) for q in data.get("quality") or []],
            "error_kind": ErrorKind(data["error_kind"]) if data.get("error_kind") else None,
            "inputs": [_dataset(d) for d in data.get("inputs") or []],
            "outputs": [_dataset(d) for d in data.get("outputs") or []],
        }
    )


def _total(values: Sequence[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v or 0 for v in values)


def _null_counts(counts: Sequence[dict[str, int] | None]) -> dict[str, int] | None:
    if any(c is None for c in counts):
        return None
    out: dict[str, int] = {}
    for c in counts:
        for column, n in (c or {}).items():
            out[column] = out.get(column, 0) + n
    return out


def _datasets(shards: Sequence[Sequence[DatasetInfo]]) -> list[DatasetInfo]:
    out = []
    for same in zip(*shards, strict=True):
        first = same[0]
        out.append(
            dataclasses.replace(
                first,
                row_count=_total([d.row_count for d in same]),
                size=_total([d.size for d in same]),
                null_counts=_null_counts([d.null_counts for d in same]),
            )
        )
    return out


def _verdict(q: QualityOutcome) -> Verdict:
    return Verdict((q.name, q.type, q.column, q.severity), q.success, q.failed_rows, q.sample)


def _quality(shards: Sequence[Sequence[QualityOutcome]]) -> list[QualityOutcome]:
    return [
        dataclasses.replace(
            m.first,
            success=m.success,
            failed_rows=m.failed_rows,
            message=(m.first_failed or m.first).message,
            sample=m.sample,
        )
        for m in merge(shards, _verdict)
    ]


def combine(results: Sequence[StageResult], duration_seconds: float | None) -> StageResult:
    """The stage's result from its shards' (in index order), which all succeeded."""
    if not results:
        raise ValueError("a sharded stage has at least one shard")
    first = results[0]
    return StageResult(
        stage=first.stage,
        records_in=_total([r.records_in for r in results]),
        records_out=_total([r.records_out for r in results]),
        output_schema=first.output_schema,
        quality=_quality([r.quality for r in results]),
        bytes_read=_total([r.bytes_read for r in results]),
        bytes_written=_total([r.bytes_written for r in results]),
        duration_seconds=duration_seconds,
        inputs=_datasets([r.inputs for r in results]),
        outputs=_datasets([r.outputs for r in results]),
        output_uri=first.output_uri,
    )
