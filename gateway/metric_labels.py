"""Label values for the gateway's own metrics, from a closed set.

A Prometheus series exists for every distinct label set, so a label value taken from
the request (a method as sent, a raw path, a status) lets any caller create series
without bound and grow the gateway's memory and every scrape. Each value here comes
from a fixed list: the standard methods else `other`, the matched route's template
else `unmatched`, an HTTP status code else `other`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import fastapi.routing
from starlette.routing import BaseRoute, Mount, Route, compile_path

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
UNMATCHED = "unmatched"


def method_label(method: object) -> str:
    """The method when it is a standard one (case-sensitive, as HTTP is), else `other`."""
    return method if isinstance(method, str) and method in KNOWN_METHODS else OTHER


def route_label(scope: Mapping[str, Any]) -> str:
    """The template of the route the router matched (`/api/v1/pipeline/run/{name}`),
    never the path as sent; `unmatched` when no route matched."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class RouteTemplates:
    """Route labels, including the framework's own routes (`/openapi.json`, `/docs`,
    `/docs/oauth2-redirect`, `/redoc`): FastAPI's routes put themselves in the scope
    as `route`, plain Starlette routes only their `endpoint`, so those are looked up by
    endpoint in a table built once, at the first request, from the app's routes."""

    def __init__(self, routes: Callable[[], Iterable[BaseRoute]] = tuple) -> None:
        self._routes = routes
        self._by_endpoint: dict[object, str] | None = None
        self._templates: list[tuple[re.Pattern[str], frozenset[str] | None, str]] | None = None

    def label(self, scope: Mapping[str, Any]) -> str:
        label = route_label(scope)
        if label != UNMATCHED:
            return label
        if "endpoint" in scope:
            if self._by_endpoint is None:
                self._by_endpoint = {
                    r.endpoint: r.path for r in self._routes() if type(r) is Route and r.path
                }
            return self._by_endpoint.get(scope["endpoint"], UNMATCHED)
        return self._matching(scope)

    def _matching(self, scope: Mapping[str, Any]) -> str:
        """The template of the route that would have taken a request answered before
        the router ran (a write refused 401 by `AuthFirst`), matched by path and method
        as the router matches (a path whose route takes other methods: that route, as
        the router's 405 is counted); `unmatched` when none would (a 404). Only such
        requests pay for the scan."""
        if scope.get("type") != "http":
            return UNMATCHED
        if self._templates is None:
            self._templates = _templates(self._routes())
        path = str(scope.get("path", ""))
        root = str(scope.get("root_path", ""))
        if root and path.startswith(root):
            path = path[len(root) :]
        method = scope.get("method")
        partial = UNMATCHED
        for pattern, methods, template in self._templates:
            if pattern.match(path):
                if methods is None or method in methods:
                    return template
                if partial == UNMATCHED:
                    partial = template  # the router answers 405 under this route
        return partial


def _templates(
    routes: Iterable[BaseRoute],
) -> list[tuple[re.Pattern[str], frozenset[str] | None, str]]:
    """Every route's template, compiled as Starlette compiles it, included routers
    opened (FastAPI from 0.16x keeps an included router as one nested entry)."""
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    flat: Iterable[Any] = iter_contexts(list(routes)) if iter_contexts else routes
    out = []
    for route in flat:
        path = getattr(route, "path", None)
        if not isinstance(path, str) or not path:
            continue
        if isinstance(getattr(route, "original_route", route), Mount):
            continue  # its path is a prefix, not a route's template
        methods = getattr(route, "methods", None)
        out.append((compile_path(path)[0], frozenset(methods) if methods else None, path))
    return out


def status_label(status: int) -> str:
    """The status code when it is one HTTP defines (100-599), else `other`."""
    return str(status) if 100 <= status <= 599 else OTHER
