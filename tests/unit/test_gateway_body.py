"""Body decoding: gzip bounded after decompression, encodings, JSON parsing (pure)."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from gateway.body import (
    BadEncoding,
    BodyLimit,
    BodyTooLarge,
    UnsupportedEncoding,
    decode,
    parse_json,
)
from lineagehub.openlineage_schema import loads_exact


def test_identity_and_gzip() -> None:
    data = b'{"a": 1}'
    assert decode(data, None, 100) == data
    assert decode(data, "identity", 100) == data
    assert decode(gzip.compress(data), "gzip", 100) == data
    assert decode(gzip.compress(data), "x-gzip", 100) == data
    assert decode(gzip.compress(data), "GZIP", 100) == data


def test_concatenated_gzip_members() -> None:
    data = gzip.compress(b"[1,") + gzip.compress(b"2]")
    assert decode(data, "gzip", 100) == b"[1,2]"


def test_gzip_bomb_is_stopped_near_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100_000
    with pytest.raises(BodyTooLarge):
        decode(bomb, "gzip", 1024 * 1024)


def test_plain_body_over_the_limit() -> None:
    with pytest.raises(BodyTooLarge):
        decode(b"x" * 101, None, 100)


def test_bad_and_unsupported_encodings() -> None:
    with pytest.raises(BadEncoding):
        decode(b"not gzip", "gzip", 100)
    with pytest.raises(BadEncoding):
        decode(gzip.compress(b"x" * 50)[:-12], "gzip", 100)  # truncated
    with pytest.raises(UnsupportedEncoding):
        decode(zlib.compress(b"x"), "br", 100)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"{nope", "line 1"),
        (b'"\xc3\x28"', "UTF-8"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "deep"),
    ],
)
def test_parse_json_problems(raw: bytes, fragment: str) -> None:
    value, problem = parse_json(raw)
    assert value is None
    assert problem is not None and fragment in problem


def test_parse_json_values() -> None:
    assert parse_json(b'[{"a": 1}]') == ([{"a": 1}], None)


# ---------------------------------------------------------------- the fast parser


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=400, derandomize=True)
@given(_JSON_VALUES)
def test_the_fast_parser_reads_what_the_exact_one_reads(value: object) -> None:
    """orjson on the fast path: same values (big integers kept exact), same refusals."""
    data = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    fast, exact = parse_json(data), loads_exact(data)
    assert fast == exact
    assert repr(fast) == repr(exact)  # 1 stays an int, 1.0 a float, -0.0 keeps its sign


@pytest.mark.parametrize(
    "body",
    [
        b"123456789012345678901234567890",
        b'{"n": -98765432109876543210}',
        b"1." + b"0" * 1200 + b"1",
        b"1" * 1001,
        b"1e400",
        b"NaN",
        b'"\\ud800"',
        b"[" * 1100 + b"]" * 1100,
        b"\xef\xbb\xbf{}",
        b'{"a": "\xff"}',
    ],
)
def test_what_orjson_reads_differently_takes_the_exact_parser(body: bytes) -> None:
    assert parse_json(body) == loads_exact(body)


def _limited_call(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, bytes]:
    """A POST through `BodyLimit(max_bytes=10)` to an app that reads the whole body and
    echoes it: (status, body) of the answer."""
    sent: list[Message] = []
    incoming = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    asyncio.run(BodyLimit(echo, max_bytes=10)(scope, receive, send))
    status = int(sent[0]["status"])
    return status, b"".join(m.get("body", b"") for m in sent[1:])


def test_a_declared_length_within_the_limit_passes_the_body_through() -> None:
    assert _limited_call([(b"content-length", b"10")], [b"0123", b"456789"]) == (200, b"0123456789")


def test_a_chunked_body_is_counted_even_when_a_small_length_is_declared_too() -> None:
    """A declared length frames the body only when no Transfer-Encoding is sent (a server
    that reads both would frame it by the chunks): then the bytes are still counted."""
    headers = [(b"content-length", b"4"), (b"transfer-encoding", b"chunked")]
    status, body = _limited_call(headers, [b"0123456", b"789abc"])
    assert status == 413 and b"larger than the limit of 10 bytes" in body
    status, _ = _limited_call([(b"transfer-encoding", b"chunked")], [b"0123456", b"789abc"])
    assert status == 413
