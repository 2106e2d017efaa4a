"""The compiled (jsonschema-rs) validator's shortcuts change no verdict and no message.

Its formats' everyday shapes are regular expressions run in Rust before the Python
checks (`FAST_ACCEPT`): each must match only strings its format accepts, and Rust's
regex engine must read it as Python's does. Events too big for the slow validator
get the compiled validator's first error, which must still name the field and the
fix as the slow path would.
"""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lineagehub.openlineage_schema import (
    _FORMATS,
    FAST_ACCEPT,
    SLOW_PATH_MAX_VALUES,
    EventKind,
    schema_errors,
)
from tests.fuzz import fuzz_settings

FUZZ = fuzz_settings(400)
SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


def rust_pattern(name: str) -> jsonschema_rs.Validator:
    """The fast pattern alone, anchored as the compiled schema anchors it."""
    return jsonschema_rs.Draft202012Validator({"pattern": f"^(?:{FAST_ACCEPT[name]})$"})


@FUZZ
@given(st.sampled_from(sorted(FAST_ACCEPT)), st.data())
def test_a_fast_pattern_matches_only_what_its_format_accepts(name: str, data: Any) -> None:
    text = data.draw(st.from_regex(FAST_ACCEPT[name], fullmatch=True))
    assert _FORMATS[name](text) is None, (name, text)
    assert rust_pattern(name).is_valid(text), (name, text)


near_misses = st.text(
    alphabet=st.sampled_from(list(string.digits + "-:T.Z+/#%[] ?@éh" + "\ud800")), max_size=30
)


@FUZZ
@given(st.sampled_from(sorted(FAST_ACCEPT)), st.one_of(near_misses, st.text(max_size=30)))
def test_rust_reads_each_fast_pattern_as_python_does(name: str, text: str) -> None:
    try:
        rust = rust_pattern(name).is_valid(text)
    except UnicodeEncodeError:  # a lone surrogate: the validator falls back to Python
        return
    python = re.fullmatch(FAST_ACCEPT[name], text) is not None
    assert rust == python, (name, text)
    if python:
        assert _FORMATS[name](text) is None, (name, text)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("marquez-date-time", datetime(2025, 1, 2, 3, 4, 5, 123456, UTC).isoformat()),
        ("marquez-date-time", "2025-01-02T03:04:05.123Z"),
        ("marquez-date-time", "2025-01-02T03:04:05"),
        ("marquez-date-time-or-empty", "2025-01-02T03:04:05-07:00"),
        ("java-uri", SPEC),
        ("java-uri", "https://github.com/OpenLineage/OpenLineage/tree/1.24.0/client/python"),
        ("java-uri", "https://openlineage.io/spec/facets/1-0-1/SchemaDatasetFacet.json#/$defs/X"),
        ("java-uri", "s3://bucket/a/b.parquet"),
        ("java-uri", "urn:lineage-hub:operator"),
    ],
)
def test_the_everyday_shapes_take_the_fast_path(name: str, text: str) -> None:
    """What producers send never needs a call back into Python (a broken pattern would
    silently cost every event tens of microseconds)."""
    assert re.fullmatch(FAST_ACCEPT[name], text), text
    assert rust_pattern(name).is_valid(text)


def big_event(**changes: Any) -> dict[str, Any]:
    """A valid RunEvent with more JSON values than the slow validator is given."""
    inputs = [
        {"namespace": "s3://b", "name": f"t{i}"} for i in range(SLOW_PATH_MAX_VALUES // 3 + 1)
    ]
    event: dict[str, Any] = {
        "eventTime": "2025-01-02T03:04:05Z",
        "eventType": "START",
        "producer": "https://example.com/p",
        "schemaURL": SPEC,
        "run": {"runId": "r"},
        "job": {"namespace": "n", "name": "j"},
        "inputs": inputs,
    }
    event.update(changes)
    return event


def test_a_big_valid_event_passes() -> None:
    assert schema_errors(big_event()) == []


def test_a_big_event_missing_a_field_names_it() -> None:
    event = big_event()
    del event["inputs"][-1]["name"]
    last = len(event["inputs"]) - 1
    (error,) = schema_errors(event)
    assert error.path == f"$.inputs[{last}].name"
    assert error.message == "missing: Marquez requires 'name' here; add it"


@pytest.mark.parametrize(
    ("changes", "path", "message"),
    [
        (
            {"eventTime": True},
            "$.eventTime",
            "expected an ISO-8601 date-time string or a number of seconds since the epoch, "
            "got a boolean",
        ),
        ({"eventTime": "2025-13-01T00:00Z"}, "$.eventTime", "month 13 is not 01-12"),
        (
            {"eventTime": 9_300_000_000_000},
            "$.eventTime",
            "9300000000000 seconds since the epoch is outside what Marquez's PostgreSQL "
            "stores (4713 BC to 294276 AD)",
        ),
        (
            {"schemaURL": "http://h/a b"},
            "$.schemaURL",
            "' ' at index 10 is not allowed in a URI: percent-encode it",
        ),
        ({"run": {"runId": None}}, "$.run.runId", "is null; Marquez requires a string here"),
    ],
)
def test_a_big_event_gets_the_same_message_as_a_small_one(
    changes: dict[str, Any], path: str, message: str
) -> None:
    small = {k: v for k, v in big_event(**changes).items() if k != "inputs"}
    assert [(e.path, e.message) for e in schema_errors(small, EventKind.RUN)] == [(path, message)]
    assert [(e.path, e.message) for e in schema_errors(big_event(**changes))] == [(path, message)]
