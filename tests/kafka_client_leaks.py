"""Which test leaves a Kafka client alive (LINEAGE_HUB_TRACK_KAFKA_CLIENTS=1).

The whole suite runs in one process (and one event loop): a client a test leaves alive
goes on with its connections, and connects again when another test restarts the broker
(another test then sees a socket it did not open, or a task it did not start). With the
variable set, every librdkafka handle (confluent_kafka's Producer, Consumer, AdminClient)
and every aiokafka client made meanwhile is noted with the test that made it and where;
at the end of each later test, one still alive (after a collection) and never closed,
or closed but connected again (an aiokafka client something still sends through), is
listed in the terminal summary, once, with that later test. (Not at the end of its own
test: a closed librdkafka producer's poller thread holds it until its next wake-up.)
Off by default: it costs a collection a test.
"""

from __future__ import annotations

import gc
import os
import traceback
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ENV = "LINEAGE_HUB_TRACK_KAFKA_CLIENTS"
_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass
class _Made:
    kind: str
    test: str
    where: str
    ref: weakref.ref[Any]
    closed: bool = False
    said: bool = False


class _Tracker:
    def __init__(self) -> None:
        self.test = "(collection)"
        self.made: dict[int, _Made] = {}
        self.left: list[str] = []

    def note(self, kind: str, client: object) -> None:
        frames = [
            f"{Path(f.filename).relative_to(_ROOT)}:{f.lineno} {f.name}"
            for f in traceback.extract_stack()[:-2]
            if f.filename.startswith(_ROOT + os.sep) and "/.venv/" not in f.filename
        ]
        key = id(client)
        self.made[key] = _Made(
            kind, self.test, " <- ".join(reversed(frames[-4:])), weakref.ref(client)
        )

    def closed(self, client: object) -> None:
        made = self.made.get(id(client))
        if made is not None and made.ref() is client:
            made.closed = True

    def after(self, test: str) -> None:
        gc.collect()
        for key, made in list(self.made.items()):
            client = made.ref()
            if client is None:
                del self.made[key]
            elif made.said or made.test == test:
                continue
            elif not made.closed:
                made.said = True
                self.left.append(
                    f"{made.test}: {made.kind} made at {made.where}; alive after {test}"
                )
            elif _connected(client):
                made.said = True
                self.left.append(
                    f"{made.test}: {made.kind} made at {made.where}; closed, yet connected"
                    f" again after {test}"
                )


def _connected(client: object) -> bool:
    """Whether an aiokafka client holds a connection (something still sends through it)."""
    conns: dict[Any, Any] = getattr(client, "_conns", {})
    return any(conn.connected() for conn in conns.values())


_tracker = _Tracker()


def _wrap_init(cls: Any, kind: str) -> None:
    init = cls.__init__

    def tracked(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        _tracker.note(kind, self)

    cls.__init__ = tracked


def _wrap_close(cls: Any, name: str) -> None:
    close: Callable[..., Any] = getattr(cls, name)

    def tracked(self: Any, *args: Any, **kwargs: Any) -> Any:
        _tracker.closed(self)
        return close(self, *args, **kwargs)

    setattr(cls, name, tracked)


def _librdkafka_subclass(base: type[Any], kind: str) -> type[Any]:
    """A subclass of a librdkafka handle type (a C type: its methods cannot be replaced)
    that notes each handle made and closed."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        base.__init__(self, *args, **kwargs)
        _tracker.note(kind, self)

    attrs: dict[str, Any] = {"__init__": __init__}
    if hasattr(base, "close"):

        def close(self: Any, *args: Any, **kwargs: Any) -> Any:
            _tracker.closed(self)
            return base.close(self, *args, **kwargs)

        attrs["close"] = close
    return type(base.__name__, (base,), attrs)


def install() -> None:
    import confluent_kafka
    import confluent_kafka.admin
    from aiokafka.client import AIOKafkaClient

    for name in ("Producer", "Consumer"):
        kind = f"librdkafka {name}"
        setattr(confluent_kafka, name, _librdkafka_subclass(getattr(confluent_kafka, name), kind))
    admin = _librdkafka_subclass(confluent_kafka.admin.AdminClient, "librdkafka AdminClient")
    confluent_kafka.admin.AdminClient = admin  # type: ignore[misc]
    confluent_kafka.AdminClient = admin  # type: ignore[attr-defined]
    _wrap_init(AIOKafkaClient, "aiokafka client")
    _wrap_close(AIOKafkaClient, "close")


def enabled() -> bool:
    return os.environ.get(ENV) == "1"


def pytest_configure(config: pytest.Config) -> None:
    if enabled():
        install()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _tracker.test = item.nodeid


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    try:
        yield
    finally:
        if enabled():
            _tracker.after(item.nodeid)
            _tracker.test = f"(after {item.nodeid})"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not enabled():
        return
    terminalreporter.section("Kafka clients left alive by a test")
    for line in _tracker.left or ["none"]:
        terminalreporter.write_line(line)
