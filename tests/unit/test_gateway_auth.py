"""Tokens, scopes and the token bucket (pure)."""

from __future__ import annotations

import pytest

from gateway.auth import RateLimiter, Scope, parse_tokens, retry_after_header
from gateway.config import from_env

WRITER = "w" * 24
READER = "r" * 24


def test_parse_tokens_and_authenticate() -> None:
    store = parse_tokens(f"{WRITER}:lineage:write,runs:write\n# a comment\n;{READER}:runs:read;")
    assert len(store) == 2
    writer = store.authenticate(f"Bearer {WRITER}")
    assert writer is not None
    assert writer.scopes == {Scope.LINEAGE_WRITE, Scope.RUNS_WRITE}
    assert WRITER not in writer.id  # the id names the caller without the secret
    reader = store.authenticate(f"bearer   {READER} ")
    assert reader is not None and reader.scopes == {Scope.RUNS_READ}


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", f"Basic {WRITER}", "Bearer not-a-token-at-all", WRITER],
)
def test_rejected_credentials(header: str | None) -> None:
    store = parse_tokens(f"{WRITER}:lineage:write")
    assert store.authenticate(header) is None


def test_same_token_twice_merges_scopes() -> None:
    store = parse_tokens(f"{WRITER}:runs:read;{WRITER}:runs:write")
    principal = store.authenticate(f"Bearer {WRITER}")
    assert principal is not None and principal.scopes == {Scope.RUNS_READ, Scope.RUNS_WRITE}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (WRITER, "expected <token>:<scope>"),
        (f"{WRITER}:", "missing scopes"),
        (f"{WRITER}:admin", "unknown or missing scopes ['admin']"),
        ("short:runs:read", "at least 16"),
        (f"{WRITER} x:runs:read", "whitespace"),
    ],
)
def test_bad_token_lists_name_the_entry_not_the_token(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="token entry 1") as err:
        parse_tokens(text)
    assert fragment in str(err.value)
    assert WRITER not in str(err.value)


def test_tokens_from_a_mounted_file(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "tokens"
    path.write_text(f"{READER}:runs:read\n")
    settings = from_env(
        {
            "LINEAGEHUB_GATEWAY_TOKENS": f"{WRITER}:lineage:write",
            "LINEAGEHUB_GATEWAY_TOKENS_FILE": str(path),
        }
    )
    assert len(settings.tokens) == 2
    assert not settings.tokens.anonymous
    assert from_env({"LINEAGEHUB_GATEWAY_AUTH": "none"}).tokens.anonymous


def test_settings_defaults_from_an_empty_environment() -> None:
    s = from_env({})
    assert s.max_body_bytes == 5 * 1024 * 1024
    assert s.cors_origins == ()
    assert s.required == {"kafka", "kubernetes"}
    assert s.lineage_topic == "openlineage-events"


def test_token_bucket_refills_at_the_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("a")
    assert wait == pytest.approx(0.5)
    assert limiter.acquire("b") == 0.0  # buckets are per key
    now[0] += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    now[0] += 100  # refill is capped at the burst
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") > 0


def test_token_bucket_evicts_the_least_recent_key() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=lambda: 0.0, max_keys=2)
    limiter.acquire("a")
    limiter.acquire("b")
    limiter.acquire("c")  # evicts "a", which starts with a full bucket again
    assert limiter.acquire("a") == 0.0


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.2) == "2"
    assert retry_after_header(5) == "5"


def test_a_token_of_exactly_the_minimum_length_is_accepted() -> None:
    """The format says at least 16 characters: 16 is in, 15 is out."""
    tokens = parse_tokens("a" * 16 + ":runs:read")
    assert tokens.authenticate("Bearer " + "a" * 16) is not None
    with pytest.raises(ValueError, match="at least 16"):
        parse_tokens("b" * 15 + ":runs:read")


def test_no_rate_means_no_limit_and_a_burst_below_one_still_lets_one_through() -> None:
    unlimited = RateLimiter(rate=0.0, burst=1, clock=lambda: 0.0)
    assert [unlimited.acquire("a", cost=50.0) for _ in range(100)] == [0.0] * 100
    one = RateLimiter(rate=1.0, burst=0, clock=lambda: 0.0)
    assert one.acquire("a") == 0.0  # a burst of 0 would refuse everyone forever
    assert one.acquire("a") == pytest.approx(1.0)


def test_the_wait_is_what_the_missing_tokens_take_to_refill() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=4.0, burst=2, clock=lambda: now[0])
    assert limiter.acquire("a", cost=2.0) == 0.0  # the whole burst
    now[0] += 0.25  # one token back
    assert limiter.acquire("a", cost=3.0) == pytest.approx((3.0 - 1.0) / 4.0)
