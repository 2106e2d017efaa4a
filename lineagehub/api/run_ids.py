"""OpenLineage run ids (UUIDv7), without pydantic: `lineage-hub run` makes them with no
model loaded (`lineagehub.api` and `pipelinerun` give `new_run_id` too)."""

from __future__ import annotations

import os
import time
import uuid


def new_run_id(unix_ms: int | None = None) -> str:
    """A new UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits."""
    ms = int(time.time() * 1000) if unix_ms is None else unix_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    return str(uuid.UUID(int=value))
