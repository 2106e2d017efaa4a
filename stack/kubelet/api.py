"""The few API calls the kubelet makes, on plain dicts.

The kubernetes client loads the kubeconfig (TLS, client certificate, token)
and carries the requests; objects stay JSON dicts so field paths such as
`metadata.labels['x']` and status patches need no model round trips.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

from kubernetes import client, config, watch

Obj = dict[str, Any]
SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, body: str = "") -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status} {reason}: {body[:300]}")


class RawWatch(watch.Watch):
    """A watch whose events carry the object as the JSON dict the server sent."""

    def get_return_type(self, func: Any) -> None:
        return None


class Api:
    def __init__(self, kubeconfig: str, pool_size: int = 32) -> None:
        cfg = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=cfg
        )
        cfg.connection_pool_maxsize = pool_size
        self.cfg = cfg
        self.client = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.client)
        self.host = str(cfg.host).rstrip("/")

    # -- raw requests ------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Obj:
        url = self.host + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json", "Content-Type": content_type}
        token = (self.cfg.api_key or {}).get("authorization") or (self.cfg.api_key or {}).get(
            "BearerToken"
        )
        if token:
            prefix = (self.cfg.api_key_prefix or {}).get("authorization", "")
            headers["Authorization"] = f"{prefix} {token}".strip()
        resp = self.client.rest_client.request(  # type: ignore[no-untyped-call]
            method, url, headers=headers, body=body, _request_timeout=timeout
        )
        data = resp.read()
        text = data.decode("utf-8", errors="replace") if data else ""
        if not 200 <= resp.status <= 299:
            raise ApiError(resp.status, str(resp.reason), text)
        return json.loads(text) if text else {}

    def get(self, path: str, **query: Any) -> Obj | None:
        """GET, with None for 404."""
        try:
            return self.request("GET", path, query=query or None)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    # -- pods ----------------------------------------------------------------
    @staticmethod
    def pod_path(ns: str, name: str) -> str:
        return f"/api/v1/namespaces/{ns}/pods/{name}"

    def list_pods(self, node: str) -> Obj:
        return self.request("GET", "/api/v1/pods", query={"fieldSelector": f"spec.nodeName={node}"})

    def watch_pods(self, node: str, resource_version: str, timeout: int) -> Iterator[Obj]:
        """Events (dicts with `type` and `raw_object`) until the server ends the watch."""
        w = RawWatch()  # type: ignore[no-untyped-call]
        yield from w.stream(  # type: ignore[no-untyped-call]
            self.core.list_pod_for_all_namespaces,
            field_selector=f"spec.nodeName={node}",
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _request_timeout=(10, timeout + 15),
        )

    def patch_pod_status(self, ns: str, name: str, patch: Obj) -> Obj:
        return self.request("PATCH", self.pod_path(ns, name) + "/status", patch, content_type=SMP)

    def delete_pod(self, ns: str, name: str, uid: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid},
        }
        try:
            self.request("DELETE", self.pod_path(ns, name), body)
        except ApiError as exc:
            if exc.status not in (404, 409):  # gone, or a new pod with that name
                raise

    def post_event(self, ns: str, event: Obj) -> None:
        self.request("POST", f"/api/v1/namespaces/{ns}/events", event)

    # -- objects pods refer to ------------------------------------------------
    def configmap(self, ns: str, name: str) -> Obj | None:
        return self.get(f"/api/v1/namespaces/{ns}/configmaps/{name}")

    def secret(self, ns: str, name: str) -> Obj | None:
        return self.get(f"/api/v1/namespaces/{ns}/secrets/{name}")

    def service_account_token(self, ns: str, sa: str, spec: Obj) -> str:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        out = self.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", body)
        return str(out["status"]["token"])

    # -- node and lease --------------------------------------------------------
    def node(self, name: str) -> Obj | None:
        return self.get(f"/api/v1/nodes/{name}")

    def create_node(self, node: Obj) -> Obj:
        return self.request("POST", "/api/v1/nodes", node)

    def patch_node(self, name: str, patch: Obj, status: bool = False) -> Obj:
        suffix = "/status" if status else ""
        return self.request("PATCH", f"/api/v1/nodes/{name}{suffix}", patch, content_type=SMP)

    def lease(self, ns: str, name: str) -> Obj | None:
        return self.get(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}")

    def create_lease(self, ns: str, lease: Obj) -> Obj:
        return self.request("POST", f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", lease)

    def update_lease(self, ns: str, lease: Obj) -> Obj:
        name = lease["metadata"]["name"]
        path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}"
        return self.request("PUT", path, lease)
