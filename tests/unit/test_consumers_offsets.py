from __future__ import annotations

import pytest

from consumers.offsets import OffsetTracker


def test_commit_point_moves_only_over_a_finished_prefix() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    for off in (10, 11, 12, 13):
        t.started("p0", off)
    t.done("p0", 12)
    assert t.to_commit() == {}
    t.done("p0", 10)
    assert t.to_commit() == {"p0": 11}
    t.done("p0", 11)
    assert t.to_commit() == {"p0": 13}
    t.committed({"p0": 13})
    assert t.to_commit() == {}
    assert t.in_flight("p0") == 1
    t.done("p0", 13)
    assert t.to_commit() == {"p0": 14}
    assert t.last_committed("p0") == 13


def test_partitions_are_independent_and_forgettable() -> None:
    t: OffsetTracker[int] = OffsetTracker()
    t.started(0, 5)
    t.started(1, 7)
    t.done(1, 7)
    assert t.to_commit() == {1: 8}
    assert t.total_in_flight() == 1
    t.forget(0)
    assert t.total_in_flight() == 0
    assert t.partitions() == [1]


def test_offsets_must_increase() -> None:
    t: OffsetTracker[int] = OffsetTracker()
    t.started(0, 5)
    with pytest.raises(ValueError):
        t.started(0, 5)
