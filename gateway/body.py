"""Request bodies: a hard size limit on the wire, and gzip decoded with a bound.

`BodyLimit` is plain ASGI middleware: it answers 413 from `Content-Length` before
reading anything, and counts streamed bytes (chunked uploads) so a handler never
holds more than the limit. `decode` bounds gzip *after* decompression, so a small
gzip bomb is refused after at most `limit + 64 KiB` of output.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lineagehub.openlineage_schema import loads

CHUNK = 64 * 1024


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than the limit of {limit} bytes")
        self.limit = limit


class UnsupportedEncoding(Exception):
    pass


class BadEncoding(Exception):
    pass


def _too_large_response(limit: int) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"detail": f"request body is larger than the limit of {limit} bytes"})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return 413, headers, body.encode()


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = -1
        chunked = False
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await self._reject(send)
                    return
            elif name == b"transfer-encoding":
                chunked = True
        if declared >= 0 and not chunked:
            # The server reads exactly the declared length as the body (the rest of the
            # stream is the next request), so there is nothing to count.
            await self.app(scope, receive, send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        status, headers, body = _too_large_response(self.max_bytes)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def decode(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body after `Content-Encoding` (identity or gzip), at most `limit` bytes."""
    encodings = [e.strip().lower() for e in (content_encoding or "").split(",") if e.strip()]
    data = raw
    for encoding in reversed(encodings):  # the last applied is listed last
        if encoding in {"identity", ""}:
            continue
        if encoding not in {"gzip", "x-gzip"}:
            raise UnsupportedEncoding(f"Content-Encoding {encoding!r} is not supported (gzip is)")
        data = gunzip(data, limit)
    if len(data) > limit:
        raise BodyTooLarge(limit)
    return data


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress every gzip member in `data`; refuse output beyond `limit`."""
    out = bytearray()
    rest = data
    while rest:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        pending = rest
        try:
            while pending and not inflater.eof:
                out += inflater.decompress(pending, CHUNK)
                if len(out) > limit:
                    raise BodyTooLarge(limit)
                pending = inflater.unconsumed_tail
            # Everything consumed but the stream may still hold output.
            while not inflater.eof:
                chunk = inflater.decompress(b"", CHUNK)
                if not chunk:
                    break
                out += chunk
                if len(out) > limit:
                    raise BodyTooLarge(limit)
        except zlib.error as exc:
            raise BadEncoding(f"invalid gzip body: {exc}") from None
        if not inflater.eof:
            raise BadEncoding("invalid gzip body: truncated")
        rest = inflater.unused_data
        # Trailing zero padding after the last member is allowed (as gzip(1) does).
        if rest and not rest.strip(b"\x00"):
            break
    return bytes(out)


def parse_json(data: bytes) -> tuple[Any, str | None]:
    """`(value, None)`, or `(None, reason)` for a body that is not JSON Marquez could read.

    Never raises. `lineagehub.openlineage_schema.loads` is the lineage consumer's
    parser too (orjson, or the exact parser for what orjson cannot read exactly), so
    both doors read the same bytes as the same value; lone surrogates it returns are
    caught per event by `gateway.lineage.check`, which can name their path.
    """
    if not data.strip():
        return None, "the body is empty"
    return loads(data)
