"""Active-run limits: who waits, in which order, and what the run says while it waits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lineagehub_operator.decide import CreateJob, RecordEvent, RunIds, decide
from lineagehub_operator.queue import (
    NAMESPACE_LIMIT_ANNOTATION,
    Limits,
    QueueEntry,
    admission,
    limit_problem,
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


def admitted(
    entries: list[QueueEntry],
    operator_limit: int = 0,
    namespace_limit: int = 0,
    **namespaces: int,
) -> list[str]:
    """The waiting runs each run's daemon, asking on its own, finds it may start."""
    limits = Limits(operator_limit, namespace_limit, namespaces)
    return [e.name for e in entries if e.waiting and queued(e, entries, limits) is None]


def test_no_limit_admits_everyone() -> None:
    assert admitted(FIVE) == ["r0", "r1", "r2", "r3", "r4"]


@pytest.mark.parametrize("scope", ["operator_limit", "namespace_limit"])
def test_a_limit_of_two_admits_the_two_oldest(scope: str) -> None:
    assert admitted(FIVE, **{scope: 2}) == ["r0", "r1"]
    limits = Limits(operator=2) if scope == "operator_limit" else Limits(namespace_default=2)
    message = queued(FIVE[4], FIVE, limits)
    assert message is not None and "limit of 2 active runs" in message


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


def test_a_full_namespace_takes_no_operator_slot_from_another_namespace() -> None:
    # Operator limit 2, namespace limit 1: a0 runs, a1-a3 wait behind it, b0 came later.
    runs = [
        entry("a0", 0, Phase.RUNNING),
        *(entry(f"a{i}", i, Phase.PENDING) for i in (1, 2, 3)),
        entry("b0", 4, None, ns="b"),
    ]
    assert admitted(runs, operator_limit=2, namespace_limit=1) == ["b0"]
    assert admitted(runs, operator_limit=1, namespace_limit=1) == []  # a0 has the one slot
    # A namespace's own annotation counts the same way.
    assert admitted(runs, operator_limit=2, a=1) == ["b0"]
    assert admitted(runs, operator_limit=3, namespace_limit=1, a=2) == ["a1", "b0"]


def pending_run(name: str) -> PipelineRun:
    """A run whose status the operator has initialised (Pending, not started)."""
    run = PipelineRun.model_validate(
        {
            "metadata": {"name": name, "namespace": "a", "generation": 1},
            "spec": {
                "source": {"uri": "file:///data/in.csv", "format": "csv"},
                "sink": {"uri": "file:///data/out.csv", "format": "csv"},
            },
        }
    )
    return run.model_copy(update={"status": decide(run, {}, T0, IDS).status})


def test_the_queued_message_holds_nothing_that_changes_while_it_waits() -> None:
    """When a slot frees, the status of the runs that still wait is not rewritten: each
    one's message (and so its status) is what it was."""
    before = [entry("r0", 0, Phase.RUNNING), entry("r1", 1, Phase.RUNNING), *FIVE[2:]]
    after = [entry("r0", 0, Phase.SUCCEEDED), *before[1:]]
    limits = Limits(operator=2)
    was, now = admission(before, limits), admission(after, limits)
    changed = [name for (_, name), message in now.items() if message != was[(_, name)]]
    assert changed == ["r2"]  # only the run that starts: one status write, not one per run
    assert all(message is not None for message in was.values())
    # And so the daemon of a run that still waits computes the status it already has:
    # nothing to write (a write would wake every queued run again).
    waiting = pending_run("r4")
    first = decide(waiting, {}, T0, IDS, queued=was[("a", "r4")])
    held = waiting.model_copy(update={"status": first.status})
    later = T0.replace(minute=5)
    assert decide(held, {}, later, IDS, queued=now[("a", "r4")]).status == held.status


ENTRIES = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([None, Phase.PENDING, Phase.RUNNING, Phase.SUCCEEDED]),
        st.booleans(),
    ),
    max_size=14,
).map(
    lambda rows: [
        QueueEntry(ns, f"r{i}", f"2026-11-30T10:{i:02d}:00Z", phase, held)
        for i, (ns, phase, held) in enumerate(rows)
    ]
)


@given(
    entries=ENTRIES,
    operator=st.integers(0, 4),
    default=st.integers(0, 3),
    own=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 3)),
)
def test_admission_keeps_the_limits_leaves_no_slot_idle_and_keeps_creation_order(
    entries: list[QueueEntry], operator: int, default: int, own: dict[str, int]
) -> None:
    limits = Limits(operator, default, own)
    verdicts = admission(entries, limits)
    admitted = {e.key for e in entries if e.waiting and verdicts[(e.namespace, e.name)] is None}
    running = [e for e in entries if e.active or e.key in admitted]
    started = [e for e in entries if e.key in admitted]
    # Never more active than a limit allows (beyond runs that were already active).
    if operator > 0:
        assert not started or len(running) <= operator
    for ns in ("a", "b", "c"):
        mine = [e for e in running if e.namespace == ns]
        if limits.of(ns) > 0:
            assert not [e for e in started if e.namespace == ns] or len(mine) <= limits.of(ns)

    def namespace_full(ns: str) -> bool:
        used = sum(1 for e in running if e.namespace == ns)
        return limits.of(ns) > 0 and used >= limits.of(ns)

    operator_full = operator > 0 and len(running) >= operator
    for e in entries:
        if not e.waiting or e.key in admitted:
            continue
        # Work-conserving: a run left waiting is held by a limit that is reached.
        assert namespace_full(e.namespace) or operator_full, e
        # Creation order: no later run started in its place, unless its own namespace
        # is what holds it.
        if not namespace_full(e.namespace):
            assert all(f.key < e.key for f in started), e
        assert all(f.key < e.key for f in started if f.namespace == e.namespace), e


@pytest.mark.parametrize(
    ("annotations", "default", "limit"),
    [
        (None, 0, 0),
        ({NAMESPACE_LIMIT_ANNOTATION: "2"}, 0, 2),
        ({NAMESPACE_LIMIT_ANNOTATION: " 3 "}, 5, 3),
        ({NAMESPACE_LIMIT_ANNOTATION: "two"}, 5, 5),
        ({NAMESPACE_LIMIT_ANNOTATION: "-1"}, 4, 4),
        ({NAMESPACE_LIMIT_ANNOTATION: "²"}, 4, 4),  # a digit to str.isdigit, not to int
        ({NAMESPACE_LIMIT_ANNOTATION: "\u0661"}, 4, 4),  # Arabic-Indic one: ASCII only
        ({NAMESPACE_LIMIT_ANNOTATION: "0"}, 4, 0),
    ],
)
def test_the_namespace_annotation_sets_its_limit(
    annotations: dict[str, str] | None, default: int, limit: int
) -> None:
    assert namespace_limit(annotations, default) == limit


@pytest.mark.parametrize("value", ["²", "two", "-1", "1.5", ""])
def test_an_invalid_namespace_limit_is_named_with_its_fix(value: str) -> None:
    problem = limit_problem({NAMESPACE_LIMIT_ANNOTATION: value})
    assert problem is not None
    assert NAMESPACE_LIMIT_ANNOTATION in problem and repr(value) in problem
    assert "default limit applies" in problem and "digits" in problem


@pytest.mark.parametrize("annotations", [None, {}, {NAMESPACE_LIMIT_ANNOTATION: " 3 "}])
def test_an_absent_or_valid_namespace_limit_has_no_problem(
    annotations: dict[str, str] | None,
) -> None:
    assert limit_problem(annotations) is None


def test_queue_entry_reads_a_body() -> None:
    body = {
        "metadata": {"namespace": "a", "name": "x", "creationTimestamp": "2026-11-30T10:00:00Z"},
        "spec": {"suspend": True},
        "status": {"phase": "Nonsense"},
    }
    found = queue_entry(body)
    assert (found.phase, found.held, found.waiting) == (None, True, False)


def test_a_queued_run_waits_pending_with_reason_queued_and_says_so_once() -> None:
    run = pending_run("r4")
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
