"""The writer decodes each input, output or declared dataset once (`decode._DATASETS`,
keyed by the dataset's JSON): whatever it has seen before, every event gives the rows,
edges and refusals it gives with nothing cached: for producers' events, fuzzed events,
and datasets that differ from one already seen in any single value."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.bench_warehouse import stage_events
from consumers.otel.decode import DecodeError
from consumers.warehouse import decode
from consumers.warehouse.batch import decode_lineage_batch
from tests.unit.test_openlineage_fuzz import FUZZ, events, json_values
from tests.unit.test_warehouse_batch import _encoded, producer_samples

Outcome = dict[str, list[dict[str, Any]]] | str


def _decoded(raw: bytes) -> Outcome:
    try:
        return decode.decode_lineage(raw)
    except DecodeError as exc:
        return f"{exc.reason}: {exc.detail}"
    except Exception as exc:  # a decoder bug: the same one either way
        return f"bug: {type(exc).__name__}"


def _forget() -> None:
    decode._DATASETS.clear()
    decode._SCHEMAS.clear()
    decode._PAYOFF.reset()  # keying on: every test here compares remembered answers


def uncached(raw: bytes) -> Outcome:
    """What the event gives with nothing remembered (and nothing left remembered)."""
    _forget()
    try:
        return _decoded(raw)
    finally:
        _forget()


def cached(raw: bytes) -> Outcome:
    """What it gives with whatever the caches hold now."""
    return _decoded(raw)


def batched(records: list[bytes]) -> list[Outcome]:
    """The batch path's outcomes, as row dicts."""
    out: list[Outcome] = []
    for result in decode_lineage_batch(records):
        if isinstance(result, DecodeError):
            out.append(f"{result.reason}: {result.detail}")
        else:
            out.append({t: rows.rows() for t, rows in result.items() if rows.length})
    return out


@pytest.fixture(autouse=True)
def empty_caches() -> Iterator[None]:
    _forget()
    yield
    _forget()


def _nonempty(outcome: Outcome) -> Outcome:
    return outcome if isinstance(outcome, str) else {t: r for t, r in outcome.items() if r}


def test_producers_events_give_the_same_rows_cached_or_not() -> None:
    samples = producer_samples() + [value for _, value in stage_events(30)]
    expected = [uncached(raw) for raw in samples]
    for _ in range(2):  # the second round finds every dataset remembered
        assert [cached(raw) for raw in samples] == expected
        assert batched(samples) == [_nonempty(e) for e in expected]
    assert len(decode._DATASETS) > 20


def test_a_dataset_seen_again_is_decoded_once() -> None:
    """The cache is in use (so the other tests compare a remembered answer)."""
    (_, raw), *_ = stage_events(1)
    event, ev = decode.read_event(raw)
    first, _ = decode.datasets_and_links(event, ev)
    again, _ = decode.datasets_and_links(*decode.read_event(raw))
    assert first and all(a[1] is b[1] for a, b in zip(first, again, strict=True))


@FUZZ
@given(st.lists(events.map(_encoded), min_size=1, max_size=6))
def test_fuzzed_events_give_the_same_outcome_cached_or_not(records: list[bytes]) -> None:
    expected = [uncached(raw) for raw in records]
    for _ in range(2):
        assert [cached(raw) for raw in records] == expected


# ------------------------------------------------------------- the key is the whole dataset

BASE: dict[str, Any] = {
    "namespace": "s3://lake",
    "name": "clean/orders",
    "facets": {
        "schema": {
            "_producer": "p",
            "fields": [
                {"name": "id", "type": "int"},
                {"name": "amount", "type": "double", "fields": [{"name": "cents", "type": "int"}]},
            ],
        },
        "columnLineage": {
            "fields": {
                "amount": {
                    "inputFields": [
                        {
                            "namespace": "postgres://db:5432",
                            "name": "public.orders",
                            "field": "amount",
                            "transformations": [
                                {
                                    "type": "DIRECT",
                                    "subtype": "IDENTITY",
                                    "description": "d",
                                    "masking": False,
                                }
                            ],
                        }
                    ]
                },
                "id": {
                    "inputFields": [{"namespace": "n", "name": "t", "field": "id"}],
                    "transformationType": "IDENTITY",
                    "transformationDescription": "copied",
                },
            },
            "dataset": [{"namespace": "n", "name": "t", "field": "region"}],
        },
        "dataQualityMetrics": {"rowCount": 5, "bytes": 7, "fileCount": 1},
    },
    # Each statistics facet gives one of the three counts (the first to have it wins).
    "inputFacets": {"inputStatistics": {"rowCount": 11, "size": 12}},
    "outputFacets": {"outputStatistics": {"rowCount": 10}},
}


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, (*path, i))
    else:
        yield path, node


def _others(value: Any) -> list[Any]:
    """Values in place of `value` that a key must tell apart from it."""
    if isinstance(value, bool):
        return [not value, int(value), None]
    if isinstance(value, int):
        return [value + 1, float(value), str(value), -value - 1]
    if isinstance(value, str):
        return [value + "x", "", 1, value.upper() + "_"]
    return [0, "x"]


def _with(dataset: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(dataset)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


def _events(dataset: dict[str, Any]) -> list[bytes]:
    """`dataset` as an input, an output and a declared dataset."""
    run = {
        "eventType": "COMPLETE",
        "eventTime": "2026-11-01T12:00:00Z",
        "run": {"runId": "0190c4b0-0000-7000-8000-000000000001"},
        "job": {"namespace": "etl", "name": "orders"},
        "producer": "p",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }
    declared = {
        "eventTime": "2026-11-01T12:00:00Z",
        "producer": "p",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent",
        "dataset": dataset,
    }
    return [
        orjson.dumps({**run, "inputs": [dataset]}),
        orjson.dumps({**run, "outputs": [dataset]}),
        orjson.dumps(declared),
    ]


def test_a_dataset_differing_in_any_one_value_is_decoded_anew() -> None:
    """Each value of a dataset, changed alone (to another value of its kind, or of
    another kind that reads alike: 1 and 1.0, true and 1), after the original was
    remembered: the answer is the one for the changed dataset. A key that left out any
    part the rows read would answer for the original."""
    visible = set()
    for path, value in _leaves(BASE):
        for other in _others(value):
            changed = _with(BASE, path, other)
            for before, after in zip(_events(BASE), _events(changed), strict=True):
                expected = uncached(after)
                cached(before)  # the original is remembered
                assert cached(after) == expected, (path, other)
                if expected != uncached(before):
                    visible.add(path[:2])
    # The changes reach every part the rows read (else the check above proves little).
    assert {
        ("namespace",),
        ("name",),
        ("facets", "schema"),
        ("facets", "columnLineage"),
        ("facets", "dataQualityMetrics"),
        ("inputFacets", "inputStatistics"),
        ("outputFacets", "outputStatistics"),
    } <= visible


@FUZZ
@given(st.data())
def test_any_change_to_a_fuzzed_dataset_is_decoded_anew(data: st.DataObject) -> None:
    drawn = data.draw(events)
    datasets = [
        (key, i)
        for key in ("inputs", "outputs")
        if isinstance(drawn.get(key), list)
        for i, d in enumerate(drawn[key])
        if isinstance(d, dict) and d
    ]
    if not datasets:
        return
    key, i = data.draw(st.sampled_from(datasets))
    leaves = list(_leaves(drawn[key][i], (key, i)))
    if not leaves:  # only empty containers
        return
    path, _ = data.draw(st.sampled_from(leaves))
    changed = _with(drawn, path, data.draw(json_values))
    before, after = _encoded(drawn), _encoded(changed)
    expected = uncached(after)
    cached(before)
    assert cached(after) == expected


def test_edges_follow_the_column_lineage_fields_order_whatever_was_seen_first() -> None:
    """Sorted JSON is the same for both orders; the edges are not (they follow the
    facet's order), so the order is part of the key when it is not the sorted one."""
    fields = BASE["facets"]["columnLineage"]["fields"]
    turned = _with(BASE, ("facets", "columnLineage", "fields"), dict(reversed(fields.items())))
    assert list(turned["facets"]["columnLineage"]["fields"]) != sorted(fields)
    for first, then in ((BASE, turned), (turned, BASE)):
        for before, after in zip(_events(first), _events(then), strict=True):
            expected = uncached(after)
            cached(before)
            assert cached(after) == expected
    outcome = uncached(_events(turned)[1])
    assert not isinstance(outcome, str)
    edges = outcome["lineage_edges"]
    assert [e["Dst"].rsplit(":", 1)[1] for e in edges if e["Kind"] == "column"][:2] == [
        "id",
        "amount",
    ]


def _orjson_sorted(raw: bytes) -> bytes | None:
    try:
        return orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        return None


@FUZZ
@given(events.map(_encoded))
def test_the_event_json_written_in_parts_is_orjsons_sorted_json(raw: bytes) -> None:
    """`EventHash` and `Payload` come from it: the same bytes as one sorted dump, and
    each dataset's key is that dataset's part of them."""
    whole = _orjson_sorted(raw)
    if whole is None:
        return
    canonical, datasets = decode._canonical(orjson.loads(raw))
    assert canonical == whole
    for key, texts in datasets.items():
        value = orjson.loads(raw)[key]
        items = [value] if key == "dataset" else value
        assert texts == [orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in items]


def test_odd_top_level_keys_are_sorted_as_orjson_sorts_them() -> None:
    keys = ["é", "e", "E", "🕷", "\u2028", "\uffff", "\x7f", "", " ", "inputs", "Z", "outputs"]
    event = {key: i for i, key in enumerate(keys)} | {"inputs": [{"b": 1, "a": 2}], "outputs": []}
    raw = json.dumps(event).encode()
    assert decode._canonical(orjson.loads(raw))[0] == _orjson_sorted(raw)
    for sample in producer_samples():
        assert decode._canonical(orjson.loads(sample))[0] == _orjson_sorted(sample)


def test_an_event_orjson_refused_is_not_cached_nor_answered_from_the_cache() -> None:
    """`NaN` (which Python's parser takes and orjson writes as `null`) must not find the
    dataset whose statistic is `null`."""
    plain = json.loads(_events(BASE)[1])
    plain["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] = None
    remembered = orjson.dumps(plain)
    odd = remembered.replace(b'"rowCount":null', b'"rowCount":NaN')
    assert odd != remembered
    expected = uncached(odd)
    cached(remembered)
    held = len(decode._DATASETS)
    assert cached(odd) == expected
    assert len(decode._DATASETS) == held  # nothing remembered from the refused parse


# --------------------------------------------------------------------------------- bounds


def test_distinct_datasets_keep_the_cache_bounded_in_entries_and_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(decode._Payoff, "want_keys", lambda _: True)  # keyed though it misses
    for i in range(decode._DATASETS.max_entries + 50):
        dataset = {**BASE, "name": f"t{i}"}
        decode.decode_lineage(_events(dataset)[1])
        assert len(decode._DATASETS) <= decode._DATASETS.max_entries
    big = [{"name": f"c{j}_" + "x" * 40, "type": "int"} for j in range(1000)]  # ~50 KiB
    for i in range(150):
        dataset = {"namespace": "n", "name": f"big{i}", "facets": {"schema": {"fields": big}}}
        decode.decode_lineage(_events(dataset)[0])
        schemas = [orjson.loads(key)["facets"]["schema"] for key in decode._DATASETS]
        fields = [len(decode._fields(schema)[0]) for schema in schemas]  # nested ones too
        held = sum(len(key) for key in decode._DATASETS) + decode._DATASETS.PER_FIELD * sum(fields)
        assert held == decode._DATASETS.bytes <= decode._DATASETS.max_bytes
    assert decode._DATASETS  # still caching


def test_a_dataset_past_the_key_limit_is_decoded_every_time() -> None:
    fields = [{"name": f"c{j}_" + "x" * 60, "type": "int"} for j in range(1200)]  # > 64 KiB
    dataset = {"namespace": "n", "name": "wide", "facets": {"schema": {"fields": fields}}}
    raw = _events(dataset)[0]
    assert len(orjson.dumps(dataset)) > decode._DATASET_KEY_MAX
    assert cached(raw) == cached(raw) == uncached(raw)
    assert not decode._DATASETS


def test_keying_stops_while_nothing_hits_and_resumes_when_datasets_repeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Distinct datasets turn keying off (a probe now and then still keys one event);
    repeating ones turn it back on. The rows are the same throughout."""
    monkeypatch.setattr(decode, "_PAYOFF", decode._Payoff(window=64))  # a shorter run
    distinct = [value for _, value in stage_events(400, distinct=True)]
    repeating = [value for _, value in stage_events(20)] * 60  # 20 jobs' datasets
    stream = distinct + repeating
    expected = [uncached(raw) for raw in stream]
    keyed = []
    for i, (raw, outcome) in enumerate(zip(stream, expected, strict=True)):
        keyed.append(decode._PAYOFF.keying)
        assert cached(raw) == outcome
        if i == len(distinct) - 1:  # most events of the distinct run were not keyed
            assert len(decode._DATASETS) < len(distinct) / 2
    assert keyed[0] and not keyed[len(distinct) - 1]
    assert keyed[-1]  # on again once datasets repeat
