"""A JSONResponse rendered by orjson (several times faster than the standard encoder on
the ingestion route's answers), falling back to the standard one for what orjson
refuses (a lone surrogate quoted back in an error, an integer beyond 64 bits)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except orjson.JSONEncodeError:
            return super().render(content)


def error_response(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    """The gateway's error answer: `{"detail": ...}` with `status` (and `headers`)."""
    return FastJSONResponse({"detail": detail}, status_code=status, headers=headers)
