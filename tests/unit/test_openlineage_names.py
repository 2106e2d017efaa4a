"""`_name_errors`'s shortcuts (an event whose every name is plain is passed in one pass,
`_names_plain`; a NamespaceName-shaped string skips the diagnosis, a plain string is
tested blank without conversions, the streaming facet is read only when the event is
not terminal) and `schema_errors`' early return for a valid event change no verdict
and no message: the function as it was is kept here as the
reference, and both judge the same generated events."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lineagehub.openlineage_schema import (
    _JAVA_BLANK,
    _TERMINAL_EVENT_TYPES,
    MAX_MESSAGE_CHARS,
    MAX_REPORTED_ERRORS,
    EventKind,
    _is_text,
    _name_errors,
    _names_plain,
    _namespace_problem,
    _processing_type,
    _text,
    json_path,
    schema_errors,
)
from tests.fuzz import fuzz_settings

FUZZ = fuzz_settings(600)


def old_name_errors(event: dict[str, Any], kind: EventKind) -> list[tuple[list[Any], str]]:
    """The reference: `_name_errors` before its shortcuts.

    Marquez applies them while it builds its model: to the input datasets of every
    RunEvent; to the outputs and the job too when a RunEvent is COMPLETE, FAIL or ABORT
    or its job is streaming (a job version is written); to the job of a RunEvent with
    an eventType and inputs; and to the job and every dataset of a JobEvent. A
    DatasetEvent is stored without them.
    """
    if kind is EventKind.DATASET:
        return []
    job = event.get("job")
    job = job if isinstance(job, dict) else {}
    if kind is EventKind.JOB:
        why = "in a JobEvent"
        check_outputs = check_job = True
    else:
        event_type = event.get("eventType")
        terminal = _is_text(event_type) and _text(event_type).lower() in _TERMINAL_EVENT_TYPES
        streaming = _processing_type(job).lower() == "streaming"
        inputs = event.get("inputs")
        why = "in a COMPLETE/FAIL/ABORT event" if terminal else "for a streaming job"
        check_outputs = terminal or streaming
        check_job = check_outputs or (event_type is not None and bool(inputs))
        if check_job and not check_outputs:
            why = "in an event with an eventType and inputs"
    out: list[tuple[list[Any], str]] = []
    sides = ("inputs", "outputs") if check_outputs else ("inputs",)
    for side in sides:
        items = event.get(side)
        for index, dataset in enumerate(items if isinstance(items, list) else []):
            if not isinstance(dataset, dict):
                continue
            where = "an input" if side == "inputs" else "an output"
            context = "" if side == "inputs" and kind is EventKind.RUN else f" {why}"
            namespace = dataset.get("namespace")
            problem = _namespace_problem(namespace) if _is_text(namespace) else None
            if problem:
                out.append(
                    (
                        [side, index, "namespace"],
                        f"{problem}; Marquez (NamespaceName) accepts only letters, digits and "
                        f"_ - . : ; = / @ + (1 to 1024 characters) in the namespace of {where} "
                        f"dataset{context}",
                    )
                )
            name = dataset.get("name")
            if _is_text(name) and not _text(name).strip(_JAVA_BLANK):
                out.append(([side, index, "name"], "is blank; Marquez (DatasetName) refuses it"))
    if check_job:
        namespace, name = job.get("namespace"), job.get("name")
        if _is_text(namespace) and not 1 <= len(_text(namespace)) <= 1024:
            out.append(
                (
                    ["job", "namespace"],
                    f"must be 1 to 1024 characters {why} (Marquez's NamespaceName)",
                )
            )
        if _is_text(name) and not _text(name).strip(_JAVA_BLANK):
            out.append((["job", "name"], f"is blank; Marquez (JobName) refuses it {why}"))
    return out


texts = st.one_of(
    st.sampled_from(["", " ", "\t\n", "pg://db:5432", "ns with space", "a" * 1025, "é", "x"]),
    st.text(alphabet="ab:/ \x00é_-.@+;=", max_size=12),
    st.integers(min_value=-10, max_value=10),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.just([]),
    st.just({}),
)
datasets = st.one_of(
    st.fixed_dictionaries({}, optional={"namespace": texts, "name": texts}),
    texts,
)
sides = st.one_of(st.lists(datasets, max_size=4), texts)
jobs = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "namespace": texts,
            "name": texts,
            "facets": st.one_of(
                texts,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "jobType": st.one_of(
                            texts,
                            st.fixed_dictionaries(
                                {},
                                optional={
                                    "processingType": st.one_of(
                                        texts, st.sampled_from(["STREAMING", "Batch"])
                                    )
                                },
                            ),
                        )
                    },
                ),
            ),
        },
    ),
    texts,
)
events = st.fixed_dictionaries(
    {},
    optional={
        "eventType": st.one_of(st.sampled_from(["START", "complete", "FAIL", "ABORT"]), texts),
        "inputs": sides,
        "outputs": sides,
        "job": jobs,
    },
)


@FUZZ
@given(events, st.sampled_from(list(EventKind)))
def test_name_errors_give_the_errors_and_messages_they_gave_before(
    event: dict[str, Any], kind: EventKind
) -> None:
    assert _name_errors(event, kind) == old_name_errors(event, kind)


VALID_RUN = {
    "eventTime": "2026-11-01T12:00:00Z",
    "producer": "https://example.com/producer",
    "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    "run": {"runId": "0176a8c2-fe01-7439-87e6-56a1a1b4029f"},
    "job": {"namespace": "etl", "name": "load"},
}
names = st.one_of(
    st.sampled_from(["", " ", "pg://db:5432", "ns with space", "a" * 1025, "ok", "\x7f"]),
    st.text(alphabet="ab:/ \x00é_-.@+;=", max_size=12),
)
valid_datasets = st.lists(st.fixed_dictionaries({"namespace": names, "name": names}), max_size=4)


@FUZZ
@given(
    st.sampled_from(["START", "COMPLETE", "abort"]),
    valid_datasets,
    valid_datasets,
    st.fixed_dictionaries({"namespace": names, "name": names}),
)
def test_schema_errors_report_the_name_errors_found_before(
    event_type: str,
    inputs: list[dict[str, str]],
    outputs: list[dict[str, str]],
    job: dict[str, str],
) -> None:
    event = {**VALID_RUN, "eventType": event_type, "inputs": inputs, "outputs": outputs}
    event["job"] = job
    expected = sorted(
        {
            (json_path(parts), message[:MAX_MESSAGE_CHARS])
            for parts, message in old_name_errors(event, EventKind.RUN)
        },
        key=lambda pm: pm[0],
    )
    got = [(e.path, e.message) for e in schema_errors(event, EventKind.RUN)]
    assert sorted(got) == sorted(expected)[: len(got)]
    assert len(got) == min(len(expected), MAX_REPORTED_ERRORS)
    assert (got == []) == (old_name_errors(event, EventKind.RUN) == [])


# ---- the one-pass quick path: plain events, and plain events with one defect -----------------

plain_namespaces = st.one_of(
    st.sampled_from(["pg://db:5432", "etl", "s3://bucket", "a" * 1024]),
    st.text(alphabet="ab:;=/09_-.@+", min_size=1, max_size=12),
)
plain_names = st.one_of(
    st.sampled_from(["orders", "public.orders", " x ", "é", "a b"]),
    st.text(min_size=1, max_size=12).filter(lambda t: bool(t.strip(_JAVA_BLANK))),
)
plain_datasets = st.lists(
    st.fixed_dictionaries({"namespace": plain_namespaces, "name": plain_names}), max_size=4
)
plain_events = st.fixed_dictionaries(
    {"job": st.fixed_dictionaries({"namespace": plain_namespaces, "name": plain_names})},
    optional={
        "eventType": st.sampled_from(["START", "COMPLETE", "fail", "abort", "RUNNING"]),
        "inputs": plain_datasets,
        "outputs": plain_datasets,
    },
)

# One thing off in an otherwise plain event: where, and the value put there.
BAD_NAMESPACES: list[object] = ["a\nb", "", "a" * 1025, "ns with space", "\n", 7, None, "é"]
BAD_NAMES: list[object] = ["", " ", "\t\n", "\x00", 0, None, True, []]
BAD_JOB_NAMESPACES: list[object] = ["", "a" * 1025, 12, None]


def with_defect(event: dict[str, Any], where: str, value: object) -> dict[str, Any]:
    out = copy.deepcopy(event)
    if where.startswith("job."):
        out["job"][where[4:]] = value
        return out
    side, field = where.split(".")
    datasets = out.setdefault(side, [])
    if not datasets:
        datasets.append({"namespace": "ns", "name": "n"})
    if field == "dataset":
        datasets[-1] = value
    elif field == "side":
        out[side] = value
    else:
        datasets[-1][field] = value
    return out


defects = st.one_of(
    st.tuples(
        st.sampled_from(["inputs.namespace", "outputs.namespace"]), st.sampled_from(BAD_NAMESPACES)
    ),
    st.tuples(st.sampled_from(["inputs.name", "outputs.name"]), st.sampled_from(BAD_NAMES)),
    st.tuples(st.just("job.namespace"), st.sampled_from(BAD_JOB_NAMESPACES)),
    st.tuples(st.just("job.name"), st.sampled_from(BAD_NAMES)),
    st.tuples(st.sampled_from(["inputs.dataset", "outputs.dataset"]), texts),
    st.tuples(st.sampled_from(["inputs.side", "outputs.side"]), texts),
)


@FUZZ
@given(plain_events, st.sampled_from(list(EventKind)))
def test_a_plain_event_takes_the_quick_path_and_has_no_name_error(
    event: dict[str, Any], kind: EventKind
) -> None:
    assert _names_plain(event)
    assert _name_errors(event, kind) == old_name_errors(event, kind) == []


@FUZZ
@given(plain_events, defects, st.sampled_from(list(EventKind)))
def test_a_plain_event_with_one_defect_gets_the_errors_it_got_before(
    event: dict[str, Any], defect: tuple[str, object], kind: EventKind
) -> None:
    bad = with_defect(event, *defect)
    expected = old_name_errors(bad, kind)
    assert _name_errors(bad, kind) == expected
    if _names_plain(bad):  # the quick path may only pass what has no error, in any kind
        assert all(old_name_errors(bad, k) == [] for k in EventKind)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("inputs.namespace", "a\nb"),  # a newline, which NamespaceName refuses
        ("outputs.namespace", "a\nb"),
        ("inputs.namespace", ""),
        ("outputs.namespace", "a" * 1025),
        ("inputs.namespace", "ns with space"),
        ("inputs.name", " \t"),
        ("outputs.name", ""),
        ("job.namespace", "a" * 1025),
        ("job.namespace", ""),
        ("job.name", "\x00 "),
    ],
)
def test_each_defect_the_quick_path_sees_is_diagnosed_in_full(where: str, value: object) -> None:
    """Fails if `_name_errors` answered [] for an event the quick path did not pass."""
    plain = {
        "eventType": "COMPLETE",
        "job": {"namespace": "etl", "name": "load"},
        "inputs": [{"namespace": "pg://db:5432", "name": "public.orders"}],
        "outputs": [{"namespace": "s3://bucket", "name": "orders"}],
    }
    assert _names_plain(plain)
    bad = with_defect(plain, where, value)
    assert not _names_plain(bad)
    for kind in (EventKind.RUN, EventKind.JOB):
        errors = _name_errors(bad, kind)
        assert errors == old_name_errors(bad, kind)
        assert [parts[0] for parts, _message in errors] == [where.split(".", maxsplit=1)[0]]
