"""The writer flattens and hashes each schema facet once (`decode._schema`): whatever
it has seen before, it answers what `_fields` and the hash give for that facet now,
for producers' events, fuzzed events and facets that differ only in a value's kind."""

from __future__ import annotations

import gc
import hashlib
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


def uncached(schema: object) -> tuple[list[str], list[str], str]:
    """The io row's schema columns as computed before the cache."""
    names, types = decode._fields(schema)
    pairs = orjson.dumps(list(zip(names, types, strict=True)))
    return names, types, hashlib.blake2b(pairs, digest_size=16).hexdigest() if names else ""


def schemas(event: Any) -> list[object]:
    """Every dataset's schema facet in an event (what `_io_row` reads)."""
    if not isinstance(event, dict):
        return []
    found = []
    for key in ("inputs", "outputs"):
        for dataset in event.get(key) or []:
            if isinstance(dataset, dict) and isinstance(dataset.get("facets"), dict):
                found.append(dataset["facets"].get("schema"))
    return found


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    decode._SCHEMAS.clear()


def test_producers_schemas_seen_again_give_the_same_columns() -> None:
    facets = [s for raw in producer_samples() for s in schemas(json.loads(raw))]
    assert sum(isinstance(s, dict) and bool(s.get("fields")) for s in facets) > 10
    for _ in range(2):  # the second round answers from the cache
        for facet in facets:
            assert decode._schema(facet) == uncached(facet)
    assert decode._SCHEMAS


@FUZZ
@given(events)
def test_fuzzed_schemas_give_the_same_columns_cached_or_not(drawn: dict[str, Any]) -> None:
    try:  # the event as the writer reads it (texts storable)
        event, _ = decode.read_event(_encoded(drawn))
    except DecodeError:
        return
    for facet in schemas(event):
        assert decode._schema(facet) == uncached(facet)
        assert decode._schema(facet) == uncached(facet)


def test_facets_that_differ_only_in_a_value_kind_are_kept_apart() -> None:
    kinds = [
        {"fields": [{"name": "a", "type": "1"}]},
        {"fields": [{"name": "a", "type": 1}]},
        {"fields": [{"name": "a", "type": True}]},
        {"fields": [{"name": "a", "type": "string", "fields": [{"name": "b"}]}]},
        {"fields": [{"name": "a", "type": "string", "fields": []}]},
        {"fields": [{"name": "a"}, None, {"name": "b", "type": "int"}]},
    ]
    for _ in range(2):
        for facet in kinds:
            assert decode._schema(facet) == uncached(facet)


def test_a_row_changing_its_lists_does_not_change_the_next_rows() -> None:
    facet = {"fields": [{"name": "a", "type": "int"}]}
    names, types, _ = decode._schema(facet)
    names.append("changed")
    types.clear()
    assert decode._schema(facet) == uncached(facet)


def _charged(cache: Any) -> int:
    """What the cache's entries should be charged: each key, the text of the names and
    types it flattens to (nested ones too) and a share for each field's objects."""
    total = 0
    for key in cache:
        names, types = decode._fields(orjson.loads(key))
        total += len(key) + sum(map(len, names + types)) + cache.PER_FIELD * len(names)
    return total


def test_big_distinct_schemas_stay_within_the_byte_budget() -> None:
    # ~57 KiB facets (each under the 64 KiB a key may have), each new: 200 of them hold
    # ~11 MiB of keys alone, more than twice the budget, which empties the cache.
    decode._SCHEMAS.clear()
    clears, before = 0, 0
    for i in range(200):
        facet = {"fields": [{"name": f"c{i}_{j}_" + "x" * 40, "type": "int"} for j in range(800)]}
        assert len(orjson.dumps(facet)) <= memo.KEY_MAX  # cached, not skipped
        assert decode._schema(facet) == uncached(facet)
        clears += len(decode._SCHEMAS) <= before
        before = len(decode._SCHEMAS)
        assert _charged(decode._SCHEMAS) == decode._SCHEMAS.bytes <= decode._SCHEMAS.max_bytes
    assert clears >= 2
    assert decode._SCHEMAS  # still caching


def _held_at_most(facets: list[bytes]) -> int:
    """The most memory the cache held while `facets` (JSON) were decoded one by one."""
    decode._SCHEMAS.clear()
    gc.collect()
    tracemalloc.start()
    try:
        base, peak = tracemalloc.get_traced_memory()[0], 0
        for raw in facets:
            decode._schema(orjson.loads(raw))
            gc.collect()
            peak = max(peak, tracemalloc.get_traced_memory()[0] - base)
    finally:
        tracemalloc.stop()
        decode._SCHEMAS.clear()
    return peak


def test_what_the_cache_holds_is_what_it_is_charged() -> None:
    """Schemas of short fields hold several times their key's bytes in Python objects,
    nested fields repeat their parents' names, and orjson's output keeps the buffer it
    grew: the memory held stays within the byte budget all the same."""
    short = [
        orjson.dumps({"fields": [{"name": f"{i}_{j}", "type": "t"} for j in range(2200)]})
        for i in range(80)
    ]
    # One alone holds no more than it is charged (its key kept as an exact copy: the
    # buffer orjson grew for it is ~500 KiB).
    names, types = decode._fields(orjson.loads(short[0]))
    one = len(short[0]) + sum(map(len, names + types)) + decode._SCHEMAS.PER_FIELD * len(names)
    assert _held_at_most(short[:1]) <= one
    # Without the field charge 80 such schemas (~4.8 MiB of keys) held ~60 MiB.
    assert _held_at_most(short) <= decode._SCHEMAS.max_bytes * 5 // 4
    # A 28 KB struct name over 1,000 children flattens to ~28 MB of names a schema.
    nested = [
        orjson.dumps(
            {
                "fields": [
                    {
                        "name": f"{i}" + "s" * 28_000,
                        "type": "struct",
                        "fields": [{"name": f"c{j}", "type": "t"} for j in range(1000)],
                    }
                ]
            }
        )
        for i in range(6)
    ]
    assert all(len(raw) <= memo.KEY_MAX for raw in nested)
    assert _held_at_most(nested) <= decode._SCHEMAS.max_bytes * 5 // 4


def test_the_cache_stays_bounded() -> None:
    for i in range(decode._SCHEMAS.max_entries + 10):
        facet = {"fields": [{"name": f"c{i}", "type": "int"}]}
        assert decode._schema(facet) == uncached(facet)
        assert len(decode._SCHEMAS) <= decode._SCHEMAS.max_entries
