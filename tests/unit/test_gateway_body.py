"""Body decoding: gzip bounded after decompression, encodings, JSON parsing (pure)."""

from __future__ import annotations

import gzip
import zlib

import pytest

from gateway.body import BadEncoding, BodyTooLarge, UnsupportedEncoding, decode, parse_json


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
