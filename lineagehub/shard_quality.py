"""One rule for a sharded stage's quality checks, summed over its shards.

Two parties sum the same shards: the shard that commits (for the stage's COMPLETE
event, from each shard's full result) and the operator (for the run's status, from each
shard pod's termination message). Both call `merge`, so the event and the status agree:

- a check is the same check on every shard when its key (name, type, column, severity)
  is the same and it is that key's n-th check within its shard: names need not be
  unique (an unnamed check is called `<type>_<column>`), so two range checks on one
  column stay two. Checks keep the order in which they first appear (a shard's
  termination message may leave out passing checks when it runs out of room, so
  position alone is no key);
- it passed only when it passed on every shard that reported it;
- its failed rows are added up;
- its sample is the failing shards' samples, in shard order, the first `SAMPLE_SIZE`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

#: Failing values kept per check (each shard keeps as many of its own).
SAMPLE_SIZE = 5

T = TypeVar("T")


class Verdict(NamedTuple):
    """What the merge reads from one shard's check."""

    key: tuple[str, ...]
    success: bool
    failed_rows: int
    sample: Sequence[str]


@dataclass
class MergedCheck(Generic[T]):
    """One check over all the shards, with the shards' own checks it came from."""

    first: T  # the check as the first shard that reported it has it
    first_failed: T | None = None  # the first shard's check that failed, if any
    success: bool = True
    failed_rows: int = 0
    sample: list[str] = field(default_factory=list)


def merge(shards: Sequence[Sequence[T]], verdict: Callable[[T], Verdict]) -> list[MergedCheck[T]]:
    """Each check of `shards` (each shard's checks, in shard order) summed over them."""
    merged: dict[tuple[object, ...], MergedCheck[T]] = {}
    for checks in shards:
        seen: dict[tuple[str, ...], int] = {}
        for check in checks:
            v = verdict(check)
            nth = seen[v.key] = seen.get(v.key, -1) + 1
            into = merged.setdefault((*v.key, nth), MergedCheck(first=check))
            into.failed_rows += v.failed_rows
            if not v.success:
                into.success = False
                if into.first_failed is None:
                    into.first_failed = check
                room = SAMPLE_SIZE - len(into.sample)
                into.sample.extend(str(s) for s in list(v.sample)[: max(room, 0)])
    return list(merged.values())


__all__ = ["SAMPLE_SIZE", "MergedCheck", "Verdict", "merge"]
