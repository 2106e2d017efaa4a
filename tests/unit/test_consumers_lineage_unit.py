"""The lineage consumer's decisions without Kafka: Marquez answers, retries, DLQ headers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiokafka.errors import MessageSizeTooLargeError

from consumers.dlq import DeadLetterQueue, Headers, Rejection, dlq_headers, header
from consumers.lineage.consumer import Gate, LineageConsumer, LineageSettings
from consumers.lineage.marquez import LINEAGE_PATH, PROBE_PATH, MarquezClient, Outcome, classify
from consumers.lineage.validate import validate
from consumers.retry import Backoff
from consumers.samples import lineage_bytes
from tests.http_answers import Answering

#: Seconds a step may take before the test fails: Marquez answers in ms here, but a
#: loaded CI machine can hold a round trip up for seconds.
WAIT = 30.0


@dataclass
class Rec:
    value: bytes | None
    topic: str = "openlineage-events"
    partition: int = 1
    offset: int = 42
    key: bytes | None = b"run-key"
    headers: list[tuple[str, bytes]] = field(default_factory=lambda: [("trace", b"t1")])


@dataclass
class FakeProducer:
    sent: list[tuple[str, bytes | None, bytes | None, Headers]] = field(default_factory=list)
    too_large_once: bool = False

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: Headers | None = None,
    ) -> None:
        if self.too_large_once:
            self.too_large_once = False
            raise MessageSizeTooLargeError()
        self.sent.append((topic, value, key, headers or []))


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (201, Outcome.STORED),
        (200, Outcome.STORED),
        (400, Outcome.REJECTED),
        (422, Outcome.REJECTED),
        (413, Outcome.REJECTED),
        (404, Outcome.TRANSIENT),  # wrong URL: fix the deployment, don't drop events
        (401, Outcome.TRANSIENT),
        (429, Outcome.TRANSIENT),
        (500, Outcome.TRANSIENT),
        (503, Outcome.TRANSIENT),
    ],
)
def test_classify(status: int, outcome: Outcome) -> None:
    assert classify(status).outcome is outcome


async def test_client_maps_network_errors_to_transient() -> None:
    refused = MarquezClient("http://127.0.0.1:1")  # nothing listens on port 1
    result = await refused.post(b"{}")
    assert result.outcome is Outcome.TRANSIENT and result.status is None
    assert not await refused.ping()
    await refused.aclose()

    answered = asyncio.Event()

    async def slow(method: str, body: bytes) -> tuple[int, str]:
        await answered.wait()  # answers only after the client gave up
        return 201, "{}"

    async with Answering(slow) as marquez:
        client = MarquezClient(marquez.url, timeout=0.2)
        result = await client.post(b"{}")
        answered.set()
        assert result.outcome is Outcome.TRANSIENT and result.status is None
        assert result.detail.startswith("timeout")
        await client.aclose()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_not_followed_and_the_event_is_kept(status: int) -> None:
    """A proxy answering 3xx to a login page (200) must not make the event count as
    stored: the client follows no redirect and retries (the URL is a deployment error)."""
    seen: list[tuple[str, str]] = []

    async def redirect(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, request.path))
        return web.Response(status=status, headers={"Location": "/login"})

    async def login(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, request.path))
        return web.Response(text="<html>sign in</html>")

    app = web.Application()
    app.router.add_route("*", LINEAGE_PATH, redirect)
    app.router.add_route("*", PROBE_PATH, redirect)
    app.router.add_route("*", "/login", login)
    async with TestServer(app, host="127.0.0.1") as server:
        client = MarquezClient(str(server.make_url("")))
        try:
            result = await client.post(b"{}")
            assert result.outcome is Outcome.TRANSIENT and result.status == status
            assert "redirected to /login" in result.detail
            assert not await client.ping()
        finally:
            await client.aclose()
    assert seen == [("POST", LINEAGE_PATH), ("GET", PROBE_PATH)], "no redirect followed"


def test_dlq_headers_name_the_error() -> None:
    rec = Rec(value=b"{", headers=[("trace", b"t1"), ("dlq.reason", b"old")])
    headers = dict(dlq_headers(rec, Rejection("invalid_json", "x" * 5000), "lineage", now_ms=7))
    assert headers["dlq.reason"] == b"invalid_json"
    assert len(headers["dlq.error"]) == 1000
    assert headers["dlq.topic"] == b"openlineage-events"
    assert (headers["dlq.partition"], headers["dlq.offset"]) == (b"1", b"42")
    assert headers["dlq.consumer"] == b"lineage"
    assert headers["dlq.timestamp"] == b"7"
    assert headers["trace"] == b"t1"
    assert header(dlq_headers(rec, Rejection("schema", "y"), "c"), "dlq.reason") == b"schema"


async def test_dlq_truncates_what_does_not_fit() -> None:
    producer = FakeProducer(too_large_once=True)
    await DeadLetterQueue(producer, "otel").send(
        Rec(value=b"a" * 100_000), Rejection("decode", "x")
    )
    ((topic, value, key, headers),) = producer.sent
    assert topic == "openlineage-events.dlq"
    assert value is not None and len(value) == 64 * 1024
    assert key == b"run-key"
    assert header(headers, "dlq.truncated") == b"100000"


async def test_gate_closes_after_threshold_and_reopens() -> None:
    gate = Gate(threshold=2)
    assert not gate.failure()
    assert gate.failure()
    assert not gate.is_up
    assert not gate.failure()  # already closed: only the closing failure says so
    # Step the waiter by hand: while the gate is down it must stop at a pending future.
    waiter = gate.wait_up()
    try:
        blocked_on = waiter.send(None)
    except StopIteration:
        pytest.fail("wait_up() went through a closed gate")
    assert isinstance(blocked_on, asyncio.Future) and not blocked_on.done()
    gate.open()
    assert gate.is_up and gate.failures == 0
    assert blocked_on.done()  # opening the gate is what wakes the waiter
    with pytest.raises(StopIteration):
        waiter.send(None)


def consumer_with(marquez: Answering) -> tuple[LineageConsumer, FakeProducer]:
    settings = LineageSettings(
        bootstrap="unused",
        marquez_url=marquez.url,
        backoff=Backoff(base=0.001, factor=2, cap=0.01),
        breaker_threshold=3,
        max_server_error_attempts=3,
    )
    c = LineageConsumer(settings)
    producer = FakeProducer()
    c._dlq = DeadLetterQueue(producer, "lineage")
    return c, producer


async def test_transient_failures_are_retried_until_stored() -> None:
    answers = iter([503, 502, 201])
    seen: list[bytes] = []

    def handler(method: str, body: bytes) -> tuple[int, str]:
        seen.append(body)
        return next(answers), "{}"

    async with Answering(handler) as marquez:
        c, producer = consumer_with(marquez)
        body = lineage_bytes(str(uuid.uuid4()))
        await asyncio.wait_for(c._handle(Rec(value=body), validate(body)), WAIT)
        await c.marquez.aclose()
    assert seen == [body, body, body]  # the exact bytes each time
    assert c.stats.get("retried") == 2 and c.stats.get("posted") == 1
    assert not producer.sent


async def test_4xx_goes_to_the_dlq() -> None:
    async with Answering(lambda method, body: (400, "bad event")) as marquez:
        c, producer = consumer_with(marquez)
        body = lineage_bytes(str(uuid.uuid4()))
        await c._handle(Rec(value=body), validate(body))
        await c.marquez.aclose()
    ((topic, value, _, headers),) = producer.sent
    assert topic == "openlineage-events.dlq" and value == body
    assert header(headers, "dlq.reason") == b"http_4xx"
    assert b"bad event" in (header(headers, "dlq.error") or b"")


async def test_a_poison_500_is_dead_lettered_once_another_event_is_stored_between_failures() -> (
    None
):
    poison = lineage_bytes(str(uuid.uuid4()))
    good = lineage_bytes(str(uuid.uuid4()))
    calls = Calls()

    def handler(method: str, body: bytes) -> tuple[int, str]:
        if method == "GET":
            return 200, '{"namespaces": []}'  # Marquez answers its probe
        calls.record("poison" if body == poison else "POST")
        if body == poison:
            return 500, "NullPointerException"
        return 201, "{}"

    async with Answering(handler) as marquez:
        c, producer = consumer_with(marquez)
        task = asyncio.create_task(c._handle(Rec(value=poison), validate(poison)))
        # Past the attempt limit, and the probe answers: still no proof it is the event's own.
        await calls.until(lambda: calls.count("poison") > c.s.max_server_error_attempts)
        assert not producer.sent and c.gate.is_up
        await c._handle(Rec(value=good, offset=43), validate(good))  # Marquez stores another
        await asyncio.wait_for(task, WAIT)
        await c.marquez.aclose()
    (sent,) = producer.sent
    assert header(sent[3], "dlq.reason") == b"http_5xx"


async def test_a_500_for_every_event_dead_letters_none_however_long() -> None:
    stores = False
    calls = Calls()

    def handler(method: str, body: bytes) -> tuple[int, str]:
        if method == "GET":
            return 200, '{"namespaces": []}'  # its probe still answers
        calls.record("POST")
        if not stores:  # the database is read-only
            return 500, "cannot execute INSERT in a read-only transaction"
        return 201, "{}"

    async with Answering(handler) as marquez:
        c, producer = consumer_with(marquez)
        c.gate = Gate(2)
        bodies = [lineage_bytes(str(uuid.uuid4())) for _ in range(2)]
        tasks = [
            asyncio.create_task(c._handle(Rec(value=b, offset=i), validate(b)))
            for i, b in enumerate(bodies)
        ]
        # The gate closed on two events' 5xx; the prober lets one event test Marquez at a
        # time.
        await calls.until(lambda: calls.count("POST") > 4 * c.s.max_server_error_attempts)
        assert not producer.sent
        assert not c.gate.is_up and c.health.degraded_reason.startswith("marquez unavailable")
        stores = True
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        await c.marquez.aclose()
    assert not producer.sent and c.stats.get("posted") == 2
    assert c.gate.is_up and not c.health.degraded_reason


class Calls:
    """The method of each request Marquez got, in order; awaitable as it grows."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self._grew = asyncio.Event()

    def record(self, method: str) -> None:
        self.methods.append(method)
        self._grew.set()

    def count(self, method: str) -> int:
        return self.methods.count(method)

    async def until(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not check():
                self._grew.clear()
                await self._grew.wait()


async def test_marquez_down_closes_the_gate_and_the_prober_reopens_it() -> None:
    up = False
    calls = Calls()  # POSTs are events, GETs the prober's pings

    def handler(method: str, body: bytes) -> tuple[int, str] | None:
        calls.record(method)
        if not up:
            return None  # the connection is cut: a network error
        if method == "POST":
            return 201, "{}"
        return 200, "{}"

    async with Answering(handler) as marquez:
        c, _ = consumer_with(marquez)
        body = lineage_bytes(str(uuid.uuid4()))
        task = asyncio.create_task(c._handle(Rec(value=body), validate(body)))
        await calls.until(lambda: calls.count("GET") > 0)  # the prober starts when it closes
        assert not c.gate.is_up
        assert c.health.degraded_reason.startswith("marquez unavailable")
        # The gate closed on the threshold's failure: that many POSTs, no more.
        assert calls.count("POST") == c.s.breaker_threshold == c.stats.get("retried")
        # While it is down only the prober calls Marquez: let it probe a few more times,
        # and no POST may come in between (the worker waits on the gate, it does not spin).
        await calls.until(lambda: calls.count("GET") >= 6)
        assert calls.count("POST") == c.s.breaker_threshold
        assert not task.done()
        up = True
        await asyncio.wait_for(task, WAIT)
        await c.marquez.aclose()
    assert calls.count("POST") == c.s.breaker_threshold + 1  # the one that was stored
    assert c.stats.get("posted") == 1
    assert c.gate.is_up and not c.health.degraded_reason
