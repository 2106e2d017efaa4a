"""The compiled decoder (`native/`, `consumers/warehouse/native.py`) against the Python
rules it stands in for: whatever it takes, it stores exactly as they do (the same
rows, cell for cell, the same Payload bytes and so the same EventHash); whatever they
refuse, it declines; and it takes what producers send, so the writer's common path is
really the compiled one."""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from consumers.otel.decode import DecodeError
from consumers.warehouse import batch, native
from tests.unit.test_openlineage_fuzz import FUZZ, events, json_texts, raw_bodies
from tests.unit.test_warehouse_batch import _encoded, batch_path, producer_samples, row_path

SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/"


def taken(records: Sequence[bytes]) -> list[bool]:
    """Which records the compiled decoder takes."""
    assert native.decode_batch is not None
    out = native.decode_batch(list(records))
    assert out is not None
    return [rows is not None for rows in out[0]]


def alike(records: Sequence[bytes]) -> list[bool]:
    """The batch path (compiled, the Python rules for what it declines) gives each
    record the outcome and every table the rows the Python rules alone give; and the
    compiled decoder declines whatever they refuse. Which records it took."""
    outcomes, rows = row_path(records)
    batch_outcomes, arrow = batch_path(records)
    assert batch_outcomes == outcomes
    assert {t: r.rows() for t, r in arrow.items()} == {t: rows.get(t, []) for t in arrow}
    took = taken(records)
    for outcome, took_it in zip(outcomes, took, strict=True):
        assert outcome == "stored" or not took_it, outcome
    return took


def run_event(**extra: Any) -> dict[str, Any]:
    event = {
        "eventTime": "2026-11-01T12:00:00.123Z",
        "eventType": "COMPLETE",
        "producer": "https://example.com/producer",
        "schemaURL": SPEC + "RunEvent",
        "run": {"runId": "0190d5a8-6c7e-7e0c-9b2a-0c3c2f0b4a11"},
        "job": {"namespace": "etl", "name": "orders"},
    }
    event.update(extra)
    return event


def test_the_compiled_decoder_is_installed() -> None:
    """`scripts/setup.sh` builds it (`pip install ./native`); without it every record
    takes the Python rules and this file would test nothing."""
    assert native.decode_batch is not None, "pip install ./native (scripts/setup.sh does)"


def test_the_columns_bytes_come_read_only_and_outlive_the_call() -> None:
    """The columns are handed over without a copy (`native/src/buffer.rs`): each is a
    read-only buffer that Arrow keeps alive: the arrays read after everything else
    that referred to the buffers is gone still hold what they held."""
    import gc

    import pyarrow as pa

    records = producer_samples()
    assert native.decode_batch is not None
    decoded = native.decode_batch(list(records))
    assert decoded is not None
    _taken, events, io, edges = decoded
    tag, rows, offsets, data = events["Payload"]
    assert tag == "s" and rows > 0
    view = memoryview(data)
    assert view.readonly and view.format == "B" and view.nbytes == len(data) > 0
    with pytest.raises(TypeError):
        view[0] = 0  # nothing may change bytes an Arrow array reads
    payloads = pa.Array.from_buffers(
        pa.string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    assert type(data).__name__ == "Buffer"  # the decoder's own bytes, not a `bytes` copy
    view.release()
    tables = native.tables(batch._TABLES, [events, io, edges])
    first = json.loads(payloads[0].as_py())
    del decoded, events, io, edges, offsets, data
    gc.collect()
    assert json.loads(payloads[0].as_py()) == first
    assert tables[0].column("Payload").to_pylist()[0] == payloads[0].as_py()


def test_producers_events_are_all_taken_and_stored_alike() -> None:
    samples = producer_samples()
    assert all(alike(samples))


@FUZZ
@given(st.lists(st.one_of(events.map(_encoded), raw_bodies), min_size=1, max_size=12))
def test_fuzzed_batches_are_stored_alike(records: list[bytes]) -> None:
    alike(records)


def test_the_fuzzed_events_exercise_the_compiled_path() -> None:
    """Of the fuzzed events the Python rules store, the compiled decoder takes a good
    share (it declines odd values, never a whole kind of event), and declines some."""
    drawn: list[bytes] = []

    @seed(7)
    @settings(FUZZ, derandomize=False, max_examples=400)
    @given(events.map(_encoded))
    def draw(record: bytes) -> None:
        drawn.append(record)

    draw()
    stored = [raw for raw in drawn if row_path([raw])[0] == ["stored"]]
    took = alike(stored)
    assert len(stored) > 100
    assert 0.3 * len(stored) < sum(took) < len(stored)


@FUZZ
@given(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(["x", "rowCount"]))
def test_floats_are_written_as_orjson_writes_them(value: float, key: str) -> None:
    """Every finite float: the Payload is orjson's text of it (positional from 1e-5 to
    1e16, else scientific with a signed exponent), and a row count is its truncation."""
    stats = {"outputStatistics": {key: value}}
    event = run_event(outputs=[{"namespace": "s3://b", "name": "t", "outputFacets": stats}])
    raw = orjson.dumps(event)
    assert alike([raw]) == [True]


@FUZZ
@given(
    st.builds(
        lambda digits, sign, fraction, exp: (
            ("-" if sign else "") + (digits.lstrip("0") or "0") + fraction + exp
        ),
        st.text(string.digits, min_size=1, max_size=30),
        st.booleans(),
        st.one_of(st.just(""), st.text(string.digits, min_size=1, max_size=30).map(".{}".format)),
        st.one_of(
            st.just(""),
            st.builds(
                "{}{}{}".format,
                st.sampled_from("eE"),
                st.sampled_from(["", "+", "-"]),
                st.integers(0, 400),
            ),
        ),
    )
)
def test_number_texts_are_read_as_orjson_reads_them(literal: str) -> None:
    """A number as sent (long digits, exponents, past 64 bits, past a double): stored
    alike, or declined where the Python rules read it otherwise."""
    raw = orjson.dumps(run_event())
    alike([raw.replace(b'"eventType"', b'"n":' + literal.encode() + b',"eventType"')])


@FUZZ
@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=6))
def test_keys_are_sorted_and_texts_escaped_as_orjson_does(facet: dict[str, str]) -> None:
    """Any text (control characters, quotes, backslashes, beyond the BMP) in keys and
    values, sent in any order and with any escapes: taken, and the Payload's bytes
    are orjson's sorted, escaped form."""
    event = run_event(run={"runId": "r", "facets": {"custom": facet}})
    raw = json.dumps(event, ensure_ascii=True).encode()  # \\uXXXX escapes throughout
    assert alike([raw, orjson.dumps(event)]) == [True, True]


time_parts = st.tuples(
    st.integers(1900, 2262),
    st.integers(0, 13),
    st.integers(0, 32),
    st.sampled_from(["T", "t", " "]),
    st.integers(0, 25),
    st.integers(0, 60),
    st.one_of(st.none(), st.integers(0, 60)),
    st.one_of(st.none(), st.text("0123456789", max_size=12)),
    st.sampled_from(["", "Z", "z", "+00:00", "-05:30", "+0530", "+01", "-23:59:59", " Z", "+05:3"]),
    st.sampled_from(["", " "]),
)


@FUZZ
@given(time_parts)
def test_event_times_are_read_as_the_python_rules_read_them(parts: tuple[Any, ...]) -> None:
    """ISO 8601 times as producers write them, near and past the edges (month 13, day
    32, 24:00, a fraction past nanoseconds, offsets in every form): the same instant,
    or the same refusal; and every such time the Python rules take is taken."""
    year, month, day, sep, hour, minute, second, fraction, zone, pad = parts
    text = f"{pad}{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}"
    if second is not None:
        text += f":{second:02d}"
        if fraction is not None:
            text += "." + fraction
    text += zone + pad
    raw = orjson.dumps(run_event(eventTime=text))
    outcomes, _ = row_path([raw])
    assert alike([raw]) == [outcomes == ["stored"]]


@pytest.mark.parametrize(
    "raw",
    [
        # What orjson reads otherwise: an integer past 64 bits (a float), a lone surrogate.
        orjson.dumps(run_event()).replace(b'"eventType"', b'"n":123456789012345678901,"eventType"'),
        orjson.dumps(run_event()).replace(b'"orders"', b'"\\ud800"'),
        # Python's `str` of a float, and case beyond ASCII.
        orjson.dumps(run_event(job={"namespace": "etl", "name": 1.5})),
        orjson.dumps(run_event(run={"runId": "ÀBC"})),
        orjson.dumps(run_event(eventType="straße")),
        # A key twice (Python keeps the last value where the first was).
        b'{"eventTime":"2026-11-01T12:00:00Z","run":{"runId":"a","runId":"b"},'
        b'"job":{"namespace":"n","name":"j"}}',
        # Unusual times: a number of seconds as a float, a tab, a Unicode digit.
        orjson.dumps(run_event(eventTime=1793534400.5)),
        orjson.dumps(run_event(eventTime="2026-11-01T12:00:00\tZ")),
        orjson.dumps(run_event(eventTime="2026-11-01T12:00:0\u0663Z")),
        # A transformation's type sent as true (Python writes "True").
        orjson.dumps(
            run_event(
                outputs=[
                    {
                        "namespace": "s3://b",
                        "name": "t",
                        "facets": {
                            "columnLineage": {
                                "fields": {
                                    "a": {
                                        "inputFields": [
                                            {
                                                "namespace": "s3://b",
                                                "name": "s",
                                                "field": "a",
                                                "transformations": [{"type": True}],
                                            }
                                        ]
                                    }
                                }
                            }
                        },
                    }
                ]
            )
        ),
        # Nesting past the compiled reader's depth.
        orjson.dumps(run_event(run={"runId": "r", "facets": {"deep": [[[[[]]]]] * 1}})).replace(
            b"[[[[[]]]]]", b"[" * 200 + b"]" * 200
        ),
    ],
)
def test_what_it_does_not_read_as_python_does_goes_to_the_python_rules(raw: bytes) -> None:
    outcomes, _ = row_path([raw])
    assert outcomes == ["stored"]  # each one stored, by the Python rules
    assert alike([raw, *producer_samples()[:2]]) == [False, True, True]


@pytest.mark.parametrize(
    "value",
    [
        b"01",
        b"-01",
        b"1.",
        b".5",
        b"-",
        b"+1",
        b"1e",
        b"NaN",
        b"[1,]",
        b'{"a":1,}',
        b"tru",
        b'"\x01"',
        b'"\t"',
        b'"\xff"',
        b'"\\x"',
        b'"\\u12"',
        b"1 2",
        b"nul",
    ],
)
def test_json_the_python_rules_refuse_is_declined(value: bytes) -> None:
    """Each value, in an event that is otherwise one the compiled decoder takes."""
    good = orjson.dumps(run_event())
    bad = good.replace(b'"eventType"', b'"n":' + value + b',"eventType"')
    assert row_path([bad])[0][0].startswith("invalid_json")
    assert alike([good, bad, good + b" x", b"[" + good + b"]", b"\xef\xbb\xbf" + good]) == [
        True,
        *[False] * 4,
    ]


@FUZZ
@given(json_texts())
def test_odd_numbers_and_tokens_are_judged_alike(raw: bytes) -> None:
    alike([raw])


@pytest.mark.parametrize("where", ["tables", "decode_batch"])
def test_a_bug_in_the_compiled_path_hands_the_batch_to_the_python_rules(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    """A failure in building the tables, or in the compiled call itself (here: a record
    it cannot take as bytes), is logged and the batch is the Python rules', whole."""
    samples = producer_samples()[:6]

    def broken(*_: Any) -> Any:
        raise ValueError("lineage_io: columns [...]")

    want = row_path(samples)
    if where == "tables":
        monkeypatch.setattr(native, "tables", broken)
    else:
        samples[2] = bytearray(samples[2])  # type: ignore[call-overload]
    outcomes, arrow = batch_path(samples)
    assert "the Python rules take the batch" in caplog.text
    assert outcomes == want[0]
    assert {t: r.rows() for t, r in arrow.items()} == {t: want[1].get(t, []) for t in arrow}


def test_a_column_missing_from_the_compiled_tables_is_a_bug_not_a_table() -> None:
    assert native.decode_batch is not None
    decoded = native.decode_batch(producer_samples()[:2])
    assert decoded is not None
    _, *columns = decoded
    del columns[1]["SchemaHash"]
    with pytest.raises(ValueError, match="lineage_io: columns"):
        native.tables(batch._TABLES, columns)


def test_a_refused_record_among_taken_ones_keeps_every_slice_in_place() -> None:
    samples = producer_samples()
    mixed = [samples[0], b"{", samples[1], orjson.dumps(run_event(run={"runId": "ÀB"})), samples[2]]
    assert alike(mixed) == [True, False, True, False, True]
    results = batch.decode_lineage_batch(mixed)
    assert isinstance(results[1], DecodeError)
    assert [len(r["lineage_events"]) for r in results if not isinstance(r, DecodeError)] == [1] * 4


# Values a producer may put where the rules read a cell: what the Python rules take
# as text or as false, and what the compiled decoder declines (a float, true, a list).
cells = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", "DIRECT", "IDENTITY", "é" * 70, "x" * 2100, None, False, 0, 0.0, -0.0]),
    st.sampled_from([True, 1, 2.5, [], [1], {}, {"a": 1}]),
)
field_trees = st.recursive(
    st.fixed_dictionaries({"name": st.text(max_size=4)}, optional={"type": cells}),
    lambda inner: st.fixed_dictionaries(
        {"name": st.text(max_size=4)},
        optional={"type": cells, "fields": st.one_of(st.lists(inner, max_size=3), cells)},
    ),
    max_leaves=8,
)
sources = st.fixed_dictionaries(
    {
        "namespace": st.sampled_from(["s3://b", "s3://c", "", 5]),
        "name": st.sampled_from(["t", "u"]),
    },
    optional={
        "field": st.sampled_from(["a", "b", "", None]),
        "transformations": st.lists(
            st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "type": cells,
                        "subtype": cells,
                        "description": cells,
                        "masking": st.sampled_from([True, 1, False, "true", None]),
                    },
                ),
                cells,
            ),
            max_size=3,
        ),
    },
)
column_lineage = st.fixed_dictionaries(
    {},
    optional={
        "fields": st.dictionaries(
            st.text(max_size=3),
            st.fixed_dictionaries(
                {},
                optional={
                    "inputFields": st.lists(sources, max_size=3),
                    "transformationType": cells,
                    "transformationDescription": cells,
                },
            ),
            max_size=3,
        ),
        "dataset": st.lists(sources, max_size=2),
    },
)
counts = st.one_of(
    st.integers(-(2**64), 2**64), st.floats(allow_nan=False), st.sampled_from([None, True, "7"])
)
statistics = st.dictionaries(
    st.sampled_from(["outputStatistics", "inputStatistics", "dataQualityMetrics"]),
    st.one_of(
        st.fixed_dictionaries(
            {},
            optional={"rowCount": counts, "size": counts, "bytes": counts, "fileCount": counts},
        ),
        cells,
    ),
    max_size=3,
)
rich_datasets = st.fixed_dictionaries(
    {"namespace": st.sampled_from(["s3://b", "file"]), "name": st.text(max_size=5)},
    optional={
        "facets": st.fixed_dictionaries(
            {},
            optional={
                "schema": st.fixed_dictionaries({"fields": st.lists(field_trees, max_size=4)}),
                "columnLineage": column_lineage,
            },
        ).flatmap(lambda f: statistics.map(lambda s: {**s, **f})),
        "outputFacets": statistics,
        "inputFacets": statistics,
    },
)
hex_ids = st.text("0123456789abcdefABCDEF", min_size=30, max_size=34)
run_facets = st.fixed_dictionaries(
    {},
    optional={
        "parent": st.fixed_dictionaries(
            {"run": st.fixed_dictionaries({"runId": st.sampled_from(["AbC", "", 7])})},
            optional={
                "job": st.fixed_dictionaries({"namespace": st.text(max_size=3), "name": cells}),
                "root": st.fixed_dictionaries(
                    {"run": st.fixed_dictionaries({"runId": st.text(max_size=4)})}
                ),
            },
        ),
        "trace": st.one_of(
            st.fixed_dictionaries({"traceId": st.one_of(hex_ids, hex_ids.map("{}\n".format))}),
            st.builds(
                "00-{}-{}-01".format, hex_ids, st.text("0123456789abcdef", min_size=16, max_size=16)
            ).map(lambda t: {"traceparent": t}),
        ),
        "errorMessage": st.fixed_dictionaries({"message": cells}),
    },
)


@FUZZ
@given(
    st.lists(rich_datasets, max_size=3),
    st.lists(rich_datasets, max_size=3),
    run_facets,
    st.sampled_from(["RunEvent", "DatasetEvent", "JobEvent"]),
)
def test_facets_the_rules_read_are_stored_alike(
    inputs: list[Any], outputs: list[Any], facets: dict[str, Any], kind: str
) -> None:
    """Nested schemas, column lineage (per-field transformations, the deprecated form,
    indirect sources), statistics in each facet place and of every type, parent, root,
    trace ids and errors, for each kind of event: stored alike, or declined."""
    event = run_event(
        schemaURL=SPEC + kind,
        inputs=inputs,
        outputs=outputs,
        run={"runId": "R-1", "facets": facets},
        dataset=outputs[0] if outputs else {"namespace": "n", "name": "d"},
    )
    alike([_encoded(event), json.dumps(event, sort_keys=True).encode()])


def _lineage(fields: dict[str, Any], indirect: list[Any] | None = None) -> dict[str, Any]:
    facet: dict[str, Any] = {"fields": fields}
    if indirect is not None:
        facet["dataset"] = indirect
    return facet


def _source(field: Any, *transformations: Any, namespace: Any = "s3://b") -> dict[str, Any]:
    return {
        "namespace": namespace,
        "name": "src",
        "field": field,
        "transformations": list(transformations),
    }


TAKEN = {
    "masking only when true": _lineage(
        {"a": {"inputFields": [_source("a", {"masking": 1}, {"masking": True}, {"masking": "x"})]}}
    ),
    "a source without a field or namespace is no edge": _lineage(
        {"a": {"inputFields": [_source(""), _source("a", namespace=""), _source("b")]}}
    ),
    "the deprecated form, once per field": _lineage(
        {
            "a": {
                "inputFields": [_source("a"), _source("b", "not a dict")],
                "transformationType": "INDIRECT",
                "transformationDescription": "d" * 2500,
            }
        },
        indirect=[_source("c", {"type": "INDIRECT", "subtype": "FILTER"})],
    ),
    "falsy cells are empty": _lineage(
        {"a": {"inputFields": [_source("a", {"type": None, "subtype": 0, "description": []})]}}
    ),
    "long cells are clipped in characters": _lineage(
        {"a": {"inputFields": [_source("a", {"type": "é" * 70, "description": "ü" * 2100})]}}
    ),
}


@pytest.mark.parametrize("facet", TAKEN.values(), ids=TAKEN.keys())
def test_column_lineage_forms_are_taken_and_stored_alike(facet: dict[str, Any]) -> None:
    nested = {"fields": [{"name": "a", "type": "struct", "fields": [{"name": "b"}, 7]}, {}]}
    output = {
        "namespace": "s3://b",
        "name": "out",
        "facets": {"columnLineage": facet, "schema": nested},
        "outputFacets": {"outputStatistics": {"rowCount": 2.9, "size": None, "bytes": 5}},
        "inputFacets": {"inputStatistics": {"size": 9, "fileCount": 2**63}},
    }
    facets = {
        "t": {"traceId": "AB" * 16 + "\n"},
        "u": {"traceparent": f"00-{'CD' * 16}-{'e' * 16}-01"},
    }
    event = run_event(outputs=[output], run={"runId": "R", "facets": facets})
    assert alike([orjson.dumps(event)]) == [True]
    _, arrow = batch_path([orjson.dumps(event)])
    assert arrow["lineage_edges"].rows()  # the facet gives edges


@pytest.mark.parametrize(
    "special", [b'\\"', b"\\\\", b"\\u0001", b"\\n", b"\x01", b"\t", b"\xc3\xa9"]
)
def test_a_string_is_read_whole_wherever_its_escape_or_control_character_falls(
    special: bytes,
) -> None:
    """The reader scans a string eight bytes at a time: an escape (taken), a raw control
    character (refused) or a multi-byte character at each offset of the first chunks."""
    event = orjson.dumps(run_event(run={"runId": "r", "facets": {"f": {"KEY": "VALUE"}}}))
    records = []
    for at in range(20):
        text = b'"' + b"a" * at + special + b"b" * (20 - at) + b'"'
        records += [event.replace(b'"KEY"', text), event.replace(b'"VALUE"', text)]
    took = alike(records)
    assert all(took) == (special not in (b"\x01", b"\t"))
