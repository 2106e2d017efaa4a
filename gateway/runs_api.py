"""The runs API: create a PipelineRun (safe to retry with an Idempotency-Key), read one,
list a namespace's. The runs live in Kubernetes (`runs.RunStore`); the gateway keeps
nothing of its own."""

# No `from __future__ import annotations`: FastAPI reads the parameters' annotations at
# run time.
import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import StringConstraints

from gateway import tracing
from gateway.auth import Principal, retry_after_header
from gateway.idempotency import HEADER, REPLAYED_HEADER, Idempotency, key_problem, mismatch_message
from gateway.json_response import error_response
from gateway.promtext import GatewayMetrics
from gateway.runs import DNS_LABEL, DNS_SUBDOMAIN, KubeError, RunStore, manifest, view
from lineagehub.api.pipelinerun import MAX_NAME, Phase, PipelineRunSpec

log = logging.getLogger("gateway.app")

API = "/api/v1"
Authorizer = Callable[..., Awaitable[Principal]]

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


def router(
    runs: Callable[[], RunStore | None],
    metrics: GatewayMetrics,
    namespace: str,
    retry_after_s: float,
    reader: Authorizer,
    writer: Authorizer,
) -> APIRouter:
    """The runs routes: `runs` gives the store (None: no Kubernetes API configured, a
    503), `namespace` is the default one, `reader` and `writer` authorize."""
    router = APIRouter()
    default_namespace = namespace  # the routes' own `namespace` is the query's

    @router.post(
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
        principal: Annotated[Principal, Depends(writer)],
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
        store = _need(runs, retry_after_s)
        ns = body.namespace or default_namespace
        spec = body.model_dump(mode="json", by_alias=True, exclude_none=True)
        spec.pop("name", None)
        spec.pop("namespace", None)
        idem: Idempotency | None = None
        if idempotency_key is not None:
            problem = key_problem(idempotency_key)
            if problem is not None:
                return error_response(400, problem)
            asked = {"namespace": ns, "name": body.name, "spec": spec}
            idem = Idempotency.of(principal.id, idempotency_key, asked)
        name = body.name or (idem.run_name() if idem is not None else None)
        traceparent = tracing.run_traceparent(request.headers)
        obj = manifest(spec, name, ns, request.state.request_id, traceparent=traceparent)
        if idem is not None:
            idem.mark(obj)
        try:
            created, replayed = await _create_once(store, ns, obj, idem)
            name = str(created["metadata"]["name"])
            if wait > 0:
                created = await _wait_for_run_id(store, ns, name, created, wait)
        except KubeError as exc:
            return _kube_error(exc)
        except _KeyReused as exc:
            return error_response(422, mismatch_message(exc.name))
        if replayed:
            metrics.runs_replayed.inc()
        else:
            metrics.runs_created.inc()
        log.info(
            "pipelinerun replayed" if replayed else "pipelinerun created",
            extra={"namespace": ns, "run": name, "principal": principal.id},
        )
        url = _status_url(request, name, ns)
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

    @router.get(f"{API}/pipeline/run/{{name}}", tags=["runs"], summary="A PipelineRun's status")
    async def get_run(
        request: Request,
        name: Annotated[str, Path(min_length=1, max_length=MAX_NAME, pattern=DNS_SUBDOMAIN)],
        principal: Annotated[Principal, Depends(reader)],
        namespace: Annotated[
            str | None, Query(min_length=1, max_length=63, pattern=DNS_LABEL)
        ] = None,
    ) -> JSONResponse:
        store = _need(runs, retry_after_s)
        ns = namespace or default_namespace
        try:
            obj = await store.get(ns, name)
        except KubeError as exc:
            return _kube_error(exc)
        return JSONResponse(view(obj, _status_url(request, name, ns)))

    @router.get(f"{API}/pipeline/runs", tags=["runs"], summary="List PipelineRuns")
    async def list_runs(
        request: Request,
        principal: Annotated[Principal, Depends(reader)],
        phase: Phase | None = None,
        namespace: Annotated[
            str | None, Query(min_length=1, max_length=63, pattern=DNS_LABEL)
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> JSONResponse:
        store = _need(runs, retry_after_s)
        ns = namespace or default_namespace
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

    return router


def _need(runs: Callable[[], RunStore | None], retry_after_s: float) -> RunStore:
    store = runs()
    if store is None:
        raise HTTPException(
            503,
            "no Kubernetes API configured (set KUBECONFIG or run in a pod)",
            {"Retry-After": str(retry_after_s)},
        )
    return store


def _kube_error(exc: KubeError) -> JSONResponse:
    headers = {"Retry-After": retry_after_header(exc.retry_after)} if exc.retry_after else None
    return error_response(exc.status, exc.message, headers)


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
