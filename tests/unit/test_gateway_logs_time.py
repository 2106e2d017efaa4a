"""The log line's `time`, formatted once a second and the milliseconds added, is the text
`datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")` gives for every
timestamp: the rounding of microseconds (half to even, up into the next second), a
second's last and first instants, the cache's second changing back and forth."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from gateway.logs import IsoMillis


def _expected(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


EDGES = [
    0.0,
    1.0,
    -1.0,
    -0.0000001,
    -1.5,
    1_764_553_200.0,
    1_764_553_200.9999995,
    1_764_553_200.9999994,
    1_764_553_200.0004995,
    1_764_553_200.0005,
    1_764_553_200.999,
    1_764_553_201.0000005,
    1_764_553_199.9999999,
    4_102_444_799.9999996,  # the last instant of 2099 rounds into 2100
]


def test_edges_each_in_turn() -> None:
    format_ = IsoMillis()
    for t in EDGES + EDGES[::-1]:  # the cached second moves both ways
        assert format_(t) == _expected(t), t


@given(
    st.lists(
        st.one_of(
            st.floats(min_value=-2e9, max_value=4e9, allow_nan=False),
            st.integers(min_value=0, max_value=4_000_000_000).map(lambda s: s + 0.9999995),
            st.integers(min_value=0, max_value=4_000_000_000).flatmap(
                lambda s: st.integers(0, 999_999).map(lambda us: s + us / 1e6)
            ),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_any_timestamps_in_any_order(stamps: list[float]) -> None:
    format_ = IsoMillis()
    for t in stamps + stamps:  # the second pass through the cache
        assert format_(t) == _expected(t), t
