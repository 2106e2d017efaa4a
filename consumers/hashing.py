"""Hashing that keeps the GIL.

hashlib lets other threads run while it hashes 2,048 bytes or more (and, once it has,
for every later update of that hash object). A consumer hashes one record at a time
(an OpenLineage event is ~1-10 KiB) while its event loop and its decoding worker share
the GIL, so each such hash handed the GIL to the other thread and waited to get it back:
a hand-off per record, which cost more than the hash. Fed in pieces under that size,
the hash keeps the GIL and gives the same digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Protocol

#: `lineagehub_native.batch_digest` (`native/src/digest.rs`), or None where the compiled
#: module is not installed: `consumers.otel.consumer.batch_digest`'s digits, or None
#: for a batch it does not read.
compiled_batch_digest: Callable[[list[Any]], str | None] | None
try:
    from lineagehub_native import batch_digest as compiled_batch_digest
except ImportError:  # not built here: the Python digest alone
    compiled_batch_digest = None

#: hashlib's threshold for releasing the GIL (`HASHLIB_GIL_MINSIZE`), less one.
PIECE = 2047


class _Hash(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


def update_holding_gil(h: _Hash, data: bytes) -> None:
    """`h.update(data)`, in pieces too small for hashlib to release the GIL."""
    if len(data) <= PIECE:
        h.update(data)
        return
    view = memoryview(data)
    for start in range(0, len(data), PIECE):
        h.update(view[start : start + PIECE])


def blake2b_hex(data: bytes, digest_size: int) -> str:
    """`hashlib.blake2b(data, digest_size=digest_size).hexdigest()`, keeping the GIL."""
    if len(data) <= PIECE:
        return hashlib.blake2b(data, digest_size=digest_size).hexdigest()
    h = hashlib.blake2b(digest_size=digest_size)
    update_holding_gil(h, data)
    return h.hexdigest()
