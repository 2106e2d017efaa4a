"""A stage container's entry point (`lineage-hub stage`, `python -m pipeline_runner`).

Its first line starts importing the stage's work (polars, then `pipeline_runner.runner`
with the readers, transforms and writers) in a background thread, while this thread
reads and validates the stage's config (`lineagehub.api.stage_reader`, without
pydantic). The work's modules are imported by the time the config is known to be
good: the stage starts that much sooner. A bad config still fails at once, in one
line naming the field; the import then left unfinished is simply abandoned by the
process's exit. The import lock makes the overlap safe: a module the stage asks for
while the thread imports it is handed over whole, never half-made.

`import polars` imports standard modules a stage's work does not need to start:
`importlib.metadata` (with email, zipfile, csv and more) for the versions of its Iceberg
plugins, which no stage reads; `hashlib` (OpenSSL) for its Iceberg cache, which only a
sharded stage's span ids use; `subprocess` for its cloud credential commands, which the
publishing's event loop imports anyway once the work has started. Each has a stand-in
in `sys.modules` until one of its names is asked for, and only then is it imported, in
its place (`defer_import`): ~20-35 ms of CPU less before the work.

The cyclic garbage collector is off while the stage starts: the imports make hundreds
of thousands of objects that all stay alive, and collecting them as they come (~70
times, a few of them through the older generation) only walks them over and over. Once
the config is good and the work is about to start, what start-up made is frozen
(`gc.freeze`: kept out of every later collection) and the collector is on again for
the work (`end_of_start_up`).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.machinery
import sys
import threading
import types
from collections.abc import Sequence
from typing import NoReturn

#: What the stage needs only once its config is good: polars first (it needs nothing
#: of ours, so it does not wait on what this thread's caller is importing).
WORK_MODULES = ("polars", "pipeline_runner.runner")


#: Modules `import polars` imports that a stage's work does not need to start (see the
#: module's docstring).
DEFERRED_MODULES = ("importlib.metadata", "hashlib", "subprocess")

_deferred_lock = threading.Lock()


class _ImportedOnFirstUse(types.ModuleType):
    """Stands in `sys.modules` for a module not imported yet (`defer_import`)."""

    def __getattr__(self, name: str) -> object:
        # Called only for a name the stand-in lacks: take it out of `sys.modules`, then
        # import the module in its place and give the real module's name. Threads asking
        # at once get one module: the import system imports a module once, under a lock
        # of its own (the stand-in's lock is never held while importing, which could
        # wait on another thread's import that asks this stand-in).
        with _deferred_lock:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def defer_import(name: str) -> None:
    """Put a stand-in for the module `name` (top-level, or of an imported package) in
    `sys.modules`: an `import` of it returns the stand-in, and the first name asked of it
    imports the module for real. Nothing is done for a module imported already or not
    found."""
    parent, _, child = name.rpartition(".")
    if name in sys.modules or (parent and parent not in sys.modules):
        return
    path = sys.modules[parent].__path__ if parent else None
    spec = importlib.machinery.PathFinder.find_spec(name, path)
    if spec is None:
        return
    stand_in = _ImportedOnFirstUse(name)
    stand_in.__spec__ = spec
    stand_in.__loader__ = spec.loader
    sys.modules[name] = stand_in
    if parent:
        # `import a.b` hands over `a`, whose attribute `b` the importing code then reads
        # (until the real import sets it).
        setattr(sys.modules[parent], child, stand_in)


def _import_work() -> None:
    # An import error is raised again, with its traceback, where the stage imports the
    # module itself; here it would only be printed twice.
    with contextlib.suppress(Exception):
        for module in WORK_MODULES:
            importlib.import_module(module)


#: Set while the collector is off for the start-up (`stage_process`).
_collector_paused = threading.Event()


def end_of_start_up() -> None:
    """Turn the collector on again for the work, with what start-up made frozen; a
    no-op unless `stage_process` turned it off (a stage run inside another program)."""
    if _collector_paused.is_set():
        _collector_paused.clear()
        gc.freeze()
        gc.enable()


def stage_process(argv: Sequence[str] | None = None) -> NoReturn:
    if gc.isenabled():
        gc.disable()
        _collector_paused.set()
    for name in DEFERRED_MODULES:
        defer_import(name)
    threading.Thread(target=_import_work, name="import-stage-work", daemon=True).start()
    from pipeline_runner.cli import stage_process as run

    run(argv)
