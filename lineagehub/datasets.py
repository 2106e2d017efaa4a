"""Dataset identity per the OpenLineage naming spec, from a source or sink URI.

- `file:///data/orders.csv`            -> ("file", "/data/orders.csv")
- `https://host:8443/exports/a.csv`    -> ("https://host:8443", "/exports/a.csv")
- `s3://bucket/path/to/key.parquet`    -> ("s3://bucket", "path/to/key.parquet")
- `clickhouse://host:9000/db.table`    -> ("clickhouse://host:9000", "db.table")

Credentials never become part of a name: `user:password@` is dropped from the
authority (`clickhouse://u:p@host:9000/db.t` is `clickhouse://host:9000`), and
`redact_uri` / `redact_text` drop it the same way from URIs shown in messages, span
attributes and status fields.

Stdlib only: the operator, the runner and the consumers all use it.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit, urlunsplit

# `scheme://userinfo@` inside free text: the userinfo is what gets dropped.
# Greedy up to the authority's last `@`: a password may hold a raw `@` of its own.
_USERINFO_IN_TEXT = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#]*@")


def _authority(parts: SplitResult) -> str:
    """host[:port] of a URI, without any userinfo."""
    return parts.netloc.rpartition("@")[2]


def dataset_of(uri: str) -> tuple[str, str]:
    """(namespace, name) of the dataset at `uri`; credentials are never part of it."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    host = _authority(parts)
    if scheme == "file":
        return "file", parts.path or "/"
    if scheme in {"http", "https"}:
        return f"{scheme}://{host}", parts.path or "/"
    if scheme == "s3":
        return f"s3://{host}", parts.path.lstrip("/")
    if scheme == "clickhouse":
        return f"clickhouse://{host}", parts.path.lstrip("/")
    raise ValueError(f"unsupported dataset URI scheme {scheme!r} in {redact_uri(uri)!r}")


def redact_uri(uri: str) -> str:
    """`uri` without its userinfo: `https://u:p@h/x` -> `https://h/x`."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return redact_text(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=_authority(parts)))


def redact_text(text: str) -> str:
    """`text` with the userinfo of every `scheme://user:password@` in it dropped."""
    return _USERINFO_IN_TEXT.sub(r"\1", text)
