"""uvicorn's httptools protocol, with a response's head and body written in one send.

uvicorn writes the status line and headers to the socket when the app sends
`http.response.start`, and the body when it sends `http.response.body`: two `send`
calls for every response, each going through the whole loopback TCP path in the
sender's thread. Profiled at one worker under single-event POSTs, those writes took
about a sixth of the serving thread's CPU.

Here the head is held until the body follows (in the same step of the request's task
for every response the gateway renders, so the two go out in one write). When nothing
follows before the event loop's next turn (a streamed response whose first chunk is
not ready yet, such as the console's server-sent events) the head goes out alone then,
so no response waits for its body to be sent its headers. Closing the connection sends
what is held first; aborting it drops it, as it drops the transport's buffer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HoldingTransport", "OneWriteHttpToolsProtocol"]


class HoldingTransport:
    """A transport whose first write waits for the next one (or the loop's next turn)
    so that both go out in one `send`; everything else is the wrapped transport's."""

    __slots__ = ("_flush_scheduled", "_held", "_loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._flush_scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self.transport.write(held + bytes(data))
            return
        self._held = bytes(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        held, self._held = self._held, None
        if held is not None and not self.transport.is_closing():
            self.transport.write(held)

    def close(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self.transport.is_closing():
            self.transport.write(held)
        self.transport.close()

    def abort(self) -> None:
        self._held = None
        self.transport.abort()

    # The calls uvicorn makes on every request, without the __getattr__ lookup.
    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """`uvicorn.Config(http=...)`: uvicorn's httptools protocol on a `HoldingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        holding: Any = HoldingTransport(transport, self.loop)
        super().connection_made(holding)
