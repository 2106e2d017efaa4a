"""PipelineRuns over the Kubernetes API (CustomObjectsApi, calls run in a thread)."""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import threading
from typing import Any, Protocol

from lineagehub.api.pipelinerun import API_GROUP, API_GROUP_VERSION, API_VERSION, KIND, PLURAL
from lineagehub.api.run_patches import cancel_patch
from lineagehub.datasets import redact_uri
from lineagehub.telemetry.spans import RUN_TRACEPARENT_ANNOTATION

#: A namespace's name (a DNS label) and a PipelineRun's (a DNS subdomain), as the API
#: server checks them: the routes refuse others before asking it.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

Obj = dict[str, Any]
REQUEST_TIMEOUT_S = 10.0
CREATED_BY_LABEL = "app.kubernetes.io/created-by"
CREATED_BY = "lineage-hub-gateway"
REQUEST_ID_ANNOTATION = "lineagehub.io/gateway-request-id"


class KubeError(Exception):
    """A Kubernetes API answer the gateway passes on: `status` is the HTTP status to send."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class RunStore(Protocol):
    async def create(self, namespace: str, body: Obj) -> Obj: ...
    async def get(self, namespace: str, name: str) -> Obj: ...
    async def list(self, namespace: str, limit: int) -> list[Obj]: ...
    async def find(self, namespace: str, label_selector: str) -> builtins.list[Obj]: ...
    async def ping(self) -> None: ...
    def close(self) -> None: ...


def manifest(
    spec: Obj,
    name: str | None,
    namespace: str,
    request_id: str,
    generate_prefix: str = "run-",
    traceparent: str | None = None,
) -> Obj:
    """The PipelineRun object to create; without a name the API server generates one.
    `traceparent`: the trace the run continues (RUN_TRACEPARENT_ANNOTATION)."""
    annotations = {REQUEST_ID_ANNOTATION: request_id}
    if traceparent:
        annotations[RUN_TRACEPARENT_ANNOTATION] = traceparent
    metadata: Obj = {
        "namespace": namespace,
        "labels": {CREATED_BY_LABEL: CREATED_BY},
        "annotations": annotations,
    }
    if name:
        metadata["name"] = name
    else:
        metadata["generateName"] = generate_prefix
    return {"apiVersion": API_GROUP_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def _api_message(body: object) -> str:
    if isinstance(body, bytes | str):
        try:
            doc = json.loads(body)
        except ValueError:
            return str(body)[:1000]
        if isinstance(doc, dict) and doc.get("message"):
            return str(doc["message"])[:2000]
        return str(body)[:1000]
    return ""


class KubeRuns:
    """The official client, made lazily (the gateway starts without a cluster)."""

    def __init__(
        self,
        kubeconfig: str = "",
        namespace: str = "default",
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.timeout = request_timeout_s
        self._api: Any = None
        self._client: Any = None
        self._lock = threading.Lock()

    def _custom(self) -> Any:
        with self._lock:
            if self._api is None:
                from kubernetes import client, config

                if self.kubeconfig:
                    api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                        config_file=self.kubeconfig
                    )
                elif os.environ.get("KUBERNETES_SERVICE_HOST"):
                    cfg = client.Configuration()
                    config.load_incluster_config(  # type: ignore[no-untyped-call]
                        client_configuration=cfg
                    )
                    api_client = client.ApiClient(cfg)
                else:
                    raise KubeError(503, "no Kubernetes API configured (set KUBECONFIG)")
                self._client = api_client
                self._api = client.CustomObjectsApi(api_client)
            return self._api

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            api = self._custom()
            return getattr(api, method)(*args, _request_timeout=self.timeout, **kwargs)

        try:
            return await asyncio.to_thread(run)
        except KubeError:
            raise
        except Exception as exc:
            raise _translate(exc) from None

    async def create(self, namespace: str, body: Obj) -> Obj:
        created: Obj = await self._call(
            "create_namespaced_custom_object", API_GROUP, API_VERSION, namespace, PLURAL, body
        )
        return created

    async def get(self, namespace: str, name: str) -> Obj:
        found: Obj = await self._call(
            "get_namespaced_custom_object", API_GROUP, API_VERSION, namespace, PLURAL, name
        )
        return found

    async def list(self, namespace: str, limit: int) -> list[Obj]:
        found: Obj = await self._call(
            "list_namespaced_custom_object", API_GROUP, API_VERSION, namespace, PLURAL, limit=limit
        )
        items: list[Obj] = found.get("items", [])
        return items

    async def find(self, namespace: str, label_selector: str) -> builtins.list[Obj]:
        """The PipelineRuns of `namespace` carrying the labels (`key=value`)."""
        found: Obj = await self._call(
            "list_namespaced_custom_object",
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            label_selector=label_selector,
        )
        items: builtins.list[Obj] = found.get("items", [])
        return items

    async def cancel(self, namespace: str, name: str) -> Obj:
        """Set `spec.cancel` (a merge patch): the operator stops the run at once."""
        patched: Obj = await self._call(
            "patch_namespaced_custom_object",
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            name,
            cancel_patch(),
        )
        return patched

    async def events(self, namespace: str, name: str) -> builtins.list[Obj]:
        """The Kubernetes Events of one PipelineRun, oldest first (needs `list` on events)."""

        def run() -> builtins.list[Obj]:
            from kubernetes import client

            self._custom()
            core = client.CoreV1Api(self._client)
            found = core.list_namespaced_event(
                namespace,
                field_selector=f"involvedObject.kind=PipelineRun,involvedObject.name={name}",
                _request_timeout=self.timeout,
            )
            ordered = sorted(found.items, key=event_order)
            return [
                {
                    "type": e.type,
                    "reason": e.reason,
                    "message": e.message,
                    "count": e.count,
                    "time": _iso(e.last_timestamp or e.event_time or e.first_timestamp),
                }
                for e in ordered
            ]

        try:
            return await asyncio.to_thread(run)
        except KubeError:
            raise
        except Exception as exc:
            raise _translate(exc) from None

    async def ping(self) -> None:
        """One cheap authorised read: at most one PipelineRun of the default namespace
        (namespaced, so a Role is enough)."""
        await self._call(
            "list_namespaced_custom_object", API_GROUP, API_VERSION, self.namespace, PLURAL, limit=1
        )

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
                self._api = None


def event_order(event: Any) -> tuple[str, int, str]:
    """Oldest first. Events carry whole-second times (`lastTimestamp`), and the API
    server lists them by name, so two of one second came out in any order ("transform
    succeeded" above "extract succeeded"); within a second they go in the order they
    were last written, which the `resourceVersion` the store gave each write tells
    (etcd revisions, increasing), then by name."""
    time = _iso(event.last_timestamp or event.event_time or event.first_timestamp) or ""
    meta = event.metadata
    version = str(getattr(meta, "resource_version", None) or "")
    return (time[:19], int(version) if version.isdigit() else 0, str(getattr(meta, "name", "")))


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else None


def _translate(exc: Exception) -> KubeError:
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message = _api_message(exc.body) or str(exc.reason or exc)
        if status in {400, 404, 409, 422}:
            return KubeError(status, message)
        if status in {401, 403}:
            # The gateway's own identity lacks rights: a deployment problem, not the caller's.
            return KubeError(502, f"the Kubernetes API refused the gateway: {message}")
        if status == 429 or status >= 500:
            return KubeError(503, f"the Kubernetes API is unavailable: {message}", 5.0)
        return KubeError(502, f"unexpected answer from the Kubernetes API ({status}): {message}")
    if isinstance(exc, FileNotFoundError | ValueError) or type(exc).__name__ == "ConfigException":
        return KubeError(503, f"Kubernetes client configuration: {exc}")
    return KubeError(503, f"the Kubernetes API is unreachable: {type(exc).__name__}: {exc}", 5.0)


#: Keys whose string values are URIs or endpoints: shown only through `redact_uri`.
_URI_KEYS = ("uri", "url", "endpoint")


def redact_uris(value: Any) -> Any:
    """`value` (a run's spec or status) with every URI-valued field passed through
    `redact_uri`: a reader of runs never sees a password or a presigned signature, even
    one the run's author typed into the spec or a parameter put into the resolved spec."""
    if isinstance(value, dict):
        return {
            key: redact_uri(item)
            if isinstance(item, str) and str(key).lower().endswith(_URI_KEYS)
            else redact_uris(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_uris(item) for item in value]
    return value


def view(obj: Obj, status_url: str) -> Obj:
    """What the gateway answers about one run (credentials in its URIs redacted)."""
    meta = obj.get("metadata", {})
    status: Obj = obj.get("status") or {}
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "createdAt": meta.get("creationTimestamp"),
        "runId": status.get("runId"),
        "phase": status.get("phase"),
        "statusUrl": status_url,
        "spec": redact_uris(obj.get("spec") or {}),
        "status": redact_uris(status),
    }
