"""Tokens and the rate limit: behaviours the mutation run (`make mutation`) found unchecked."""

from __future__ import annotations

import hashlib

import pytest

from gateway.auth import RateLimiter, Scope, parse_tokens

TOKEN = "mutants-token-000000000001"


def test_a_caller_is_named_by_twelve_hex_of_its_tokens_digest() -> None:
    """The form the README gives for logs. The id also scopes idempotency keys, which
    runs keep: another form would let a retry after an upgrade create a second run."""
    principal = parse_tokens(f"{TOKEN}:runs:write").authenticate(f"Bearer {TOKEN}")
    assert principal is not None
    assert principal.id == "token:" + hashlib.sha256(TOKEN.encode()).hexdigest()[:12]


@pytest.mark.parametrize("entry", [f"{TOKEN}:admin", f"{TOKEN}:", f"{TOKEN}:runs:write,x"])
def test_an_unknown_scope_is_refused_with_the_scopes_one_may_use(entry: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_tokens(entry)
    message = str(caught.value)
    assert message.endswith("known: " + ", ".join(s.value for s in Scope))
    assert TOKEN not in message


def test_the_limiter_keeps_as_many_callers_as_it_may() -> None:
    """`max_keys` callers keep their buckets: a drained caller stays drained while the
    set is full, rather than being forgotten (and refilled) one caller early."""
    limiter = RateLimiter(rate=1.0, burst=1, clock=lambda: 0.0, max_keys=2)
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("b") == 0.0
    assert limiter.acquire("a") > 0  # still drained: two callers fit
    assert limiter.acquire("b") > 0
