"""Every PromQL panel of the "lineage-hub itself" dashboard, evaluated by a real
Prometheus (the stack's, scraping the gateway, the consumers and the operator on
loopback) after real traffic, returns series: the names, labels and functions each
panel uses are the ones our services export, as Prometheus reads them.

The traffic: lineage events POSTed to the stack's gateway (accepted, and refused), a
malformed record on the lineage topic (each consumer dead-letters it), and a 503 from
a second gateway with no Kubernetes API, which Prometheus is told to scrape too."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumers.samples import lineage_event
from consumers.testkit import produce
from gateway.app import create_app
from gateway.serve import ServerThread
from lineagehub.topics import LINEAGE_TOPIC
from stack.pieces import prometheus
from tests.integration.test_gateway import AUTH, settings

pytestmark = [pytest.mark.e2e]

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "lineage-hub-itself.json"
#: Grafana's $__rate_interval here: at least four scrape intervals.
RATE_INTERVAL = "1m"
#: Series a healthy stack only makes on a failure this test cannot cause without
#: breaking the stack others use (a retry needs Marquez or Kafka failing).
FAILURE_ONLY = ("lineagehub_consumer_retried_total",)


def _targets() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dash["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def _query(expr: str) -> list[Any]:
    reply = httpx.get(
        f"{prometheus.url()}/api/v1/query",
        params={"query": expr.replace("$__rate_interval", RATE_INTERVAL)},
        timeout=10,
    )
    body = reply.json()
    assert reply.status_code == 200 and body["status"] == "success", (expr, body)
    result: list[Any] = body["data"]["result"]
    return result


def _traffic(env: dict[str, str]) -> None:
    token = Path(env["LINEAGEHUB_GATEWAY_TOKEN_FILE"]).read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{env['LINEAGEHUB_GATEWAY_URL']}/api/v1/lineage"
    with httpx.Client(timeout=30) as client:
        for _ in range(5):
            reply = client.post(url, json=lineage_event(str(uuid.uuid4())), headers=headers)
            assert reply.status_code == 201, reply.text
        assert client.post(url, json={"eventType": "START"}, headers=headers).status_code == 400
        assert client.post(url, json=lineage_event(str(uuid.uuid4()))).status_code == 401
    asyncio.run(produce(env["KAFKA_BOOTSTRAP"], LINEAGE_TOPIC, [(b"bad", b"{not json")]))


def test_every_self_dashboard_panel_returns_series(stack: Any) -> None:
    stack.start("prometheus")
    _traffic(stack.env)
    # A gateway that cannot reach Kubernetes answers the runs API with a 503.
    app = create_app(settings(stack.env, kubeconfig=""), runs=None, metrics_store=None)
    with ServerThread(app) as server:
        reply = httpx.get(f"{server.url}/api/v1/pipeline/runs", headers=AUTH, timeout=30)
        assert reply.status_code == 503, reply.text
        prometheus.add_target("gateway-without-kubernetes", server.url.removeprefix("http://"))
        targets = _targets()
        assert len(targets) >= 10
        empty: list[tuple[str, str]] = []
        deadline = time.monotonic() + 120
        while True:
            empty = [(t, e) for t, e in targets if not _query(e)]
            if not empty or time.monotonic() > deadline:
                break
            time.sleep(1)  # polling Prometheus's query API while it scrapes, not synchronisation
    assert all(any(name in e for name in FAILURE_ONLY) for _, e in empty), empty
    for title in {t for t, _ in targets}:
        assert any(_query(e) for t, e in targets if t == title), f"{title}: no series at all"
