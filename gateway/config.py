"""Gateway settings, read once from the environment (and the CLI's flags)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.auth import TokenStore, parse_tokens
from lineagehub.topics import LINEAGE_TOPIC

MiB = 1024 * 1024

ENV_TOKENS = "LINEAGEHUB_GATEWAY_TOKENS"
ENV_TOKENS_FILE = "LINEAGEHUB_GATEWAY_TOKENS_FILE"
ENV_AUTH = "LINEAGEHUB_GATEWAY_AUTH"


@dataclass(frozen=True)
class Settings:
    """Everything the app needs to know; tests build one directly."""

    tokens: TokenStore = field(default_factory=TokenStore)
    kafka_bootstrap: str = ""
    lineage_topic: str = LINEAGE_TOPIC
    kafka_timeout_s: float = 10.0
    """How long one publish may wait for the broker's acknowledgement before 503."""
    kafka_linger_ms: int = 2
    """How long the producer holds a record for others to share its produce request: the
    records of concurrent requests go to the broker together (each still waits for acks).
    Each one-event request waits this long at least: 5 ms capped 16 concurrent callers
    near 2.7k events/s (bare producer, acks=all), 2 ms near 5k for ~4% more CPU an event."""
    retry_after_s: int = 5
    """Retry-After sent with a 503 when Kafka (or the API server) is unavailable."""
    kubeconfig: str = ""
    """Empty: in-cluster config when running in a pod, else no Kubernetes API."""
    namespace: str = "default"
    """Namespace of runs when a request names none."""
    clickhouse_url: str = ""
    """`clickhouse://user:pass@host:9000/db` (native protocol)."""
    clickhouse_http_url: str = ""
    """ClickHouse's HTTP interface (`http://host:8123/?database=otel`), or on the local
    stack the otel consumer's health port, which owns the chdb folder and answers it."""
    chdb_path: str = ""
    """An embedded ClickHouse (chdb) folder this process may open itself; only for
    a folder no other process holds (chdb allows one owner)."""
    clickhouse_database: str = "otel"
    marquez_url: str = ""
    required: frozenset[str] = frozenset({"kafka", "kubernetes"})
    """Dependencies whose failure makes /api/v1/health answer 503."""
    max_body_bytes: int = 5 * MiB
    """Limit on the request body as sent and, for gzip, after decompression."""
    max_event_bytes: int = 1_000_000
    """Limit on one serialized event: the broker's default `message.max.bytes` is ~1 MiB."""
    max_batch_items: int = 1000
    rate_per_s: float = 100.0
    """Token-bucket refill rate per token (per client address when anonymous)."""
    rate_burst: int = 200
    cors_origins: tuple[str, ...] = ()
    """Empty: no CORS headers at all (the default)."""
    health_timeout_s: float = 3.0
    health_interval_s: float = 5.0
    """The stores are probed at most once per this many seconds; /api/v1/health answers
    from the last run in between (it needs no token, so callers must not drive probes)."""
    stream_seconds: float = 600.0
    """How long one live stream (SSE) runs before the client reconnects: bounds what a
    forgotten tab costs. At least one event is always sent."""
    public_read: bool = False
    """Callers without a token may read (`runs:read`, `lineage:read`): the console and
    the read API open to whoever reaches the gateway; writes still need a token."""
    console_links: dict[str, str] = field(default_factory=dict)
    """Base URLs the console links runs to: `marquez`, `jaeger`, `grafana` (public URLs)."""


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    return float(text) if text else default


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    return int(text) if text else default


def _list(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def load_tokens(env: Mapping[str, str]) -> TokenStore:
    """Tokens from `LINEAGEHUB_GATEWAY_TOKENS` and/or the file `LINEAGEHUB_GATEWAY_TOKENS_FILE`
    (a mounted Secret key; `;` or newlines between entries). `LINEAGEHUB_GATEWAY_AUTH=none`
    turns authentication off (every caller gets every scope): for a laptop only."""
    text = env.get(ENV_TOKENS, "")
    path = env.get(ENV_TOKENS_FILE, "").strip()
    if path:
        text = f"{text}\n{Path(path).read_text()}"
    anonymous = env.get(ENV_AUTH, "").strip().lower() == "none"
    return parse_tokens(text, anonymous=anonymous)


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    e = os.environ if env is None else env
    return Settings(
        tokens=load_tokens(e),
        kafka_bootstrap=e.get("KAFKA_BOOTSTRAP", "").strip(),
        lineage_topic=e.get("LINEAGEHUB_GATEWAY_TOPIC", "").strip() or LINEAGE_TOPIC,
        kafka_timeout_s=_float(e, "LINEAGEHUB_GATEWAY_KAFKA_TIMEOUT", 10.0),
        kafka_linger_ms=_int(e, "LINEAGEHUB_GATEWAY_KAFKA_LINGER_MS", 2),
        kubeconfig=e.get("KUBECONFIG", "").strip(),
        namespace=e.get("LINEAGEHUB_GATEWAY_NAMESPACE", "").strip() or "default",
        clickhouse_url=e.get("CLICKHOUSE_URL", "").strip(),
        clickhouse_http_url=e.get("CLICKHOUSE_HTTP_URL", "").strip(),
        chdb_path=e.get("LINEAGEHUB_GATEWAY_CHDB_PATH", "").strip(),
        clickhouse_database=e.get("CLICKHOUSE_DATABASE", "").strip() or "otel",
        marquez_url=e.get("MARQUEZ_URL", "").strip(),
        required=frozenset(_list(e.get("LINEAGEHUB_GATEWAY_REQUIRED", "kafka,kubernetes").lower())),
        max_body_bytes=_int(e, "LINEAGEHUB_GATEWAY_MAX_BODY_BYTES", 5 * MiB),
        max_event_bytes=_int(e, "LINEAGEHUB_GATEWAY_MAX_EVENT_BYTES", 1_000_000),
        max_batch_items=_int(e, "LINEAGEHUB_GATEWAY_MAX_BATCH", 1000),
        rate_per_s=_float(e, "LINEAGEHUB_GATEWAY_RATE", 100.0),
        rate_burst=_int(e, "LINEAGEHUB_GATEWAY_BURST", 200),
        health_interval_s=_float(e, "LINEAGEHUB_GATEWAY_HEALTH_INTERVAL", 5.0),
        cors_origins=_list(e.get("LINEAGEHUB_GATEWAY_CORS_ORIGINS", "")),
        public_read=e.get("LINEAGEHUB_GATEWAY_PUBLIC_READ", "").strip().lower()
        in {"1", "true", "yes"},
        console_links={
            key: url.rstrip("/")
            for key, url in (
                ("marquez", e.get("MARQUEZ_PUBLIC_URL", "") or e.get("MARQUEZ_URL", "")),
                ("jaeger", e.get("JAEGER_PUBLIC_URL", "") or e.get("JAEGER_QUERY_URL", "")),
                ("grafana", e.get("GRAFANA_PUBLIC_URL", "")),
            )
            if url.strip()
        },
    )
