"""Active-run limits: who waits, in which order, and what the run says while it waits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lineagehub_operator.decide import CreateJob, RecordEvent, RunIds, decide
from lineagehub_operator.queue import (
    NAMESPACE_LIMIT_ANNOTATION,
    QueueEntry,
    namespace_limit,
    queue_entry,
    queued,
)

from lineagehub.api.pipelinerun import CONDITION_SUCCEEDED, Phase, PipelineRun

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
IDS = RunIds(
    run_id="019ac0f0-0000-7000-8000-000000000001",
    trace_id="0af7651916cd43dd8448eb211c80319c",
    span_id="b7ad6b7169203331",
)


def entry(
    name: str, minute: int, phase: Phase | None, ns: str = "a", held: bool = False
) -> QueueEntry:
    return QueueEntry(ns, name, f"2026-11-30T10:{minute:02d}:00Z", phase, held)


FIVE = [entry(f"r{i}", i, Phase.PENDING) for i in range(5)]


def admitted(entries: list[QueueEntry], **limits: int) -> list[str]:
    limits = {"operator_limit": 0, "namespace_limit": 0, **limits}
    return [e.name for e in entries if e.waiting and queued(e, entries, **limits) is None]


def test_no_limit_admits_everyone() -> None:
    assert admitted(FIVE) == ["r0", "r1", "r2", "r3", "r4"]


@pytest.mark.parametrize("scope", ["operator_limit", "namespace_limit"])
def test_a_limit_of_two_admits_the_two_oldest(scope: str) -> None:
    assert admitted(FIVE, **{scope: 2}) == ["r0", "r1"]
    message = queued(FIVE[4], FIVE, **{"operator_limit": 0, "namespace_limit": 0, scope: 2})
    assert message is not None and "0 of 2 runs active" in message and "4 waiting" in message


def test_slots_free_in_creation_order() -> None:
    running = [entry("r0", 0, Phase.RUNNING), entry("r1", 1, Phase.RUNNING), *FIVE[2:]]
    assert admitted(running, operator_limit=2) == []
    one_done = [entry("r0", 0, Phase.SUCCEEDED), *running[1:]]
    assert admitted(one_done, operator_limit=2) == ["r2"]
    # Created first, so it goes first even when listed last.
    assert admitted([*one_done[2:], *one_done[:2]], operator_limit=2) == ["r2"]


def test_held_runs_keep_no_place_in_the_queue() -> None:
    held = [entry("r0", 0, Phase.PENDING, held=True), *FIVE[1:]]
    assert admitted(held, operator_limit=2) == ["r1", "r2"]


def test_namespaces_queue_apart_under_the_operator_limit() -> None:
    mixed = [entry("a0", 0, Phase.RUNNING), entry("a1", 1, None), entry("b0", 2, None, ns="b")]
    assert admitted(mixed, namespace_limit=1) == ["b0"]
    assert admitted(mixed, operator_limit=2) == ["a1"]
    assert admitted(mixed, operator_limit=3, namespace_limit=1) == ["b0"]


@pytest.mark.parametrize(
    ("annotations", "default", "limit"),
    [
        (None, 0, 0),
        ({NAMESPACE_LIMIT_ANNOTATION: "2"}, 0, 2),
        ({NAMESPACE_LIMIT_ANNOTATION: " 3 "}, 5, 3),
        ({NAMESPACE_LIMIT_ANNOTATION: "two"}, 5, 5),
        ({NAMESPACE_LIMIT_ANNOTATION: "-1"}, 4, 4),
    ],
)
def test_the_namespace_annotation_sets_its_limit(
    annotations: dict[str, str] | None, default: int, limit: int
) -> None:
    assert namespace_limit(annotations, default) == limit


def test_queue_entry_reads_a_body() -> None:
    body = {
        "metadata": {"namespace": "a", "name": "x", "creationTimestamp": "2026-11-30T10:00:00Z"},
        "spec": {"suspend": True},
        "status": {"phase": "Nonsense"},
    }
    found = queue_entry(body)
    assert (found.phase, found.held, found.waiting) == (None, True, False)


def test_a_queued_run_waits_pending_with_reason_queued_and_says_so_once() -> None:
    run = PipelineRun.model_validate(
        {
            "metadata": {"name": "r4", "namespace": "a", "generation": 1},
            "spec": {
                "source": {"uri": "file:///data/in.csv", "format": "csv"},
                "sink": {"uri": "file:///data/out.csv", "format": "csv"},
            },
        }
    )
    run = run.model_copy(update={"status": decide(run, {}, T0, IDS).status})
    waiting = decide(run, {}, T0, IDS, queued="Queued: 2 of 2 runs active")
    assert waiting.status.phase == Phase.PENDING
    cond = waiting.status.condition(CONDITION_SUCCEEDED)
    assert cond is not None and (cond.status, cond.reason) == ("Unknown", "Queued")
    assert not any(isinstance(a, CreateJob) for a in waiting.actions)
    assert [a.reason for a in waiting.actions if isinstance(a, RecordEvent)] == ["Queued"]
    still = decide(run.model_copy(update={"status": waiting.status}), {}, T0, IDS, queued="x")
    assert [a for a in still.actions if isinstance(a, RecordEvent)] == []
    freed = decide(run.model_copy(update={"status": waiting.status}), {}, T0, IDS)
    assert any(isinstance(a, CreateJob) for a in freed.actions)
    assert freed.status.phase == Phase.RUNNING
