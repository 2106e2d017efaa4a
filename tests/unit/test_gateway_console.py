"""The console's server side: pages and libraries served from the gateway with a strict
content security policy, public reads that never open writes, the dashboards' SQL
expanded as Grafana does (a variable's value stays a literal), and the JSON the pages
read, against a real embedded warehouse."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consumers.otel.backend import to_json_each_row
from consumers.otel.ddl import create_statements
from consumers.warehouse.ddl import LINEAGE_SCHEMA
from consumers.warehouse.decode import decode_lineage
from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.clickhouse import ChdbStore
from gateway.config import Settings
from gateway.console_api import expand_macros
from tests.warehouse_events import dataset_in, dataset_out, later, new_run_id, run_event

TOKEN = "console-test-token-0123456789"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChdbStore]:
    """A real embedded warehouse with one run (the app closes it when it stops)."""
    chdb = ChdbStore(str(tmp_path / "chdb"))
    for sql in [*create_statements("otel"), *LINEAGE_SCHEMA.create("otel", 0)]:
        chdb._query(sql)
    event = run_event(
        "COMPLETE",
        new_run_id(),
        ("ns", "job"),
        later(1),
        inputs=[dataset_in("s3://b", "in", ("id", "int"))],
        outputs=[
            dataset_out("s3://b", "out", ("id", "int"), columns={"id": [("s3://b", "in", "id")]})
        ],
    )
    for table, rows in decode_lineage(event).items():
        chdb._query(
            f"INSERT INTO otel.{table} FORMAT JSONEachRow\n"
            + to_json_each_row(LINEAGE_SCHEMA.tables[table], rows)
        )
    yield chdb


def client_for(store: ChdbStore, public_read: bool) -> TestClient:
    settings = Settings(
        tokens=parse_tokens(f"{TOKEN}:lineage:read,runs:read"),
        public_read=public_read,
        console_links={"jaeger": "http://jaeger.test"},
    )
    return TestClient(create_app(settings, publisher=None, runs=None, metrics_store=store))


def test_pages_and_libraries_come_from_the_gateway_with_a_strict_policy(store: ChdbStore) -> None:
    with client_for(store, public_read=False) as client:
        for path in ("/console/", "/console/run/ns/name", "/console/dataset?namespace=a&name=b"):
            page = client.get(path)
            assert page.status_code == 200 and '<main id="main">' in page.text
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "default-src 'self'" in csp
        scripts = client.get("/console/").text
        assert "http://" not in scripts and "https://" not in scripts, "nothing from outside"
        lib = client.get("/console/lib/elk.js")
        assert lib.status_code == 200 and "ELK" in lib.text[:200_000]
        assert client.get("/console/lib/chart.js").status_code == 200
        for bad in (
            "/console/lib/../../pyproject.toml",
            "/console/lib/lodash.js",
            "/console/static/index.html.bak",
            "/console/static/..%2F..%2Fapp.py",
        ):
            reply = client.get(bad)
            # Not found, or the page shell (whose script shows its not-found page): never
            # a file from elsewhere in the package.
            assert reply.status_code == 404 or '<main id="main">' in reply.text, bad
            assert "[project]" not in reply.text and "import " not in reply.text, bad


def test_public_read_opens_reads_and_never_writes(store: ChdbStore) -> None:
    app_open = client_for(store, public_read=True)
    with app_open as client:
        assert client.get("/api/v1/lineage/search", params={"q": "job"}).status_code == 200
        assert client.get("/api/v1/dashboards").status_code == 200
        assert client.post("/api/v1/lineage", json={}).status_code == 401
        assert client.post("/api/v1/pipeline/run", json={}).status_code == 401


def test_without_public_read_reads_need_a_token(store: ChdbStore) -> None:
    with client_for(store, public_read=False) as client:
        assert client.get("/api/v1/lineage/search", params={"q": "job"}).status_code == 401
        assert client.get("/api/v1/console/config").json()["links"] == {
            "jaeger": "http://jaeger.test"
        }


def test_a_variable_value_stays_a_literal_in_panel_sql() -> None:
    hostile = "x' OR 1=1) --"
    sql = expand_macros(
        "SELECT 1 FROM t WHERE $__timeFilter(r.StartTime) AND name = ${dataset:singlequote}",
        100,
        200,
        {"dataset": hostile},
    )
    assert "r.StartTime >= toDateTime(100) AND r.StartTime <= toDateTime(200)" in sql
    assert sql.endswith("name = 'x\\' OR 1=1) --'")


def test_every_dashboard_panel_runs_through_the_console(store: ChdbStore) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with client_for(store, public_read=False) as client:
        dashboards = client.get("/api/v1/dashboards", headers=headers).json()["dashboards"]
        # Every ClickHouse dashboard is offered, and only those: the Prometheus one about
        # lineage-hub itself has no SQL the console could run.
        assert {d["uid"] for d in dashboards} == {
            "lineagehub-lineage",
            "lineagehub-pipeline-runs",
            "lineagehub-run-detail",
            "lineagehub-traces",
        }
        for dashboard in dashboards:
            for panel in dashboard["panels"]:
                reply = client.get(
                    f"/api/v1/dashboards/{dashboard['uid']}/panels/{panel['id']}",
                    params={"hours": 24 * 90, "dataset": "s3://b:out"},
                    headers=headers,
                )
                assert reply.status_code == 200, (dashboard["uid"], panel["title"], reply.text)
        lineage = next(d for d in dashboards if d["uid"] == "lineagehub-lineage")
        assert (
            client.get("/api/v1/dashboards/lineagehub-itself/panels/1", headers=headers).status_code
            == 404
        )
        column = next(p for p in lineage["panels"] if p["title"].startswith("Column lineage"))
        rows = client.get(
            f"/api/v1/dashboards/lineagehub-lineage/panels/{column['id']}",
            params={"hours": 24 * 90, "dataset": "s3://b:out"},
            headers=headers,
        ).json()["rows"][0]
        assert [(r["field"], r["upstream_field"]) for r in rows] == [("id", "s3://b:in:id")]
        assert client.get("/api/v1/dashboards/nope/panels/1", headers=headers).status_code == 404


def test_spans_of_a_trace_and_bad_input(store: ChdbStore) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with client_for(store, public_read=False) as client:
        reply = client.get(f"/api/v1/traces/{'ab' * 16}/spans", headers=headers)
        assert reply.status_code == 200 and reply.json()["spans"] == []
        assert client.get("/api/v1/traces/not-hex/spans", headers=headers).status_code == 422
    settings = Settings(tokens=parse_tokens(f"{TOKEN}:runs:read"))
    with TestClient(create_app(settings, publisher=None, runs=None, metrics_store=None)) as client:
        down = client.get(f"/api/v1/traces/{'ab' * 16}/spans", headers=headers)
        assert down.status_code == 503 and down.json()["store"] == "clickhouse"
        events = client.get("/api/v1/pipeline/run/x/events", headers=headers)
        assert events.status_code == 503 and events.json()["store"] == "kubernetes"


class Runs:
    """A run store that records what the console asked of it."""

    def __init__(self) -> None:
        self.cancelled: list[tuple[str, str]] = []

    async def create(self, namespace: str, body: dict[str, object]) -> dict[str, object]:
        raise AssertionError("not used")

    async def get(self, namespace: str, name: str) -> dict[str, object]:
        raise AssertionError("not used")

    async def list(self, namespace: str, limit: int) -> list[dict[str, object]]:
        return []

    async def find(self, namespace: str, label_selector: str) -> builtins.list[dict[str, object]]:
        return []

    async def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    async def cancel(self, namespace: str, name: str) -> dict[str, object]:
        self.cancelled.append((namespace, name))
        return {"metadata": {"name": name, "namespace": namespace}, "spec": {"cancel": True}}


def test_cancel_needs_a_write_token_even_with_public_read() -> None:
    runs = Runs()
    settings = Settings(
        tokens=parse_tokens(f"{TOKEN}:runs:read;writer-token-0123456789:runs:write"),
        public_read=True,
    )
    with TestClient(create_app(settings, publisher=None, runs=runs, metrics_store=None)) as client:
        path = "/api/v1/pipeline/run/orders/cancel?namespace=team-a"
        assert client.post(path).status_code == 401
        reader = {"Authorization": f"Bearer {TOKEN}"}
        assert client.post(path, headers=reader).status_code == 403
        assert runs.cancelled == []
        writer = {"Authorization": "Bearer writer-token-0123456789"}
        reply = client.post(path, headers=writer)
        assert reply.status_code == 202 and reply.json()["spec"] == {"cancel": True}
        assert runs.cancelled == [("team-a", "orders")]
        bad = client.post("/api/v1/pipeline/run/x/cancel?namespace=Not_A_Label", headers=writer)
        assert bad.status_code == 422


def test_a_write_without_a_token_is_refused_before_its_body_is_read() -> None:
    """5 MiB of JSON parse to ~130 MB of Python objects: no unauthenticated caller may
    make the gateway read one (the body is never pulled from the connection)."""
    import asyncio

    from gateway.auth_first import AuthFirst

    reached: list[str] = []

    async def app(scope: object, receive: object, send: object) -> None:
        reached.append("app")

    guard = AuthFirst(app, parse_tokens(f"{TOKEN}:runs:write"), {"/api/v1/pipeline/run": 100})
    pulled: list[int] = []
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 5_000_000, "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    def request(headers: list[tuple[bytes, bytes]], method: str = "POST") -> None:
        scope = {
            "type": "http",
            "method": method,
            "path": "/api/v1/pipeline/run",
            "headers": headers,
        }
        asyncio.run(guard(scope, receive, send))  # type: ignore[arg-type]

    request([])
    request([(b"authorization", b"Bearer not-a-known-token-at-all")])
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [401, 401]
    assert pulled == [] and reached == []
    sent.clear()
    request([(b"authorization", f"Bearer {TOKEN}".encode()), (b"content-length", b"5000000")])
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [413]
    assert reached == []
    request([], method="GET")  # reads are the routes' business
    assert reached == ["app"]


def test_creating_a_run_with_info_logging_on_answers_201(caplog: pytest.LogCaptureFixture) -> None:
    """With INFO logging on (as the gateway runs), logging the created run must not
    collide with a LogRecord attribute (`name`): that turned every create into a 500."""
    import logging

    class Creates(Runs):
        async def create(self, namespace: str, body: dict[str, object]) -> dict[str, object]:
            return {**body, "metadata": {"name": "run-x", "namespace": namespace, "uid": "u"}}

    settings = Settings(tokens=parse_tokens("writer-token-0123456789:runs:write"))
    spec = {
        "source": {"uri": "file:///data/in.csv", "format": "csv"},
        "sink": {"uri": "file:///data/out.parquet", "format": "parquet"},
    }
    app = create_app(settings, publisher=None, runs=Creates(), metrics_store=None)
    with caplog.at_level(logging.INFO), TestClient(app) as client:
        reply = client.post(
            "/api/v1/pipeline/run",
            json={**spec, "namespace": "team-a"},
            headers={"Authorization": "Bearer writer-token-0123456789"},
        )
    assert reply.status_code == 201, reply.text
    assert any(r.getMessage() == "pipelinerun created" for r in caplog.records)


def test_readers_see_no_credentials_and_run_again_copies_the_stored_spec() -> None:
    """A reader is shown every URI of a run's spec and resolved spec redacted; Run again
    copies the spec as stored (the redacted one would not run), minus what belonged to
    that run alone (cancel, rerun)."""
    secret_source = "https://reader:pw-s3cr3t@data.example.com/in.csv?X-Amz-Signature=sig-1a2b"
    secret_sink = "clickhouse://default:hunter2@ch:9000/db.t"
    stored_spec: dict[str, object] = {
        "source": {"uri": secret_source, "format": "csv"},
        "sink": {"uri": secret_sink, "format": "clickhouse"},
        "cancel": True,
        "rerun": {"run": "orders", "fromStage": "load"},
    }

    class Stored(Runs):
        def __init__(self) -> None:
            super().__init__()
            self.created: list[dict[str, object]] = []

        async def get(self, namespace: str, name: str) -> dict[str, object]:
            return {
                "metadata": {"name": name, "namespace": namespace},
                "spec": stored_spec,
                "status": {"phase": "Failed", "pipelineSpec": {"sink": {"uri": secret_sink}}},
            }

        async def create(self, namespace: str, body: dict[str, object]) -> dict[str, object]:
            self.created.append(body)
            return {**body, "metadata": {"name": "orders-x1", "namespace": namespace}}

    runs = Stored()
    settings = Settings(
        tokens=parse_tokens(f"{TOKEN}:runs:read;writer-token-0123456789:runs:write"),
    )
    reader = {"Authorization": f"Bearer {TOKEN}"}
    writer = {"Authorization": "Bearer writer-token-0123456789"}
    with TestClient(create_app(settings, publisher=None, runs=runs, metrics_store=None)) as client:
        shown = client.get("/api/v1/pipeline/run/orders?namespace=team-a", headers=reader)
        assert shown.status_code == 200
        text = shown.text
        assert "pw-s3cr3t" not in text and "hunter2" not in text and "sig-1a2b" not in text
        assert shown.json()["spec"]["source"]["uri"] == (
            "https://data.example.com/in.csv?X-Amz-Signature=REDACTED"
        )
        path = "/api/v1/pipeline/run/orders/again?namespace=team-a"
        assert client.post(path).status_code == 401
        assert client.post(path, headers=reader).status_code == 403
        assert runs.created == []
        again = client.post(path, headers=writer)
        assert again.status_code == 201, again.text
        assert "pw-s3cr3t" not in again.text
    (body,) = runs.created
    assert body["spec"] == {
        "source": {"uri": secret_source, "format": "csv"},
        "sink": {"uri": secret_sink, "format": "clickhouse"},
    }
    meta = body["metadata"]
    assert isinstance(meta, dict) and meta["generateName"] == "orders-"


@pytest.mark.parametrize("path", ["/console/lib/elk.js", "/console/static/app.js"])
def test_scripts_are_gzipped_for_browsers_that_accept_it_and_revalidate_to_304(
    store: ChdbStore, path: str
) -> None:
    import gzip

    with client_for(store, public_read=False) as client:
        plain = client.get(path, headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200 and "content-encoding" not in plain.headers
        with client.stream("GET", path, headers={"Accept-Encoding": "gzip, br"}) as sent:
            wire = b"".join(sent.iter_raw())
        assert wire[:2] == b"\x1f\x8b" and len(wire) < len(plain.content) * 0.6
        assert gzip.decompress(wire) == plain.content
        raw = client.get(path, headers={"Accept-Encoding": "gzip, deflate, br"})
        assert raw.status_code == 200 and raw.headers["content-encoding"] == "gzip"
        assert raw.headers["vary"] == "Accept-Encoding"
        assert raw.headers["content-type"].startswith("text/javascript")
        assert "script-src 'self'" in raw.headers["content-security-policy"]
        assert raw.content == plain.content  # decoded as a browser does
        refused = client.get(path, headers={"Accept-Encoding": "gzip;q=0"})
        assert "content-encoding" not in refused.headers
        etag = plain.headers["etag"]
        assert raw.headers["etag"] == etag
        again = client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        stale = client.get(path, headers={"If-None-Match": '"not-the-tag"'})
        assert stale.status_code == 200 and stale.content == plain.content
