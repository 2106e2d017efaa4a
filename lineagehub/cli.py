"""The `lineage-hub` command: one entry point, subcommands imported lazily.

Each subcommand lives with the part it drives (the operator, the runner, the
consumers, the local stack); importing them lazily keeps `lineage-hub run` from
loading kopf and a stage Job from loading the stack tooling.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "operator": ("lineagehub_operator.cli", "main"),
    "stage": ("pipeline_runner.stage_entry", "stage_process"),
    "run": ("pipeline_runner.cli", "main"),
    "consume": ("consumers.cli", "main"),
    "describe": ("pipeline_runner.describe", "main"),
    "rerun": ("lineagehub_operator.rerun_cli", "main"),
    "gateway": ("gateway.cli", "main"),
    "stack": ("stack.cli", "main"),
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"} or args[0] not in SUBCOMMANDS:
        names = ", ".join(SUBCOMMANDS)
        print(f"usage: lineage-hub {{{names}}} ...", file=sys.stderr)
        return 0 if args and args[0] in {"-h", "--help"} else 2
    module, func = SUBCOMMANDS[args[0]]
    entry = getattr(importlib.import_module(module), func)
    return int(entry(args[1:]))


if __name__ == "__main__":
    raise SystemExit(main())
