"""Finished `OtlpSpan`s queued and exported in batches by one thread, as the SDK's
BatchSpanProcessor does with its spans, with the same OTEL_BSP_* settings: a batch
leaves when `max_export_batch_size` spans wait or `schedule_delay_ms` after the last
one left; a span finding `max_queue_size` waiting is dropped (counted, and said once).
`add` (a span) or `add_all` (a consumer's spans of one stored batch, handed over at
once) is all a service's hot path pays: an append and, at a full batch, a wake-up."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lineagehub.otlp_spans import OtlpSpan

log = logging.getLogger(__name__)

#: The export of one batch, to each of the service's destinations.
Export = Callable[[Sequence[OtlpSpan]], None]

#: The SDK's variables and defaults (opentelemetry.sdk.environment_variables).
BSP_VARIABLES = {
    "OTEL_BSP_SCHEDULE_DELAY": 5000,
    "OTEL_BSP_MAX_QUEUE_SIZE": 2048,
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": 512,
    "OTEL_BSP_EXPORT_TIMEOUT": 30000,
}


@dataclass(frozen=True)
class BatchSettings:
    schedule_delay_ms: int = 5000
    max_queue_size: int = 2048
    max_export_batch_size: int = 512
    export_timeout_ms: int = 30000

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> BatchSettings:
        """OTEL_BSP_* from `environ` (not the process's environment, which the SDK
        reads); a value that is not a positive integer is refused naming the variable,
        where the SDK would log and use its default."""
        values: list[int] = []
        for name, default in BSP_VARIABLES.items():
            text = environ.get(name, "").strip()
            try:
                value = int(text) if text else default
            except ValueError:
                value = 0
            if value <= 0:
                raise ValueError(f"{name}={text!r} is not a positive integer (default {default})")
            values.append(value)
        settings = cls(*values)
        if settings.max_export_batch_size > settings.max_queue_size:
            raise ValueError(
                f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE={settings.max_export_batch_size} is over "
                f"OTEL_BSP_MAX_QUEUE_SIZE={settings.max_queue_size}: a batch is taken "
                "from the queue, so make it at most the queue's size"
            )
        return settings


class SpanBatcher:
    def __init__(
        self,
        export: Export,
        settings: BatchSettings,
        name: str,
        on_shutdown: Sequence[Callable[[], None]] = (),
        on_flush: Sequence[Callable[[], object]] = (),
    ) -> None:
        self._export = export
        self._on_shutdown = on_shutdown
        #: Waits until the exporters delivered what they were handed (`force_flush`).
        self._on_flush = on_flush
        self.settings = settings
        self._queue: collections.deque[OtlpSpan] = collections.deque()
        self._wake = threading.Condition()
        self._exporting = threading.Lock()
        self._stopped = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add(self, span: OtlpSpan) -> None:
        if self._stopped:
            return
        queue = self._queue
        if len(queue) >= self.settings.max_queue_size:
            self._drop(1)
            return
        queue.append(span)
        if len(queue) == self.settings.max_export_batch_size:
            with self._wake:
                self._wake.notify()

    def add_all(self, spans: Sequence[OtlpSpan]) -> None:
        """`add` each of `spans`, in one hand-over: those past `max_queue_size` dropped."""
        if self._stopped or not spans:
            return
        queue, settings = self._queue, self.settings
        room = settings.max_queue_size - len(queue)
        if room < len(spans):
            self._drop(len(spans) - max(room, 0))
            spans = spans[: max(room, 0)]
        before = len(queue)
        queue.extend(spans)
        if before < settings.max_export_batch_size <= len(queue):
            with self._wake:
                self._wake.notify()

    def _drop(self, count: int) -> None:
        if not self.dropped:
            log.warning("self-trace queue full: spans are dropped until it drains")
        self.dropped += count

    def finish(self, span: OtlpSpan) -> None:
        """An ended span, queued (`add`): what an open span recorded without the SDK
        hands itself to when it ends (`store_spans.StoreSpan`)."""
        self.add(span)

    def _run(self) -> None:
        delay = self.settings.schedule_delay_ms / 1000
        while not self._stopped:
            with self._wake:
                if len(self._queue) < self.settings.max_export_batch_size:
                    self._wake.wait(delay)
            self._drain(whole=False)

    def _drain(self, *, whole: bool) -> None:
        """Export what waits, a batch at a time: everything (`whole`), or until less than
        a batch is left after the first."""
        size = self.settings.max_export_batch_size
        with self._exporting:  # one export at a time, in queue order
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(size, len(self._queue)))]
                try:
                    self._export(batch)
                except Exception:  # our own spans lost must not hurt the service
                    log.exception("self-trace spans not exported")
                if not whole and len(self._queue) < size:
                    return

    def force_flush(self) -> None:
        """Export every span added so far, now (in the caller's thread), and wait until
        the exporters delivered it."""
        self._drain(whole=True)
        for flush in self._on_flush:
            try:
                flush()
            except Exception:
                log.exception("self-trace exporter did not flush")

    def shutdown(self) -> None:
        """Export what is left, stop the thread, then the exporters (`on_shutdown`);
        later spans are ignored."""
        if self._stopped:
            return
        self._stopped = True
        with self._wake:
            self._wake.notify()
        self._thread.join(self.settings.export_timeout_ms / 1000)
        self._drain(whole=True)
        for close in self._on_shutdown:
            try:
                close()
            except Exception:
                log.exception("self-trace exporter did not stop cleanly")
