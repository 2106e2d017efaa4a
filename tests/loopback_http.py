"""A real HTTP peer for a test on a free loopback port: the test's own request handler
(a CSV source, a store, a collector, Marquez) served by the standard library's server
from a daemon thread, stopped and its socket closed when the test is done.

`serving(Handler)` yields the running server (`.url`, `.port`); a handler subclassing
`QuietHandler` keeps the server's access lines out of the test's output, and answers
with `reply`.
"""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing, with a one-call answer."""

    def log_message(self, format: str, *args: object) -> None:
        return None

    def reply(
        self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer `status` with `headers`, the body's Content-Length, and the body."""
        self.send_response(status)
        for name, value in {**(headers or {}), "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@dataclass(frozen=True)
class Served:
    server: socketserver.TCPServer
    host: str

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextlib.contextmanager
def serving(
    handler: type[socketserver.BaseRequestHandler],
    host: str = "127.0.0.1",
    server: type[socketserver.TCPServer] = ThreadingHTTPServer,
) -> Iterator[Served]:
    """Serve `handler` on `host`, a free port, until the block ends. A threading
    `server` (the default) answers each connection in a daemon thread of its own, so a
    handler still waiting (a slow source) never holds up the end of the test."""
    running = server((host, 0), handler)
    if isinstance(running, socketserver.ThreadingMixIn):
        running.daemon_threads = True
    thread = threading.Thread(target=running.serve_forever, name="loopback-http", daemon=True)
    thread.start()
    try:
        yield Served(running, host)
    finally:
        running.shutdown()
        running.server_close()
        thread.join()
