"""Small helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Obj = dict[str, Any]


def wait_until(check: Callable[[], Any], timeout: float = 60.0, every: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail with the last value."""
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s; last value: {last!r}")


async def wait_until_async(
    check: Callable[[], Any], within: float = 60.0, every: float = 0.01
) -> Any:
    """`wait_until` in a test running on an event loop: sleeps with asyncio, so the
    loop's tasks (the code under test) run between the polls."""
    end = time.monotonic() + within
    last: Any = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {within}s; last value: {last!r}")


def get(kubectl: Callable[..., Any], *args: str) -> Obj:
    """`kubectl get ... -o json` as a dict."""
    data: Obj = json.loads(kubectl("get", *args, "-o", "json").stdout)
    return data


def apply(kubectl: Callable[..., Any], doc: Obj) -> None:
    """`kubectl apply` of one document (fails the test if refused)."""
    kubectl("apply", "-f", "-", input=json.dumps(doc))


def librdkafka_threads() -> int:
    """This process's librdkafka threads (named `rdk:...`): a client's end when it is
    destroyed (a closed consumer, a closed producer), with its connections."""
    count = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            count += (task / "comm").read_text().startswith("rdk:")
        except OSError:  # the thread ended meanwhile
            continue
    return count
