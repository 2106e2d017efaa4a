"""Marquez answering as a test says, request by request, over a real loopback HTTP/1.1
server: the consumer's client goes through its whole stack (pool, sockets, timeouts).

`handler(method, body)` returns `(status, text)`, an awaitable of it (a slow answer), or
None: the connection is cut without an answer (a network error, as the client sees a
Marquez that went away mid-request).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

Answer = tuple[int, str] | None
Handler = Callable[[str, bytes], Answer | Awaitable[Answer]]


class Answering:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.url = ""
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method = head[0].split(" ", 1)[0]
                length = 0
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                answer: Any = self.handler(method, body)
                answer = await answer if inspect.isawaitable(answer) else answer
                if answer is None:
                    return  # cut: no answer
                status, text = answer
                data = text.encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode("latin-1")
                    + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def __aenter__(self) -> Answering:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
