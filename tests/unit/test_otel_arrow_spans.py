"""Spans decoded a batch at a time into Arrow (`arrow_spans`) are stored exactly as the
Python row decoder stores them.

Each test stores the same OTLP requests twice into a real chdb: once the way the
consumer does now (`decode_trace_requests` per record, then `decode_trace_batch` for the
batch, Python for what it flags) and once through `decode_trace_columns` alone, then
compares every row of `otel_traces` and `pipeline_runs` as ClickHouse returns them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from consumers.otel import arrow_spans
from consumers.otel.arrow_spans import decode, decode_trace_batch, decode_trace_requests
from consumers.otel.backend import ChdbBackend
from consumers.otel.columns import ArrowRows, Columns, Pending, Rows, join
from consumers.otel.ddl import PIPELINE_RUNS, TRACES, Table
from consumers.otel.decode import (
    ATTR_PIPELINE,
    ATTR_RECORDS_IN,
    ATTR_RECORDS_OUT,
    ATTR_RUN_ID,
    ATTR_STAGE,
    INT64_MAX,
    DecodeError,
    decode_trace_columns,
)
from consumers.samples import T0, run_trace, span, traces_request
from tests.unit.test_otel_decode_fuzz import (
    FUZZ,
    _field,
    doubles,
    enums,
    int64s,
    mutated,
    texts,
    trace_requests,
)

pytestmark = pytest.mark.asyncio
MessageT = TypeVar("MessageT", bound=Message)
TABLES = (TRACES, PIPELINE_RUNS)
Outcome = dict[str, Rows] | str  # the rows per table, or the reason it was refused
Lazy = dict[str, Rows | Pending] | str


@pytest.fixture
async def chdb(tmp_path: Path) -> AsyncIterator[ChdbBackend]:
    backend = ChdbBackend(str(tmp_path / "chdb"), database="otel")
    await backend.setup()
    yield backend
    await backend.close()


@dataclass(frozen=True)
class Paths:
    """One topic's two ways to rows: the consumer's (`check` each record, then `batch`
    the pending ones, `columnar` saying which it flags) and the row decoder alone."""

    check: Callable[[bytes | None], Mapping[str, Rows | Pending]]
    columnar: Callable[[Sequence[bytes]], Any]
    batch: Callable[[list[bytes]], Sequence[Mapping[str, Rows] | DecodeError]]
    rows: Callable[[bytes | None], Mapping[str, Rows]]
    tables: tuple[Table, ...]


SPANS = Paths(decode_trace_requests, decode, decode_trace_batch, decode_trace_columns, TABLES)


def python_path(raw: bytes, paths: Paths = SPANS) -> Outcome:
    try:
        return dict(paths.rows(raw))
    except DecodeError as exc:
        return exc.reason


def batch_path(raws: Sequence[bytes], paths: Paths = SPANS) -> tuple[list[Outcome], set[int]]:
    """What the consumer does with a batch: check each record, decode the batch's pending
    ones at once (Python for what that flags). Also gives the flagged indexes."""
    first: list[Lazy] = []
    for raw in raws:
        try:
            first.append(dict(paths.check(raw)))
        except DecodeError as exc:
            first.append(exc.reason)
    lazy = [i for i, o in enumerate(first) if isinstance(o, dict) and _pending(o)]
    flagged = {lazy[j] for j in paths.columnar([raws[i] for i in lazy]).flagged}
    settled = paths.batch([raws[i] for i in lazy])
    out: list[Outcome] = []
    for i, outcome in enumerate(first):
        if i in lazy:
            result = settled[lazy.index(i)]
            out.append(result.reason if isinstance(result, DecodeError) else dict(result))
        else:
            assert not isinstance(outcome, dict) or not _pending(outcome)
            out.append(outcome if isinstance(outcome, str) else _rows(outcome))
    return out, flagged


def _pending(tables: Mapping[str, Rows | Pending]) -> bool:
    return any(isinstance(rows, Pending) for rows in tables.values())


def _rows(tables: Mapping[str, Rows | Pending]) -> dict[str, Rows]:
    return {k: v for k, v in tables.items() if not isinstance(v, Pending)}


async def stored(
    store: ChdbBackend, outcomes: Sequence[Outcome], token: str, tables: Sequence[Table] = TABLES
) -> dict[str, str]:
    """Insert the outcomes' rows (one insert per table, as a batch), read them back, empty
    the tables. Rows sorted, as JSON text: every column, as ClickHouse stores it."""
    out = {}
    for table in tables:
        parts = [o[table.name] for o in outcomes if isinstance(o, dict)]
        if parts:
            await store.insert(table, join(table, parts), f"{token}/{table.name}")
        out[table.name] = await store.query_text(f"SELECT * FROM otel.{table.name} ORDER BY ALL")
        await store.query(f"TRUNCATE TABLE otel.{table.name}")
    return out


async def assert_same(store: ChdbBackend, raws: Sequence[bytes], paths: Paths = SPANS) -> set[int]:
    """Both paths refuse the same requests for the same reason and store the same rows."""
    lazy, flagged = batch_path(raws, paths)
    eager = [python_path(raw, paths) for raw in raws]
    assert [o if isinstance(o, str) else "" for o in lazy] == [
        o if isinstance(o, str) else "" for o in eager
    ]
    lazy_rows = await stored(store, lazy, "lazy", paths.tables)
    assert lazy_rows == await stored(store, eager, "eager", paths.tables)
    return flagged


def kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def typed_span(name: str, n: int, **kw: Any) -> trace_pb2.Span:
    """A span whose attributes take every value the SQL renders itself."""
    s = span(bytes([n + 1] * 16), bytes([n + 1] * 8), name, **kw)
    s.attributes.extend(
        [
            kv("s", AnyValue(string_value="ünï ✓ 𝄞")),
            kv("empty", AnyValue(string_value="")),
            kv("i", AnyValue(int_value=-(2**63))),
            kv("b", AnyValue(bool_value=False)),
            kv("d", AnyValue(double_value=0.1)),
            kv("big", AnyValue(double_value=123456789012345680.0)),
            kv("neg0", AnyValue(double_value=-0.0)),
            kv("raw", AnyValue(bytes_value=b"\x00\xffab")),
            kv("none", AnyValue()),
        ]
    )
    return s


def rich_request() -> bytes:
    """Events and links with attributes, zero and empty ids, unicode, exact nanoseconds
    at both ends of DateTime64(9), enums outside their range, several resources and
    scopes, run rows from span and resource attributes, a tie between two stage spans."""
    first = typed_span("räkna ✓", 0, start=0, duration=INT64_MAX, parent=bytes(8))
    first.kind = -1  # type: ignore[assignment]
    first.status.code = 7  # type: ignore[assignment]
    first.status.message = "fel: ✗"
    first.trace_state = "k=v"
    event = first.events.add(time_unix_nano=INT64_MAX, name="é")
    event.attributes.extend([kv("n", AnyValue(int_value=2)), kv("d", AnyValue(double_value=2.5))])
    first.events.add(time_unix_nano=0, name="")
    link = first.links.add(trace_id=bytes(16), span_id=b"", trace_state="t")
    link.attributes.append(kv("why", AnyValue(string_value="follows")))
    first.links.add(trace_id=bytes(range(16)), span_id=bytes([9] * 8))
    stage = {ATTR_RUN_ID: "run-1", ATTR_STAGE: "load", ATTR_RECORDS_IN: "12"}
    tie_a = span(bytes([5] * 16), bytes([5] * 8), "load a", start=T0 + 1, attributes=stage)
    tie_b = span(bytes([5] * 16), bytes([6] * 8), "load b", start=T0 + 2, attributes=stage)
    longer = span(
        bytes([5] * 16),
        bytes([7] * 8),
        "load c",
        duration=5_000_000,
        attributes={ATTR_RUN_ID: "run-1", ATTR_STAGE: "load", ATTR_RECORDS_OUT: 2**62},
    )
    odd_counts = span(
        bytes([5] * 16),
        bytes([8] * 8),
        "extract",
        attributes={ATTR_STAGE: "extract", ATTR_RECORDS_IN: "many", ATTR_RECORDS_OUT: ""},
    )
    one = traces_request([first, tie_a], service="svc ✓")
    two = traces_request([tie_b, longer, odd_counts], service="", region="eu")
    two.resource_spans[0].resource.attributes.extend(
        [kv(ATTR_RUN_ID, AnyValue(string_value="run-1")), kv(ATTR_PIPELINE, AnyValue())]
    )
    two.resource_spans[0].scope_spans.add().spans.append(
        span(bytes([5] * 16), bytes([9] * 8), "no scope", attributes={ATTR_RUN_ID: ""})
    )
    one.resource_spans.extend(two.resource_spans)
    return one.SerializeToString()


def with_attribute(value: AnyValue, key: str = "x") -> bytes:
    s = span(bytes([3] * 16), bytes([3] * 8), "flagged", attributes={ATTR_RUN_ID: "r"})
    s.attributes.append(kv(key, value))
    return traces_request([s]).SerializeToString()


async def test_the_store_decodes_rich_requests_as_python_does(chdb: ChdbBackend) -> None:
    raws = [rich_request(), run_trace("run-2").SerializeToString(), rich_request()]
    assert await assert_same(chdb, raws) == set()  # all three decoded as Arrow


async def test_odd_values_are_rendered_as_python_does_and_nested_ones_flagged(
    chdb: ChdbBackend,
) -> None:
    """Doubles (Go's format), record counts Python's `int()` reads and ClickHouse's would
    not: rendered value by value. An array value, a key given twice: the whole request
    is decoded in Python."""
    flagged_values = [
        AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)])),
        AnyValue(double_value=1e21),  # Go's 'f' format writes every digit
        AnyValue(double_value=5e-324),
        AnyValue(double_value=math.nan),
        AnyValue(double_value=-math.inf),
    ]
    raws = [with_attribute(v) for v in flagged_values]
    raws.append(with_attribute(AnyValue(string_value=" 12"), ATTR_RECORDS_IN))  # int() takes it
    raws.append(with_attribute(AnyValue(string_value="1_000"), ATTR_RECORDS_OUT))
    raws.append(with_attribute(AnyValue(string_value="99999999999999999999"), ATTR_RECORDS_IN))
    duplicate = trace_pb2.Span.FromString(
        span(bytes([4] * 16), bytes([4] * 8), "dup", attributes={"k": "first"}).SerializeToString()
    )
    duplicate.attributes.append(kv("k", AnyValue(string_value="last")))
    raws.append(traces_request([duplicate]).SerializeToString())
    clean = run_trace("run-3").SerializeToString()
    flagged = await assert_same(chdb, [clean, *raws, clean])
    assert flagged == {1, len(raws)}  # the array, the key given twice


async def test_requests_python_refuses_are_refused_for_the_same_reason(
    chdb: ChdbBackend,
) -> None:
    """The store flags them; Python refuses them as it always did (dead-lettered once)."""
    ok = span(bytes([1] * 16), bytes([1] * 8), "ok")
    bad = [
        span(bytes(16), bytes([1] * 8), "zero trace id"),
        span(bytes([1] * 15), bytes([1] * 8), "short trace id"),
        span(bytes([1] * 16), b"", "no span id"),
        span(bytes([1] * 16), bytes([1] * 8), "late", start=INT64_MAX, duration=1),
    ]
    late_event = span(bytes([1] * 16), bytes([1] * 8), "late event")
    late_event.events.add(time_unix_nano=INT64_MAX + 1)
    raws = [traces_request([ok, s]).SerializeToString() for s in [*bad, late_event]]
    lazy, flagged = batch_path(raws)
    assert lazy == ["invalid_span"] * len(raws)
    assert flagged == set(range(len(raws)))
    empty = ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans()])
    assert batch_path([empty.SerializeToString()])[0] == ["empty"]


def with_unknown_field(message: MessageT) -> MessageT:
    """`message` carrying field 99 (a varint), which no OTLP version defines."""
    return type(message).FromString(message.SerializeToString() + b"\x98\x06\x01")


async def test_unknown_fields_are_refused_or_stored_as_python_does(chdb: ChdbBackend) -> None:
    """Python refuses unknown fields in a ResourceSpans or a Span (not in a scope, an event,
    a link): the batch path refuses exactly those, for the reason Python gives."""

    def one(n: int, name: str) -> trace_pb2.Span:
        return span(bytes([n] * 16), bytes([n] * 8), name)

    def request(*spans: trace_pb2.Span) -> ExportTraceServiceRequest:
        return traces_request(list(spans))

    odd_event, odd_link = one(4, "event"), one(5, "link")
    odd_event.events.append(with_unknown_field(trace_pb2.Span.Event(name="e")))
    odd_link.links.append(with_unknown_field(trace_pb2.Span.Link(span_id=bytes([1] * 8))))
    odd_scope = request(one(6, "scope"))
    odd_scope.resource_spans[0].scope_spans[0].CopyFrom(
        with_unknown_field(odd_scope.resource_spans[0].scope_spans[0])
    )
    odd_resource = request(one(7, "resource"))
    odd_resource.resource_spans[0].CopyFrom(with_unknown_field(odd_resource.resource_spans[0]))
    bad_then_odd_resource = request(span(bytes(16), bytes([8] * 8), "zero trace id"))
    bad_then_odd_resource.resource_spans.extend(odd_resource.resource_spans)
    empty_odd_resource = ExportTraceServiceRequest(
        resource_spans=[with_unknown_field(trace_pb2.ResourceSpans())]
    )
    requests = [
        request(one(1, "ok")),
        request(one(1, "ok"), with_unknown_field(one(2, "odd span"))),
        request(with_unknown_field(span(bytes(16), bytes([3] * 8), "zero trace id"))),
        request(odd_event),
        request(odd_link),
        odd_scope,
        odd_resource,
        bad_then_odd_resource,
        empty_odd_resource,
    ]
    raws = [r.SerializeToString() for r in requests]
    await assert_same(chdb, raws)
    lazy, _ = batch_path(raws)
    refused = [o if isinstance(o, str) else "" for o in lazy]
    assert refused == ["", "decode", "invalid_span", "", "", "", "decode", "invalid_span", "decode"]


async def test_a_request_not_in_canonical_form_is_decoded_in_python_at_once() -> None:
    """Protobuf merges a message given as two (the second's name and ids win, attributes
    add up); the SQL never sees such a request."""
    first = span(bytes([1] * 16), bytes([1] * 8), "first", attributes={"a": 1})
    second = span(bytes([2] * 16), bytes([2] * 8), "second", attributes={"b": 2})
    merged = first.SerializeToString() + second.SerializeToString()
    raw = _field(1, _field(2, _field(2, merged)))  # request > resource spans > scope spans
    tables = decode_trace_requests(raw)
    assert not _pending(tables)
    spans = tables[TRACES.name]
    assert isinstance(spans, Columns)
    ((name, ids, attrs),) = [
        (r["SpanName"], r["SpanId"], r["SpanAttributes"]) for r in spans.rows()
    ]
    assert (name, ids, attrs) == ("second", "02" * 8, {"a": "1", "b": "2"})


async def test_arrow_and_python_rows_go_in_as_one_deduplicated_insert(
    chdb: ChdbBackend,
) -> None:
    """Slices of a batch's Arrow table and rows Python decoded are one insert under one
    token: sent again (a redelivered batch), it adds nothing; a record's slice alone
    (record by record) holds exactly its rows."""
    raws = [run_trace("run-4").SerializeToString(), run_trace("run-5").SerializeToString()]
    first, second = (t[TRACES.name] for t in decode_trace_batch(raws))  # type: ignore[index]
    assert isinstance(first, ArrowRows) and isinstance(second, ArrowRows)
    eager = decode_trace_columns(rich_request())[TRACES.name]
    rows = join(TRACES, [first, eager, second])
    assert isinstance(rows, ArrowRows)
    for _ in range(2):
        await chdb.insert(TRACES, rows, "batch/1/otel_traces")
    await chdb.insert(TRACES, second, "batch/1/otel_traces/1")
    (row,) = await chdb.query("SELECT count() AS n FROM otel.otel_traces")
    assert int(row["n"]) == len(first) + len(eager) + 2 * len(second) == 10 + 6 + 20
    assert second.rows() == decode_trace_columns(raws[1])[TRACES.name].rows()  # type: ignore[union-attr]


class Panic(BaseException):
    """As pyo3's PanicException, which a panic in the Rust parser raises: not an Exception."""


@pytest.mark.parametrize("error", [IndexError("a bug"), Panic("a panic")])
async def test_a_batch_the_columnar_decoder_fails_on_goes_to_the_row_decoder(
    monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    """A bug in the columnar decoder (an exception, or a panic) must not stall the
    partition: each request gets what `decode_trace_columns` gives it, rows or refusal."""

    def broken(records: Sequence[bytes]) -> None:
        raise error

    monkeypatch.setattr(arrow_spans, "decode", broken)
    good = run_trace("run-6").SerializeToString()
    bad = traces_request([span(bytes(16), bytes([1] * 8), "zero trace id")]).SerializeToString()
    first, second = decode_trace_batch([good, bad])
    assert isinstance(second, DecodeError) and second.reason == "invalid_span"
    assert not isinstance(first, DecodeError)
    spans = first[TRACES.name]
    assert isinstance(spans, Columns)
    assert spans.rows() == decode_trace_columns(good)[TRACES.name].rows()  # type: ignore[union-attr]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit, asyncio.CancelledError])
async def test_a_stop_during_the_batch_decode_is_not_taken_for_a_failure(
    monkeypatch: pytest.MonkeyPatch, stop: type[BaseException]
) -> None:
    def stopped(records: Sequence[bytes]) -> None:
        raise stop()

    monkeypatch.setattr(arrow_spans, "decode", stopped)
    with pytest.raises(stop):
        decode_trace_batch([run_trace("run-7").SerializeToString()])


async def test_a_request_the_row_decoder_fails_on_is_refused_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the batch decode failed, a request the row decoder raises anything but a
    DecodeError on is refused (dead-lettered), its neighbours stored."""
    good, poison = run_trace("run-8").SerializeToString(), run_trace("run-9").SerializeToString()

    def broken(records: Sequence[bytes]) -> None:
        raise Panic("columnar")

    def row(raw: bytes | None) -> Mapping[str, Rows]:
        if raw == poison:
            raise Panic("rows")
        return decode_trace_columns(raw)

    monkeypatch.setattr(arrow_spans, "decode", broken)
    monkeypatch.setattr(arrow_spans, "decode_trace_columns", row)
    first, second = decode_trace_batch([good, poison])
    assert not isinstance(first, DecodeError)
    assert isinstance(second, DecodeError) and second.reason == "decoder_error"
    assert "Panic" in second.detail


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChdbBackend]:
    """One store for every example (`stored` leaves its tables empty)."""
    backend = ChdbBackend(str(tmp_path_factory.mktemp("chdb")), database="otel")
    await backend.setup()
    yield backend
    await backend.close()


@settings(FUZZ, max_examples=100)
@given(st.lists(trace_requests(), min_size=1, max_size=4), st.data())
async def test_any_batch_is_stored_as_python_stores_it(
    shared: ChdbBackend, requests: list[ExportTraceServiceRequest], data: st.DataObject
) -> None:
    """Fuzzed requests (odd ids, enums, times, nested and typed values, any unicode) and
    one mutated one: the same refusals, the same rows."""
    raws = [r.SerializeToString() for r in requests]
    raws.append(data.draw(mutated(raws[0])))
    await assert_same(shared, raws)


# Requests the Arrow path decodes itself (the fuzzer's are mostly flagged): valid ids,
# times within DateTime64(9), scalar values, unique keys, the runner's attributes.
keys = st.one_of(st.sampled_from([ATTR_RUN_ID, ATTR_STAGE, ATTR_PIPELINE]), texts)
counts = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from(["7", " 7", "1.5", "", "x"]))
values = st.one_of(
    st.builds(lambda s: AnyValue(string_value=s), texts),
    st.builds(lambda i: AnyValue(int_value=i), int64s),
    st.builds(lambda b: AnyValue(bool_value=b), st.booleans()),
    st.builds(lambda d: AnyValue(double_value=d), doubles),
    st.builds(lambda b: AnyValue(bytes_value=b), st.binary(max_size=6)),
    st.just(AnyValue()),
)


@st.composite
def clean_attributes(draw: st.DrawFn) -> list[KeyValue]:
    chosen = draw(st.dictionaries(keys, values, max_size=4))
    for key in (ATTR_RECORDS_IN, ATTR_RECORDS_OUT):
        if draw(st.booleans()):
            count = draw(counts)
            chosen[key] = (
                AnyValue(int_value=count)
                if isinstance(count, int)
                else AnyValue(string_value=count)
            )
    return [kv(k, v) for k, v in chosen.items()]


def some_id(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size).filter(any)


ns = st.integers(0, INT64_MAX)


@st.composite
def clean_spans(draw: st.DrawFn) -> trace_pb2.Span:
    s = trace_pb2.Span(
        trace_id=draw(some_id(16)),
        span_id=draw(some_id(8)),
        parent_span_id=draw(st.one_of(st.just(b""), st.just(bytes(8)), some_id(8))),
        trace_state=draw(texts),
        name=draw(texts),
        kind=draw(enums),
        start_time_unix_nano=draw(ns),
        end_time_unix_nano=draw(ns),
        attributes=draw(clean_attributes()),
        status=trace_pb2.Status(code=draw(enums), message=draw(texts)),
    )
    for _ in range(draw(st.integers(0, 2))):
        s.events.add(time_unix_nano=draw(ns), name=draw(texts)).attributes.extend(
            draw(clean_attributes())
        )
    for _ in range(draw(st.integers(0, 2))):
        s.links.add(
            trace_id=draw(st.one_of(st.just(b""), some_id(16))),
            span_id=draw(st.one_of(st.just(bytes(8)), some_id(8))),
            trace_state=draw(texts),
        ).attributes.extend(draw(clean_attributes()))
    return s


@st.composite
def clean_requests(draw: st.DrawFn) -> bytes:
    request = traces_request(draw(st.lists(clean_spans(), min_size=1, max_size=4)))
    resource = request.resource_spans[0].resource
    resource.attributes.extend(a for a in draw(clean_attributes()) if a.key not in {"service.name"})
    if draw(st.booleans()):
        request.resource_spans.add().CopyFrom(request.resource_spans[0])
    return request.SerializeToString()


@settings(FUZZ, max_examples=50)
@given(st.lists(clean_requests(), min_size=1, max_size=5))
async def test_any_clean_batch_is_decoded_as_arrow_and_stored_as_python_stores_it(
    shared: ChdbBackend, raws: list[bytes]
) -> None:
    """Typed values, unicode, exact nanoseconds, kinds and codes of any int32, record
    counts of every form, events and links: none flagged, the same rows."""
    assert await assert_same(shared, raws) == set()
