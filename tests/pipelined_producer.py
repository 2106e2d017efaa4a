"""The part every test stand-in for the gateway's pipelined producer shares: start and
stop do nothing, and `send` (one record at a time) must never be called, since the
sink appends through `enqueue` whenever the producer has it."""

from __future__ import annotations


class PipelinedStandIn:
    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, key: str, value: bytes) -> None:
        raise AssertionError("a pipelined producer is never sent one at a time")
