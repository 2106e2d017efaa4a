"""Dataset identity per the OpenLineage naming spec, from a source or sink URI.

- `file:///data/orders.csv`            -> ("file", "/data/orders.csv")
- `https://host:8443/exports/a.csv`    -> ("https://host:8443", "/exports/a.csv")
- `s3://bucket/path/to/key.parquet`    -> ("s3://bucket", "path/to/key.parquet")
- `clickhouse://host:9000/db.table`    -> ("clickhouse://host:9000", "db.table")

Stdlib only: the operator, the runner and the consumers all use it.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def dataset_of(uri: str) -> tuple[str, str]:
    """(namespace, name) of the dataset at `uri`."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return "file", parts.path or "/"
    if scheme in {"http", "https"}:
        return f"{scheme}://{parts.netloc}", parts.path or "/"
    if scheme == "s3":
        return f"s3://{parts.netloc}", parts.path.lstrip("/")
    if scheme == "clickhouse":
        return f"clickhouse://{parts.netloc}", parts.path.lstrip("/")
    raise ValueError(f"unsupported dataset URI scheme {scheme!r} in {uri!r}")
