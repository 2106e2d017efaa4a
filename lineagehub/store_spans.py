"""A consumer's store spans, recorded without the OpenTelemetry SDK.

A store span is a CONSUMER span, a child of the span whose trace context the Kafka
record's headers carry (the gateway's request span for a lineage event POSTed to it).
A consumer makes one per traced record, or per trace context in a batch, so its cost
is paid per record: through the SDK (its context, sampler, span, processor and OTLP
encoder) ~140 µs of CPU, as much as storing the record. Here the parent is read from
the headers, the sampler's decision for a remote parent is a function of the trace
id and the parent's flag (`selftrace.remote_parent_sampling`, the SDK sampler's own
decision), the finished span is an `OtlpSpan` queued for a batch thread
(`span_batches`), which encodes it as OTLP protobuf (`otlp_spans`) and exports it the
way the SDK's spans go (`selftrace.span_recorder`).

Records without a context, records the sampler drops, and every record of the spans
topic make no span: a consumer never traces its own writes of spans, which would put a
span onto `otel-spans` for every span stored, in a loop.
"""

from __future__ import annotations

import contextlib
import random
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from types import TracebackType
from typing import Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.util import types

from lineagehub.otlp_spans import (
    KIND_CONSUMER,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNSET,
    Attributes,
    OtlpEvent,
    OtlpSpan,
    SharedAttributes,
    SpanAttributes,
)
from lineagehub.span_batches import SpanBatcher
from lineagehub.telemetry.spans import AttributeValue
from lineagehub.topics import SPANS_TOPIC
from lineagehub.tracecontext import (
    TraceParent,
    context_headers,
    format_traceparent,
    log_ids,
    record_headers,
    trace_state_text,
    values_trace,
)

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class KafkaRecord(Protocol):
    """The parts of a consumed Kafka record a store span names."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


class FinishedSpans(Protocol):
    """Where an ended `StoreSpan` goes (a `SpanRecorder`'s batches, or the gateway's
    span processors)."""

    def finish(self, span: OtlpSpan) -> None: ...


class SpanRecorder:
    """A service's store spans: sampled, queued, exported in batches (`span_recorder`
    in `lineagehub.selftrace` makes one from the environment)."""

    def __init__(
        self, scope: str, sample: Callable[[int, bool], bool], batcher: SpanBatcher
    ) -> None:
        self.scope = scope
        self.sample = sample
        self.batcher = batcher

    def child(self, headers: Sequence[tuple[str, bytes]] | None, name: str) -> OtlpSpan | None:
        """A CONSUMER span starting now, a child of the context `headers` carry; None
        without a valid context or when the sampler drops it."""
        parent = self.sampled_parent(headers)
        if parent is None:
            return None
        now = time.time_ns()
        return self.span(parent, name, now, now, {})

    def sampled_parent(
        self, headers: Sequence[tuple[str, bytes]] | None
    ) -> tuple[TraceParent, str] | None:
        """The parent `headers` carry and the trace state its child carries, when the
        sampler keeps that child; None without a valid context or when it drops it."""
        return self.sampled_values(*context_headers(headers))

    def sampled_values(
        self, traceparent: str | bytes | None, tracestate: str | bytes | None
    ) -> tuple[TraceParent, str] | None:
        """`sampled_parent` of a context's header values (`context_headers`)."""
        found = values_trace(traceparent, tracestate)
        if found is None:
            return None
        parent, state = found
        if not self.sample(parent.trace_id, parent.sampled):
            return None
        return parent, trace_state_text(state)

    @staticmethod
    def span(
        parent: tuple[TraceParent, str], name: str, start: int, end: int, attributes: Attributes
    ) -> OtlpSpan:
        """A CONSUMER span, a child of the remote `parent` (`sampled_parent`)."""
        context, state = parent
        # Positional (a third cheaper than by name, per traced record): OtlpSpan's order.
        return OtlpSpan(
            name,
            context.trace_id,
            random.getrandbits(64) or 1,  # the SDK's id generator, never 0
            context.span_id,
            start,
            end,
            KIND_CONSUMER,
            attributes,
            [],
            STATUS_UNSET,
            "",
            state,
            True,
        )

    def finish(self, span: OtlpSpan) -> None:
        self.batcher.add(span)

    def force_flush(self) -> None:
        self.batcher.force_flush()

    def shutdown(self) -> None:
        """Exports what is queued, then stops."""
        self.batcher.shutdown()


#: The attribute values OTLP takes as they are (a tuple: `isinstance` of a `|` union
#: builds the union at each call).
_SCALAR_TYPES = (str, bool, int, float)


def _plain(attributes: Mapping[str, types.AnyValue]) -> dict[str, AttributeValue]:
    """Attribute values OTLP's attribute encoding takes (scalars and lists of them);
    anything else as its text, as the SDK would not store it either."""
    out: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        if isinstance(value, _SCALAR_TYPES):
            out[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, _SCALAR_TYPES) for v in value):
            out[key] = list(value)
        elif value is not None:
            out[key] = str(value)
    return out


class StoreSpan(trace.Span):
    """An open span recorded without the SDK (a store span, the gateway's request span),
    current (OpenTelemetry's current span) while its work runs: log lines carry its ids,
    and that work may set its status or record an exception on it as on an SDK span."""

    def __init__(self, recorder: FinishedSpans, span: OtlpSpan, context: SpanContext) -> None:
        self._recorder = recorder
        self._span = span
        self._context = context
        self._attributes: dict[str, types.AnyValue] = {}
        self._ended = False

    def get_span_context(self) -> SpanContext:
        return self._context

    #: Made from the span's ids when first asked (`log_ids`, `record_headers`).
    _log_ids: dict[str, str] | None = None
    _record_headers: list[tuple[str, bytes]] | None = None

    def log_ids(self) -> dict[str, str]:
        """`trace_id` (32 hex) and `span_id` (16 hex) as a log line carries them
        (`tracelog.current_span_ids`), made once: shared, not to be changed."""
        ids = self._log_ids
        if ids is None:
            ids = self._log_ids = log_ids(self._span.trace_id, self._span.span_id)
        return ids

    def record_headers(self) -> list[tuple[str, bytes]]:
        """Kafka record headers naming this span as the parent (W3C `traceparent`, and
        `tracestate` when it carries one), made once (a batch request writes a record
        an event): shared, not to be changed."""
        headers = self._record_headers
        if headers is None:
            span = self._span
            parent = format_traceparent(span.trace_id, span.span_id, span.trace_flags)
            headers = self._record_headers = record_headers(parent, span.trace_state)
        return headers

    def is_recording(self) -> bool:
        return not self._ended

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if not self._ended:
            self._attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if not self._ended:
            self._attributes.update(attributes)

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        if not self._ended:
            when = time.time_ns() if timestamp is None else timestamp
            self._span.events.append(OtlpEvent(name, when, _plain(attributes or {})))

    def update_name(self, name: str) -> None:
        if not self._ended:
            self._span.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK's span: OK is final, UNSET changes nothing."""
        if self._ended or self._span.status_code == STATUS_OK:
            return
        if isinstance(status, Status):
            code, description = status.status_code, status.description
        else:
            code = status
        if code is StatusCode.UNSET:
            return
        self._span.status_code = STATUS_OK if code is StatusCode.OK else STATUS_ERROR
        self._span.status_message = (description or "") if code is StatusCode.ERROR else ""

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """An `exception` event with the SDK's attributes."""
        kind = type(exception)
        module = kind.__module__
        name = (
            f"{module}.{kind.__qualname__}"
            if module and module != "builtins"
            else kind.__qualname__
        )
        event: dict[str, types.AttributeValue] = {
            "exception.type": name,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        self.add_event("exception", {**event, **(attributes or {})}, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self._span.end_unix_nano = time.time_ns() if end_time is None else end_time
        if self._attributes:  # set while it was open (else none to add)
            self._span.attributes = {**self._span.attributes, **_plain(self._attributes)}
        self._recorder.finish(self._span)


#: What `record_span` gives when no span is made: one shared, reusable context.
_NO_SPAN: contextlib.AbstractContextManager[None] = contextlib.nullcontext()


def record_span(
    recorder: SpanRecorder | None,
    name: str,
    topic: str,
    headers: Sequence[tuple[str, bytes]] | None,
    attributes: Mapping[str, str | int],
) -> contextlib.AbstractContextManager[StoreSpan | None]:
    """A CONSUMER span, current while a consumer stores one Kafka record, a child of
    the context the record's headers carry; an exception leaving it is recorded on it
    (the SDK's `start_as_current_span`). None (no span work at all, not even a
    generator: most records) without a recorder, for the spans topic, without a
    context, and when the sampler drops it."""
    span = None if recorder is None or topic == SPANS_TOPIC else recorder.child(headers, name)
    if recorder is None or span is None:
        return _NO_SPAN
    span.attributes = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        **attributes,
    }
    return _Current(recorder, span)


class _Current(contextlib.AbstractContextManager[StoreSpan]):
    """A store span current while its record is stored; an exception leaving it is
    recorded on it. (A class: a generator-based context costs a traced record ~1 us more.)"""

    __slots__ = ("_live", "_token")
    _token: Token[Context]  # set by `__enter__`

    def __init__(self, recorder: SpanRecorder, span: OtlpSpan) -> None:
        self._live = StoreSpan(
            recorder, span, SpanContext(span.trace_id, span.span_id, False, _SAMPLED)
        )

    def __enter__(self) -> StoreSpan:
        self._token = otel_context.attach(trace.set_span_in_context(self._live))
        return self._live

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        live = self._live
        if isinstance(exc, Exception):  # not a cancellation: the work failed
            live.record_exception(exc)
            live.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
        otel_context.detach(self._token)
        live.end()


def batch_store_spans(
    recorder: SpanRecorder,
    name: str,
    records: Sequence[KafkaRecord],
    started_ns: int,
    attributes: Mapping[str, str | int],
) -> int:
    """After a batch was stored: for each trace context its records carry, a CONSUMER
    span from `started_ns` to now, a child of that context. A batch serves many traces,
    so each gets its own span rather than one batch span with many parents; and the
    records of one context (the events of one batch POST, all under its request span)
    share one span, `messaging.batch.message_count` of them from `messaging.kafka.offset`
    on, rather than fifty alike. Returns the spans made."""
    # By the context's header values: the records of one POST carry the same bytes.
    groups: dict[tuple[str | bytes | None, str | bytes | None], list[KafkaRecord]] = {}
    for record in records:
        headers: Sequence[tuple[str, bytes]] | None = getattr(record, "headers", None)
        if not headers or record.topic == SPANS_TOPIC:  # most records: nothing to do
            continue
        values = context_headers(headers)
        if values[0] is None:
            continue
        group = groups.get(values)
        if group is None:
            groups[values] = [record]
        else:
            group.append(record)
    ended = time.time_ns()
    spans: list[OtlpSpan] = []
    # What the spans of one partition carry alike, encoded once (`SharedAttributes`).
    shared: dict[tuple[str, int], SharedAttributes] = {}
    given = {k: attributes[k] for k in _PER_SPAN.intersection(attributes)}
    for (traceparent, tracestate), group in groups.items():
        parent = recorder.sampled_values(traceparent, tracestate)
        if parent is None:
            continue
        first = group[0]
        where = (first.topic, first.partition)
        common = shared.get(where)
        if common is None:
            common = shared[where] = SharedAttributes(
                {
                    "messaging.system": "kafka",
                    "messaging.destination.name": first.topic,
                    "messaging.destination.partition.id": str(first.partition),
                    **{k: v for k, v in attributes.items() if k not in _PER_SPAN},
                }
            )
        own: dict[str, AttributeValue] = {
            "messaging.kafka.offset": str(first.offset),
            "messaging.batch.message_count": len(group),
        }
        if given:  # the caller's values win, as given
            own.update(given)
        spans.append(recorder.span(parent, name, started_ns, ended, SpanAttributes(common, own)))
    recorder.batcher.add_all(spans)  # one hand-over for the batch
    return len(spans)


#: A batch span's attributes of its own (the rest its partition's spans share).
_PER_SPAN = frozenset({"messaging.kafka.offset", "messaging.batch.message_count"})
