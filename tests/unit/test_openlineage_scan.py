"""`loads`'s one-pass scan (digits to 0 and `[` to `{` in one copy) decides as the two
passes it replaced: the same texts take the exact parser, the same brackets are
counted for the nesting check (skipped for a text too short to nest too deep), so
every verdict and message is the same."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lineagehub.openlineage_schema import (
    _LONG_DIGITS,
    _SCAN,
    MAX_NESTING,
    SHORTEST_TOO_DEEP,
    _brackets,
    _nesting_checked,
    loads,
    loads_exact,
)
from tests.fuzz import fuzz_settings

FUZZ = fuzz_settings(400)

_OLD_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")


def old_scan(raw: bytes) -> tuple[bool, int]:
    """The reference: a digit-run pass, then two bracket counts over the text."""
    return _LONG_DIGITS in raw.translate(_OLD_DIGITS_TO_ZERO), _brackets(raw)


def new_scan(raw: bytes) -> tuple[bool, int]:
    scanned = raw.translate(_SCAN)
    return _LONG_DIGITS in scanned, scanned.count(b"{")


def old_loads(data: bytes | str) -> tuple[Any, str | None]:
    """`loads` as it was before the one-pass scan, kept as the reference only."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if _LONG_DIGITS not in raw.translate(_OLD_DIGITS_TO_ZERO):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            return _nesting_checked(value, _brackets(raw))
    return loads_exact(data)


# Digits, brackets of both kinds and what surrounds them in JSON, plus any byte.
scan_bytes = st.lists(
    st.one_of(
        st.sampled_from([b"0", b"1", b"9", b"5", b"[", b"{", b"]", b"}", b'"', b",", b":"]),
        st.binary(min_size=1, max_size=4),
        st.integers(min_value=15, max_value=25).map(lambda n: b"7" * n),
        st.integers(min_value=1, max_value=1100).map(lambda n: b"[" * n),
    ),
    max_size=40,
).map(b"".join)


@FUZZ
@given(scan_bytes)
def test_one_pass_scan_finds_what_the_two_passes_found(raw: bytes) -> None:
    assert new_scan(raw) == old_scan(raw)


def nested(depth: int, leaf: str, opener: str) -> str:
    closer = {"[": "]", "{": "}"}
    if opener == "{":
        return '{"a":' * depth + leaf + "}" * depth
    return opener * depth + leaf + closer[opener] * depth


json_texts = st.one_of(
    st.builds(
        nested,
        st.integers(min_value=MAX_NESTING - 30, max_value=MAX_NESTING + 30),
        st.sampled_from(["1", "12345678901234567890", '"[[{"', "[]", "1e5"]),
        st.sampled_from(["[", "{"]),
    ),
    st.builds(
        lambda items: "[" + ",".join(items) + "]",
        st.lists(
            st.sampled_from(
                ["1", "-12345678901234567890", "1.5", '"[{x"', "NaN", "{}", "[[]]", "null"]
            ),
            max_size=1200,
        ),
    ),
    st.text(alphabet='[]{}0123456789",:.-e ', max_size=60),
)


@FUZZ
@given(json_texts, st.booleans())
def test_loads_gives_the_verdict_and_message_it_gave_before(text: str, as_bytes: bool) -> None:
    data: bytes | str = text.encode() if as_bytes else text
    assert loads(data) == old_loads(data)


@pytest.mark.parametrize("opener", ["[", "{"])
def test_the_shortest_text_too_deep_is_counted_and_refused(opener: str) -> None:
    """Fails if texts of SHORTEST_TOO_DEEP bytes skipped the bracket count: the shortest
    arrays nested MAX_NESTING + 1 deep are exactly that long (objects are longer)."""
    text = nested(MAX_NESTING + 1, "[]" if opener == "[" else "{}", opener)
    shortest = "[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1)
    assert len(shortest.encode()) == SHORTEST_TOO_DEEP
    for data in (shortest, text):
        value, problem = loads(data.encode())
        assert value is None and problem is not None, len(data)
        assert (value, problem) == loads_exact(data.encode()) == old_loads(data.encode())
    readable = "[" * MAX_NESTING + "]" * MAX_NESTING
    assert loads(readable.encode())[1] is None
