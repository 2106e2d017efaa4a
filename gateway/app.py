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

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry.sdk.trace import TracerProvider
from pydantic import StringConstraints
from starlette.middleware.cors import CORSMiddleware

from gateway import (
    clickhouse,
    console_api,
    console_pages,
    gc_tuning,
    health,
    lineage,
    lineage_api,
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
from gateway.idempotency import HEADER, REPLAYED_HEADER, Idempotency, key_problem, mismatch_message
from gateway.ingest_route import GatewayApp
from gateway.json_response import FastJSONResponse
from gateway.logs import AccessLog
from gateway.metric_labels import RouteTemplates
from gateway.promtext import CONTENT_TYPE, GatewayMetrics, worker_exited
from gateway.runs import KubeError, KubeRuns, RunStore, manifest, view
from lineagehub import selftrace
from lineagehub.api.pipelinerun import MAX_NAME, Phase, PipelineRunSpec

log = logging.getLogger(__name__)

API = "/api/v1"
SERVICE_NAME = "lineage-hub-gateway"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
NamespaceName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]
ObjectName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_NAME, pattern=DNS_SUBDOMAIN)
]
MAX_RUN_ID_WAIT_S = 10.0


class RunRequest(PipelineRunSpec):
    """A PipelineRun spec, plus where to create it. Without a name the API server
    generates one (`run-xxxxx`); without a namespace the gateway's default is used."""

    name: ObjectName | None = None
    """Name of the PipelineRun (DNS subdomain)."""
    namespace: NamespaceName | None = None
    """Namespace of the PipelineRun."""


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
        # Our own middleware traces requests (`tracing.RequestTracing`); FastAPI's native
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
    app.add_middleware(AccessLog, metrics=deps.metrics, routes=routes)
    if tracer_provider is not None:
        # Outermost: the access log line and every handler run inside the request span.
        app.add_middleware(tracing.RequestTracing, provider=tracer_provider, routes=routes)
    _routes(app, deps)
    return app


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


async def _warm_up(sink: lineage.Sink) -> None:
    """Connect the producer at start-up so the first event doesn't pay for it."""
    with contextlib.suppress(lineage.KafkaUnavailable):
        await sink.ready()


bearer = HTTPBearer(auto_error=False, description="A gateway token (or an OpenLineage api_key).")


def _error(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return FastJSONResponse({"detail": detail}, status_code=status, headers=headers)


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
            return _error(415, str(exc))
        except BadEncoding as exc:
            return _error(400, str(exc))
        except BodyTooLarge as exc:
            return _error(413, str(exc))
        value, problem = parse_json(data)
        if problem is not None:
            deps.count_events("invalid")
            errors = [{"path": "$", "message": problem}]
            return _error(400, {"message": "the body is not JSON", "errors": errors})
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

    # ---------------------------------------------------------------- runs

    @app.post(
        f"{API}/pipeline/run",
        status_code=201,
        tags=["runs"],
        summary="Create a PipelineRun (safe to retry with an Idempotency-Key)",
        responses={
            201: {
                "description": (
                    "The run was created; or, with an `Idempotency-Key` already used for "
                    "the same request, the run it created (header `Idempotent-Replayed: true`)"
                )
            },
            400: {"description": "A malformed `Idempotency-Key`"},
            409: {"description": "A PipelineRun of that name exists (not created by this key)"},
            422: {
                "description": (
                    "An invalid spec; or an `Idempotency-Key` already used by this caller for "
                    "a different request"
                )
            },
            503: {"description": "The Kubernetes API is unavailable"},
        },
    )
    async def create_run(
        request: Request,
        body: RunRequest,
        principal: Annotated[Principal, Depends(runs_writer)],
        wait: Annotated[
            float,
            Query(ge=0, le=MAX_RUN_ID_WAIT_S, description="Seconds to wait for the run id"),
        ] = 0.0,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias=HEADER,
                description=(
                    "A key the client chooses per run it means to create (a UUID): a "
                    "retry with the same key and body returns the same run instead of "
                    "creating another; the same key with another body is a 422. Scoped to "
                    "the caller's token; kept on the PipelineRun while it exists."
                ),
            ),
        ] = None,
    ) -> JSONResponse:
        store = _need_runs(deps)
        namespace = body.namespace or settings.namespace
        spec = body.model_dump(mode="json", by_alias=True, exclude_none=True)
        spec.pop("name", None)
        spec.pop("namespace", None)
        idem: Idempotency | None = None
        if idempotency_key is not None:
            problem = key_problem(idempotency_key)
            if problem is not None:
                return _error(400, problem)
            asked = {"namespace": namespace, "name": body.name, "spec": spec}
            idem = Idempotency.of(principal.id, idempotency_key, asked)
        name = body.name or (idem.run_name() if idem is not None else None)
        traceparent = tracing.run_traceparent(request.headers)
        obj = manifest(spec, name, namespace, request.state.request_id, traceparent=traceparent)
        if idem is not None:
            idem.mark(obj)
        try:
            created, replayed = await _create_once(store, namespace, obj, idem)
            name = str(created["metadata"]["name"])
            if wait > 0:
                created = await _wait_for_run_id(store, namespace, name, created, wait)
        except KubeError as exc:
            return _kube_error(exc)
        except _KeyReused as exc:
            return _error(422, mismatch_message(exc.name))
        if replayed:
            deps.metrics.runs_replayed.inc()
        else:
            deps.metrics.runs_created.inc()
        log.info(
            "pipelinerun replayed" if replayed else "pipelinerun created",
            extra={"namespace": namespace, "run": name, "principal": principal.id},
        )
        url = _status_url(request, name, namespace)
        out = view(created, url)
        headers = {"Location": url}
        if replayed:
            headers[REPLAYED_HEADER] = "true"
        return JSONResponse(
            {
                "name": out["name"],
                "namespace": out["namespace"],
                "uid": out["uid"],
                "runId": out["runId"],
                "statusUrl": url,
            },
            status_code=201,
            headers=headers,
        )

    @app.get(f"{API}/pipeline/run/{{name}}", tags=["runs"], summary="A PipelineRun's status")
    async def get_run(
        request: Request,
        name: Annotated[str, Path(min_length=1, max_length=MAX_NAME, pattern=DNS_SUBDOMAIN)],
        principal: Annotated[Principal, Depends(runs_reader)],
        namespace: Annotated[
            str | None, Query(min_length=1, max_length=63, pattern=DNS_LABEL)
        ] = None,
    ) -> JSONResponse:
        store = _need_runs(deps)
        ns = namespace or settings.namespace
        try:
            obj = await store.get(ns, name)
        except KubeError as exc:
            return _kube_error(exc)
        return JSONResponse(view(obj, _status_url(request, name, ns)))

    @app.get(f"{API}/pipeline/runs", tags=["runs"], summary="List PipelineRuns")
    async def list_runs(
        request: Request,
        principal: Annotated[Principal, Depends(runs_reader)],
        phase: Phase | None = None,
        namespace: Annotated[
            str | None, Query(min_length=1, max_length=63, pattern=DNS_LABEL)
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> JSONResponse:
        store = _need_runs(deps)
        ns = namespace or settings.namespace
        try:
            items = await store.list(ns, limit)
        except KubeError as exc:
            return _kube_error(exc)
        views = []
        for obj in items:
            run_phase = (obj.get("status") or {}).get("phase") or Phase.PENDING.value
            if phase is not None and run_phase != phase.value:
                continue
            name = str(obj.get("metadata", {}).get("name", ""))
            views.append(view(obj, _status_url(request, name, ns)))
        return JSONResponse({"namespace": ns, "count": len(views), "items": views})

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
            return _error(
                503, clickhouse.UNCONFIGURED, {"Retry-After": str(settings.retry_after_s)}
            )
        try:
            rows = await store.pipeline_metrics(window, pipeline)
        except clickhouse.MetricsUnavailable as exc:
            return _error(503, str(exc), {"Retry-After": str(settings.retry_after_s)})
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


def _need_runs(deps: Deps) -> RunStore:
    if deps.runs is None:
        raise HTTPException(
            503,
            "no Kubernetes API configured (set KUBECONFIG or run in a pod)",
            {"Retry-After": str(deps.settings.retry_after_s)},
        )
    return deps.runs


def _kube_error(exc: KubeError) -> JSONResponse:
    headers = {"Retry-After": retry_after_header(exc.retry_after)} if exc.retry_after else None
    return _error(exc.status, exc.message, headers)


def _status_url(request: Request, name: str, namespace: str) -> str:
    url = request.url_for("get_run", name=name).include_query_params(namespace=namespace)
    return str(url)


class _KeyReused(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


async def _create_once(
    store: RunStore, namespace: str, obj: dict[str, Any], idem: Idempotency | None
) -> tuple[dict[str, Any], bool]:
    """Create `obj`, or with a key find the run that key already created: (run, replayed).

    Raises `_KeyReused` when the key's run was created for a different request.
    """
    if idem is None:
        return await store.create(namespace, obj), False
    found = await store.find(namespace, idem.selector)
    if not found:
        try:
            return await store.create(namespace, obj), False
        except KubeError as exc:
            if exc.status != 409:
                raise
            # A concurrent request with the same key won the create of the same name.
            found = [await store.get(namespace, str(obj["metadata"]["name"]))]
            if not idem.owns(found[0]):
                raise  # a run of that name that this key did not create
    first = min(found, key=_created_order)
    if not idem.same_request(first):
        raise _KeyReused(str(first["metadata"]["name"]))
    return first, True


def _created_order(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")


async def _wait_for_run_id(
    store: RunStore, namespace: str, name: str, obj: dict[str, Any], wait: float
) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while not (obj.get("status") or {}).get("runId") and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        obj = await store.get(namespace, name)
    return obj


# -------------------------------------------------------------------- lineage helpers


def _unavailable(deps: Deps, reason: str, retry_after: float) -> JSONResponse:
    deps.count_events("unavailable")
    return _error(503, reason, {"Retry-After": retry_after_header(retry_after)})


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
        return _error(verdict.status, {"message": message, "errors": _errors(verdict)})
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
        return _error(400, {"message": "the batch is empty", "errors": []})
    if len(items) > deps.settings.max_batch_items:
        limit = deps.settings.max_batch_items
        return _error(413, f"the batch has {len(items)} events, the limit is {limit}")
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


__all__ = ["Deps", "RunRequest", "Settings", "app_from_env", "create_app", "served_app"]
