"""The request counter and latency histogram, their children looked up once per label
set by the access log: each label set counts exactly its own requests, and a method
outside the standard ones still lands in `other`."""

from __future__ import annotations

import uuid
from collections import Counter

from fastapi.testclient import TestClient

from consumers.samples import lineage_event
from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.config import Settings

TOKEN = "logs-counts-token-000000001"
READER = "logs-counts-reader-00000001"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOT_JSON = b"{not json"
LINEAGE = "/api/v1/lineage"

# (method, url, headers, a body other than an event) -> the (method, route, status) label
# set it is counted under.
REQUESTS: list[tuple[str, str, dict[str, str], bytes | None, tuple[str, str, str]]] = [
    ("POST", LINEAGE, AUTH, None, ("POST", LINEAGE, "503")),  # no Kafka configured
    ("POST", LINEAGE, {}, None, ("POST", LINEAGE, "401")),  # refused before the router
    (
        "POST",
        LINEAGE,
        {"Authorization": "Bearer unknown-token-0000"},
        None,
        ("POST", LINEAGE, "401"),
    ),
    ("POST", LINEAGE, AUTH, NOT_JSON, ("POST", LINEAGE, "400")),
    ("POST", LINEAGE, {"Authorization": f"Bearer {READER}"}, None, ("POST", LINEAGE, "403")),
    ("GET", "/api/v1/nothing-here", {}, None, ("GET", "unmatched", "404")),
    ("GET", "/api/v1/nothing/else", {}, None, ("GET", "unmatched", "404")),
    ("POST", "/api/v1/nothing-here", {}, None, ("POST", "unmatched", "401")),
    ("DELETE", LINEAGE, {}, None, ("DELETE", LINEAGE, "401")),  # the route's 405, had it run
    ("BREW", LINEAGE, AUTH, None, ("other", LINEAGE, "405")),
    ("GET", "/metrics", {}, None, ("GET", "/metrics", "200")),
]


def test_each_label_set_counts_its_own_requests() -> None:
    settings = Settings(
        tokens=parse_tokens(f"{TOKEN}:lineage:write;{READER}:runs:read"), rate_per_s=0
    )
    app = create_app(settings, publisher=None, runs=None, metrics_store=None)
    metrics = app.state.deps.metrics
    expected: Counter[tuple[str, str, str]] = Counter()
    with TestClient(app) as client:
        # Interleaved and repeated: a child cached under the wrong key shows as a count
        # moved from one label set to another.
        for round_ in range(3):
            for method, url, headers, raw, labels in REQUESTS[round_:] + REQUESTS[:round_]:
                if raw is not None:
                    reply = client.request(method, url, headers=headers, content=raw)
                else:
                    body = lineage_event(str(uuid.uuid4())) if method == "POST" else None
                    reply = client.request(method, url, headers=headers, json=body)
                assert str(reply.status_code) == labels[2], (method, url, reply.text)
                expected[labels] += 1
    for (method, route, status), n in expected.items():
        wanted = {"method": method, "route": route, "status": status}
        got = metrics.registry.get_sample_value("lineagehub_gateway_http_requests_total", wanted)
        assert got == n, (wanted, got)
    timed: Counter[tuple[str, str]] = Counter()
    for (method, route, _), n in expected.items():
        timed[method, route] += n
    for (method, route), n in timed.items():
        wanted = {"method": method, "route": route}
        got = metrics.registry.get_sample_value(
            "lineagehub_gateway_http_request_duration_seconds_count", wanted
        )
        assert got == n, (wanted, got)
