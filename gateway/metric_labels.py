"""Label values for the gateway's own metrics, from a closed set.

A Prometheus series exists for every distinct label set, so a label value taken from
the request (a method as sent, a raw path, a status) lets any caller create series
without bound and grow the gateway's memory and every scrape. Each value here comes
from a fixed list: the standard methods else `other`, the matched route's template
else `unmatched`, an HTTP status code else `other`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from starlette.routing import BaseRoute, Route

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

    def label(self, scope: Mapping[str, Any]) -> str:
        label = route_label(scope)
        if label != UNMATCHED or "endpoint" not in scope:
            return label
        if self._by_endpoint is None:
            self._by_endpoint = {
                r.endpoint: r.path for r in self._routes() if type(r) is Route and r.path
            }
        return self._by_endpoint.get(scope["endpoint"], UNMATCHED)


def status_label(status: int) -> str:
    """The status code when it is one HTTP defines (100-599), else `other`."""
    return str(status) if 100 <= status <= 599 else OTHER
