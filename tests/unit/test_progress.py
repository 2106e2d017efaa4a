"""How a step is told: an updating line on a terminal, timestamped lines elsewhere,
and the runner that feeds a real tool's output to its reader and its log."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from stack import progress
from stack.progress import Reporter, elapsed, fit, line
from stack.toolstreams import Lines


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reporter(tty: bool, clock: Clock, interval: float = 15.0) -> tuple[Reporter, io.StringIO]:
    out = io.StringIO()
    rep = Reporter(out, tty=tty, interval=interval, clock=clock, stamp=lambda: "12:00:00")
    rep.width = lambda: 60
    return rep, out


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0, "0 s"), (59.9, "59 s"), (60, "1 min 00 s"), (190, "3 min 10 s"), (3720, "1 h 02 min")],
)
def test_elapsed_reads_as_people_say_it(seconds: float, said: str) -> None:
    assert elapsed(seconds) == said


def test_line_and_fit() -> None:
    assert line("building kcp", "412/1,950 packages compiled", 190) == (
        "building kcp: 412/1,950 packages compiled, 3 min 10 s"
    )
    assert line("waiting", "", 4) == "waiting, 4 s"
    assert fit("x" * 100, 40) == "x" * 38 + "…"
    assert fit("short", 40) == "short"


def test_plain_output_is_timestamped_lines_throttled_to_the_interval() -> None:
    clock = Clock()
    rep, out = reporter(tty=False, clock=clock)
    step = rep.step("building kcp")
    for done in range(1, 50):  # many updates within one interval: no line each
        clock.now += 0.1
        step.update(f"{done}/100 packages compiled")
    clock.now += 15
    step.update("60/100 packages compiled")
    clock.now += 1
    step.update("61/100 packages compiled")
    step.done("100 packages compiled")
    assert out.getvalue().splitlines() == [
        "12:00:00 building kcp, 0 s",
        "12:00:00 building kcp: 60/100 packages compiled, 19 s",
        "12:00:00 building kcp: done, 100 packages compiled in 20 s",
    ]
    assert "\r" not in out.getvalue()


def test_plain_output_says_a_quiet_step_still_runs_every_interval() -> None:
    clock = Clock()
    rep, out = reporter(tty=False, clock=clock, interval=10)
    step = rep.step("fetching")
    for _ in range(3):
        clock.now += 10
        step.tick()
    assert len(out.getvalue().splitlines()) == 4


def test_terminal_output_rewrites_one_line_and_ends_it() -> None:
    clock = Clock()
    rep, out = reporter(tty=True, clock=clock)
    step = rep.step("building kcp")
    clock.now += 1
    step.update("1/3 packages compiled")
    clock.now += 0.05  # too soon to redraw
    step.update("2/3 packages compiled")
    clock.now += 1
    step.tick()
    step.done()
    text = out.getvalue()
    frames = text.split("\r\x1b[K")[1:]
    assert frames == [
        "building kcp, 0 s",
        "building kcp: 1/3 packages compiled, 1 s",
        "building kcp: 2/3 packages compiled, 2 s",
        "building kcp: done, 2/3 packages compiled in 2 s\n",
    ]
    assert text.count("\n") == 1  # one line left on the screen
    assert all(len(f.rstrip("\n")) <= 60 for f in frames)


def test_a_line_said_during_a_step_stays_above_its_moving_line() -> None:
    clock = Clock()
    rep, out = reporter(tty=True, clock=clock)
    step = rep.step("waiting for the verdicts")
    rep.say("orders-daily   Running   extract")
    assert out.getvalue().endswith(
        "\r\x1b[Korders-daily   Running   extract\n\r\x1b[Kwaiting for the verdicts, 0 s"
    )
    step.clear()
    assert out.getvalue().endswith("\r\x1b[K")
    rep.say("after")
    assert out.getvalue().endswith("\r\x1b[Kafter\n")  # no step line redrawn once it ended


def test_a_step_whose_block_raises_ends_failed_once() -> None:
    clock = Clock()
    rep, out = reporter(tty=False, clock=clock)
    with pytest.raises(RuntimeError), rep.step("go build") as step:
        step.update("3/9 packages compiled")
        raise RuntimeError("boom")
    step.done()  # already ended: no second final line
    assert out.getvalue().splitlines()[-1] == (
        "12:00:00 go build: FAILED, 3/9 packages compiled in 0 s"
    )
    assert sum("go build:" in text for text in out.getvalue().splitlines()) == 1


def test_a_quiet_reporter_writes_nothing() -> None:
    rep = Reporter(None)
    step = rep.step("x")
    step.update("y")
    rep.say("z")
    step.done()
    assert not rep.tty


class Recorder(Lines):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, bool]] = []

    def feed(self, line: str, *, stderr: bool = False) -> str:
        self.seen.append((line, stderr))
        return "" if line.startswith("skipped") else line


def test_run_feeds_stdout_and_stderr_to_the_reader_and_logs_what_it_returns(
    tmp_path: Path,
) -> None:
    script = (
        "import sys\n"
        "print('out 1', flush=True)\n"
        "print('err 1', file=sys.stderr, flush=True)\n"
        "print('skip' + 'ped', flush=True)\n"
        "data = sys.stdin.read()\n"
        "print('got ' + data, flush=True)\n"
        "sys.exit(4)\n"
    )
    reader = Recorder()
    rep, _ = reporter(tty=False, clock=Clock())
    log = tmp_path / "logs" / "tool.log"
    code = progress.run(
        [sys.executable, "-c", script], reader, rep.step("tool"), log, stdin="hello"
    )
    assert code == 4
    assert ("out 1\n", False) in reader.seen
    assert ("err 1\n", True) in reader.seen
    assert ("got hello\n", False) in reader.seen
    logged = log.read_text()
    assert "out 1\n" in logged and "err 1\n" in logged and "got hello\n" in logged
    assert "skipped" not in logged  # the reader decides what the log keeps
    assert logged.rstrip().splitlines()[-1].startswith("# exit 4 after ")


def test_the_command_line_runs_a_tool_and_names_its_log_when_it_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "pip.log"
    failing = [sys.executable, "-c", "import sys; print('Collecting nothing'); sys.exit(3)"]
    code = progress.main(
        ["--what", "installing", "--reader", "pip", "--log", str(log), "--", *failing]
    )
    assert code == 3
    told = capsys.readouterr()
    assert "installing: FAILED, exit code 3; log " + str(log) in told.out
    assert "Collecting nothing" in told.err  # the log's tail, for the reader of a CI log
    ok = [sys.executable, "-c", "print('Collecting a'); print('Successfully installed a-1')"]
    assert (
        progress.main(["--what", "installing", "--reader", "pip", "--log", str(log), "--", *ok])
        == 0
    )
