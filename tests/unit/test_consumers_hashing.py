"""Hashing that keeps the GIL (`consumers.hashing`): the same digests as hashlib's, for
every size around hashlib's threshold, and never a piece big enough for hashlib to let
the other threads run. The compiled batch digest gives the Python one's digits, and
leaves to it every record it does not read as aiokafka gives them."""

from __future__ import annotations

import hashlib

import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import given
from hypothesis import strategies as st

from consumers.hashing import PIECE, blake2b_hex, compiled_batch_digest, update_holding_gil
from consumers.otel.consumer import batch_digest, python_batch_digest
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


# ---- the compiled batch digest (native/src/digest.rs) ------------------------------------


class _Stamped:
    """A record as a test or another client may give one: any attribute values."""

    def __init__(self, **attrs: object) -> None:
        self.__dict__.update(attrs)


def test_the_compiled_batch_digest_is_installed() -> None:
    """CI builds it (`scripts/setup.sh`): without it every batch takes the Python digest
    and the tests below would compare the Python digest with itself."""
    assert compiled_batch_digest is not None


_parts = st.one_of(st.none(), st.binary(max_size=5000))
_records = st.lists(
    st.builds(
        ConsumerRecord,
        topic=st.just("t"),
        partition=st.just(0),
        offset=st.integers(min_value=-(2**63), max_value=2**63 - 1),
        timestamp=st.integers(min_value=-(2**63), max_value=2**63 - 1),
        timestamp_type=st.just(0),
        key=_parts,
        value=_parts,
        checksum=st.none(),
        serialized_key_size=st.just(-1),
        serialized_value_size=st.just(-1),
        headers=st.just(()),
    ),
    max_size=12,
)


@fuzz_settings(300)
@given(_records)
def test_the_compiled_digest_gives_the_python_digits_for_aiokafkas_records(
    records: list[ConsumerRecord[bytes, bytes]],
) -> None:
    assert compiled_batch_digest is not None
    assert compiled_batch_digest(records) == python_batch_digest(records)
    assert batch_digest(records) == python_batch_digest(records)


def test_the_compiled_digest_over_a_batch_of_big_values_is_sha256_of_its_parts() -> None:
    records = [_Record(i, b"k%d" % i, bytes([i]) * (i * 1500)) for i in range(6)]
    records += [_Record(6, None, None), _Record(7, b"", b"")]
    assert compiled_batch_digest is not None
    digest = compiled_batch_digest(records)
    assert digest == python_batch_digest(records)  # type: ignore[arg-type]
    assert len(digest) == 24 and digest == digest.lower()


class _Int(int):
    def __format__(self, spec: str) -> str:
        return "formatted-" + super().__format__(spec)


@pytest.mark.parametrize(
    "odd",
    [
        {"offset": True, "timestamp": 1, "key": None, "value": b"v"},  # f"{True}" is "True"
        {"offset": 3, "timestamp": None, "key": None, "value": b"v"},  # "None"
        {"offset": _Int(3), "timestamp": 1, "key": None, "value": b"v"},  # its own format
        {"offset": 3, "timestamp": 1.5, "key": None, "value": b"v"},
        {"offset": 2**200, "timestamp": 1, "key": None, "value": b"v"},  # past i128
        {"offset": 3, "timestamp": 1, "key": bytearray(b"k"), "value": b"v"},
        {"offset": 3, "timestamp": 1, "key": None, "value": memoryview(b"v")},
    ],
)
def test_a_record_the_compiled_digest_does_not_read_takes_the_python_digest(
    odd: dict[str, object],
) -> None:
    records = [_Record(1, b"k", b"v"), _Stamped(**odd)]
    assert compiled_batch_digest is not None
    assert compiled_batch_digest(records) is None
    assert batch_digest(records) == python_batch_digest(records)  # type: ignore[arg-type]


def test_a_record_without_a_timestamp_is_read_as_stamped_zero_by_both() -> None:
    records = [_Stamped(offset=5, key=None, value=b"v")]
    zero = [_Stamped(offset=5, key=None, value=b"v", timestamp=0)]
    assert compiled_batch_digest is not None
    assert compiled_batch_digest(records) == python_batch_digest(records)  # type: ignore[arg-type]
    assert compiled_batch_digest(records) == python_batch_digest(zero)  # type: ignore[arg-type]


def test_a_record_without_an_offset_fails_as_in_python() -> None:
    records = [_Stamped(key=None, value=b"v", timestamp=1)]
    with pytest.raises(AttributeError):
        python_batch_digest(records)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        batch_digest(records)  # type: ignore[arg-type]


def test_records_differing_only_where_a_part_ends_have_different_digests() -> None:
    """The sizes keep a key's end from sliding into the value's start."""
    a = [_Record(1, b"ab", b"c")]
    b = [_Record(1, b"a", b"bc")]
    assert batch_digest(a) != batch_digest(b)  # type: ignore[arg-type]
