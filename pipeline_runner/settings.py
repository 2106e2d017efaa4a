"""Runner settings that are not part of the PipelineRun API: read from the environment,
with defaults fit for a stage Job."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

#: Largest source a stage reads (bytes). A bigger file or download fails SizeLimitExceeded.
DEFAULT_MAX_SOURCE_BYTES = 8 * 1024**3
TERMINATION_LOG_ENV = "LINEAGEHUB_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
SERVICE_NAME = "lineage-hub-runner"


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{key} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{key} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    max_source_bytes: int = DEFAULT_MAX_SOURCE_BYTES
    """`LINEAGEHUB_MAX_SOURCE_BYTES`."""
    http_retries: int = 3
    """`LINEAGEHUB_HTTP_RETRIES`: extra attempts after a failed download."""
    http_timeout: float = 30.0
    """`LINEAGEHUB_HTTP_TIMEOUT` in seconds (connect and between reads)."""
    http_backoff: float = 0.5
    """First delay between download attempts, doubled each time."""
    kafka_bootstrap: str | None = None
    """`KAFKA_BOOTSTRAP`: where lineage and telemetry go; nothing is published when unset."""
    service_name: str = SERVICE_NAME
    """`OTEL_SERVICE_NAME`."""
    otlp_direct: bool = False
    """`LINEAGEHUB_OTLP_DIRECT=1` with `OTEL_EXPORTER_OTLP_ENDPOINT` set: spans and metrics
    also go straight to an OTLP collector."""
    telemetry_required: bool = False
    """`LINEAGEHUB_TELEMETRY_REQUIRED=1`: a stage whose lineage or telemetry could not be
    delivered exits non-zero (by default it warns and keeps the data result)."""
    termination_log: str = DEFAULT_TERMINATION_LOG
    """`LINEAGEHUB_TERMINATION_LOG`."""
    chdb_path: str | None = None
    """`CLICKHOUSE_CHDB_PATH`: clickhouse:// sinks go to this embedded chdb instead of a
    server."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            max_source_bytes=_int(env, "LINEAGEHUB_MAX_SOURCE_BYTES", DEFAULT_MAX_SOURCE_BYTES),
            http_retries=_int(env, "LINEAGEHUB_HTTP_RETRIES", 3),
            http_timeout=_float(env, "LINEAGEHUB_HTTP_TIMEOUT", 30.0),
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP") or None,
            service_name=env.get("OTEL_SERVICE_NAME") or SERVICE_NAME,
            otlp_direct=env.get("LINEAGEHUB_OTLP_DIRECT") == "1"
            and bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT")),
            telemetry_required=env.get("LINEAGEHUB_TELEMETRY_REQUIRED") == "1",
            termination_log=env.get(TERMINATION_LOG_ENV) or DEFAULT_TERMINATION_LOG,
            chdb_path=env.get("CLICKHOUSE_CHDB_PATH") or None,
        )
