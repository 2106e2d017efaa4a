"""A stored batch's store spans share their partition's attributes, encoded once
(`SharedAttributes`): the bytes must stay the SDK encoder's for the same spans, and the
attributes what each span carries (its own offset and count, the caller's values)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from lineagehub.otlp_spans import OtlpSpan, encode_request, readable
from lineagehub.selftrace import remote_parent_sampling
from lineagehub.store_spans import SpanRecorder, batch_store_spans
from lineagehub.topics import LINEAGE_TOPIC

RESOURCE = {"service.name": "lineage-hub-warehouse"}


class Record:
    def __init__(self, partition: int, offset: int, trace: int) -> None:
        self.topic, self.partition, self.offset = LINEAGE_TOPIC, partition, offset
        self.headers: tuple[tuple[str, bytes | None], ...] = (
            ("traceparent", f"00-{trace:032x}-{trace + 1:016x}-01".encode()),
        )


class Kept:
    def __init__(self) -> None:
        self.spans: list[OtlpSpan] = []

    def add_all(self, spans: Sequence[OtlpSpan]) -> None:
        self.spans.extend(spans)


def _stored(records: list[Record], attributes: dict[str, str | int]) -> list[OtlpSpan]:
    kept = Kept()
    recorder = SpanRecorder("w", remote_parent_sampling({}), kept)  # type: ignore[arg-type]
    made = batch_store_spans(recorder, "store x", records, 5, attributes)
    assert made == len(kept.spans)
    return kept.spans


def test_a_batchs_spans_encode_as_the_sdk_encodes_them() -> None:
    records = [Record(0, 10, 1), Record(0, 11, 1), Record(0, 12, 3), Record(2, 40, 5)]
    spans = _stored(records, {"lineagehub.store": "clickhouse", "lineagehub.retries": 2})
    assert len(spans) == 3
    sdk_resource, scope = Resource(RESOURCE), InstrumentationScope("w")
    sdk = encode_spans([readable(s, sdk_resource, scope) for s in spans])
    assert encode_request(spans, RESOURCE, "w") == sdk.SerializeToString()
    # Encoded twice (the shared part from its cache the second time): the same bytes.
    assert encode_request(spans, RESOURCE, "w") == sdk.SerializeToString()
    assert [dict(s.attributes) for s in spans] == [
        {
            "messaging.system": "kafka",
            "messaging.destination.name": LINEAGE_TOPIC,
            "messaging.destination.partition.id": partition,
            "lineagehub.store": "clickhouse",
            "lineagehub.retries": 2,
            "messaging.kafka.offset": offset,
            "messaging.batch.message_count": count,
        }
        for partition, offset, count in (("0", "10", 2), ("0", "12", 1), ("2", "40", 1))
    ]


def test_the_callers_attributes_win_and_no_key_is_written_twice() -> None:
    (span,) = _stored([Record(1, 7, 9)], {"messaging.kafka.offset": "given", "a": "b"})
    assert dict(span.attributes) == {
        "messaging.system": "kafka",
        "messaging.destination.name": LINEAGE_TOPIC,
        "messaging.destination.partition.id": "1",
        "a": "b",
        "messaging.kafka.offset": "given",
        "messaging.batch.message_count": 1,
    }
    assert len(span.attributes) == 6 and span.attributes["a"] == "b"
    sdk = encode_spans([readable(span, Resource(RESOURCE), InstrumentationScope("w"))])
    assert encode_request([span], RESOURCE, "w") == sdk.SerializeToString()


def test_records_of_one_context_share_a_span_whatever_else_their_headers_hold() -> None:
    """Grouped by the context the headers give (the last `traceparent`, its
    `tracestate`), not by how they are written: other headers, an earlier
    `traceparent`, a value that is not text do not split the group; another
    `tracestate` does (its span carries it)."""
    same = [Record(0, offset, 1) for offset in range(5)]
    parent = same[0].headers[0]
    same[1].headers = (("x-other", b"1"), parent)
    same[2].headers = (("traceparent", Record(0, 0, 7).headers[0][1]), parent)
    same[3].headers = (parent, ("traceparent", None))
    same[4].headers = (parent, ("tracestate", b"k=v"))
    spans = _stored(same, {})
    assert [(s.attributes["messaging.kafka.offset"], s.trace_state) for s in spans] == [
        ("0", ""),
        ("4", "k=v"),
    ]
    assert spans[0].attributes["messaging.batch.message_count"] == 4
    assert {s.parent_span_id for s in spans} == {2}
