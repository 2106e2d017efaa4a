"""Container logs in the CRI format the shim writes, read the way `kubectl logs` asks.

A record is `<RFC3339Nano> <stdout|stderr> <F|P> <text>`; `P` records are
pieces of one long line that the next `F` record ends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Record:
    stamp: str
    stream: str
    full: bool
    text: bytes

    def render(self, timestamps: bool) -> bytes:
        body = self.text + (b"\n" if self.full else b"")
        return (self.stamp.encode() + b" " + body) if timestamps else body

    @property
    def time(self) -> dt.datetime:
        return parse_stamp(self.stamp)


def parse_stamp(stamp: str) -> dt.datetime:
    """RFC3339(Nano) → aware datetime (nanoseconds truncated to microseconds)."""
    s = stamp.rstrip("Z")
    if "." in s:
        head, frac = s.split(".", 1)
        s = f"{head}.{frac[:6]:0<6}"
    return dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC)


def parse(line: bytes) -> Record | None:
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    text = parts[3] if len(parts) == 4 else b""
    return Record(parts[0].decode(), parts[1].decode(), parts[2] == b"F", text)


def records(data: bytes) -> list[Record]:
    out = []
    for line in data.splitlines():
        rec = parse(line)
        if rec is not None:
            out.append(rec)
    return out


def select(
    recs: list[Record],
    tail_lines: int | None = None,
    since: dt.datetime | None = None,
) -> list[Record]:
    if since is not None:
        recs = [r for r in recs if r.time >= since]
    if tail_lines is not None:
        if tail_lines <= 0:
            return []
        # Count whole lines: a line ends at an F record.
        ends = [i for i, r in enumerate(recs) if r.full]
        if len(ends) > tail_lines:
            recs = recs[ends[-tail_lines - 1] + 1 :]
    return recs


def render(recs: list[Record], timestamps: bool, limit_bytes: int | None = None) -> bytes:
    out = b"".join(r.render(timestamps) for r in recs)
    return out[:limit_bytes] if limit_bytes is not None else out


def read(
    path: Path,
    tail_lines: int | None = None,
    since: dt.datetime | None = None,
    timestamps: bool = False,
    limit_bytes: int | None = None,
) -> tuple[bytes, int]:
    """The selected log text and the file offset it was read up to."""
    try:
        data = path.read_bytes()
    except OSError:
        return b"", 0
    # Only complete lines: a record being written is picked up by a follower.
    end = data.rfind(b"\n") + 1
    recs = select(records(data[:end]), tail_lines, since)
    return render(recs, timestamps, limit_bytes), end


def follow_from(path: Path, offset: int) -> Iterator[tuple[list[Record], int]]:
    """New complete records after `offset`, each time the caller asks again."""
    while True:
        try:
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
        except OSError:
            chunk = b""
        end = chunk.rfind(b"\n") + 1
        recs = records(chunk[:end]) if end else []
        offset += end
        yield recs, offset


def tail_text(path: Path, lines: int = 80, max_bytes: int = 2048) -> str:
    """The last lines of a container log as text (for FallbackToLogsOnError)."""
    data, _ = read(path, tail_lines=lines)
    return data[-max_bytes:].decode("utf-8", errors="replace")
