"""lineage-hub's consumers' hot paths, compiled (`native/src/lib.rs`): the lineage
warehouse decoder and the batch digest."""

from typing import Any

class Buffer:
    """A column's bytes, read-only, through the buffer protocol (`memoryview`,
    `pyarrow.py_buffer`), without a copy."""

    def __len__(self) -> int: ...

def decode_batch(
    records: list[bytes],
) -> tuple[list[tuple[int, int] | None], dict[str, Any], dict[str, Any], dict[str, Any]] | None:
    """For each record its count of io and edge rows, or None where the Python rules
    must decide it; each table as {column: buffers}. None when a column outgrows
    Arrow's 32-bit offsets."""

def batch_digest(records: list[Any]) -> str | None:
    """`consumers.otel.consumer.batch_digest`'s digits, hashed without the GIL; None when
    a record is not as aiokafka gives one (int offset and timestamp, bytes or None)."""
