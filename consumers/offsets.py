"""Which offset may be committed: the first one not yet finished, per partition.

Messages of one partition finish out of order (different runs go through
different lanes); the commit point only moves over a contiguous finished prefix,
so a crash never skips an unfinished message. Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K")


@dataclass
class _Partition:
    pending: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    next_commit: int | None = None
    committed: int | None = None


class OffsetTracker(Generic[K]):
    def __init__(self) -> None:
        self._parts: dict[K, _Partition] = {}

    def started(self, tp: K, offset: int) -> None:
        part = self._parts.setdefault(tp, _Partition())
        if part.pending and offset <= part.pending[-1]:
            raise ValueError(f"offset {offset} of {tp} started twice or out of order")
        part.pending.append(offset)

    def done(self, tp: K, offset: int) -> None:
        part = self._parts[tp]
        part.done.add(offset)
        while part.pending and part.pending[0] in part.done:
            finished = part.pending.popleft()
            part.done.discard(finished)
            part.next_commit = finished + 1

    def in_flight(self, tp: K) -> int:
        part = self._parts.get(tp)
        return len(part.pending) if part else 0

    def total_in_flight(self) -> int:
        return sum(len(p.pending) for p in self._parts.values())

    def to_commit(self) -> dict[K, int]:
        """Partitions whose commit point moved since the last `committed()` call."""
        return {
            tp: p.next_commit
            for tp, p in self._parts.items()
            if p.next_commit is not None and p.next_commit != p.committed
        }

    def committed(self, offsets: dict[K, int]) -> None:
        for tp, offset in offsets.items():
            if tp in self._parts:
                self._parts[tp].committed = offset

    def last_committed(self, tp: K) -> int | None:
        part = self._parts.get(tp)
        return part.committed if part else None

    def forget(self, tp: K) -> None:
        self._parts.pop(tp, None)

    def partitions(self) -> list[K]:
        return list(self._parts)
