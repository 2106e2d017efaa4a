"""Write the generated manifests: `python -m lineagehub.api.generate [--check] [--root DIR]`.

Writes `crds/lineagehub.io_pipelineruns.yaml` and `crds/lineagehub.io_pipelines.yaml`
(the CRDs), `lineagehub/api/stage_config.schema.json` (what a stage validates its
config by, without pydantic: `stage_reader`), `lineagehub/api/pipelinerun.schema.json`
(what `lineage-hub run` validates its manifest by, without pydantic: `run_reader`)
and, under `crds/rbac/`, the
operator's RBAC: `operator-clusterrole.yaml` (watching the whole cluster),
`operator-role.yaml` (bound in each namespace when it watches chosen ones) and
`operator-discovery-clusterrole.yaml` (its only cluster-wide grant then), under the
project root, and the same texts into the Helm chart (`charts/lineage-hub/crds/`,
which Helm installs, and `charts/lineage-hub/files/`, from which the chart templates
the upgradable CRD copy and the operator's RBAC rules). With `--check` nothing
is written: the command prints a diff and exits 1 when a file is missing or differs
from what the models give.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from lineagehub.api.crd import (
    build_crd,
    build_operator_clusterrole,
    build_operator_discovery_clusterrole,
    build_operator_role,
    build_pipeline_crd,
)
from lineagehub.api.run_schema import RUN_SCHEMA_PATH, build_run_schema
from lineagehub.api.stage_schema import SCHEMA_PATH, build_stage_schema

CRD_PATH = Path("crds") / "lineagehub.io_pipelineruns.yaml"
PIPELINE_CRD_PATH = Path("crds") / "lineagehub.io_pipelines.yaml"
CLUSTERROLE_PATH = Path("crds") / "rbac" / "operator-clusterrole.yaml"
ROLE_PATH = Path("crds") / "rbac" / "operator-role.yaml"
DISCOVERY_PATH = Path("crds") / "rbac" / "operator-discovery-clusterrole.yaml"
CHART = Path("charts") / "lineage-hub"
CHART_CRD_PATH = CHART / "crds" / "lineagehub.io_pipelineruns.yaml"
CHART_PIPELINE_CRD_PATH = CHART / "crds" / "lineagehub.io_pipelines.yaml"
CHART_CLUSTERROLE_PATH = CHART / "files" / "operator-clusterrole.yaml"
CHART_ROLE_PATH = CHART / "files" / "operator-role.yaml"
CHART_DISCOVERY_PATH = CHART / "files" / "operator-discovery-clusterrole.yaml"

HEADER = (
    "# Generated from the pydantic models in lineagehub/api by\n"
    "# `python -m lineagehub.api.generate`. Do not edit by hand.\n"
)


def render(obj: dict[str, Any]) -> str:
    """Deterministic YAML: keys sorted, long lines kept whole, a generated-file header."""
    body = yaml.safe_dump(obj, sort_keys=True, width=100_000, allow_unicode=True)
    return HEADER + "---\n" + body


OUTPUTS: dict[Path, Callable[[], dict[str, Any]]] = {
    CRD_PATH: build_crd,
    CLUSTERROLE_PATH: build_operator_clusterrole,
    CHART_CRD_PATH: build_crd,
    PIPELINE_CRD_PATH: build_pipeline_crd,
    CHART_PIPELINE_CRD_PATH: build_pipeline_crd,
    CHART_CLUSTERROLE_PATH: build_operator_clusterrole,
    ROLE_PATH: build_operator_role,
    DISCOVERY_PATH: build_operator_discovery_clusterrole,
    CHART_ROLE_PATH: build_operator_role,
    CHART_DISCOVERY_PATH: build_operator_discovery_clusterrole,
}


#: Generated JSON files: the stage config's schema, which a stage reads without YAML, and
#: the PipelineRun manifest's, which `lineage-hub run` reads without pydantic.
JSON_OUTPUTS: dict[Path, Callable[[], dict[str, Any]]] = {
    SCHEMA_PATH: build_stage_schema,
    RUN_SCHEMA_PATH: build_run_schema,
}


def default_root() -> Path:
    """The project root: the folder holding `pyproject.toml` above this file, else cwd."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def expected() -> dict[Path, str]:
    texts = {path: render(build()) for path, build in OUTPUTS.items()}
    for path, build in JSON_OUTPUTS.items():
        texts[path] = json.dumps(build(), indent=1, sort_keys=True) + "\n"
    return texts


def check(root: Path) -> list[str]:
    """Unified diffs for every generated file that differs from the models (empty: in sync)."""
    diffs: list[str] = []
    for rel, text in expected().items():
        target = root / rel
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        if current != text:
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        current.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        fromfile=f"{rel} (committed)",
                        tofile=f"{rel} (from the models)",
                    )
                )
                or f"{rel}: missing\n"
            )
    return diffs


def write(root: Path) -> list[Path]:
    written: list[Path] = []
    for rel, text in expected().items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            written.append(rel)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lineagehub.api.generate",
        description=(
            "Generate the PipelineRun and Pipeline CRDs, the operator's RBAC and the"
            " schemas the pydantic-free readers walk."
        ),
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 with a diff on drift"
    )
    parser.add_argument("--root", type=Path, default=None, help="project root (default: found)")
    args = parser.parse_args(argv)
    root: Path = args.root or default_root()
    if args.check:
        diffs = check(root)
        for diff in diffs:
            sys.stdout.write(diff)
        if diffs:
            print(
                "generated manifests are out of date; run `python -m lineagehub.api.generate`",
                file=sys.stderr,
            )
            return 1
        return 0
    for rel in write(root):
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
