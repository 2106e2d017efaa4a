"""A minimal client of ClickHouse's HTTP interface for read queries (stdlib only).

For callers that must stay light (`lineage-hub describe` runs where a stage runs);
the gateway has its own pooled client. Works against a ClickHouse server's HTTP
port and against the local stack's chdb owner, which answers the same protocol.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class QueryFailed(Exception):
    pass


def query_rows(
    url: str, sql: str, database: str = "otel", timeout_s: float = 15.0
) -> list[dict[str, Any]]:
    """Rows of one read query; `url` may carry `user:password@` (sent as ClickHouse's
    own headers, never in the query string)."""
    parts = urllib.parse.urlsplit(url)
    params = urllib.parse.urlencode(
        {"default_format": "JSONEachRow", "readonly": "1", "database": database}
    )
    host = parts.hostname or "127.0.0.1"
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    target = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", params, ""))
    headers = {}
    if parts.username:
        headers["X-ClickHouse-User"] = urllib.parse.unquote(parts.username)
        headers["X-ClickHouse-Key"] = urllib.parse.unquote(parts.password or "")
    request = urllib.request.Request(target, data=sql.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            text = reply.read().decode()
    except urllib.error.HTTPError as err:
        raise QueryFailed(
            f"ClickHouse HTTP {err.code}: {err.read()[:500].decode(errors='replace')}"
        ) from None
    except (urllib.error.URLError, OSError) as err:
        raise QueryFailed(f"ClickHouse at {url}: {err}") from None
    return [json.loads(line) for line in text.splitlines() if line.strip()]
