"""`lineage-hub describe`: the terminal picture of a run, from a status and spans."""

from __future__ import annotations

from typing import Any

import yaml

from pipeline_runner.describe import gantt, render
from stack.paths import REPO_ROOT


def span(
    span_id: str,
    name: str,
    start: int,
    duration: int,
    parent: str | None = None,
    error: bool = False,
) -> dict[str, Any]:
    refs = [{"refType": "CHILD_OF", "spanID": parent}] if parent else []
    tags = [{"key": "error", "value": True}] if error else []
    return {
        "spanID": span_id,
        "operationName": name,
        "startTime": start,
        "duration": duration,
        "references": refs,
        "tags": tags,
    }


SPANS = [
    span("r", "PipelineRun orders", 0, 10_000_000),
    span("e", "stage extract", 0, 2_000_000, "r"),
    span("er", "read", 100_000, 1_000_000, "e"),
    span("t", "stage transform", 2_000_000, 5_000_000, "r", error=True),
]


def test_gantt_nests_children_and_scales_bars() -> None:
    lines = gantt(SPANS, width=80)
    names = [line.split("|")[0].rstrip() for line in lines]
    assert names == [
        "  PipelineRun orders",
        "    stage extract",
        "      read",
        "    stage transform",
    ]
    root_bar, transform_bar = lines[0].split("|")[1], lines[3].split("|")[1]
    assert root_bar.count("█") == len(root_bar.rstrip()), "the root spans the whole axis"
    assert "x" in transform_bar, "a failed span is drawn differently"
    assert transform_bar.index("x") > 0, "transform starts after extract"
    assert lines[0].endswith("10.00s")


def test_render_shows_stages_columns_and_quality() -> None:
    body = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun.yaml").read_text())
    body["metadata"]["namespace"] = "default"
    body["status"] = {
        "phase": "Succeeded",
        "runId": "019ac0f0-0000-7000-8000-000000000001",
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "conditions": [
            {
                "type": "Succeeded",
                "status": "True",
                "reason": "Succeeded",
                "message": "Stages completed: 3/3",
                "lastTransitionTime": "2026-11-26T10:00:00Z",
            },
        ],
        "stages": [
            {
                "name": "extract",
                "phase": "Succeeded",
                "attempts": 1,
                "recordsIn": 51,
                "recordsOut": 51,
                "columns": ["order_id", "customer", "amount", "currency", "status", "created_at"],
            },
            {
                "name": "transform",
                "phase": "Succeeded",
                "attempts": 1,
                "recordsIn": 51,
                "recordsOut": 37,
                "quality": [
                    {
                        "type": "range",
                        "column": "amount",
                        "severity": "warn",
                        "success": False,
                        "failedRows": 2,
                    }
                ],
            },
            {
                "name": "load",
                "phase": "Succeeded",
                "attempts": 1,
                "recordsIn": 37,
                "recordsOut": 37,
            },
        ],
    }
    text = render(body, SPANS, width=100)
    assert "PipelineRun default/orders-daily" in text
    assert "transform  Succeeded  attempts=1  51 -> 37 rows" in text
    assert "file:/data/examples/orders.csv" in text
    gross = next(line for line in text.splitlines() if line.strip().startswith("gross"))
    assert "amount" in gross and "derived" in gross and "amount * 1.2" in gross
    ordered_at = next(line for line in text.splitlines() if line.strip().startswith("ordered_at"))
    assert "created_at" in ordered_at
    assert "WARN" in text and "2 failed rows" in text
