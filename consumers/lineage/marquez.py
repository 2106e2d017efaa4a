"""POST OpenLineage events to Marquez and say what the answer means for the consumer."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import httpx

LINEAGE_PATH = "/api/v1/lineage"
PROBE_PATH = "/api/v1/namespaces"

# 4xx answers that say "fix the deployment", not "fix the event": retry them, don't
# dead-letter every event because of a wrong URL or a missing token.
_CONFIG_ERRORS = {401, 403, 404, 405, 407}
_RETRYABLE_4XX = {408, 409, 425, 429}


class Outcome(enum.Enum):
    STORED = "stored"
    REJECTED = "rejected"  # can never succeed: dead-letter it
    TRANSIENT = "transient"  # retry later


@dataclass(frozen=True)
class PostResult:
    outcome: Outcome
    status: int | None
    detail: str


def classify(status: int, body: str = "") -> PostResult:
    """Map an HTTP status from `POST /api/v1/lineage` to what the consumer does next."""
    snippet = body[:300]
    if 200 <= status < 300:
        return PostResult(Outcome.STORED, status, "")
    if 400 <= status < 500 and status not in _CONFIG_ERRORS | _RETRYABLE_4XX:
        return PostResult(Outcome.REJECTED, status, f"HTTP {status}: {snippet}")
    return PostResult(Outcome.TRANSIENT, status, f"HTTP {status}: {snippet}")


class MarquezClient:
    """One pooled httpx client for every partition worker."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        max_connections: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            transport=transport,
        )

    async def post(self, body: bytes) -> PostResult:
        """Send the event bytes exactly as produced (facets pass through untouched)."""
        try:
            response = await self._client.post(LINEAGE_PATH, content=body)
        except httpx.TimeoutException as exc:
            return PostResult(Outcome.TRANSIENT, None, f"timeout: {type(exc).__name__}")
        except httpx.TransportError as exc:
            return PostResult(Outcome.TRANSIENT, None, f"{type(exc).__name__}: {exc}")
        return classify(response.status_code, response.text)

    async def ping(self) -> bool:
        """Is Marquez up and able to read its database?"""
        try:
            response = await self._client.get(PROBE_PATH, params={"limit": 1})
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        await self._client.aclose()
