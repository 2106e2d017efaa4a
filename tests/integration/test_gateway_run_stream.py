"""The console's live run list (server-sent events) on the real API server: every open
stream of a namespace sees a run appear, and the streams share their reads, so the API
server's LIST load does not grow with the number of open console tabs."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.config import Settings
from gateway.serve import ServerThread
from stack.paths import REPO_ROOT
from tests.conftest import Kubectl
from tests.helpers import apply
from tests.promparse import value

pytestmark = pytest.mark.controlplane

TOKEN = "integration-stream-reader-0001"
STREAMS = 8
EXAMPLE = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun.yaml").read_text())


@pytest.fixture(scope="module")
def gateway(stack: Any) -> Iterator[ServerThread]:
    settings = Settings(
        tokens=parse_tokens(f"{TOKEN}:runs:read"),
        kafka_bootstrap="",
        kubeconfig=stack.env["KUBECONFIG"],
    )
    with ServerThread(create_app(settings)) as server:
        yield server


def namespace_lists(kubectl: Kubectl) -> float:
    """LISTs of PipelineRuns in a namespace the API server has answered so far."""
    text = kubectl("get", "--raw", "/metrics").stdout
    return value(
        text,
        "apiserver_request_total",
        code="200",
        component="apiserver",
        dry_run="",
        group="lineagehub.io",
        resource="pipelineruns",
        scope="namespace",
        subresource="",
        verb="LIST",
        version="v1alpha1",
    )


class Looks:
    """How many times each tab has looked (an event or a keep-alive), waitable."""

    def __init__(self, tabs: int) -> None:
        self.counts = [0] * tabs
        self.changed = asyncio.Condition()

    async def saw(self, tab: int) -> None:
        async with self.changed:
            self.counts[tab] += 1
            self.changed.notify_all()

    async def every_tab_looked(self, times: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: min(self.counts) >= times)


async def stream(
    url: str, namespace: str, until_run: str, tab: int, looks: Looks
) -> list[dict[str, Any]]:
    """One console tab: the `runs` events it got until one lists `until_run`."""
    events: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    params = {"namespace": namespace}
    async with (
        httpx.AsyncClient(timeout=60) as client,
        client.stream(
            "GET", f"{url}/api/v1/pipeline/runs/stream", params=params, headers=headers
        ) as reply,
    ):
        assert reply.status_code == 200
        async for message in reply.aiter_text():
            for block in filter(None, message.split("\n\n")):
                await looks.saw(tab)
                if block.startswith("event: runs\n"):
                    events.append(json.loads(block.split("data: ", 1)[1]))
                    if until_run in {run["name"] for run in events[-1]["items"]}:
                        return events
    raise AssertionError(f"the stream ended before {until_run} appeared")


def test_every_stream_sees_a_new_run_and_the_streams_share_their_reads(
    gateway: ServerThread, kubectl: Kubectl, namespace: str
) -> None:
    before = namespace_lists(kubectl)

    looks = Looks(STREAMS)

    async def tabs() -> list[list[dict[str, Any]]]:
        watching = [
            asyncio.create_task(stream(gateway.url, namespace, "held", tab, looks))
            for tab in range(STREAMS)
        ]
        # Every tab has looked a few times before the run appears.
        await asyncio.wait_for(looks.every_tab_looked(3), 60)
        doc = copy.deepcopy(EXAMPLE)
        doc["metadata"] = {"name": "held", "namespace": namespace}
        doc["spec"]["sink"]["uri"] = f"file:///data/output/{namespace}/held.parquet"
        doc["spec"]["suspend"] = True
        await asyncio.to_thread(apply, kubectl, doc)
        return await asyncio.wait_for(asyncio.gather(*watching), 60)

    seen = asyncio.run(tabs())
    lists = namespace_lists(kubectl) - before
    for events in seen:
        # First what was there (nothing), then the run: no tab misses either.
        assert events[0] == {"namespace": namespace, "items": []}
        assert [run["name"] for run in events[-1]["items"]] == ["held"]
        assert events[-1]["items"][0]["spec"]["suspend"] is True
    most = max(looks.counts)
    # Reads are shared: at most two a second (a read answers for half a second) whatever
    # the number of tabs, where one read per tab per look would be STREAMS * looks.
    assert lists <= 2 * most + 4 < STREAMS * most, (lists, looks.counts)
