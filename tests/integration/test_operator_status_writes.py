"""How often the operator writes a run's status, counted on the real API server.

Every write that changes an object reaches its watchers as one event, so a watch on
the run, opened at the resourceVersion of an empty list before the run exists, sees
each status write the operator made (a write that changes nothing is not one: the
API server does not store it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from kubernetes import client, config, watch

from tests.conftest import StackHandle
from tests.helpers import Obj, wait_until
from tests.integration.test_operator import Kubectl, apply, manifest

pytestmark = pytest.mark.controlplane
GROUP, VERSION, PLURAL = "lineagehub.io", "v1alpha1", "pipelineruns"
TERMINAL = {"Succeeded", "Failed", "Cancelled"}


@dataclass
class StatusWrites:
    """The run's statuses in the order the API server stored them, one per write that
    changed it (a write to its metadata alone is not counted)."""

    statuses: list[Obj] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, status: Obj) -> None:
        with self.lock:
            before = self.statuses[-1] if self.statuses else {}
            if status != before:
                self.statuses.append(status)

    def snapshot(self) -> list[Obj]:
        with self.lock:
            return list(self.statuses)

    def until_terminal(self) -> list[Obj] | None:
        """The writes up to the first that made the run terminal, once there is one."""
        writes = self.snapshot()
        for index, status in enumerate(writes):
            if status.get("phase") in TERMINAL:
                return writes[: index + 1]
        return None


@pytest.fixture
def status_writes(stack: StackHandle, namespace: str) -> Iterator[tuple[str, StatusWrites]]:
    """Watches the run named `counted` in the test's namespace from before it exists."""
    api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=stack.env["KUBECONFIG"]
    )
    api = client.CustomObjectsApi(api_client)
    name, writes = "counted", StatusWrites()
    listed = cast(Obj, api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL))
    stop = threading.Event()
    stream = watch.Watch()  # type: ignore[no-untyped-call]

    def follow() -> None:
        try:
            for event in stream.stream(  # type: ignore[no-untyped-call]
                api.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                field_selector=f"metadata.name={name}",
                resource_version=listed["metadata"]["resourceVersion"],
                timeout_seconds=300,
            ):
                obj: dict[str, Any] = event["object"]
                writes.seen(obj.get("status") or {})
        except Exception:
            if not stop.is_set():  # closed under it at the end of the test: no news
                raise

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    yield name, writes
    stop.set()
    stream.stop()  # type: ignore[no-untyped-call]
    api_client.close()


def _stage_phases(status: Obj) -> dict[str, str]:
    return {s["name"]: s.get("phase", "") for s in status.get("stages") or []}


def test_a_three_stage_run_writes_its_status_four_times(
    operator: None, kubectl: Kubectl, namespace: str, status_writes: tuple[str, StatusWrites]
) -> None:
    """Accepted and its first stage started in one write; each later stage's start
    with its predecessor's end; the end with the verdicts' links and Waiting. Each
    stage's start is still written as it starts: the count cannot fall by leaving
    a stage's running state out."""
    name, writes = status_writes
    apply(kubectl, manifest(name, namespace))
    lifecycle = wait_until(writes.until_terminal, timeout=180, every=0.2)
    summary = [(s.get("phase"), _stage_phases(s)) for s in lifecycle]
    assert [phase for phase, _ in summary] == ["Running", "Running", "Running", "Succeeded"], (
        summary
    )
    assert [stages for _, stages in summary[:3]] == [
        {"extract": "Running", "transform": "Pending", "load": "Pending"},
        {"extract": "Succeeded", "transform": "Running", "load": "Pending"},
        {"extract": "Succeeded", "transform": "Succeeded", "load": "Running"},
    ], summary
    first = lifecycle[0]
    assert first.get("runId") and first.get("traceparent"), "the ids are in the first write"
    for status, stage in zip(lifecycle, ("extract", "transform", "load"), strict=False):
        started = next(s for s in status["stages"] if s["name"] == stage)
        assert started.get("startTimePrecise"), f"{stage}: its start is in the write it starts in"
    end = lifecycle[-1]
    kinds = {c["type"] for c in end["conditions"]}
    assert {"Succeeded", "LineageRecorded", "TraceRecorded"} <= kinds, end["conditions"]
    assert end["trace"]["traceId"] == end["traceId"]
