"""Where and how self-tracing sends spans straight to a collector, read from the
environment a service is given (the SDK's exporters read the process's environment
themselves, so a service handed another mapping, or a test, would not be obeyed).

The SDK's variables and meaning: OTEL_EXPORTER_OTLP_TRACES_* before OTEL_EXPORTER_OTLP_*;
the traces endpoint used as it is, the general one with `/v1/traces` appended for
HTTP; headers `key=value` pairs, comma separated, percent-encoded; the timeout in
seconds (what the Python SDK takes); compression `gzip`, `deflate` (HTTP) or `none`;
for gRPC, TLS for `https`, else OTEL_EXPORTER_OTLP_INSECURE, else plaintext only for `http`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from opentelemetry.util.re import parse_env_headers

PREFIX, TRACES_PREFIX = "OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_TRACES_"
DEFAULT_TIMEOUT_S = 10.0
COMPRESSIONS = ("gzip", "deflate", "none")


@dataclass(frozen=True)
class EndpointSettings:
    endpoint: str
    headers: dict[str, str]
    timeout_s: float
    compression: str
    insecure: bool
    certificate_file: str | None  # HTTP's CA file


def _get(environ: Mapping[str, str], suffix: str) -> tuple[str, str]:
    """(variable, value): the traces variable when set, else the general one."""
    specific = TRACES_PREFIX + suffix
    if environ.get(specific, "").strip():
        return specific, environ[specific].strip()
    return PREFIX + suffix, environ.get(PREFIX + suffix, "").strip()


def settings(environ: Mapping[str, str], grpc: bool) -> EndpointSettings:
    """The collector's settings in `environ`; a value the SDK would only warn about and
    replace is refused, naming the variable."""
    traces = environ.get(TRACES_PREFIX + "ENDPOINT", "").strip()
    base = environ.get(PREFIX + "ENDPOINT", "").strip()
    # The traces endpoint is the URL itself; the general one is HTTP's base URL.
    endpoint = traces or (base if grpc else f"{base.removesuffix('/')}/v1/traces")
    _, header_text = _get(environ, "HEADERS")
    name, text = _get(environ, "TIMEOUT")
    try:
        timeout = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        timeout = -1.0
    if timeout <= 0:
        raise ValueError(f"{name}={text!r} is not a timeout: use a number of seconds above 0")
    name, compression = _get(environ, "COMPRESSION")
    compression = compression.lower() or "none"
    if compression not in COMPRESSIONS or (grpc and compression == "deflate"):
        raise ValueError(f"{name}={compression!r} is not supported: use gzip or none")
    # The SDK's rule: https is always TLS; else the INSECURE variable when given; else
    # plaintext only for an explicit http:// (a bare host:port gets TLS).
    _, insecure_text = _get(environ, "INSECURE")
    scheme = urlparse(endpoint).scheme
    if scheme == "https":
        insecure = False
    elif insecure_text:
        insecure = insecure_text.lower() == "true"
    else:
        insecure = scheme == "http"
    _, certificate = _get(environ, "CERTIFICATE")
    return EndpointSettings(
        endpoint=endpoint,
        headers=dict(parse_env_headers(header_text, liberal=True)),
        timeout_s=timeout,
        compression=compression,
        insecure=insecure,
        certificate_file=certificate or None,
    )
