"""A loopback TCP proxy in front of a Kafka broker, for tests of clients across outages
and of what clients tell the broker: it refuses (as a closed port), holds (a broker that
does not answer) or forwards, and notes the client id of each forwarded connection's
first request. The broker advertises its own address, so only a client's bootstrap
connections go through the proxy."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from typing import Literal

Mode = Literal["refuse", "hold", "forward"]


class BrokerProxy:
    """A loopback TCP proxy to `upstream`. `refuse`: each connection is reset at once
    (as a closed port); `hold`: kept open unanswered (a broker that does not answer);
    `forward` (after `open`): held and new connections are joined to the upstream."""

    def __init__(self, upstream: str, mode: Mode) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._mode: Mode = mode
        self._lock = threading.Lock()
        self._held: list[socket.socket] = []
        self._sockets: list[socket.socket] = []
        self.attempts = 0
        self.attempted = threading.Event()
        #: The client id of the first request on each forwarded connection.
        self.client_ids: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                self.attempts += 1
                mode = self._mode
                if mode == "hold":
                    self._held.append(conn)
            self.attempted.set()
            if mode == "refuse":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            elif mode == "forward":
                self._join(conn)

    def open(self) -> None:
        """From now on the broker answers: held connections are forwarded too."""
        with self._lock:
            self._mode = "forward"
            held, self._held = self._held, []
        for conn in held:
            self._join(conn)

    def _join(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(self._upstream)
        with self._lock:
            self._sockets += [conn, upstream]
        threading.Thread(
            target=_pump, args=(conn, upstream, self._note_client), daemon=True
        ).start()
        threading.Thread(target=_pump, args=(upstream, conn), daemon=True).start()

    def _note_client(self, first: bytes) -> None:
        client_id = request_client_id(first)
        if client_id is not None:
            with self._lock:
                self.client_ids.append(client_id)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for s in self._held + self._sockets:
                s.close()


def request_client_id(data: bytes) -> str | None:
    """The client id in a Kafka request's header (v1 and later: size, api key, api
    version, correlation id, then the id as an int16-sized string), if `data` starts
    with a whole one."""
    if len(data) < 14:
        return None
    (size,) = struct.unpack_from(">h", data, 12)
    if size < 0 or len(data) < 14 + size:
        return None
    return data[14 : 14 + size].decode("utf-8", "replace")


def _pump(
    src: socket.socket, dst: socket.socket, first: Callable[[bytes], None] | None = None
) -> None:
    """Copies `src` to `dst`; `first` sees the bytes before the first copy (a Kafka
    client's first request comes in one write: its header is in them)."""
    try:
        while data := src.recv(65536):
            if first is not None:
                first(data)
                first = None
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:  # the other side or the proxy closed
        return
