"""Run the app with uvicorn in a background thread (tests and the benchmark)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from gateway.http_protocol import OneWriteHttpToolsProtocol


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class ServerThread:
    """`with ServerThread(app) as server: server.url` — loopback, a free port."""

    def __init__(
        self,
        app: FastAPI,
        host: str = "127.0.0.1",
        port: int = 0,
        http: str | type[asyncio.Protocol] = OneWriteHttpToolsProtocol,
    ) -> None:
        """`http`: uvicorn's protocol, by default the one `lineage-hub gateway` serves."""
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(
            app,
            host=host,
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            http=http,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="gateway", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the gateway server thread exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway did not start within {timeout}s")
            time.sleep(0.02)

    def stop(self, timeout: float = 20.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
