"""The cyclic collector's thresholds for a consumer process.

A consumer keeps many young container objects alive for a while: the otel consumer's
decoded batches (attribute dicts, each record's column lists) until they are inserted,
the lineage consumer's parsed events and queued records. With CPython's default
thresholds (a collection every 700 allocations, an older generation every 10 of those)
the collector rescans them again and again: about a third of the CPU time of decoding
an otel batch and building its Arrow table (py-spy, and `bench/bench_consumers.py`,
which compares both), and for the lineage consumer a young collection every few events
that also walked its connections, fetch buffers and queued records. Fewer, larger young
collections find the same garbage.
"""

from __future__ import annotations

import gc

GC_THRESHOLD = (10_000, 10, 10)


def tune_for_consuming() -> None:
    """Set `GC_THRESHOLD` for this process."""
    gc.set_threshold(*GC_THRESHOLD)
