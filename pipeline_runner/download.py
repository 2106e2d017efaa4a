"""Download an http(s) source into the workspace: streamed, with retries and the size
limit, every redirect hop and every connection checked against the operator's policy.

Loaded only by a stage whose source is http(s): httpx and httpcore are no part of a
stage that reads a file or an object store.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from lineagehub.api.egress import Resolver, TargetPolicy, TargetRefused, system_resolver
from lineagehub.datasets import redact_text, redact_uri
from pipeline_runner.errors import ErrorKind, StageError, first_line
from pipeline_runner.settings import Settings
from pipeline_runner.sources import FIX_TARGET, refused, target_policy, too_large

CHUNK = 1 << 20
MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _GuardedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the policy allows: the host is resolved here and the
    connection made to the checked address itself (TLS still verifies the host name)."""

    def __init__(self, policy: TargetPolicy, resolve: Resolver) -> None:
        self._policy = policy
        self._resolve = resolve
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._policy.check_host(host, self._resolve)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        last: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last = exc
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not a download target")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool whose every connection is checked."""

    def __init__(self, policy: TargetPolicy, resolve: Resolver = system_resolver) -> None:
        super().__init__()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            network_backend=_GuardedBackend(policy, resolve),
        )


_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def _hop(url: str, origin: str, hop: int, policy: TargetPolicy, resolve: Resolver) -> None:
    """Refuse a hop of a download whose scheme or host the policy does not allow."""
    shown = redact_uri(origin)
    where = f"source {shown}" if hop == 0 else f"source {shown} redirects to {redact_uri(url)}"
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise StageError(
            ErrorKind.INPUT_INVALID,
            f"{where}: a {scheme or 'relative'} URL is not a download",
            "serve the data over http(s) without redirecting elsewhere",
        )
    try:
        policy.check_host(urlsplit(url).hostname or "", resolve)
    except TargetRefused as err:
        raise StageError(ErrorKind.INPUT_INVALID, f"{where}: {err.reason}", FIX_TARGET) from err
    except OSError:
        return  # does not resolve: the connection fails on its own


def _final_response(
    client: httpx.Client, url: str, policy: TargetPolicy, resolve: Resolver
) -> httpx.Response:
    """GET `url`, following redirects one checked hop at a time; the caller closes the
    (streaming) response."""
    target = url
    for hop in range(MAX_REDIRECTS + 1):
        _hop(target, url, hop, policy, resolve)
        response = client.send(client.build_request("GET", target), stream=True)
        location = response.headers.get("location")
        if response.status_code not in _REDIRECTS or not location:
            return response
        response.close()
        target = str(response.url.join(location))
    raise StageError(
        ErrorKind.INPUT_INVALID,
        f"source {redact_uri(url)} redirects more than {MAX_REDIRECTS} times",
        "point spec.source.uri at where the data is",
    )


def download(
    url: str,
    dest: str,
    settings: Settings,
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    policy: TargetPolicy | None = None,
    resolve: Resolver = system_resolver,
) -> int:
    """Stream `url` into `dest`, retrying transient failures; returns the bytes written.

    A download beyond `settings.max_source_bytes` stops as soon as it crosses the limit
    (checked against Content-Length first, then while streaming). Every redirect hop
    and every connection is checked against `policy` (the stage's environment's when
    None); a refused one fails at once, without a retry.
    """
    allowed = policy if policy is not None else target_policy()
    shown = redact_uri(url)
    attempts = settings.http_retries + 1
    last = ""
    delay = settings.http_backoff
    for attempt in range(1, attempts + 1):
        try:
            with httpx.Client(
                timeout=settings.http_timeout,
                follow_redirects=False,
                trust_env=False,  # a proxy from the environment would bypass the checks
                transport=transport or GuardedTransport(allowed, resolve),
            ) as client:
                response = _final_response(client, url, allowed, resolve)
                try:
                    status = response.status_code
                    if status in (404, 410):
                        raise StageError(
                            ErrorKind.INPUT_NOT_FOUND,
                            f"source {shown} not found (HTTP {status})",
                            "check spec.source.uri",
                        )
                    if status in _RETRY_STATUS:
                        last = f"HTTP {status}"
                    elif status >= 400:
                        raise StageError(
                            ErrorKind.INPUT_INVALID,
                            f"source {shown} refused the download (HTTP {status})",
                            "check spec.source.uri and that it is readable without credentials",
                        )
                    else:
                        length = response.headers.get("content-length")
                        if length and length.isdigit() and int(length) > settings.max_source_bytes:
                            raise too_large(url, int(length), settings.max_source_bytes)
                        written = 0
                        with Path(dest).open("wb") as out:
                            for chunk in response.iter_bytes(CHUNK):
                                written += len(chunk)
                                if written > settings.max_source_bytes:
                                    raise too_large(url, written, settings.max_source_bytes)
                                out.write(chunk)
                        return written
                finally:
                    response.close()
        except StageError:
            with contextlib.suppress(FileNotFoundError):
                Path(dest).unlink()
            raise
        except TargetRefused as err:  # the address connected to, after the hop's check
            with contextlib.suppress(FileNotFoundError):
                Path(dest).unlink()
            raise refused("source", shown, err, ErrorKind.INPUT_INVALID) from err
        except (httpx.TransportError, httpx.StreamError) as exc:
            last = f"{type(exc).__name__}: {redact_text(first_line(exc))}"
        with contextlib.suppress(FileNotFoundError):
            Path(dest).unlink()
        if attempt < attempts:
            sleep(delay)
            delay *= 2
    raise StageError(
        ErrorKind.INPUT_NOT_FOUND,
        f"could not download source {shown} after {attempts} attempt(s): {last}",
        "check that the server is reachable from the stage, or raise LINEAGEHUB_HTTP_RETRIES",
    )
