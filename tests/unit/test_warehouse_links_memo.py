"""The writer derives a dataset's column lineage edges once per distinct dataset and
facet (`decode._column_links`, kept in `decode._LINKS`): whatever it has seen before,
it answers what `_derive_links` gives for that dataset and facet now, for producers'
events, fuzzed events, the same facet on another dataset and facets that differ only in
a value's kind; and it stays within its entries and bytes."""

from __future__ import annotations

import contextlib
import gc
import json
import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import given

from consumers.otel.decode import DecodeError
from consumers.warehouse import decode, memo
from tests.unit.test_openlineage_fuzz import FUZZ, events
from tests.unit.test_warehouse_batch import _encoded, producer_samples


def uncached(dataset: dict[str, Any]) -> tuple[decode.Link, ...]:
    """The dataset's edges as derived without the memo."""
    facet = decode._obj(dataset.get("facets")).get("columnLineage")
    if not isinstance(facet, dict):
        return ()
    return tuple(decode._derive_links(dataset["namespace"], dataset["name"], facet))


def datasets(event: dict[str, Any]) -> list[dict[str, Any]]:
    """Every dataset of an event whose edges the writer reads, as it reads them."""
    found = []
    if "dataset" in event:
        with contextlib.suppress(DecodeError):
            found.append(decode._dataset(event["dataset"], "dataset"))
    for key in ("inputs", "outputs"):
        with contextlib.suppress(DecodeError):
            found += decode._datasets(event, key)
    return found


@pytest.fixture(autouse=True)
def empty_memo() -> None:
    decode._LINKS.clear()


def _lineage(ns: str, name: str, fields: int, **spec: Any) -> dict[str, Any]:
    source = {"namespace": "file", "name": "in"}
    facet = {
        "fields": {
            f"c{i}": {"inputFields": [{**source, "field": f"c{i}", **spec}]} for i in range(fields)
        }
    }
    return {"namespace": ns, "name": name, "facets": {"columnLineage": facet}}


def agree_twice(found: list[dict[str, Any]]) -> None:
    """Each dataset's edges, derived and then answered from the memo, are as derived
    without it."""
    for _ in range(2):
        for dataset in found:
            assert decode._column_links(dataset) == uncached(dataset)


def test_producers_edges_seen_again_are_the_same() -> None:
    found = [d for raw in producer_samples() for d in datasets(json.loads(raw))]
    assert sum(bool(uncached(d)) for d in found) >= 3
    agree_twice(found)
    assert decode._LINKS


@FUZZ
@given(events)
def test_fuzzed_edges_are_the_same_remembered_or_not(drawn: dict[str, Any]) -> None:
    with contextlib.suppress(DecodeError):  # the event as the writer reads it
        agree_twice(datasets(decode.read_event(_encoded(drawn))[0]))


def test_the_same_facet_on_another_dataset_gives_that_datasets_edges() -> None:
    one, other = _lineage("file", "a", 2), _lineage("s3://bucket", "a", 2)
    other["facets"] = one["facets"]  # the very same facet object
    assert decode._column_links(one)[0][1] == "datasetField:file:a:c0"
    assert decode._column_links(other)[0][1] == "datasetField:s3://bucket:a:c0"


def test_facets_that_differ_only_in_a_value_kind_are_kept_apart() -> None:
    masked = _lineage("file", "a", 1, transformations=[{"type": "DIRECT", "masking": True}])
    counted = _lineage("file", "a", 1, transformations=[{"type": "DIRECT", "masking": 1}])
    for _ in range(2):
        assert decode._column_links(masked)[0][6] == 1
        assert decode._column_links(counted)[0][6] == 0


def _charged(links: Any) -> int:
    total = 0
    for key in links:
        ns, name, facet = orjson.loads(key)
        edges = decode._derive_links(ns, name, facet)
        text = sum(len(a) + len(b) + len(t) + len(s) + len(d) for a, b, _, t, s, d, _ in edges)
        total += len(key) + text + links.PER_LINK * len(edges)
    return total


def test_many_distinct_facets_stay_within_entries_and_bytes() -> None:
    clears, before = 0, 0
    for i in range(300):
        dataset = _lineage("file", f"t{i}_" + "x" * 200, 150)
        assert len(orjson.dumps(dataset)) <= memo.KEY_MAX  # remembered, not skipped
        assert decode._column_links(dataset) == uncached(dataset)
        clears += len(decode._LINKS) <= before
        before = len(decode._LINKS)
        assert _charged(decode._LINKS) == decode._LINKS.bytes <= decode._LINKS.max_bytes
        assert len(decode._LINKS) <= decode._LINKS.max_entries
    assert clears >= 2
    assert decode._LINKS


def test_what_the_memo_holds_is_what_it_is_charged() -> None:
    """Edges hold their node ids as new strings: the memory held stays within the
    byte budget all the same."""
    facets = [_lineage("file", f"t{i}", 400) for i in range(120)]
    gc.collect()
    tracemalloc.start()
    try:
        base, peak = tracemalloc.get_traced_memory()[0], 0
        for dataset in facets:
            decode._column_links(dataset)
            gc.collect()
            peak = max(peak, tracemalloc.get_traced_memory()[0] - base)
    finally:
        tracemalloc.stop()
    assert peak <= decode._LINKS.max_bytes * 5 // 4
