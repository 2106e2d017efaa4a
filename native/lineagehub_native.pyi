"""lineage-hub's lineage warehouse decoder, compiled (`native/src/lib.rs`)."""

from typing import Any

def decode_batch(
    records: list[bytes],
) -> tuple[list[tuple[int, int] | None], dict[str, Any], dict[str, Any], dict[str, Any]] | None:
    """For each record its count of io and edge rows, or None where the Python rules
    must decide it; each table as {column: buffers}. None when a column outgrows
    Arrow's 32-bit offsets."""
