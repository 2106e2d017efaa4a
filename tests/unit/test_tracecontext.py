"""W3C traceparent rules, and the gateway, the consumers and the operator reading a
header alike (they share `lineagehub.tracecontext`)."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from gateway.tracing import caller_context, kafka_headers
from lineagehub.selftrace import record_context
from lineagehub.telemetry.spans import RUN_TRACEPARENT_ANNOTATION
from lineagehub.telemetry.spans import caller_context as run_caller
from lineagehub.tracecontext import TraceParent, headers_context, parse_traceparent

ids128 = st.integers(1, 2**128 - 1)
ids64 = st.integers(1, 2**64 - 1)
flags = st.integers(0, 255)
versions = st.integers(0, 0xFE)
blanks = st.sampled_from(["", " ", "\t", "  "])
#: What a later version may append after its fourth field.
suffixes = st.text(alphabet="0123456789abcdef-", max_size=20).map(lambda s: "-" + s)


def header(version: int, trace_id: int, span_id: int, flag: int, rest: str = "") -> str:
    return f"{version:02x}-{trace_id:032x}-{span_id:016x}-{flag:02x}{rest}"


@st.composite
def valid(draw: st.DrawFn) -> tuple[str, TraceParent]:
    version = draw(versions)
    trace_id, span_id, flag = draw(ids128), draw(ids64), draw(flags)
    rest = "" if version == 0 else draw(st.one_of(st.just(""), suffixes))
    value = draw(blanks) + header(version, trace_id, span_id, flag, rest) + draw(blanks)
    return value, TraceParent(trace_id, span_id, flag)


def readers(value: str) -> list[tuple[int, int, bool] | None]:
    """What each of our three readers makes of `value`: (trace, span, sampled) or None."""
    gateway = caller_context([(b"host", b"x"), (b"traceparent", value.encode())])
    record = record_context([("traceparent", value.encode())])
    run = run_caller({RUN_TRACEPARENT_ANNOTATION: value})
    out: list[tuple[int, int, bool] | None] = []
    for context in (gateway, record):
        if context is None:
            out.append(None)
            continue
        span = trace.get_current_span(context).get_span_context()
        out.append((span.trace_id, span.span_id, span.trace_flags.sampled))
    out.append(None if run is None else (int(run[0], 16), int(run[1], 16), True))
    return out


@given(valid())
def test_a_valid_traceparent_is_read_alike_everywhere(case: tuple[str, TraceParent]) -> None:
    value, expected = case
    assert parse_traceparent(value) == expected
    assert parse_traceparent(value.encode()) == expected
    gateway, record, run = readers(value)
    assert gateway == record == (expected.trace_id, expected.span_id, expected.sampled)
    assert run is not None and run[:2] == (expected.trace_id, expected.span_id)
    # What we send on is version 00, whatever version came in.
    assert parse_traceparent(expected.header()) == expected
    assert len(expected.header()) == 55


def _break(value: str, how: str, data: st.DataObject) -> str:
    """`value` (a version-00 header) made invalid in one way the rules name."""
    if how == "version ff":
        return "ff" + value[2:]
    if how == "zero trace id":
        return value[:3] + "0" * 32 + value[35:]
    if how == "zero span id":
        return value[:36] + "0" * 16 + value[52:]
    if how == "uppercase":
        letters = [i for i, c in enumerate(value) if c in "abcdef"]
        assume(letters)
        i = data.draw(st.sampled_from(letters))
        return value[:i] + value[i].upper() + value[i + 1 :]
    if how == "field too short":
        end = data.draw(st.sampled_from([2, 35, 52, 55]))
        return value[: end - 1] + value[end:]
    if how == "field too long":
        end = data.draw(st.sampled_from([2, 35, 52, 55]))
        return value[:end] + "a" + value[end:]
    if how == "version 00 with more":
        return value + data.draw(suffixes)
    if how == "not hex":
        i = data.draw(st.sampled_from([j for j in range(55) if j not in (2, 35, 52)]))
        return value[:i] + data.draw(st.sampled_from("gxz_+. ")) + value[i + 1 :]
    if how == "separator":
        i = data.draw(st.sampled_from([2, 35, 52]))
        return value[:i] + data.draw(st.sampled_from("_: 0")) + value[i + 1 :]
    assert how == "later version, no dash after"
    return "01" + value[2:] + data.draw(st.sampled_from("0a_x"))


BREAKS = [
    "version ff",
    "zero trace id",
    "zero span id",
    "uppercase",
    "field too short",
    "field too long",
    "version 00 with more",
    "not hex",
    "separator",
    "later version, no dash after",
]


@given(ids128, ids64, flags, st.sampled_from(BREAKS), st.data())
def test_an_invalid_traceparent_is_refused_everywhere(
    trace_id: int, span_id: int, flag: int, how: str, data: st.DataObject
) -> None:
    value = _break(header(0, trace_id, span_id, flag), how, data)
    assert parse_traceparent(value) is None, (how, value)
    assert readers(value) == [None, None, None], (how, value)


def test_no_header_and_tracestate() -> None:
    assert parse_traceparent(None) is None and parse_traceparent("") is None
    assert headers_context(None) is None
    assert headers_context([(b"tracestate", b"a=b")]) is None  # a state without a parent
    value = header(0, 1, 2, 1)
    context = headers_context([("tracestate", b"vendor=x,other=y"), ("traceparent", value)])
    assert context is not None
    parent = trace.get_current_span(context).get_span_context()
    assert parent.is_remote and dict(parent.trace_state) == {"vendor": "x", "other": "y"}
    # A malformed state is dropped, the parent kept.
    context = headers_context([(b"traceparent", value.encode()), (b"tracestate", b"=,=")])
    assert context is not None
    assert trace.get_current_span(context).get_span_context().span_id == 2


def test_kafka_headers_follow_the_current_span() -> None:
    """The headers are kept for the span a batch's records share, and never handed to
    the records of the next span."""
    tracer = TracerProvider().get_tracer("t")
    seen = []
    for _ in range(3):
        with tracer.start_as_current_span("request") as span:
            first, again = kafka_headers(), kafka_headers()
            assert first == again
            parsed = parse_traceparent(dict(first)["traceparent"])
            assert parsed is not None
            assert parsed.span_id == span.get_span_context().span_id
            seen.append(parsed.span_id)
    assert len(set(seen)) == 3
