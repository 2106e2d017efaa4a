"""Every gateway route needs a token and a scope: checked on the app's own route table.

The routes come from `app.routes`, so a route added later is checked without
touching this file. Only the small allow-list below is public, each entry with its
reason: the README's "need no token" list (the health probe, the Prometheus scrape,
the API docs) and the console's static shell with the links it starts from (the page
asks the user for a token for everything else). Each of those is checked to really
answer without a token.

For every other route and method:

* no token, a malformed header and an unknown token: 401;
* for each scope, a token holding every scope but that one: the route's scope is
  the one whose absence gives 403 (at least one must), and a token holding only the
  scopes the route needs passes authentication (neither 401 nor 403);
* a token with every scope passes authentication.

No backend is configured, so a request that gets past auth ends in a 4xx or 503 of
its own; what matters here is that it is not 401/403.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import fastapi.routing
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Route

from gateway.app import create_app
from gateway.auth import Scope, TokenStore, parse_tokens
from gateway.config import Settings

# Public on purpose: (method, path template) -> a URL to try it with, and why.
PUBLIC: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/api/v1/health"): ("/api/v1/health", "probes (README, Security)"),
    ("GET", "/metrics"): ("/metrics", "the Prometheus scrape (README, Security)"),
    ("GET", "/console"): ("/console", "the console's HTML shell: no data"),
    ("GET", "/console/{page:path}"): ("/console/runs", "the console's HTML shell: no data"),
    ("GET", "/console/static/{name}"): ("/console/static/app.js", "the console's own script"),
    ("GET", "/console/lib/{name}"): ("/console/lib/elk.js", "a library the console loads"),
    ("GET", "/api/v1/console/config"): (
        "/api/v1/console/config",
        "the links and default namespace the console starts from, no secrets",
    ),
}

ALL = "route-auth-token-with-every-scope"
BAD_HEADERS = ("", "Bearer", "Basic dXNlcjpwYXNz", "Bearer not-a-known-token-000000")


def _without(scope: Scope) -> str:
    return f"route-auth-token-without-{scope.name.lower()}"


def _only(scope: Scope) -> str:
    return f"route-auth-token-only-{scope.name.lower()}"


def _settings(public_read: bool = False) -> Settings:
    entries = [f"{ALL}:{','.join(s.value for s in Scope)}"]
    for scope in Scope:
        entries.append(f"{_without(scope)}:{','.join(s.value for s in Scope if s != scope)}")
        entries.append(f"{_only(scope)}:{scope.value}")
    tokens = parse_tokens(";".join(entries))
    # One event per live stream, then it ends (a test client reads a body to its end).
    return Settings(tokens=tokens, rate_per_s=0, public_read=public_read, stream_seconds=0)


def _app(public_read: bool = False) -> FastAPI:
    # No Kafka, no Kubernetes, no ClickHouse: nothing past auth can do real work.
    return create_app(_settings(public_read), publisher=None, runs=None, metrics_store=None)


def _docs_paths(app: FastAPI) -> set[str]:
    """The documentation routes FastAPI adds (as configured on this app)."""
    paths = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    return {p for p in paths if p}


def _flat_routes(app: FastAPI) -> list[tuple[str, set[str] | None, BaseRoute]]:
    """(path, methods, route) of each route in `app.routes`, included routers opened.

    Newer FastAPI keeps an included router as one entry of `app.routes` and
    `fastapi.routing.iter_route_contexts` opens it; older ones copy its routes in.
    """
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_contexts is None:
        return [(getattr(r, "path", repr(r)), getattr(r, "methods", None), r) for r in app.routes]
    return [
        (ctx.path or repr(ctx.original_route), ctx.methods, ctx.original_route)
        for ctx in iter_contexts(app.routes)
    ]


def endpoints(app: FastAPI) -> list[tuple[str, str, BaseRoute]]:
    """(method, path, route) for every route of the app, HEAD aside.

    A route without methods (a mount, a websocket) is listed under "*": it has no
    place in the allow-list, so it fails the check until someone looks at it.
    """
    out: list[tuple[str, str, BaseRoute]] = []
    for path, methods, route in _flat_routes(app):
        out.extend((m, path, route) for m in sorted(methods or {"*"}) if m != "HEAD")
    return out


def _url(path: str) -> str:
    # A value every path parameter of the gateway accepts (a DNS label, a run id).
    return re.sub(r"\{[^}]+\}", "x1", path)


def status(
    client: TestClient, method: str, path: str, token: str | None = None, header: str | None = None
) -> int:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if header is not None:
        headers["Authorization"] = header
    # Streamed: only the status is read (a live stream, SSE, would not end).
    with client.stream(method, _url(path), headers=headers) as reply:
        return reply.status_code


def needed_scopes(client: TestClient, method: str, path: str) -> list[Scope]:
    """The scopes whose absence from a token makes the route answer 403."""
    return [s for s in Scope if status(client, method, path, _without(s)) == 403]


def auth_problems(client: TestClient, method: str, path: str, route: BaseRoute) -> list[str]:
    """What is wrong with the route's authentication; [] when nothing is."""
    if not isinstance(route, APIRoute):
        return [f"{method} {path}: a {type(route).__name__}, not an APIRoute: check its auth"]

    problems = []
    for header in (None, *BAD_HEADERS):
        got = status(client, method, path, header=header)
        if got != 401:
            problems.append(f"{method} {path}: Authorization {header!r} gave {got}, not 401")
    needed = needed_scopes(client, method, path)
    if not needed:
        problems.append(f"{method} {path}: no token lacking a scope is refused with 403")
    for scope in needed:
        got = status(client, method, path, _only(scope))
        if len(needed) == 1 and got in (401, 403):
            problems.append(f"{method} {path}: a {scope.value} token gave {got}")
    got = status(client, method, path, ALL)
    if got in (401, 403):
        problems.append(f"{method} {path}: a token with every scope gave {got}")
    return problems


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(_app()) as c:
        yield c


_APP = _app()
PROTECTED = [
    pytest.param(m, p, id=f"{m} {p}")
    for m, p, _ in endpoints(_APP)
    if (m, p) not in PUBLIC and p not in _docs_paths(_APP)
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_route_needs_a_token_and_its_scope(client: TestClient, method: str, path: str) -> None:
    app = client.app
    assert isinstance(app, FastAPI)
    (route,) = [r for m, p, r in endpoints(app) if (m, p) == (method, path)]
    assert auth_problems(client, method, path, route) == []


@pytest.fixture(scope="module")
def open_client() -> Iterator[TestClient]:
    with TestClient(_app(public_read=True)) as c:
        yield c


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_public_read_opens_the_reads_and_no_write(
    client: TestClient, open_client: TestClient, method: str, path: str
) -> None:
    needed = needed_scopes(client, method, path)
    assert needed, f"{method} {path} needs no scope"
    got = status(open_client, method, path)
    if all(s.value.endswith(":read") for s in needed):
        assert got not in (401, 403), f"{method} {path} is a read, refused with {got}"
    else:
        assert got == 401, f"{method} {path} needs {needed}: without a token it gave {got}"


def test_the_route_table_is_read() -> None:
    # Guards the parametrisation itself: an empty or mangled route list would pass.
    found = {(p.values[0], p.values[1]) for p in PROTECTED}
    assert ("POST", "/api/v1/lineage") in found
    assert ("GET", "/api/v1/pipeline/run/{name}") in found
    assert len(found) == len(PROTECTED)
    assert len(PUBLIC) + 4 < len(PROTECTED)  # the allow-list stays the exception


def test_the_allow_list_is_small_and_real(client: TestClient) -> None:
    app = client.app
    assert isinstance(app, FastAPI)
    routes = {(m, p) for m, p, _ in endpoints(app)}
    assert routes >= set(PUBLIC), "an allow-listed route is gone: drop it from the list"
    docs = _docs_paths(app)
    assert docs == {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
    urls = [(m, url) for (m, _), (url, _) in sorted(PUBLIC.items())]
    for method, url in urls + [("GET", p) for p in sorted(docs)]:
        got = client.request(method, url).status_code
        assert got not in (401, 403), f"{method} {url} is public but answered {got}"
        # 503: health with its dependencies down, or the console's libraries not installed.
        assert got in (200, 503), f"{method} {url}: {got}"
    # The docs routes are Starlette's plain routes, and the only ones that are.
    plain = {p: r for p, _, r in _flat_routes(app) if not isinstance(r, APIRoute)}
    assert set(plain) == docs
    assert all(isinstance(r, Route) for r in plain.values())


def test_a_route_added_without_auth_is_caught() -> None:
    app = _app()

    @app.get("/api/v1/unguarded/{item}")
    async def unguarded(item: str) -> dict[str, str]:
        return {"item": item}

    with TestClient(app) as c:
        (route,) = [r for m, p, r in endpoints(app) if p == "/api/v1/unguarded/{item}"]
        problems = auth_problems(c, "GET", "/api/v1/unguarded/{item}", route)
    assert any("gave 200, not 401" in p for p in problems), problems
    assert any("no token lacking a scope" in p for p in problems), problems


def test_a_route_that_only_authenticates_is_caught() -> None:
    # Any valid token, whatever its scopes, would reach this one.
    app = _app()
    tokens: TokenStore = app.state.deps.settings.tokens

    async def any_token(request: Request) -> None:
        if tokens.authenticate(request.headers.get("authorization")) is None:
            raise HTTPException(401, "a valid bearer token is required")

    @app.post("/api/v1/any-token", dependencies=[Depends(any_token)])
    async def any_token_route() -> dict[str, str]:
        return {"ok": "yes"}

    with TestClient(app) as c:
        (route,) = [r for m, p, r in endpoints(app) if p == "/api/v1/any-token"]
        problems = auth_problems(c, "POST", "/api/v1/any-token", route)
    assert problems == ["POST /api/v1/any-token: no token lacking a scope is refused with 403"]
