"""The console's pages: one HTML shell for every `/console/...` path (the script in
`gateway/console/static/app.js` draws the page from the JSON APIs), its script and
style, and the two browser libraries it uses, from the npm packages that
`scripts/setup.sh` installs into `gateway/console/node_modules` (the image builds them
the same way). Nothing is fetched from outside at run time."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

CONSOLE = Path(__file__).resolve().parent / "console"
STATIC = CONSOLE / "static"
#: The only files served from node_modules: a graph layout engine and a chart library.
LIBRARIES = {
    "elk.js": CONSOLE / "node_modules" / "elkjs" / "lib" / "elk.bundled.js",
    "chart.js": CONSOLE / "node_modules" / "chart.js" / "dist" / "chart.umd.js",
}
STATIC_FILES = {"app.js", "durations.js", "app.css"}
# No inline script, nothing from elsewhere; inline style attributes position the bars.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    """A file as served: its bytes, the same gzip-compressed, and an ETag of the bytes."""

    body: bytes
    gzipped: bytes
    etag: str


@lru_cache(maxsize=16)
def _asset(path: Path, mtime_ns: int, size: int) -> Asset:
    """Read and compress once per version of the file (its mtime and size are the key):
    the layout library is 1.6 MiB as shipped and ~0.4 MiB gzipped."""
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body, gzip.compress(body, compresslevel=6, mtime=0), etag)


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in {"gzip", "*"} and params.replace(" ", "") != "q=0":
            return True
    return False


def serve_asset(request: Request, path: Path, media_type: str) -> Response:
    """`path` with an ETag (a revalidation that matches is a 304 with no body) and, when
    the browser accepts it, gzip-compressed."""
    stat = path.stat()
    asset = _asset(path, stat.st_mtime_ns, stat.st_size)
    headers = {**HEADERS, "ETag": asset.etag, "Vary": "Accept-Encoding"}
    if asset.etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    if _accepts_gzip(request):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=media_type, headers=headers)
    return Response(asset.body, media_type=media_type, headers=headers)


MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css"}


def router() -> APIRouter:
    routes = APIRouter(tags=["console"], include_in_schema=False)

    @routes.get("/console")
    async def console_root() -> RedirectResponse:
        return RedirectResponse("/console/")

    @routes.get("/console/static/{name}")
    async def static(request: Request, name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, "no such file")
        return serve_asset(request, STATIC / name, MEDIA_TYPES[Path(name).suffix])

    @routes.get("/console/lib/{name}")
    async def library(request: Request, name: str) -> Response:
        path = LIBRARIES.get(name)
        if path is None:
            raise HTTPException(404, "no such library")
        if not path.is_file():
            raise HTTPException(
                503, f"{name} is not installed: run scripts/setup.sh (npm ci in {CONSOLE})"
            )
        return serve_asset(request, path, "text/javascript")

    @routes.get("/console/{page:path}")
    async def page(page: str) -> FileResponse:
        """Every console path gets the shell; the script draws the page (or its
        not-found page)."""
        return FileResponse(STATIC / "index.html", headers=HEADERS)

    return routes
