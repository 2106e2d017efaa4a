"""Kubernetes Events for pods (Started, Killing, ...), posted off the hot path."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from typing import Any

from stack.kubelet.api import Api
from stack.kubelet.status import now

log = logging.getLogger("kubelet.events")
Obj = dict[str, Any]


class Recorder:
    def __init__(self, api: Api, node: str) -> None:
        self.api = api
        self.node = node
        self._queue: queue.Queue[tuple[str, Obj]] = queue.Queue(maxsize=1000)
        threading.Thread(target=self._loop, name="events", daemon=True).start()

    def pod(
        self, pod: Obj, reason: str, message: str, container: str = "", warning: bool = False
    ) -> None:
        meta = pod["metadata"]
        involved: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
        }
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        stamp = now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "source": {"component": "kubelet", "host": self.node},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait((meta["namespace"], event))

    def _loop(self) -> None:
        while True:
            ns, event = self._queue.get()
            try:
                self.api.post_event(ns, event)
            except Exception as exc:
                log.debug("event not recorded", extra={"error": str(exc)})
