"""The gateway's metrics take no label value from the request.

A real uvicorn server (h11 passes any method token through to the app, as a proxy
in front of the gateway may) gets a flood of requests with random methods and
random paths; `/metrics` as a scraper reads it then holds a bounded number of series,
every method label is a standard method or `other`, every route label is one of the
app's route templates or `unmatched`, and none of the random text appears anywhere.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Iterator

import fastapi.routing
import httpx
import pytest
from starlette.routing import BaseRoute

from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.config import Settings
from gateway.metric_labels import (
    KNOWN_METHODS,
    OTHER,
    UNMATCHED,
    method_label,
    route_label,
    status_label,
)
from gateway.serve import ServerThread

TOKEN = "metric-labels-token-00001"
FLOOD = 400
SERIES = re.compile(r"^(lineagehub_gateway_\w+?)(?:_bucket|_sum|_count)?\{(.*)\} \S+$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _templates(routes: list[BaseRoute]) -> set[str]:
    """Every route template, included routers opened (newer FastAPI nests them)."""
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_contexts is None:
        return {str(getattr(r, "path", "")) for r in routes}
    return {str(ctx.path) for ctx in iter_contexts(routes)}


@pytest.fixture(scope="module", params=["h11", "httptools"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    """h11 hands the app any method token (as a proxy in front may); httptools refuses
    unknown ones in its parser but passes the many it knows (PROPFIND, MKCOL, ...)."""
    settings = Settings(tokens=parse_tokens(f"{TOKEN}:runs:read"), rate_per_s=0)
    app = create_app(settings, publisher=None, runs=None, metrics_store=None)
    with ServerThread(app, http=request.param) as running:
        running.templates = _templates(app.routes)  # type: ignore[attr-defined]
        yield running


def _word(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_letters) for _ in range(n))


def _series(text: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for line in text.splitlines():
        match = SERIES.match(line)
        if match:
            labels = dict(LABEL.findall(match.group(2)))
            labels.pop("le", None)
            out.append((match.group(1), labels))
    return out


def test_a_flood_of_random_methods_and_paths_mints_no_series(server: ServerThread) -> None:
    rng = random.Random(17)
    sent: list[str] = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        baseline = _series(client.get("/metrics").text)
        for i in range(FLOOD):
            method = rng.choice(
                [_word(rng, 8).upper(), _word(rng, 6), "GET", "POST", "get", "PROPFIND", "MKCOL"]
            )
            path = rng.choice(
                [
                    f"/{_word(rng, 12)}",
                    f"/api/v1/{_word(rng, 12)}",
                    f"/api/v1/pipeline/run/{_word(rng, 10).lower()}",
                    f"/console/{_word(rng, 12)}",
                    f"/api/v1/pipeline/run/{i}%20{_word(rng, 4)}",
                ]
            )
            sent.extend([method, path])
            headers = {"Authorization": f"Bearer {TOKEN}"} if i % 3 == 0 else {}
            response = client.request(method, path, headers=headers)
            assert 200 <= response.status_code < 600
        text = client.get("/metrics").text
    series = _series(text)
    families = {name for name, _ in series}
    assert "lineagehub_gateway_http_requests_total" in families
    methods = {labels["method"] for _, labels in series if "method" in labels}
    routes = {labels["route"] for _, labels in series if "route" in labels}
    assert OTHER in methods and "GET" in methods
    assert methods <= KNOWN_METHODS | {OTHER}, methods
    templates: set[str] = server.templates  # type: ignore[attr-defined]
    assert routes <= templates | {UNMATCHED}, routes - templates
    assert "/api/v1/pipeline/run/{name}" in routes and UNMATCHED in routes
    # Bounded: method x route x status from closed sets, far below one series a request.
    distinct = {(name, tuple(sorted(labels.items()))) for name, labels in series}
    before = {(name, tuple(sorted(labels.items()))) for name, labels in baseline}
    assert len(distinct) - len(before) < 60, sorted(distinct)
    for token in sent:
        if len(token) >= 6 and token not in {*KNOWN_METHODS, "get", "PROPFIND"}:
            assert token not in text, token


@pytest.mark.parametrize(
    ("method", "expected"),
    [("GET", "GET"), ("DELETE", "DELETE"), ("get", OTHER), ("PROPFIND", OTHER), ("", OTHER)],
)
def test_method_label(method: str, expected: str) -> None:
    assert method_label(method) == expected


def test_route_and_status_labels() -> None:
    class Route:
        path = "/api/v1/pipeline/run/{name}"

    assert route_label({"route": Route(), "path": "/api/v1/pipeline/run/abc"}) == Route.path
    assert route_label({"path": "/anything"}) == UNMATCHED
    assert [status_label(s) for s in (200, 404, 599, 600, 99, 1234)] == [
        "200",
        "404",
        "599",
        OTHER,
        OTHER,
        OTHER,
    ]


def test_the_frameworks_own_routes_count_under_their_templates(server: ServerThread) -> None:
    """`/openapi.json` and the docs pages are plain Starlette routes, which tell only
    their endpoint to the scope; they still get their template, not `unmatched`."""
    framework = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        before = client.get("/metrics").text
        for path in framework:
            assert client.get(path).status_code == 200, path
        assert client.get("/openapi.json/x").status_code == 404
        text = client.get("/metrics").text

    def counts(metrics: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in metrics.splitlines():
            match = SERIES.match(line)
            if match and match.group(1) == "lineagehub_gateway_http_requests_total":
                labels = dict(LABEL.findall(match.group(2)))
                if labels["method"] == "GET":
                    key = f"{labels['route']} {labels['status']}"
                    out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
        return out

    was, now = counts(before), counts(text)
    grew = {key: now[key] - was.get(key, 0) for key in now if now[key] != was.get(key, 0)}
    assert grew == {
        **{f"{path} 200": 1.0 for path in framework},
        f"{UNMATCHED} 404": 1.0,
        "/metrics 200": 1.0,  # the first scrape, counted when it ended
    }


def test_a_write_refused_before_routing_counts_under_its_route(server: ServerThread) -> None:
    """`AuthFirst` answers 401 before the router runs, so the scope holds no route: the
    refusal still counts under the template of the route it was sent to (a dashboard of
    401s by route shows which API is being called without a token), and a write to a
    path no route takes stays `unmatched`."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        before = _series_counts(client.get("/metrics").text)
        assert client.post("/api/v1/pipeline/run", json={}).status_code == 401
        assert client.post("/api/v1/pipeline/run/r1/cancel", json={}).status_code == 401
        assert client.post("/api/v1/no-such-thing", json={}).status_code == 401
        now = _series_counts(client.get("/metrics").text)
    grew = {key: now[key] - before.get(key, 0) for key in now if now[key] != before.get(key, 0)}
    assert grew == {
        ("POST", "/api/v1/pipeline/run", "401"): 1.0,
        ("POST", "/api/v1/pipeline/run/{name}/cancel", "401"): 1.0,
        ("POST", UNMATCHED, "401"): 1.0,
        ("GET", "/metrics", "200"): 1.0,
    }


def _series_counts(metrics: str) -> dict[tuple[str, str, str], float]:
    out: dict[tuple[str, str, str], float] = {}
    for line in metrics.splitlines():
        match = SERIES.match(line)
        if match and match.group(1) == "lineagehub_gateway_http_requests_total":
            labels = dict(LABEL.findall(match.group(2)))
            key = (labels["method"], labels["route"], labels["status"])
            out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return out


def test_a_mounts_prefix_is_not_a_route_template() -> None:
    """A request refused before routing at a mount's bare path is `unmatched`: a mount's
    path is a prefix of what it serves, not a template (FastAPI hands routes out as
    contexts, so the mount is told by the route the context stands for)."""
    from fastapi import FastAPI
    from starlette.staticfiles import StaticFiles

    from gateway.metric_labels import RouteTemplates

    app = FastAPI()
    app.mount("/static", StaticFiles(directory=".", check_dir=False), name="static")

    @app.post("/api/v1/thing")
    def thing() -> None: ...

    routes = RouteTemplates(lambda: app.routes)
    assert routes.label({"type": "http", "path": "/static", "method": "POST"}) == UNMATCHED
    assert routes.label({"type": "http", "path": "/api/v1/thing", "method": "POST"}) == (
        "/api/v1/thing"
    )
