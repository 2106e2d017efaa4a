"""Generated request ids: the documented shape (32 hex digits, a safe X-Request-ID, so a
caller may pass one back), and no two alike within a process, across forked workers
(which inherit their parent's generator) and across restarts (fresh interpreters)."""

from __future__ import annotations

import multiprocessing
import re
from multiprocessing.context import ForkContext, SpawnContext
from multiprocessing.queues import Queue

import pytest

from gateway import logs

N = 2000
HEX32 = re.compile(r"[0-9a-f]{32}")


def _ids(n: int = N) -> list[str]:
    return [logs.request_id_from([]) for _ in range(n)]


def _ids_into(out: Queue[list[str]]) -> None:
    out.put(_ids())


def _from_processes(method: str, n: int = 2) -> list[list[str]]:
    if method == "fork":
        ctx: ForkContext | SpawnContext = multiprocessing.get_context("fork")
    else:
        ctx = multiprocessing.get_context("spawn")
    out: Queue[list[str]] = ctx.Queue()
    workers = [ctx.Process(target=_ids_into, args=(out,)) for _ in range(n)]
    for w in workers:
        w.start()
    got = [out.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    return got


def test_shape_and_unique_in_process() -> None:
    ids = _ids()
    assert all(HEX32.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)
    # A generated id handed back by a caller is kept as it is.
    assert logs.request_id_from([(b"x-request-id", ids[0].encode())]) == ids[0]


def test_a_callers_safe_id_is_kept_and_an_unsafe_one_replaced() -> None:
    assert logs.request_id_from([(b"x-request-id", b" abc-1.2:3 ")]) == "abc-1.2:3"
    fresh = logs.request_id_from([(b"x-request-id", b"bad id")])
    assert HEX32.fullmatch(fresh)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_unique_across_worker_processes(method: str) -> None:
    """`fork`: workers forked from a parent that had made ids already (a forked child
    must not go on with its parent's sequence); `spawn`: fresh interpreters, as after a
    restart."""
    parent = _ids()
    first, second = _from_processes(method)
    every = parent + first + second
    assert len(set(every)) == len(every)
    assert all(HEX32.fullmatch(i) for i in first + second)
