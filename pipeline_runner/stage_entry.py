"""A stage container's entry point (`lineage-hub stage`, `python -m pipeline_runner`).

Its first line starts importing the stage's work (polars, then `pipeline_runner.runner`
with the readers, transforms and writers) in a background thread, while this thread
reads and validates the stage's config (`lineagehub.api.stage_reader`, without
pydantic). The work's modules are imported by the time the config is known to be
good: the stage starts that much sooner. A bad config still fails at once, in one
line naming the field; the import then left unfinished is simply abandoned by the
process's exit. The import lock makes the overlap safe: a module the stage asks for
while the thread imports it is handed over whole, never half-made.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Sequence
from typing import NoReturn

#: What the stage needs only once its config is good: polars first (it needs nothing
#: of ours, so it does not wait on what this thread's caller is importing).
WORK_MODULES = ("polars", "pipeline_runner.runner")


def _import_work() -> None:
    # An import error is raised again, with its traceback, where the stage imports the
    # module itself; here it would only be printed twice.
    with contextlib.suppress(Exception):
        for module in WORK_MODULES:
            importlib.import_module(module)


def stage_process(argv: Sequence[str] | None = None) -> NoReturn:
    threading.Thread(target=_import_work, name="import-stage-work", daemon=True).start()
    from pipeline_runner.cli import stage_process as run

    run(argv)
