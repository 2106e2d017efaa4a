"""The cyclic garbage collector set for a request server, once its app is built.

A batch of 50 OpenLineage events parses into ~3,000 dicts and lists, so CPython's
default first-generation threshold (700 allocations) ran several collections per
request, and the objects of the requests in flight, promoted to the oldest generation,
made every full collection walk the whole app as well (FastAPI, pydantic, jsonschema:
~90,000 tracked objects). Profiled in process at concurrency 16, collections took about
two thirds of a batched event's CPU (114 -> 37 us an event with the settings below).

`gc.freeze()` moves everything alive after start-up (modules, the app, its routes) out
of the collector's sight: it is never garbage, and no collection walks it again. A
first-generation threshold of 10,000 lets a request's short-lived objects die by
reference counting before a collection sees them. Cycles are still collected.
"""

from __future__ import annotations

import gc

#: Allocations (net of deallocations) between first-generation collections.
GEN0_THRESHOLD = 10_000


def tune_for_serving(gen0: int = GEN0_THRESHOLD) -> None:
    """Freeze what start-up made and raise the first-generation threshold (never lower
    it). Call once per process, after the app is built."""
    gc.collect()
    gc.freeze()
    first, second, third = gc.get_threshold()
    gc.set_threshold(max(first, gen0), second, third)
