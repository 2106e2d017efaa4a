"""The FastAPI application: routes, auth, limits; dependencies injected by `create_app`."""

import asyncio
import contextlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry.sdk.trace import TracerProvider
from starlette.middleware.cors import CORSMiddleware

from gateway import (
    clickhouse,
    console_api,
    console_pages,
    gc_tuning,
    health,
    lineage,
    lineage_api,
    runs_api,
    tracing,
)
from gateway.auth import Principal, RateLimiter, Scope, authenticate_once, retry_after_header
from gateway.auth_first import AuthFirst
from gateway.body import (
    BadEncoding,
    BodyLimit,
    BodyTooLarge,
    UnsupportedEncoding,
    decode,
    parse_json,
)
from gateway.config import Settings
from gateway.health_cache import HealthCache
from gateway.ingest_route import GatewayApp
from gateway.json_response import FastJSONResponse, error_response
from gateway.metric_labels import RouteTemplates
from gateway.observed import ObservedRequests
from gateway.promtext import CONTENT_TYPE, GatewayMetrics, worker_exited
from gateway.runs import KubeError, KubeRuns, RunStore
from lineagehub import selftrace
from lineagehub.api.pipelinerun import MAX_NAME

log = logging.getLogger(__name__)

API = "/api/v1"
SERVICE_NAME = "lineage-hub-gateway"
_LINEAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "One OpenLineage RunEvent, DatasetEvent or JobEvent (spec 2-0-2), or a JSON "
            "array of them (a batch). `Content-Encoding: gzip` is accepted."
        ),
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "object"},
                        {"type": "array", "items": {"type": "object"}},
                    ]
                },
                "example": {
                    "eventType": "START",
                    "eventTime": "2025-01-02T03:04:05.000Z",
                    "producer": "https://example.com/my-producer",
                    "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
                    "run": {"runId": "0190f3b0-7c1a-7d2e-8f00-0123456789ab"},
                    "job": {"namespace": "example", "name": "daily"},
                },
            }
        },
    }
}


@dataclass
class Deps:
    """What the routes reach: settings, and each backend (None when not configured)."""

    settings: Settings
    sink: lineage.Sink | None
    runs: RunStore | None
    metrics_store: clickhouse.MetricsStore | None
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    limiter: RateLimiter = field(init=False)
    metrics_source: str = ""
    health_cache: HealthCache = field(init=False)
    _event_counts: dict[str, Any] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.settings.rate_per_s, self.settings.rate_burst)
        self.health_cache = HealthCache(self._probe_all, self.settings.health_interval_s)

    def count_events(self, outcome: str, n: int = 1) -> None:
        """`metrics.events{outcome}` += n, the labelled child looked up once (a lookup
        takes a lock and costs as much as the increment; a batch counts per event)."""
        child = self._event_counts.get(outcome)
        if child is None:
            child = self._event_counts[outcome] = self.metrics.events.labels(outcome)
        child.inc(n)

    async def _probe_all(self) -> list[health.Check]:
        self.metrics.health_probe_runs.inc()
        return await _health(self)


def _default_sink(settings: Settings) -> lineage.Sink | None:
    if not settings.kafka_bootstrap:
        return None
    from gateway.kafka_producer import GatewayProducer

    publisher = GatewayProducer(
        settings.kafka_bootstrap, settings.kafka_linger_ms, topic=settings.lineage_topic
    )
    return lineage.Sink(
        publisher, settings.lineage_topic, settings.kafka_timeout_s, settings.retry_after_s
    )


def _default_metrics_store(settings: Settings) -> tuple[clickhouse.MetricsStore | None, str]:
    if settings.clickhouse_url:
        return clickhouse.NativeStore(settings.clickhouse_url, settings.clickhouse_database), (
            "clickhouse"
        )
    if settings.clickhouse_http_url:
        store = clickhouse.HttpStore(settings.clickhouse_http_url, settings.clickhouse_database)
        return store, "clickhouse-http"
    if settings.chdb_path:
        return clickhouse.ChdbStore(settings.chdb_path, settings.clickhouse_database), "chdb"
    return None, ""


_AUTO: Any = object()


def create_app(
    settings: Settings,
    *,
    publisher: lineage.Publisher | None = _AUTO,
    runs: RunStore | None = _AUTO,
    metrics_store: clickhouse.MetricsStore | None = _AUTO,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """The app. Backends default to the real ones built from `settings`; pass None to
    leave one out, or an object to use instead (tests). `tracer_provider`: the gateway's
    own spans (None: untraced), shut down with the app; `served_app` builds it from the
    environment."""
    if publisher is _AUTO:
        sink = _default_sink(settings)
    elif publisher is None:
        sink = None
    else:
        sink = lineage.Sink(
            publisher, settings.lineage_topic, settings.kafka_timeout_s, settings.retry_after_s
        )
    if runs is _AUTO:
        if settings.kubeconfig or _in_cluster():
            runs = KubeRuns(settings.kubeconfig, settings.namespace)
        else:
            runs = None
    source = ""
    if metrics_store is _AUTO:
        metrics_store, source = _default_metrics_store(settings)
    elif metrics_store is not None:
        source = "injected"
    deps = Deps(settings, sink, runs, metrics_store, metrics_source=source)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warm: asyncio.Task[None] | None = None
        if deps.sink is not None:
            warm = asyncio.create_task(_warm_up(deps.sink))
        try:
            yield
        finally:
            if warm is not None:
                warm.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await warm
            if deps.sink is not None:
                await deps.sink.close()
            if deps.runs is not None:
                deps.runs.close()
            if deps.metrics_store is not None:
                deps.metrics_store.close()
            worker_exited(os.getpid())
            if tracer_provider is not None:
                tracer_provider.shutdown()  # exports what the batch still holds

    app = GatewayApp(
        title="lineage-hub gateway",
        version="0.1.0",
        description=(
            "OpenLineage ingestion onto Kafka, PipelineRuns over HTTP, pipeline metrics "
            "and dependency health. Authenticate with `Authorization: Bearer <token>`."
        ),
        lifespan=lifespan,
        # Our own middleware traces requests (`observed.ObservedRequests`); FastAPI's native
        # telemetry would add a second span (and its metrics) were a global provider set.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.deps = deps
    app.add_middleware(
        AuthFirst,
        tokens=settings.tokens,
        route_limits={f"{API}/pipeline/run": MAX_RUN_BODY_BYTES},
        on_reject=lambda: deps.metrics.rejected.labels("unauthenticated").inc(),
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Content-Encoding", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    routes = RouteTemplates(lambda: app.routes)
    # Outermost: the request span (when traced) is current for every inner middleware,
    # the handler and the access log line.
    spans = None if tracer_provider is None else tracing.RequestSpans(tracer_provider)
    app.add_middleware(ObservedRequests, metrics=deps.metrics, routes=routes, spans=spans)
    _routes(app, deps)
    return app


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


async def _warm_up(sink: lineage.Sink) -> None:
    """Connect the producer at start-up so the first event doesn't pay for it."""
    with contextlib.suppress(lineage.KafkaUnavailable):
        await sink.ready()


bearer = HTTPBearer(auto_error=False, description="A gateway token (or an OpenLineage api_key).")


#: A PipelineRun spec is a few KiB; its route takes no more than this (before parsing).
MAX_RUN_BODY_BYTES = 256 * 1024
READ_SCOPES = frozenset({Scope.RUNS_READ, Scope.LINEAGE_READ})


def _authorizer(deps: Deps, scope: Scope) -> Callable[..., Awaitable[Principal]]:
    async def authorize(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        store = deps.settings.tokens
        state = request.scope.setdefault("state", {})
        principal = authenticate_once(store, state, request.headers.get("authorization"))
        if principal is None and store.anonymous:
            client = request.client.host if request.client else "unknown"
            principal = Principal(id=f"anonymous:{client}", scopes=frozenset(Scope))
        elif principal is None and deps.settings.public_read and scope in READ_SCOPES:
            client = request.client.host if request.client else "unknown"
            principal = Principal(id=f"anonymous:{client}", scopes=READ_SCOPES)
        if principal is None:
            deps.metrics.rejected.labels("unauthenticated").inc()
            raise HTTPException(
                401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
            )
        request.state.principal = principal.id
        if scope not in principal.scopes:
            deps.metrics.rejected.labels("forbidden").inc()
            raise HTTPException(403, f"this token lacks the scope {scope.value!r}")
        wait = deps.limiter.acquire(principal.id)
        if wait > 0:
            deps.metrics.rejected.labels("rate_limited").inc()
            raise HTTPException(
                429, "rate limit exceeded", {"Retry-After": retry_after_header(wait)}
            )
        return principal

    return authorize


def _routes(app: GatewayApp, deps: Deps) -> None:
    settings = deps.settings
    lineage_writer = _authorizer(deps, Scope.LINEAGE_WRITE)
    runs_writer = _authorizer(deps, Scope.RUNS_WRITE)
    runs_reader = _authorizer(deps, Scope.RUNS_READ)
    # ---------------------------------------------------------------- lineage

    async def post_lineage(request: Request) -> JSONResponse:
        # Authorized here rather than as a dependency: the same check, without the
        # dependency resolution the hottest route would pay on every event.
        await lineage_writer(request, None)
        raw = await request.body()
        try:
            data = decode(raw, request.headers.get("content-encoding"), settings.max_body_bytes)
        except UnsupportedEncoding as exc:
            return error_response(415, str(exc))
        except BadEncoding as exc:
            return error_response(400, str(exc))
        except BodyTooLarge as exc:
            return error_response(413, str(exc))
        value, problem = parse_json(data)
        if problem is not None:
            deps.count_events("invalid")
            errors = [{"path": "$", "message": problem}]
            return error_response(400, {"message": "the body is not JSON", "errors": errors})
        # The parsed events are dropped once checked and encoded, before the wait for
        # Kafka: they die young, where held through the wait (milliseconds, many
        # requests in flight) the collector walked them again and again (see gc_tuning).
        if isinstance(value, list):
            checked = _check_batch(deps, value)
            del value
            return await _batch(deps, checked) if isinstance(checked, _Batch) else checked
        verdict = lineage.check(value, settings.max_event_bytes)
        del value
        return await _single(deps, verdict)

    for path in (f"{API}/lineage", f"{API}/webhook/lineage"):
        app.add_api_route(
            path,
            post_lineage,
            methods=["POST"],
            status_code=201,
            tags=["lineage"],
            summary="Receive OpenLineage events (one, or a batch as a JSON array)",
            openapi_extra={**_LINEAGE_BODY, "security": [{"HTTPBearer": []}]},
            include_in_schema=True,
            name="lineage" if path.endswith("/v1/lineage") else "webhook_lineage",
            responses={
                200: {"description": "A batch: one result per item"},
                201: {"description": "The event was acknowledged by Kafka"},
                400: {"description": "Invalid JSON or event; `errors` name the failing paths"},
                401: {"description": "No valid bearer token"},
                403: {"description": "The token lacks `lineage:write`"},
                413: {"description": "The body (or, decompressed, the event) is too large"},
                415: {"description": "A Content-Encoding other than gzip"},
                429: {"description": "Rate limit exceeded; see Retry-After"},
                503: {"description": "Kafka is unavailable; see Retry-After"},
            },
        )
        app.lean_route(path)  # served past the router and the exception middleware

    # The ingestion routes come first: the router tries routes in order, and they
    # take most of the traffic.
    app.include_router(
        console_api.router(
            lambda: deps.runs,
            lambda: deps.metrics_store,
            settings.clickhouse_database,
            runs_reader,
            runs_writer,
            settings.namespace,
            settings.console_links,
            settings.stream_seconds,
        )
    )
    app.include_router(console_pages.router())
    app.include_router(
        lineage_api.router(
            lambda: deps.metrics_store,
            settings.clickhouse_database,
            _authorizer(deps, Scope.LINEAGE_READ),
            settings.retry_after_s,
        )
    )

    app.include_router(
        runs_api.router(
            lambda: deps.runs,
            deps.metrics,
            settings.namespace,
            settings.retry_after_s,
            runs_reader,
            runs_writer,
        )
    )

    # ---------------------------------------------------------------- metrics

    @app.get(f"{API}/metrics", tags=["metrics"], summary="Success rate, durations and records")
    async def pipeline_metrics(
        principal: Annotated[Principal, Depends(runs_reader)],
        window: Annotated[
            int, Query(ge=60, le=90 * 86400, description="Look-back window in seconds")
        ] = 86400,
        pipeline: Annotated[str | None, Query(min_length=1, max_length=MAX_NAME)] = None,
    ) -> JSONResponse:
        store = deps.metrics_store
        if store is None:
            return error_response(
                503, clickhouse.UNCONFIGURED, {"Retry-After": str(settings.retry_after_s)}
            )
        try:
            rows = await store.pipeline_metrics(window, pipeline)
        except clickhouse.MetricsUnavailable as exc:
            return error_response(503, str(exc), {"Retry-After": str(settings.retry_after_s)})
        return JSONResponse(
            {"windowSeconds": window, "source": deps.metrics_source, "pipelines": rows}
        )

    @app.get(
        "/metrics",
        tags=["metrics"],
        summary="The gateway's own metrics (Prometheus text)",
        response_class=PlainTextResponse,
    )
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(deps.metrics.render(), media_type=CONTENT_TYPE)

    # ---------------------------------------------------------------- health

    @app.get(
        f"{API}/health",
        tags=["health"],
        summary="The overall verdict; with a token, each dependency's status and latency",
        description=(
            "The stores are probed at most once per `LINEAGEHUB_GATEWAY_HEALTH_INTERVAL` "
            "seconds (5), by one run shared by every caller; `ageSeconds` says how old the "
            "answer is. Without a token the answer is the verdict alone; any valid token "
            "adds `dependencies` (status, latency, required, detail of each)."
        ),
        responses={
            200: {"description": "ok, or degraded (an optional dependency is down)"},
            503: {"description": "A required dependency is down"},
        },
    )
    async def get_health(request: Request) -> JSONResponse:
        checks, age = await deps.health_cache.get()
        status, word = health.overall(checks)
        body: dict[str, Any] = {"status": word, "ageSeconds": round(age, 3)}
        tokens = settings.tokens
        if tokens.anonymous or tokens.authenticate(request.headers.get("authorization")):
            body["dependencies"] = {c.name: c.wire() for c in checks}
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


# -------------------------------------------------------------------- lineage helpers


def _unavailable(deps: Deps, reason: str, retry_after: float) -> JSONResponse:
    deps.count_events("unavailable")
    return error_response(503, reason, {"Retry-After": retry_after_header(retry_after)})


def _errors(invalid: lineage.Invalid) -> list[dict[str, str]]:
    return [{"path": e.path, "message": e.message} for e in invalid.errors]


def _accepted(deps: Deps, checked: lineage.Checked) -> dict[str, Any]:
    return {
        "kind": checked.kind.value,
        "key": checked.key,
        "runId": checked.run_id,
        "eventType": checked.event_type,
        "topic": deps.settings.lineage_topic,
    }


async def _publish(deps: Deps, checked: lineage.Checked) -> None:
    assert deps.sink is not None
    started = time.perf_counter()
    await deps.sink.publish(checked.key, checked.value)
    deps.metrics.publish.observe(time.perf_counter() - started)


async def _single(deps: Deps, verdict: lineage.Checked | lineage.Invalid) -> JSONResponse:
    if isinstance(verdict, lineage.Invalid):
        deps.count_events("invalid" if verdict.status == 400 else "too_large")
        message = "invalid OpenLineage event" if verdict.status == 400 else "event too large"
        return error_response(verdict.status, {"message": message, "errors": _errors(verdict)})
    if deps.sink is None:
        return _unavailable(deps, "Kafka is not configured (KAFKA_BOOTSTRAP)", 30)
    try:
        await _publish(deps, verdict)
    except lineage.KafkaUnavailable as exc:
        return _unavailable(deps, exc.reason, exc.retry_after)
    deps.count_events("accepted")
    return FastJSONResponse({"status": "accepted", **_accepted(deps, verdict)}, status_code=201)


@dataclass
class _Batch:
    """A batch request's events once checked: the refused ones' results in place, the
    accepted ones grouped by key (each key's in the batch's order)."""

    results: list[dict[str, Any]]
    by_key: dict[str, list[tuple[int, lineage.Checked]]]


def _check_batch(deps: Deps, items: list[Any]) -> _Batch | JSONResponse:
    """Every event of a batch checked (or the whole batch refused)."""
    if not items:
        return error_response(400, {"message": "the batch is empty", "errors": []})
    if len(items) > deps.settings.max_batch_items:
        limit = deps.settings.max_batch_items
        return error_response(413, f"the batch has {len(items)} events, the limit is {limit}")
    results: list[dict[str, Any]] = [{} for _ in items]
    by_key: dict[str, list[tuple[int, lineage.Checked]]] = defaultdict(list)
    for index, item in enumerate(items):
        verdict = lineage.check(item, deps.settings.max_event_bytes)
        if isinstance(verdict, lineage.Invalid):
            deps.count_events("invalid" if verdict.status == 400 else "too_large")
            results[index] = {"index": index, "status": verdict.status, "errors": _errors(verdict)}
        else:
            by_key[verdict.key].append((index, verdict))
    return _Batch(results, by_key)


async def _batch(deps: Deps, batch: _Batch) -> JSONResponse:
    results, by_key = batch.results, batch.by_key
    retry_after = 0.0
    sink = deps.sink
    if by_key and sink is None:
        for group in by_key.values():
            for index, _ in group:
                results[index] = {"index": index, "status": 503, "error": "Kafka is not configured"}
        retry_after = 30.0
    elif by_key and sink is not None:
        # Each key's events are appended in order and all are acknowledged together:
        # Kafka keeps a key's events in this order; from a failed one on, its events
        # are 503s.
        groups = list(by_key.values())
        started = time.perf_counter()
        outcomes = await sink.publish_groups(
            [(group[0][1].key, [checked.value for _, checked in group]) for group in groups]
        )
        elapsed = time.perf_counter() - started
        for group, failures in zip(groups, outcomes, strict=True):
            for (index, checked), failed in zip(group, failures, strict=True):
                if failed is None:
                    deps.metrics.publish.observe(elapsed)
                    results[index] = {"index": index, "status": 201, **_accepted(deps, checked)}
                else:
                    retry_after = max(retry_after, failed.retry_after)
                    results[index] = {"index": index, "status": 503, "error": failed.reason}
    accepted = sum(1 for r in results if r["status"] == 201)
    unavailable = sum(1 for r in results if r["status"] == 503)
    for outcome, count in (("accepted", accepted), ("unavailable", unavailable)):
        if count:
            deps.count_events(outcome, count)
    body = {
        "accepted": accepted,
        "rejected": len(results) - accepted - unavailable,
        "unavailable": unavailable,
        "results": results,
    }
    if unavailable and not accepted:
        return FastJSONResponse(
            body, status_code=503, headers={"Retry-After": retry_after_header(retry_after)}
        )
    headers = {"Retry-After": retry_after_header(retry_after)} if unavailable else None
    return FastJSONResponse(body, status_code=200, headers=headers)


async def _health(deps: Deps) -> list[health.Check]:
    s = deps.settings
    required = s.required
    timeout = s.health_timeout_s

    kafka_probe: Callable[[], Awaitable[str]] | None = None
    if s.kafka_bootstrap:

        async def kafka_probe() -> str:
            detail = await health.tcp_probe(s.kafka_bootstrap)
            if deps.sink is not None and deps.sink.last_error and not deps.sink.started:
                raise ConnectionError(f"{detail}, but the producer failed: {deps.sink.last_error}")
            return detail

    kube_probe: Callable[[], Awaitable[str]] | None = None
    if deps.runs is not None:
        store = deps.runs

        async def kube_probe() -> str:
            try:
                await store.ping()
            except KubeError as exc:
                raise ConnectionError(exc.message) from None
            return "PipelineRuns readable"

    ch_probe: Callable[[], Awaitable[str]] | None = None
    if deps.metrics_store is not None:
        metrics_store = deps.metrics_store

        async def ch_probe() -> str:
            await metrics_store.ping()
            return f"{deps.metrics_source}: SELECT 1"

    marquez_probe: Callable[[], Awaitable[str]] | None = None
    if s.marquez_url:

        async def marquez_probe() -> str:
            return await health.marquez_probe(s.marquez_url, timeout)

    return list(
        await asyncio.gather(
            health.run_check("kafka", kafka_probe, "kafka" in required, timeout),
            health.run_check("kubernetes", kube_probe, "kubernetes" in required, timeout),
            health.run_check(
                "clickhouse",
                ch_probe,
                "clickhouse" in required,
                timeout,
                "not configured (set CLICKHOUSE_URL)",
            ),
            health.run_check("marquez", marquez_probe, "marquez" in required, timeout),
        )
    )


#: The log level of worker processes (`lineage-hub gateway --workers N` sets it).
LOG_LEVEL_ENV = "LINEAGEHUB_GATEWAY_LOG_LEVEL"


def served_app(settings: Settings) -> FastAPI:
    """The app `lineage-hub gateway` serves: real backends, and self-tracing as the
    environment configures it (`lineagehub.selftrace`)."""
    provider = selftrace.tracer_provider(SERVICE_NAME, settings.kafka_bootstrap)
    app = create_app(settings, tracer_provider=provider)
    gc_tuning.tune_for_serving()  # each worker process builds its app here
    return app


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker process (`--workers`), configured from the environment."""
    from gateway import config, logs

    logs.configure(os.environ.get(LOG_LEVEL_ENV, "INFO"))
    return served_app(config.from_env())


__all__ = ["Deps", "Settings", "app_from_env", "create_app", "served_app"]
