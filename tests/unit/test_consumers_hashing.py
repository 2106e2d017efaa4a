"""Hashing that keeps the GIL (`consumers.hashing`): the same digests as hashlib's, for
every size around hashlib's threshold, and never a piece big enough for hashlib to let
the other threads run."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.hashing import PIECE, blake2b_hex, update_holding_gil
from consumers.otel.consumer import batch_digest
from tests.fuzz import fuzz_settings

SIZES = [0, 1, PIECE - 1, PIECE, PIECE + 1, 2048, 2 * PIECE, 2 * PIECE + 1, 100_000]


class Pieces:
    """A hash that records the size of each piece it is given."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.data = bytearray()

    def update(self, data: bytes | memoryview, /) -> None:
        self.sizes.append(len(data))
        self.data += data


@pytest.mark.parametrize("size", SIZES)
def test_pieces_stay_under_hashlibs_threshold_and_cover_the_data(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    h = Pieces()
    update_holding_gil(h, data)
    assert all(n < 2048 for n in h.sizes)
    assert bytes(h.data) == data


@pytest.mark.parametrize("size", SIZES)
def test_the_digests_are_hashlibs(size: int) -> None:
    data = (b"lineage-hub " * (size // 12 + 1))[:size]
    assert blake2b_hex(data, 16) == hashlib.blake2b(data, digest_size=16).hexdigest()
    h = hashlib.sha256()
    update_holding_gil(h, data)
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()


@fuzz_settings(200)
@given(st.binary(max_size=9000), st.integers(min_value=1, max_value=64))
def test_any_bytes_hash_as_hashlib_hashes_them(data: bytes, size: int) -> None:
    assert blake2b_hex(data, size) == hashlib.blake2b(data, digest_size=size).hexdigest()


class _Record:
    def __init__(self, offset: int, key: bytes | None, value: bytes | None) -> None:
        self.offset, self.key, self.value, self.timestamp = offset, key, value, 7


def test_a_batch_digest_is_sha256_of_what_its_records_hold() -> None:
    """The same digest as before it kept the GIL (one update per part), so a batch
    redelivered across an upgrade keeps its token."""
    records = [_Record(i, b"k%d" % i, bytes([i]) * (i * 1500)) for i in range(6)]
    records.append(_Record(6, None, None))
    h = hashlib.sha256()
    for r in records:
        key, value = r.key, r.value
        sizes = f"{-1 if key is None else len(key)}:{-1 if value is None else len(value)}"
        h.update(f"{r.offset}:7:{sizes}:".encode())
        for part in (key, value):
            if part:
                h.update(part)
    assert batch_digest(records) == h.hexdigest()[:24]  # type: ignore[arg-type]
