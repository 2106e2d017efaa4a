"""The otel consumer's decoder for each topic: the Arrow batch decoders (`arrow_spans`,
`arrow_metrics`), imported at the first record rather than when the process starts.

pyarrow, numpy and ptars are ~40 MiB resident; a consumer at rest, or one whose topics
stay quiet, does not need them.
"""

from __future__ import annotations

from collections.abc import Mapping

from consumers.otel.columns import Pending, Rows


def decode_span_record(raw: bytes | None) -> Mapping[str, Rows | Pending]:
    """`arrow_spans.decode_trace_requests`."""
    from consumers.otel import arrow_spans

    return arrow_spans.decode_trace_requests(raw)


def decode_metric_record(raw: bytes | None) -> Mapping[str, Rows | Pending]:
    """`arrow_metrics.decode_metric_requests`."""
    from consumers.otel import arrow_metrics

    return arrow_metrics.decode_metric_requests(raw)
