"""A request's bearer token is hashed once: the write middleware's answer is reused by
the route's authorizer, only for the same header and token store; a request that
reaches a route without the middleware is still checked there."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consumers.samples import lineage_event
from gateway import auth
from gateway.app import create_app
from gateway.auth_first import AuthFirst
from gateway.config import Settings

WRITER = "auth-once-writer-token-0001"
RUNNER = "auth-once-runner-token-0001"
BAD = ("", "Bearer", "Bearer auth-once-unknown-token-01", f"Basic {WRITER}")


@pytest.fixture
def digests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each token hashed, in order."""
    seen: list[str] = []
    digest = auth._digest

    def counted(token: str) -> str:
        seen.append(token)
        return digest(token)

    monkeypatch.setattr(auth, "_digest", counted)
    return seen


def _app(with_auth_first: bool = True) -> FastAPI:
    tokens = auth.parse_tokens(f"{WRITER}:lineage:write;{RUNNER}:runs:write,runs:read")
    app = create_app(
        Settings(tokens=tokens, rate_per_s=0), publisher=None, runs=None, metrics_store=None
    )
    if not with_auth_first:
        kept = [m for m in app.user_middleware if m.cls is not cast(Any, AuthFirst)]
        assert len(kept) == len(app.user_middleware) - 1
        app.user_middleware = kept
    return app


def _send(client: TestClient, method: str, path: str, header: str | None) -> int:
    headers = {} if header is None else {"Authorization": header}
    body: Any = lineage_event(str(uuid.uuid4())) if path.endswith("lineage") else {}
    if method == "GET":
        return client.get(path, headers=headers).status_code
    return client.post(path, headers=headers, json=body).status_code


# (method, path, a token that may use it): the lean ingest route, a write through a
# dependency, a read (which the write middleware does not check).
ROUTES = [
    ("POST", "/api/v1/lineage", WRITER),
    ("POST", "/api/v1/pipeline/run", RUNNER),
    ("GET", "/api/v1/pipeline/runs", RUNNER),
]


@pytest.mark.parametrize("with_auth_first", [True, False])
@pytest.mark.parametrize(("method", "path", "token"), ROUTES)
def test_a_known_token_is_hashed_once_a_request(
    digests: list[str], with_auth_first: bool, method: str, path: str, token: str
) -> None:
    with TestClient(_app(with_auth_first)) as client:
        digests.clear()
        got = _send(client, method, path, f"Bearer {token}")
    assert got not in (401, 403)  # past auth: no backend configured, so 503 or a 4xx of its own
    assert digests == [token]


@pytest.mark.parametrize("with_auth_first", [True, False])
@pytest.mark.parametrize(("method", "path", "token"), ROUTES)
def test_a_bad_token_is_refused_with_or_without_the_middleware(
    digests: list[str], with_auth_first: bool, method: str, path: str, token: str
) -> None:
    with TestClient(_app(with_auth_first)) as client:
        for header in (None, *BAD):
            assert _send(client, method, path, header) == 401, header
        # A token valid for another route is still refused its scope by this one.
        other = RUNNER if token == WRITER else WRITER
        assert _send(client, method, path, f"Bearer {other}") == 403


def test_the_kept_answer_serves_only_the_same_header_and_store(digests: list[str]) -> None:
    tokens = auth.parse_tokens(f"{WRITER}:lineage:write")
    other = auth.parse_tokens(f"{RUNNER}:runs:read")
    digests.clear()
    state: dict[str, Any] = {}
    first = auth.authenticate_once(tokens, state, f"Bearer {WRITER}")
    assert first is not None and digests == [WRITER]
    assert auth.authenticate_once(tokens, state, f"Bearer {WRITER}") == first
    assert digests == [WRITER]  # reused, not hashed again
    # Another header value on the same request state: checked afresh, and refused.
    assert auth.authenticate_once(tokens, state, "Bearer auth-once-unknown-token-01") is None
    # The answer of another token store (another app) is not taken either.
    assert auth.authenticate_once(tokens, state, f"Bearer {WRITER}") == first
    assert auth.authenticate_once(other, state, f"Bearer {WRITER}") is None
    assert digests == [WRITER, "auth-once-unknown-token-01", WRITER, WRITER]
