"""What a facet gives, computed once per distinct facet: bounded in entries and bytes.

A dataset's schema and column lineage facets come again, the same, with every run that
reads or writes it, so the writer keeps what it derived from each (its flattened fields,
its edges) under the facet's JSON (orjson's output: the same JSON is the same facet, an
int and a float, a boolean and a number apart). A stream of big, distinct facets cannot
grow memory: an entry is charged by `charge` (its key and what its value holds); one
charged past `max_entry` is not kept, and one that would pass the budget empties the
memo first. A key is kept as an exact copy: orjson's output keeps the buffer it grew
(~500 KiB for a 60 KiB key, ~4 KiB for a 40-byte one). Worker threads decoding two
partitions' batches at once may race on the count of bytes (no lock: a look-up is
most of what a memo does): the count is set right at the next emptying, and the
number of entries, counted by the dict itself, bounds the memo meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

import orjson

V = TypeVar("V")

#: The longest key a memo takes (a bigger facet is derived every time).
KEY_MAX = 64 * 1024


class JsonMemo(Generic[V]):
    """Facet JSON -> what was derived from it; `charge` says what an entry costs."""

    def __init__(
        self, entries: int = 4096, key_bytes: int = 4 * 1024 * 1024, max_entry: int = 1024 * 1024
    ) -> None:
        self.max_entries, self.max_bytes, self.max_entry = entries, key_bytes, max_entry
        self._known: dict[bytes, V] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._known)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._known)

    def get(self, key: bytes) -> V | None:
        return self._known.get(key)

    def derived(self, facet: object, derive: Callable[[], V]) -> V:
        """What `derive` gives for `facet`, remembered under `facet`'s JSON; derived
        every time when orjson cannot write it (ints past 64 bits)."""
        try:
            key = orjson.dumps(facet)
        except orjson.JSONEncodeError:
            return derive()
        known = self._known.get(key)
        if known is None:
            known = derive()
            self.remember(key, known)
        return known

    def charge(self, key: bytes, value: V) -> int:
        """The bytes an entry holds: its key's (subclasses add their value's)."""
        return len(key)

    def remember(self, key: bytes, value: V) -> None:
        if len(key) > KEY_MAX:
            return
        cost = self.charge(key, value)
        if cost > self.max_entry:
            return
        if len(self._known) >= self.max_entries or self.bytes + cost > self.max_bytes:
            self.clear()
        self._known[bytes(memoryview(key))] = value
        self.bytes += cost

    def clear(self) -> None:
        self._known.clear()
        self.bytes = 0
