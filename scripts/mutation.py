"""Mutation testing (`make mutation`): small deliberate bugs in the code whose bugs cost most.

Runs mutmut over three targets: the consumers' delivery code (offsets, retry, DLQ
decisions, the lineage consumer's loop, the otel consumer's batch/commit path), the
operator's `decide`, and the gateway's auth. Each target runs in its own staging copy
under .artifacts/mutation/<target>/ (mutmut writes its mutated copies there, never in
the work tree), so the checkout and the stack running from it are never touched. The
copy is taken from the last commit (`git archive HEAD`), not the work tree: commit what
you want judged; an edit in progress cannot change a run.

The operator's package lives in operator/lineagehub_operator; the staging copy puts it
at the top level, where its import name matches its path (mutmut maps a file to the
module it mutates by path).

Writes .artifacts/mutation/report.txt: every surviving mutant as file:line and the
changed line, and prints a summary per target. Not part of `make test`: a full run
takes tens of minutes on two cores. `make mutation TARGETS=decide` runs one target;
`MUTATION_INTEGRATION=1` adds the delivery target's integration tests (real Kafka,
chdb and the Marquez stand-in; run it under the stack lock). `--only GLOB...`
(`make mutation MUTATION_ARGS="--only ..."`) runs some mutants of a target, e.g. the
functions of one path, to keep a run short.

`--staged` (`make mutation TARGETS=delivery MUTATION_ARGS="--staged --only ..."`) runs
the mutants in two stages: first every one against the fast tests (the target's unit
tests, chdb included: seconds a mutant), then only those the fast tests let through
against the integration tests (real Kafka; `--tests` narrows them), in holds of the stack
lock of at most `--hold` seconds each (`flock /tmp/lh-stack.lock timeout ...`; a private
stack's own lock, `<state>.lock`, when `LINEAGE_HUB_STATE` names one), until
each has a verdict. Its results sit in .artifacts/mutation/<target>-kafka/; the report
gives both stages and what survives both. `--resume` keeps the fast stage's results and
goes on with the integration stage where the last staged run stopped (--only may narrow
it to some of the first stage's mutants).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
from dataclasses import dataclass, field, replace
from fnmatch import fnmatch
from pathlib import Path

from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".artifacts" / "mutation"
MUTMUT = Path(sys.executable).parent / "mutmut"
SHARED_STACK_LOCK = "/tmp/lh-stack.lock"
KAFKA_STAGE = "-kafka"  # the staged run's second stage: <target>-kafka
# mutmut's statuses a staged run's first stage passes on: the fast tests let the mutant
# live, or none of them reaches its function.
NOT_KILLED = {"survived", "no tests", "no verdict"}


def mutant_status(code: int | None) -> str:
    """mutmut's status for a mutant's exit code, except for a code mutmut does not know:
    its table calls any such code "timeout", counted as killed, while -1 means pytest
    could not run the tests at all. That is no verdict, to be looked at like a survivor."""
    if code not in status_by_exit_code:  # `in` does not call the table's default
        return "no verdict"
    return status_by_exit_code[code]


@dataclass(frozen=True)
class Target:
    """What one mutation run mutates and which tests judge the mutants."""

    name: str
    mutate: list[str]
    tests: list[str]
    integration_tests: list[str] = field(default_factory=list)
    # Tests that open chdb: it crashes in a child forked after use, so with any of them a
    # mutant's tests run in a child of a server that never ran a test.
    chdb_tests: list[str] = field(default_factory=list)
    # Lines of mutated files left alone (regexes): logging and metrics text.
    skip_lines: list[str] = field(default_factory=list)


QUIET_LINES = [r"^\s*(log|logger|LOG)\.(debug|info|warning|error|exception)\("]

TARGETS = [
    Target(
        name="delivery",
        mutate=[
            "consumers/offsets.py",
            "consumers/retry.py",
            "consumers/dlq.py",
            "consumers/lineage/consumer.py",
            "consumers/otel/consumer.py",
        ],
        tests=[
            "tests/unit/test_consumers_offsets.py",
            "tests/unit/test_consumers_retry.py",
            "tests/unit/test_consumers_lineage_unit.py",
            "tests/unit/test_consumers_delivery_mutants.py",
            "tests/unit/test_consumers_lineage_kinds.py",
            "tests/unit/test_consumers_validate.py",
            "tests/unit/test_otel_consumer_mutants.py",
            "tests/unit/test_otel_revoke_mutants.py",
        ],
        chdb_tests=[
            "tests/unit/test_otel_consumer_mutants.py",
            "tests/unit/test_otel_revoke_mutants.py",
        ],
        # Real Kafka, the Marquez stand-in and chdb (MUTATION_INTEGRATION=1, under the stack
        # lock): the lineage loop's dispatch/commit/revoke/pause, the otel batch/commit path.
        integration_tests=[
            "tests/integration/test_consumer_lineage_kafka.py",
            "tests/integration/test_consumer_delivery_mutants.py",
            "tests/integration/test_consumer_otel.py",
            "tests/integration/test_otel_delivery.py",
            "tests/integration/test_otel_delivery_faults.py",
            "tests/integration/test_otel_delivery_races.py",
            "tests/integration/test_otel_delivery_replays.py",
            "tests/integration/test_otel_delivery_loop.py",
        ],
        skip_lines=QUIET_LINES,
    ),
    Target(
        name="decide",
        mutate=["lineagehub_operator/decide.py"],
        tests=[
            "tests/unit/test_operator_decide.py",
            "tests/unit/test_operator_decide_mutants.py",
            "tests/unit/test_operator_decide_pod_success.py",
            "tests/unit/test_operator_caller_trace.py",
            "tests/unit/test_pipeline_queue.py",
            "tests/unit/test_pipeline_rerun.py",
            "tests/unit/test_pipeline_operator.py",
            "tests/unit/test_run_policy.py",
            "tests/unit/test_operator_verify.py",
        ],
    ),
    Target(
        name="auth",
        mutate=["gateway/auth.py", "gateway/auth_first.py"],
        # The console's and runs' tests open chdb, which crashes in a forked child after
        # use; these hold every route's 401/403 (from the route table), the tokens, and
        # the refusal of a write before its body is read.
        tests=[
            "tests/unit/test_gateway_auth.py",
            "tests/unit/test_gateway_route_auth.py",
            "tests/unit/test_gateway_http.py",
            "tests/unit/test_gateway_auth_first.py",
            "tests/unit/test_gateway_auth_mutants.py",
        ],
        skip_lines=QUIET_LINES,
    ),
]

# Where each top-level package of the staging copy comes from in the checkout.
PACKAGES = {
    "consumers": "consumers",
    "gateway": "gateway",
    "lineagehub_operator": "operator/lineagehub_operator",
}

# Installed, not committed: the console's libraries (the route-table test loads one).
INSTALLED = ["gateway/console/node_modules"]

# Data the code and tests read from the repository's top level, relative to their own files,
# and the shared package every target imports (taken from the same commit as the rest).
DATA = ["charts", "crds", "examples", "lineagehub"]


def stack_lock() -> str:
    """The lock the integration stage holds: the shared stack's, or a private stack's own.

    With `LINEAGE_HUB_STATE` naming another stack (its own ports, see stack/ports.py) the
    tests run against that stack, so the run queues on nobody else's lock: `<state>.lock`.
    """
    state = os.environ.get("LINEAGE_HUB_STATE")
    shared = Path(os.environ.get("TMPDIR", "/tmp")) / "lineage-hub-stack"
    if state and Path(state).resolve() != shared.resolve():
        return str(Path(state).resolve()) + ".lock"
    return SHARED_STACK_LOCK


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True).stdout


def snapshot(work: Path, paths: list[str], commit: str) -> None:
    """The committed files under `paths` at `commit`, written into `work`.

    From the commit, not the work tree: another edit in progress (or a file half
    written) in the checkout cannot change what a run mutates or which tests judge it.
    """
    archive = _git("archive", "--format=tar", commit, "--", *paths)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(work, filter="data")


def stage(target: Target, tests: list[str], commit: str, isolation: str) -> Path:
    """A fresh staging copy for one target: its packages, the tests, and mutmut's config."""
    work = OUT / target.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    packages = sorted({m.split("/", 1)[0] for m in target.mutate})
    sources = [PACKAGES[pkg] for pkg in packages]
    snapshot(work, [*sources, "tests", *DATA, "pyproject.toml"], commit)
    for pkg, source in zip(packages, sources, strict=True):
        if source != pkg:  # e.g. operator/lineagehub_operator -> lineagehub_operator
            (work / source).rename(work / pkg)
            (work / source).parent.rmdir()
    for path in INSTALLED:  # not in git: installed by `make setup`, never edited by hand
        if path.split("/", 1)[0] in packages and (ROOT / path).is_dir():
            shutil.copytree(ROOT / path, work / path, symlinks=True)
    (work / "COMMIT").write_text(commit + "\n")
    pyproject = (work / "pyproject.toml").read_text()
    config = "\n".join(
        [
            "",
            "[tool.mutmut]",
            f"source_paths = {_toml_list(packages)}",
            f"only_mutate = {_toml_list(target.mutate)}",
            f"do_not_mutate_patterns = {_toml_list(target.skip_lines)}",
            f"pytest_add_cli_args_test_selection = {_toml_list(tests)}",
            f"also_copy = {_toml_list(DATA)}",
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]',
            "use_git_change_detection = false",
            f"process_isolation = {_toml_str(isolation)}",
            # A server that imported chdb (pytest's collection does) forks children that
            # hang on a lock of chdb's threads: the server imports no test module.
            'forkserver_warmup = "none"',
            # Two shared cores: a mutant's tests may take far longer than they did alone.
            "timeout_multiplier = 30.0",
            "timeout_constant = 10.0",
            "",
        ]
    )
    (work / "pyproject.toml").write_text(pyproject + config)
    tomllib.loads((work / "pyproject.toml").read_text())  # fail here, not inside mutmut
    return work


@dataclass(frozen=True)
class Survivor:
    location: str
    name: str
    change: str


Functions = dict[str, ast.FunctionDef | ast.AsyncFunctionDef]


def _functions(path: Path) -> Functions:
    tree = ast.parse(path.read_text())
    return {
        node.name: node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def _definitions(path: Path) -> dict[str, int]:
    """The `def` line of each function (`name`) and method (`Class.name`) of a module."""
    found: dict[str, int] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found[node.name] = node.lineno
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    found[f"{node.name}.{item.name}"] = item.lineno
    return found


def _body(source: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """A function's lines after its (renamed) `def` line."""
    end = node.end_lineno or node.lineno
    return source[node.lineno : end]


def _survivor(
    rel: str, name: str, mutated: list[str], defs: dict[str, int], fns: Functions
) -> Survivor:
    orig = fns[name.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"]
    before, after = _body(mutated, orig), _body(mutated, fns[name])
    removed: list[str] = []
    added: list[str] = []
    first: int | None = None
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after).get_opcodes():
        if op != "equal":
            first = i1 if first is None else first
            removed += before[i1:i2]
            added += after[j1:j2]
    # mutmut names a function's copies x_<name>__mutmut_<n>, a method's xǁ<Class>ǁ<name>__...
    qualname = name.rsplit("__mutmut_", 1)[0].removeprefix("x_").removeprefix("xǁ")
    start = defs[qualname.replace("ǁ", ".")]
    shown = "operator/" + rel if rel.startswith("lineagehub_operator/") else rel
    change = " | ".join(r.strip() for r in removed) + "  ->  "
    change += " | ".join(a.strip() for a in added) or "(removed)"
    return Survivor(f"{shown}:{start + 1 + (first or 0)}", name, change)


def survivors(work: Path, target: Target) -> tuple[dict[str, str], list[Survivor]]:
    """Every mutant's status, and each survivor as file:line and its changed line(s).

    Read from mutmut's own files: `<file>.meta` holds each mutant's exit code; the mutated
    copy holds the original function (`x_<name>__mutmut_orig`) beside each mutant of it.
    """
    status: dict[str, str] = {}
    found: list[Survivor] = []
    for rel in target.mutate:
        path = work / "mutants" / rel
        codes = json.loads(path.with_name(path.name + ".meta").read_text())["exit_code_by_key"]
        mutated = path.read_text().splitlines()
        defs = _definitions(work / rel)
        fns = _functions(path)
        for key, code in codes.items():
            status[key] = mutant_status(code)
            if status[key] in ("survived", "no verdict"):
                found.append(_survivor(rel, key.rsplit(".", 1)[1], mutated, defs, fns))
    return status, sorted(
        found, key=lambda s: (s.location.split(":")[0], int(s.location.split(":")[1]))
    )


def _prepare(target: Target, tests: list[str]) -> Path:
    """A fresh staging copy of the last commit, judged by `tests`."""
    commit = _git("rev-parse", "HEAD").decode().strip()
    # chdb (the integration tests' store) crashes in a child forked after it was used: with
    # it, each mutant's tests run in a child of a server that never ran a test.
    forked_chdb = any(t.startswith("tests/integration/") or t in target.chdb_tests for t in tests)
    work = stage(target, tests, commit, "forkserver" if forked_chdb else "fork")
    print(f"== {target.name} at {commit[:12]}: mutating {', '.join(target.mutate)}", flush=True)
    print(f"   tests: {' '.join(tests)}", flush=True)
    return work


def _mutmut(
    target: Target, work: Path, max_children: int, names: list[str], wrap: list[str], log: str
) -> int:
    """One `mutmut run` in `work` (under `wrap`, e.g. the lock and a time limit)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with (OUT / log).open("a") as out:
        out.write(f"\n== {' '.join(wrap)} mutmut run {len(names)} mutant name(s)\n")
        out.flush()
        return subprocess.run(
            [*wrap, str(MUTMUT), "run", "--max-children", str(max_children), *names],
            cwd=work,
            env=env,
            check=False,
            stdout=out,
            stderr=subprocess.STDOUT,
        ).returncode


def run(
    target: Target, integration: bool, max_children: int, only: list[str], tests: list[str]
) -> None:
    tests = tests or target.tests + (target.integration_tests if integration else [])
    work = _prepare(target, tests)
    if only:
        print(f"   mutants: {' '.join(only)}", flush=True)
    (OUT / f"{target.name}.log").unlink(missing_ok=True)
    code = _mutmut(target, work, max_children, only, [], f"{target.name}.log")
    if code != 0:
        raise SystemExit(f"mutmut failed for {target.name} (exit {code}); see {target.name}.log")


def statuses(work: Path, target: Target) -> dict[str, str]:
    """Every mutant's status in a staging copy (`not checked` until run)."""
    status: dict[str, str] = {}
    for rel in target.mutate:
        path = work / "mutants" / rel
        meta = path.with_name(path.name + ".meta")
        if meta.exists():  # before mutmut's first run in `work`: none
            codes = json.loads(meta.read_text())["exit_code_by_key"]
            status.update({key: mutant_status(code) for key, code in codes.items()})
    return status


def staged(
    target: Target,
    max_children: int,
    only: list[str],
    tests: list[str],
    hold: int,
    resume: bool,
) -> None:
    """Fast tests on every mutant, then the integration tests on what they let through,
    in holds of the stack lock of at most `hold` seconds. `resume`: keep the fast stage's
    results and the integration stage's copy from the last staged run; go on from there."""
    if not only:
        raise SystemExit("--staged needs --only: the integration stage is for a few functions")
    if not (resume and (OUT / target.name / "mutants").is_dir()):
        run(target, False, max_children, only, [])
    fast = statuses(OUT / target.name, target)
    chosen = [k for k in fast if fast[k] != "not checked" and any(fnmatch(k, g) for g in only)]
    passed = sorted(k for k in chosen if fast[k] in NOT_KILLED)
    print(f"   fast tests: {len(chosen)} mutants, {len(passed)} not killed", flush=True)
    if not passed:
        return
    kafka = replace(target, name=target.name + KAFKA_STAGE)
    work = OUT / kafka.name
    if not (resume and (work / "pyproject.toml").exists()):
        work = _prepare(kafka, tests or target.integration_tests)
        (OUT / f"{kafka.name}.log").unlink(missing_ok=True)
    # mutmut's SIGINT handling stops its workers; -k: whatever is left is killed.
    wrap = [
        "flock",
        stack_lock(),
        "timeout",
        "-s",
        "INT",
        "-k",
        "60",
        str(hold),
        "nice",
        "-n",
        "10",
    ]
    while True:
        now = statuses(work, kafka)
        todo = [k for k in passed if now.get(k, "not checked") == "not checked"]
        print(f"   integration stage: {len(passed) - len(todo)}/{len(passed)} done", flush=True)
        if not todo:
            return
        _mutmut(kafka, work, max_children, todo, wrap, f"{kafka.name}.log")
        after = statuses(work, kafka)
        if all(after.get(k, "not checked") == "not checked" for k in todo):
            raise SystemExit(
                f"a hold of {hold} s judged no mutant (the clean run alone is longer, or "
                f"mutmut failed): narrow --tests or raise --hold; see {kafka.name}.log"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=", ".join(t.name for t in TARGETS))
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild the report from the last run"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="GLOB",
        help="mutants to run, as mutmut names them (e.g. 'consumers.otel.consumer.*_flush*'); "
        "the others stay unchecked",
    )
    parser.add_argument(
        "--tests",
        nargs="+",
        default=[],
        metavar="PATH",
        help="the test files that judge the mutants, instead of the target's (a shorter run)",
    )
    parser.add_argument(
        "--staged",
        action="store_true",
        help="fast tests on every mutant of --only, then the integration tests (real Kafka, "
        "under the stack lock) on the ones they let through",
    )
    parser.add_argument(
        "--hold",
        type=int,
        default=600,
        metavar="SECONDS",
        help="the longest hold of the stack lock in a staged run's integration stage",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="a staged run: keep the fast stage's results and go on with the integration stage",
    )
    args = parser.parse_args()
    chosen = [t for t in TARGETS if not args.targets or t.name in args.targets]
    unknown = set(args.targets) - {t.name for t in TARGETS}
    if unknown:
        parser.error(
            f"unknown target(s) {sorted(unknown)}; choose from {[t.name for t in TARGETS]}"
        )
    integration = os.environ.get("MUTATION_INTEGRATION") == "1"
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for target in chosen:
            if args.staged:
                staged(target, args.max_children, args.only, args.tests, args.hold, args.resume)
            else:
                run(target, integration, args.max_children, args.only, args.tests)
    # The report covers every target that has results, the ones not run now from their last run.
    stages = [s for t in TARGETS for s in (t, replace(t, name=t.name + KAFKA_STAGE))]
    done = [t for t in stages if (OUT / t.name / "mutants").is_dir()]
    report = [f"Mutation run over {', '.join(t.name for t in done)}", ""]
    summary = []
    for target in done:
        status, found = survivors(OUT / target.name, target)
        if target.name.endswith(KAFKA_STAGE):  # only what the first stage passed on
            status = {k: v for k, v in status.items() if v != "not checked"}
        counts: dict[str, int] = {}
        for s in status.values():
            counts[s] = counts.get(s, 0) + 1
        commit_file = OUT / target.name / "COMMIT"
        at = commit_file.read_text().strip()[:12] if commit_file.exists() else "?"
        line = f"{target.name} (at {at}): {len(status)} mutants, " + ", ".join(
            f"{n} {s}" for s, n in sorted(counts.items())
        )
        summary.append(line)
        report += [f"## {line}", ""]
        report += [f"{s.location}  {s.name}\n    {s.change}" for s in found] or ["(none)"]
        report.append("")
    path = OUT / "report.txt"
    path.write_text("\n".join(report))
    print("\n".join(["", *summary, f"surviving mutants: {path.relative_to(ROOT)}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
