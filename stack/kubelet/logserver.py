"""The kubelet's HTTPS endpoint: `/containerLogs/...` (for `kubectl logs`) and `/healthz`.

TLS with the kubelet serving certificate; when a client CA is given, a client
certificate signed by it is required (the apiserver presents its kubelet
client certificate).
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from stack.kubelet import logs

log = logging.getLogger("kubelet.http")


@dataclass
class LogSource:
    path: Path
    active: Callable[[], bool]  # True while the container may still write


# (namespace, pod, container, previous) -> source, or an error message for 404
Locator = Callable[[str, str, str, bool], "LogSource | str"]


def _flag(q: dict[str, list[str]], name: str) -> bool:
    return (q.get(name) or ["false"])[0].lower() in ("true", "1", "yes")


def _int(q: dict[str, list[str]], name: str) -> int | None:
    raw = (q.get(name) or [""])[0]
    return int(raw) if raw else None


class _Handler(BaseHTTPRequestHandler):
    server: KubeletHTTPServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        conn: Any = self.request
        conn.settimeout(30)
        conn.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http " + format % args)

    def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        if parts in (["healthz"], ["readyz"], ["livez"]):
            self._send(200, b"ok")
            return
        if len(parts) == 4 and parts[0] == "containerLogs":
            try:
                self._logs(parts[1], parts[2], parts[3], urllib.parse.parse_qs(url.query))
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
                pass
            except ValueError as exc:
                self._send(400, f"{exc}\n".encode())
            return
        self._send(404, b"404 page not found\n")

    def _logs(self, ns: str, pod: str, container: str, q: dict[str, list[str]]) -> None:
        source = self.server.locate(ns, pod, container, _flag(q, "previous"))
        if isinstance(source, str):
            self._send(404, f"{source}\n".encode())
            return
        timestamps = _flag(q, "timestamps")
        limit = _int(q, "limitBytes")
        tail = _int(q, "tailLines")
        since: dt.datetime | None = None
        if _int(q, "sinceSeconds") is not None:
            since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=_int(q, "sinceSeconds") or 0)
        elif q.get("sinceTime"):
            since = logs.parse_stamp(q["sinceTime"][0])
        body, offset = logs.read(source.path, tail, since, timestamps, limit)
        if not _flag(q, "follow"):
            self._send(200, body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0

        def chunk(data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        if body:
            chunk(body)
            sent += len(body)
        follower = logs.follow_from(source.path, offset)
        idle_since_exit: float | None = None
        while limit is None or sent < limit:
            recs, _ = next(follower)
            if recs:
                data = logs.render(recs, timestamps)
                if limit is not None:
                    data = data[: limit - sent]
                chunk(data)
                sent += len(data)
                continue
            if not source.active():
                # Give the shim a moment to flush its last lines, then end.
                idle_since_exit = idle_since_exit or time.monotonic()
                if time.monotonic() - idle_since_exit > 0.5:
                    break
            time.sleep(0.2)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class KubeletHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, locate: Locator, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.locate = locate
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        # Port probes connect and hang up before any TLS: not worth more than debug.
        eof = isinstance(exc, ssl.SSLEOFError | ConnectionResetError | BrokenPipeError)
        level = logging.DEBUG if eof else logging.INFO
        log.log(
            level, "https request failed", extra={"client": str(client_address), "error": str(exc)}
        )

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="kubelet-http", daemon=True)
        thread.start()
        return thread


def tls_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
