"""CPU time of this process by thread, from `/proc/self/task` (Linux), for a bench to say
which threads a measured stretch spent its CPU on: the event loop's thread and the
worker threads Python starts share the process's name; chdb's (ClickHouse's) threads
carry their pool's name (`QueryPipelineEx`, `MergeMutate`, ...). A thread that ended
within the stretch is counted under `(ended)`: the process total minus what the live
threads account for.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

_TASKS = Path("/proc/self/task")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _main_tid() -> int:
    return threading.main_thread().native_id or os.getpid()


def snapshot() -> dict[int, tuple[str, float]]:
    """Each live thread's id -> (name, CPU seconds so far); the main thread is `main`."""
    out: dict[int, tuple[str, float]] = {}
    main = _main_tid()
    for task in _TASKS.glob("*") if _TASKS.exists() else ():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # ended since the listing
            continue
        # `pid (comm) state ...`: comm may hold spaces and parentheses; fields follow
        # the last `)`; utime and stime are the 14th and 15th fields.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        tid = int(task.name)
        out[tid] = ("main" if tid == main else comm, (int(fields[11]) + int(fields[12])) / _TICK)
    return out


class ThreadCpu:
    """CPU seconds by thread name between `start()` and `stop()`."""

    def __init__(self) -> None:
        self._before: dict[int, tuple[str, float]] = {}
        self._process = 0.0
        self.by_name: dict[str, float] = {}
        self.total = 0.0

    def start(self) -> None:
        self._before = snapshot()
        self._process = time.process_time()

    def stop(self) -> None:
        after = snapshot()
        self.total = time.process_time() - self._process
        self.by_name = {}
        for tid, (name, cpu) in after.items():
            spent = cpu - self._before.get(tid, (name, 0.0))[1]
            if spent > 0:
                self.by_name[name] = self.by_name.get(name, 0.0) + spent
        ended = self.total - sum(self.by_name.values())
        if ended > 2 / _TICK:  # beyond the ticks' rounding
            self.by_name["(ended)"] = ended

    def lines(self, events: int) -> list[str]:
        """One line per thread name, most CPU first: seconds, share, us an event."""
        return [
            f"    {name:<18} {cpu:7.2f} s  {cpu / self.total * 100:5.1f}%  "
            f"{cpu / events * 1e6:7.1f} us an event"
            for name, cpu in sorted(self.by_name.items(), key=lambda item: -item[1])
            if self.total > 0
        ]
