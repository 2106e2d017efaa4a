"""Say what a slow step is doing and how far it got, from its first second.

On a terminal a step is one line rewritten in place; anywhere else (CI, a log
file) it is plain timestamped lines, one when the step starts, one every
`interval` seconds while it goes on, one when it ends. The figures come from the
tool's own output through a reader (`stack.toolstreams`); `run` feeds a tool's
lines to its reader and its log. Standard library only (`scripts/setup.sh` runs
`python3 -m stack.progress` before the virtualenv exists).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TextIO

from stack import toolstreams
from stack.toolstreams import StreamReader

#: Seconds between two plain lines of one step; a terminal line is redrawn at most every TTY_EVERY.
PLAIN_EVERY = 15.0
TTY_EVERY = 0.2


def elapsed(seconds: float) -> str:
    """`4 s`, `3 min 10 s`, `1 h 02 min`."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def line(what: str, detail: str, seconds: float) -> str:
    """`building X: 412/1,950 packages compiled, 3 min 10 s`."""
    return f"{what}: {detail}, {elapsed(seconds)}" if detail else f"{what}, {elapsed(seconds)}"


def fit(text: str, width: int) -> str:
    """Cut a terminal line to `width` columns so rewriting it in place never wraps."""
    return text if len(text) < width else text[: max(0, width - 2)] + "…"


class Reporter:
    """Where steps are told: a stream, a terminal or not, and the clocks."""

    def __init__(
        self,
        stream: TextIO | None,
        *,
        tty: bool | None = None,
        interval: float = PLAIN_EVERY,
        clock: Callable[[], float] = time.monotonic,
        stamp: Callable[[], str] = lambda: time.strftime("%H:%M:%S"),
        width: Callable[[], int] = lambda: shutil.get_terminal_size().columns,
    ) -> None:
        self.stream = stream
        self.tty = bool(stream is not None and stream.isatty()) if tty is None else tty
        self.interval = interval
        self.clock = clock
        self.stamp = stamp
        self.width = width
        self.open: Step | None = None  # the step whose line is on the terminal now
        self.lock = threading.RLock()  # steps told from another thread (`aside`) too

    def step(self, what: str, detail: str = "") -> Step:
        return Step(self, what, detail)

    def say(self, text: str) -> None:
        """A line that stays (e.g. `etcd: up in 2.1 s`), above any step's moving line."""
        if self.stream is None:
            return
        with self.lock:
            if self.tty:
                self._write("\r\x1b[K" + text + "\n")
                if self.open is not None:
                    self.open.redraw()
            else:
                self._write(f"{self.stamp()} {text}\n")

    def _write(self, text: str) -> None:
        assert self.stream is not None
        self.stream.write(text)
        self.stream.flush()


class Step:
    """One slow step. `update` with the tool's figures; `done` or `fail` ends it.
    As a context manager it ends as failed when the block raises."""

    def __init__(self, reporter: Reporter, what: str, detail: str = "") -> None:
        self.reporter = reporter
        self.what = what
        self.detail = detail
        self.started = reporter.clock()
        self.last_shown: float | None = None
        self.ended = False
        self._show(force=True)

    @property
    def seconds(self) -> float:
        return self.reporter.clock() - self.started

    def update(self, detail: str) -> None:
        self.detail = detail
        self._show(force=False)

    def tick(self) -> None:
        """Time passed without news: a terminal line shows the time moving on."""
        self._show(force=False)

    def redraw(self) -> None:
        self._show(force=True)

    def clear(self) -> None:
        """End without a line of its own (its caller says the outcome)."""
        if self.ended:
            return
        self.ended = True
        rep = self.reporter
        with rep.lock:
            if rep.stream is not None and rep.tty and rep.open is self:
                rep._write("\r\x1b[K")
            if rep.open is self:
                rep.open = None

    def done(self, detail: str | None = None) -> None:
        self._end("done", detail)

    def fail(self, detail: str | None = None) -> None:
        self._end("FAILED", detail)

    def _end(self, word: str, detail: str | None) -> None:
        if self.ended:
            return
        self.ended = True
        if detail is not None:
            self.detail = detail
        rep = self.reporter
        text = f"{self.what}: {word}" + (f", {self.detail}" if self.detail else "")
        text += f" in {elapsed(self.seconds)}"
        with rep.lock:
            if rep.stream is not None:
                if rep.tty:
                    rep._write("\r\x1b[K" + text + "\n")
                else:
                    rep._write(f"{rep.stamp()} {text}\n")
            if rep.open is self:
                rep.open = None

    def _show(self, *, force: bool) -> None:
        rep = self.reporter
        if rep.stream is None or self.ended:
            return
        now = rep.clock()
        due = self.last_shown is None or now - self.last_shown >= (
            TTY_EVERY if rep.tty else rep.interval
        )
        if not (force or due):
            return
        self.last_shown = now
        text = line(self.what, self.detail, now - self.started)
        with rep.lock:
            if rep.tty:
                rep.open = self
                rep._write("\r\x1b[K" + fit(text, rep.width()))
            else:
                rep._write(f"{rep.stamp()} {text}\n")

    def __enter__(self) -> Step:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self.done()
        else:
            self.fail()


_chosen: list[Reporter] = [Reporter(None)]
_thread = threading.local()


def use(reporter: Reporter) -> None:
    """Make `reporter` the one the stack's steps tell (the CLI's stdout)."""
    _chosen[0] = reporter


def current() -> Reporter:
    """The reporter steps tell; a quiet one unless a command chose one (tests)."""
    aside_reporter: Reporter | None = getattr(_thread, "reporter", None)
    return aside_reporter or _chosen[0]


class _Said:
    """A text stream whose every line is a `say` of another reporter."""

    def __init__(self, to: Reporter) -> None:
        self.to = to
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            said, self.pending = self.pending.split("\n", 1)
            self.to.say(said)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def aside(label: str, every: float = 60.0) -> Iterator[Reporter]:
    """Steps told in this thread (a job running beside the step on the terminal line)
    become plain lines said through the chosen reporter, each marked `label`."""
    chosen = _chosen[0]
    stream = _Said(chosen) if chosen.stream is not None else None
    _thread.reporter = Reporter(
        stream,  # type: ignore[arg-type]  # a stream of lines, all a Reporter writes to
        tty=False,
        interval=every,
        clock=chosen.clock,
        stamp=lambda: label,
    )
    try:
        yield _thread.reporter
    finally:
        _thread.reporter = None


def for_stdout() -> Reporter:
    return Reporter(sys.stdout)


def _pump(stream: IO[str], stderr: bool, lines: queue.Queue[tuple[bool, str | None]]) -> None:
    for text in stream:
        lines.put((stderr, text))
    lines.put((stderr, None))


def run(
    argv: Sequence[str],
    reader: StreamReader,
    step: Step,
    log: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    user: str | None = None,
    stdin: str | None = None,
) -> int:
    """Run a tool; each line of its stdout and stderr goes to `reader` (and what it
    returns to `log`); the step shows the reader's figures as they change."""
    log.parent.mkdir(parents=True, exist_ok=True)
    lines: queue.Queue[tuple[bool, str | None]] = queue.Queue()
    with log.open("a", encoding="utf-8", errors="replace") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        started = time.monotonic()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            cwd=cwd,
            env=env,
            user=user,
        )
        assert proc.stdout is not None and proc.stderr is not None
        if proc.stdin is not None:
            with proc.stdin:
                proc.stdin.write(stdin or "")
        pumps = [
            threading.Thread(target=_pump, args=(proc.stdout, False, lines), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, True, lines), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        open_streams = len(pumps)
        while open_streams:
            try:
                stderr, text = lines.get(timeout=1.0)
            except queue.Empty:
                step.tick()
                continue
            if text is None:
                open_streams -= 1
                continue
            logged = reader.feed(text, stderr=stderr)
            if logged:
                out.write(logged if logged.endswith("\n") else logged + "\n")
            step.update(reader.detail())
        code = proc.wait()
        out.write(f"# exit {code} after {time.monotonic() - started:.1f}s\n")
    return code


def tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _reader(kind: str, lock: str | None) -> StreamReader:
    if kind == "pip":
        return toolstreams.Pip()
    if kind == "npm":
        if lock is None:
            raise SystemExit("progress: --reader npm needs --lock PACKAGE-LOCK.json")
        return toolstreams.npm_reader_for(Path(lock).read_text())
    if kind == "apt":
        return toolstreams.Apt()
    if kind == "maven":
        return toolstreams.Maven()
    return toolstreams.Lines()


def main(argv: Sequence[str] | None = None) -> int:
    """`python3 -m stack.progress --what TEXT --reader pip --log FILE -- COMMAND...`"""
    parser = argparse.ArgumentParser(prog="python3 -m stack.progress", description=__doc__)
    parser.add_argument("--what", required=True, help="what the step does, for people")
    readers = ("pip", "npm", "apt", "maven", "lines")
    parser.add_argument("--reader", choices=readers, default="lines")
    parser.add_argument("--lock", help="package-lock.json (for --reader npm)")
    parser.add_argument("--log", required=True, type=Path, help="where the tool's output goes")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    reader = _reader(args.reader, args.lock)
    step = for_stdout().step(args.what)
    try:
        code = run(command, reader, step, args.log, env=dict(os.environ))
    except OSError as err:
        step.fail(str(err))
        return 127
    if code == 0:
        step.done(reader.detail())
        return 0
    step.fail(f"exit code {code}; log {args.log}")
    print(tail(args.log), file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
