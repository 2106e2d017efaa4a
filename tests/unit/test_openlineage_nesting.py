"""Nesting: Marquez's parser (Jackson's default maxNestingDepth) reads 1000 levels of
objects and arrays and refuses 1001. Both doors, the gateway (parse, check, re-encode)
and the lineage consumer (validate), draw the line exactly there, whichever parser read
the text (orjson reads 1024, Python's `json` stops near the interpreter's recursion
limit, wherever it is called from)."""

from __future__ import annotations

import orjson
import pytest

from consumers.dlq import Rejection
from consumers.lineage.validate import ValidEvent, validate
from gateway.body import parse_json
from gateway.lineage import Checked, Invalid, check
from lineagehub.openlineage_schema import MAX_NESTING, ORJSON_MAX_DEPTH, loads, loads_exact

HEAD = (
    b'{"eventType":"START","eventTime":"2026-11-30T10:00:00Z",'
    b'"run":{"runId":"43d7db3b-8984-4cda-b237-8c6919b36670","facets":{"deep":{'
    b'"_producer":"https://example.test/producer",'
    b'"_schemaURL":"https://example.test/schema.json#/$defs/DeepFacet","v":'
)
TAIL = (
    b'}}},"job":{"namespace":"ns","name":"job"},'
    b'"producer":"https://example.test/producer",'
    b'"schemaURL":"https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"}'
)
# The event, run, facets and facet objects are 4 levels above "v".
ABOVE = 4


def event_nested(depth: int, big_number: bool = False) -> bytes:
    """A valid RunEvent whose deepest value sits `depth` levels down; `big_number`
    adds a 19-digit integer, which sends the text to the exact parser."""
    inner = depth - ABOVE
    middle = b"12345678901234567890" if big_number else b""
    return HEAD + b"[" * inner + middle + b"]" * inner + TAIL


@pytest.mark.parametrize("big_number", [False, True], ids=["orjson", "exact parser"])
@pytest.mark.parametrize("depth", [MAX_NESTING - 10, MAX_NESTING, MAX_NESTING + 1, 1024, 1025])
def test_both_doors_read_up_to_marquez_limit_and_refuse_past_it(
    depth: int, big_number: bool
) -> None:
    raw = event_nested(depth, big_number)
    readable = depth <= MAX_NESTING
    fast, exact = loads(raw), loads_exact(raw)
    assert (fast[1] is None, exact[1] is None) == (readable, readable), (fast[1], exact[1])
    assert fast[1] == exact[1]  # (deep values are not compared: that would recurse)

    consumer = validate(raw)
    gateway_value, problem = parse_json(raw)
    if readable:
        assert isinstance(consumer, ValidEvent)
        assert problem is None
        checked = check(gateway_value, max_event_bytes=10_000_000)
        assert isinstance(checked, Checked), checked
        assert checked.value == raw  # re-encoded as it came (the text is compact)
    else:
        assert isinstance(consumer, Rejection) and consumer.reason == "invalid_json"
        for said in (consumer.detail, problem):
            assert said is not None and f"more than {MAX_NESTING} levels" in said
            assert "flatten the facet" in said


def test_a_text_far_too_deep_is_refused_not_raised() -> None:
    raw = event_nested(50_000)
    assert loads(raw) == (None, loads_exact(raw)[1])
    assert isinstance(validate(raw), Rejection)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = b'"' + b"[" * 2000 + b'"'
    raw = HEAD + text + TAIL
    assert isinstance(validate(raw), ValidEvent)
    value, problem = parse_json(raw)
    assert problem is None and isinstance(check(value, max_event_bytes=10_000_000), Checked)
    assert isinstance(check(value, max_event_bytes=10), Invalid)


@pytest.mark.parametrize("depth", [300, MAX_NESTING - 1, MAX_NESTING])
def test_a_batch_counts_its_own_level_whatever_its_other_events_hold(depth: int) -> None:
    """A JSON array of events: many shallow ones (more than MAX_NESTING brackets in all)
    around one deep one; the array is one level more."""
    shallow = event_nested(ABOVE + 2)
    raw = b"[" + b",".join([shallow] * 150 + [event_nested(depth)] + [shallow] * 150) + b"]"
    assert raw.count(b"[") + raw.count(b"{") > MAX_NESTING
    readable = depth + 1 <= MAX_NESTING
    fast, exact = loads(raw), loads_exact(raw)
    assert (fast[1] is None, exact[1] is None) == (readable, readable), (fast[1], exact[1])
    assert fast[1] == exact[1]


def test_orjson_encodes_no_deeper_than_the_shortcut_assumes() -> None:
    """A batch's nesting check takes any value orjson encodes as shallow enough: that
    holds only while orjson refuses to encode past ORJSON_MAX_DEPTH < MAX_NESTING."""
    assert ORJSON_MAX_DEPTH < MAX_NESTING - 1
    value: list[object] = []
    for _ in range(ORJSON_MAX_DEPTH - 1):
        value = [value]
    assert orjson.dumps(value)  # ORJSON_MAX_DEPTH levels
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps([value])
