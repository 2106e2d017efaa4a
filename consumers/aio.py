"""Small asyncio helpers."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable


async def wait_until(predicate: Callable[[], bool], within: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it holds or `within` seconds pass; return whether it held."""
    for _ in range(max(1, math.ceil(within / interval))):
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()
