"""The console's pages: one HTML shell for every `/console/...` path (the script in
`gateway/console/static/app.js` draws the page from the JSON APIs), its script and
style, and the two browser libraries it uses, from the npm packages that
`scripts/setup.sh` installs into `gateway/console/node_modules` (the image builds them
the same way). Nothing is fetched from outside at run time."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

CONSOLE = Path(__file__).resolve().parent / "console"
STATIC = CONSOLE / "static"
#: The only files served from node_modules: a graph layout engine and a chart library.
LIBRARIES = {
    "elk.js": CONSOLE / "node_modules" / "elkjs" / "lib" / "elk.bundled.js",
    "chart.js": CONSOLE / "node_modules" / "chart.js" / "dist" / "chart.umd.js",
}
STATIC_FILES = {"app.js", "app.css"}
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


def router() -> APIRouter:
    routes = APIRouter(tags=["console"], include_in_schema=False)

    @routes.get("/console")
    async def console_root() -> RedirectResponse:
        return RedirectResponse("/console/")

    @routes.get("/console/static/{name}")
    async def static(name: str) -> FileResponse:
        if name not in STATIC_FILES:
            raise HTTPException(404, "no such file")
        return FileResponse(STATIC / name, headers=HEADERS)

    @routes.get("/console/lib/{name}")
    async def library(name: str) -> FileResponse:
        path = LIBRARIES.get(name)
        if path is None:
            raise HTTPException(404, "no such library")
        if not path.is_file():
            raise HTTPException(
                503, f"{name} is not installed: run scripts/setup.sh (npm ci in {CONSOLE})"
            )
        return FileResponse(path, media_type="text/javascript", headers=HEADERS)

    @routes.get("/console/{page:path}")
    async def page(page: str) -> FileResponse:
        """Every console path gets the shell; the script draws the page (or its
        not-found page)."""
        return FileResponse(STATIC / "index.html", headers=HEADERS)

    return routes
