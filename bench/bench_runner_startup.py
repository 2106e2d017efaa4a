"""How soon a stage process does its first useful work.

    nice -n 10 python bench/bench_runner_startup.py [--runs 9] [--before DIR]

Runs the extract stage of a small CSV the way a stage Job's container does
(`python -m pipeline_runner extract`, here with `--emit console` so its spans can be
read back) and measures, from just before the process is spawned:
  stage span   the start of the stage's span (the stage begins its work)
  read step    the start of its `read` span (the first byte of data is asked for)
  exit         the process's end
beside baselines measured in the same run, interleaved with ours so both see the
same load: `python -c pass` (the interpreter), `python -c "import polars"` (the
least a polars stage must load), the same with the cyclic collector off, and as a
stage imports it (the collector off, and the modules polars loads that no stage uses
deferred: `stage_entry`). Prints medians, the ratio to the polars baseline and
the goal (0.3 s), each process's CPU time (user + system: steadier than wall time on a
busy machine), then the heaviest imports of one `python -X importtime` run.

`--before DIR`: also runs, interleaved, the runner as exported to DIR from an earlier
commit (`git archive <commit> pipeline_runner lineagehub | tar -x -C DIR`), first on
PYTHONPATH, so a change is measured against what it replaced under the same load.

`--phases`: also where the CPU before the stage's first useful work goes: in a fresh
process with the stage's config and, as in a stage, the cyclic collector off, the CPU
seconds (median over the runs) of the interpreter's start, then the stage's entry point
(which defers what `import polars` loads that no stage uses), `import polars`, then
each further layer the stage loads before its span starts, in the stage's order (the
config's reader and its validation, the runner's own modules), then, publishing to
Kafka only, the emitter's client with asyncio: each the layer's cost beyond what the
layers before it had loaded. A stage now makes its Kafka emitter once its work has
started (the layer is not in the sum before the work); the runner before it made it
first (`--before`'s Kafka sum counts it). With `--before`, the same layers of the
earlier tree too (with the collector on, as it started). CPU, unlike wall time, holds
up on a busy machine.

The runner's bytecode (ours and `--before`'s) is compiled before anything is measured,
as a stage image's install compiles it: with PYTHONDONTWRITEBYTECODE set, a module
edited since its cache was written would otherwise be compiled again at every start.

`--kafka HOST:PORT` (under `flock /tmp/lh-stack.lock`, the stack's broker): also runs
the stage publishing its lineage, spans and metrics to that broker, as in a Job
(`--emit kafka`), and reports its exit and CPU (`kafka: exit`) and the start of its
stage span as read back from the spans topic (`kafka: stage span`: a Job's stage makes
its Kafka producer while its work runs), with `--before` too.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lineagehub.api.enums import STAGE_CONFIG_ENV  # noqa: E402
from lineagehub.topics import SPANS_TOPIC  # noqa: E402

GOAL_S = 0.3
SPAN_START = re.compile(r"span '(?P<name>[^']+)' .* start=(?P<start>\d+) ")
ORDERS = "order_id,customer,amount\n1,acme,10.5\n2,globex,20.0\n3,initech,30.0\n"


def stage_env(folder: Path) -> dict[str, str]:
    from lineagehub.api import SinkSpec, SourceSpec, StageName, TransformSpec
    from tests.unit.test_runner_stages import make_config

    source = folder / "in" / "orders.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(ORDERS)
    cfg = make_config(
        folder,
        StageName.EXTRACT,
        source=SourceSpec(uri=f"file://{source}", format="csv"),
        transform=TransformSpec(),
        sink=SinkSpec(uri=f"file://{folder / 'out.parquet'}", format="parquet"),
    )
    return {
        **os.environ,
        "LINEAGEHUB_STAGE_CONFIG": cfg.to_env_value(),
        "LINEAGEHUB_TERMINATION_LOG": str(folder / "termination"),
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(seconds from spawn to exit, CPU seconds, stdout) of one process."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    # Run outside the checkout: `python -m` puts the working folder first on sys.path,
    # which would shadow an earlier tree given on PYTHONPATH (`--before`).
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=env, check=True, cwd=tempfile.gettempdir()
    )
    return time.perf_counter() - t0, _children_cpu() - cpu0, proc.stdout


class StageSpans:
    """The stage spans a publishing stage sends to the broker's spans topic, read from
    where the topic ended when this was made (a bench's own consumer, no group)."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-startup-{os.getpid()}",
                "enable.auto.commit": False,
            }
        )
        topic = self._consumer.list_topics(SPANS_TOPIC, timeout=10).topics[SPANS_TOPIC]
        parts = []
        for number in topic.partitions:
            _, end = self._consumer.get_watermark_offsets(TopicPartition(SPANS_TOPIC, number))
            parts.append(TopicPartition(SPANS_TOPIC, number, end))
        self._consumer.assign(parts)

    def start_ns(self, stage_run_id: str, after_ns: int, timeout_s: float = 30.0) -> int:
        """The start (Unix ns) of the first span of the stage run `stage_run_id` that
        started after `after_ns`."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = self._consumer.poll(0.5)
            value = message.value() if message is not None and not message.error() else None
            if value is None:
                continue
            request = ExportTraceServiceRequest.FromString(value)
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        attrs = {kv.key: kv.value.string_value for kv in span.attributes}
                        ours = attrs.get("lineagehub.stage_run_id") == stage_run_id
                        if ours and span.start_time_unix_nano > after_ns:
                            return int(span.start_time_unix_nano)
        raise TimeoutError(f"no stage span of {stage_run_id} on {SPANS_TOPIC}")

    def close(self) -> None:
        self._consumer.close()


def kafka_once(env: dict[str, str], spans: StageSpans | None) -> dict[str, float]:
    """Seconds from spawn to the exit (and with `spans`, to the stage span), and CPU
    seconds, of the stage publishing to Kafka."""
    argv = [sys.executable, "-m", "pipeline_runner", "extract", "--emit", "kafka"]
    t0_ns = time.time_ns()
    wall, cpu, _ = timed(argv, env)
    found = {"kafka: exit": wall, "kafka: exit cpu": cpu}
    if spans is not None:
        run_id = json.loads(env[STAGE_CONFIG_ENV])["runId"]
        found["kafka: stage span"] = (spans.start_ns(run_id, t0_ns) - t0_ns) / 1e9
    return found


def stage_once(
    env: dict[str, str], bootstrap: str | None = None, spans: StageSpans | None = None
) -> dict[str, float]:
    """Seconds from spawn to the stage span, the read span and the exit (and with
    `bootstrap`, of the stage publishing to Kafka)."""
    found = kafka_once({**env, "KAFKA_BOOTSTRAP": bootstrap}, spans) if bootstrap else {}
    t0_ns = time.time_ns()
    argv = [sys.executable, "-m", "pipeline_runner", "extract", "--emit", "console"]
    wall, cpu, out = timed(argv, env)
    starts = {m["name"]: int(m["start"]) for m in SPAN_START.finditer(out)}
    return {
        "stage span": (starts["stage extract"] - t0_ns) / 1e9,
        "read step": (starts["read"] - t0_ns) / 1e9,
        "exit": wall,
        "exit cpu": cpu,
        **found,
    }


#: A stage's entry point: the modules `import polars` loads that no stage uses are
#: deferred (`stage_entry.defer_import`; none in a runner before it, `--before`).
STAGE_ENTRY = (
    "from pipeline_runner import stage_entry\n"
    "for name in getattr(stage_entry, 'DEFERRED_MODULES', ()):\n"
    "    stage_entry.defer_import(name)"
)
#: (name, code) of the baselines: the interpreter, polars, polars with the cyclic
#: collector off (as a stage starts), and polars as a stage imports it (`stage_entry`:
#: the collector off, and what no stage uses deferred).
BASELINES = (
    ("python -c pass", "pass"),
    ("import polars", "import polars"),
    ("polars, collector off", "import gc; gc.disable(); import polars"),
    ("polars, as a stage", f"import gc; gc.disable()\n{STAGE_ENTRY}\nimport polars"),
)

#: The last layer, publishing to Kafka only: made before the work by the runner before
#: this one (`--before`), while the work runs by this one.
KAFKA_LAYER = "Kafka emitter (kafka)"
#: (layer, code) in the order a stage loads them, polars first: the least it must load.
PHASES = (
    ("stage entry", STAGE_ENTRY),
    ("import polars", "import polars"),
    ("config reader", "import os\nfrom lineagehub.api import stage_reader as reader"),
    ("config validation", "reader.stage_config_from_env(dict(os.environ))"),
    ("runner modules", "import pipeline_runner.cli, pipeline_runner.runner"),
    (KAFKA_LAYER, "import lineagehub.librdkafka_producer, confluent_kafka"),
)
_PHASE_SCRIPT = "import time\nprint(time.process_time())\n" + "".join(
    f"{code}\nprint(time.process_time())\n" for _, code in PHASES
)
TREES = ("pipeline_runner", "lineagehub")


def compile_bytecode(root: Path) -> None:
    """Write the bytecode cache of the runner's trees under `root`."""
    folders = [str(root / tree) for tree in TREES]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *folders], check=True)


def phases_once(env: dict[str, str], collector_off: bool = True) -> dict[str, float]:
    """CPU seconds of the interpreter's start and of each layer of `PHASES` beyond the
    layers before it, in one fresh process (with the collector off, as a stage now
    starts; on, as the runner before it did)."""
    script = ("import gc\ngc.disable()\n" if collector_off else "") + _PHASE_SCRIPT
    _, _, out = timed([sys.executable, "-c", script], env)
    marks = [float(v) for v in out.split()]
    names = ["interpreter start", *(name for name, _ in PHASES)]
    spent = [marks[0], *(b - a for a, b in itertools.pairwise(marks))]
    return {f"phase: {n}": v for n, v in zip(names, spent, strict=True)}


def heaviest_imports(env: dict[str, str], top: int) -> list[tuple[int, str]]:
    """(cumulative µs, module) of the top-level imports of one stage run."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipeline_runner", "extract", "--emit", "none"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    found: list[tuple[int, str]] = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2]
            depth = (len(name) - len(name.lstrip(" "))) // 2
            if depth <= 1:
                found.append((int(parts[1]), name.strip()))
    return sorted(found, reverse=True)[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--before", type=Path, help="an earlier runner's exported tree")
    parser.add_argument("--kafka", metavar="HOST:PORT", help="also publish to this broker")
    parser.add_argument("--phases", action="store_true", help="also the CPU of each layer")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        env = stage_env(Path(tmp))
        before = None
        spans = StageSpans(args.kafka) if args.kafka else None
        compile_bytecode(ROOT)
        if args.before:
            compile_bytecode(args.before.resolve())
            before = {**env, "PYTHONPATH": str(args.before.resolve())}
            stage_once(before, args.kafka, spans)
        stage_once(env, args.kafka, spans)  # warm the file cache
        for _ in range(args.runs):
            for key, code in BASELINES:
                wall, cpu, _ = timed([sys.executable, "-c", code])
                samples.setdefault(key, []).append(wall)
                samples.setdefault(f"{key} cpu", []).append(cpu)
            if before is not None:
                for key, value in stage_once(before, args.kafka, spans).items():
                    samples.setdefault(f"before: {key}", []).append(value)
            for key, value in stage_once(env, args.kafka, spans).items():
                samples.setdefault(key, []).append(value)
            if args.phases:
                for key, value in phases_once(env).items():
                    samples.setdefault(key, []).append(value)
                if before is not None:
                    for key, value in phases_once(before, collector_off=False).items():
                        samples.setdefault(f"before {key}", []).append(value)
        imports = heaviest_imports(env, 12)
        if spans is not None:
            spans.close()
    med = {k: statistics.median(v) for k, v in samples.items()}
    polars = med["import polars"]
    print(f"median of {args.runs} runs, seconds from spawn (load avg {os.getloadavg()[0]:.1f})")
    print(f"  {'':<24} {'median s':>9} {'min s':>7} {'÷ import polars':>16} {'cpu s':>6}")
    ours: tuple[str, ...] = ("stage span", "read step", "exit")
    ours += ("kafka: stage span", "kafka: exit") if args.kafka else ()
    keys = [key for key, _ in BASELINES]
    keys += [f"before: {k}" for k in ours if f"before: {k}" in med] + list(ours)
    for key in keys:
        cpu_key = key.replace("exit", "exit cpu") if key.endswith("exit") else f"{key} cpu"
        cpu_text = f"{med[cpu_key]:>6.3f}" if cpu_key in med else f"{'':>6}"
        print(
            f"  {key:<24} {med[key]:>9.3f} {min(samples[key]):>7.3f} "
            f"{med[key] / polars:>16.2f} {cpu_text}"
        )
    if args.phases:
        print(
            "CPU before the first useful work, by layer (ms, median; each beyond the last; "
            f"the sums without {KAFKA_LAYER!r} when it comes once the work has started):"
        )
        for prefix in ("", "before "):
            phase_keys = [k for k in med if k.startswith(f"{prefix}phase: ")]
            if not phase_keys:
                continue
            for key in phase_keys:
                print(f"  {prefix}{key.split('phase: ')[1]:<24} {med[key] * 1000:>7.1f}")
            kafka = med[f"{prefix}phase: {KAFKA_LAYER}"]
            total = sum(med[k] for k in phase_keys) - kafka
            beyond = total - sum(
                med[f"{prefix}phase: {k}"] for k in ("interpreter start", "import polars")
            )
            print(
                f"  {prefix + 'sum, console':<24} {total * 1000:>7.1f}   (beyond the "
                f"interpreter and polars: {beyond * 1000:.1f})"
            )
            # Before this runner, a publishing stage made its Kafka emitter before its work.
            kafka_total = total + (kafka if prefix else 0.0)
            print(f"  {prefix + 'sum, kafka':<24} {kafka_total * 1000:>7.1f}")
    verdict = "met" if med["stage span"] <= GOAL_S else "NOT met"
    print(f"goal: first useful work (stage span) <= {GOAL_S} s: {verdict}")
    print("heaviest imports of one run (cumulative ms, -X importtime, top level):")
    for micros, name in imports:
        print(f"  {micros / 1000:>8.1f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
