"""Bearer tokens with scopes, and a token-bucket rate limit per caller. Pure, no I/O.

Token list format (env or a file mounted from a Secret)::

    token1:lineage:write;token2:runs:write,runs:read

Each entry is `<token>:<scope>[,<scope>...]`; entries are separated by `;` or
newlines; blank entries and lines starting with `#` are ignored. The token is
everything before the first `:` (so a token may not contain `:`), at least 16
characters. The OpenLineage clients' `api_key` auth sends
`Authorization: Bearer <api_key>`, so an api_key is simply a token here.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Scope(StrEnum):
    LINEAGE_WRITE = "lineage:write"
    RUNS_WRITE = "runs:write"
    RUNS_READ = "runs:read"
    LINEAGE_READ = "lineage:read"


ALL_SCOPES = frozenset(Scope)
MIN_TOKEN_CHARS = 16


def _digest(token: str) -> str:
    # Looked up by digest: the dict lookup then leaks nothing useful about the token.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: `id` names the caller in logs and rate limits (never the token)."""

    id: str
    scopes: frozenset[Scope]


@dataclass(frozen=True)
class TokenStore:
    by_digest: dict[str, frozenset[Scope]] = field(default_factory=dict)
    anonymous: bool = False
    """Authentication off: every caller gets every scope."""

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The caller for an `Authorization` header value, or None when it is not accepted."""
        if not authorization:
            return None
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            return None
        digest = _digest(credentials)
        scopes = self.by_digest.get(digest)
        if scopes is None:
            return None
        return Principal(id=f"token:{digest[:12]}", scopes=scopes)

    def __len__(self) -> int:
        return len(self.by_digest)


_VERIFIED = "bearer_verified"


def authenticate_once(
    store: TokenStore, state: MutableMapping[str, Any], authorization: str | None
) -> Principal | None:
    """`store.authenticate(authorization)` for one request, `state` being its ASGI scope's
    state: the first check keeps its answer there, and a later one for the same store
    and the same header value reuses it, so the token is hashed once a request (the
    write middleware and the route's authorizer each hashed it). A check that finds no
    answer, or one for another header or store, authenticates afresh."""
    seen = state.get(_VERIFIED)
    if seen is not None and seen[0] is store and seen[1] == authorization:
        principal: Principal | None = seen[2]
        return principal
    principal = store.authenticate(authorization)
    state[_VERIFIED] = (store, authorization, principal)
    return principal


def parse_tokens(text: str, anonymous: bool = False) -> TokenStore:
    """Parse the token list; raises ValueError naming the bad entry (never the token)."""
    entries: dict[str, frozenset[Scope]] = {}
    for n, raw in enumerate(text.replace("\n", ";").split(";"), start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        token, sep, scope_text = entry.partition(":")
        token = token.strip()
        if not sep or not token:
            raise ValueError(f"token entry {n}: expected <token>:<scope>[,<scope>...]")
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"token entry {n}: a token needs at least {MIN_TOKEN_CHARS} chars")
        if any(c.isspace() for c in token):
            raise ValueError(f"token entry {n}: a token may not contain whitespace")
        names = [s.strip() for s in scope_text.split(",") if s.strip()]
        unknown = sorted(set(names) - {s.value for s in Scope})
        if unknown or not names:
            known = ", ".join(s.value for s in Scope)
            raise ValueError(
                f"token entry {n}: unknown or missing scopes {unknown}; known: {known}"
            )
        entries[_digest(token)] = entries.get(_digest(token), frozenset()) | frozenset(
            Scope(s) for s in names
        )
    return TokenStore(by_digest=entries, anonymous=anonymous)


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """A token bucket per key: `rate` tokens a second, at most `burst` saved up.

    `acquire(key)` returns 0 when the request may go, else the seconds until it may.
    Keys beyond `max_keys` evict the least recently used bucket (anonymous mode keys
    by client address, an open set).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def acquire(self, key: str, cost: float = 1.0) -> float:
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), stamp=now)
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate


def retry_after_header(seconds: float) -> str:
    """Retry-After is whole seconds (RFC 9110); never 0 for a refusal."""
    return str(max(1, math.ceil(seconds)))
