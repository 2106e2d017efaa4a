"""Command line: `lineage-hub stage <name>` (inside a stage Job) and `lineage-hub run
<manifest>` (a whole PipelineRun in one process, no cluster).

`run` does what the operator does, locally: a run id (UUIDv7), a stage run id per
stage, a fresh trace with a root span, the run-level START and COMPLETE/FAIL events,
then the three stages in order against one workspace. Paths the manifest expects inside
a pod (`file:///data/...`) are mapped to local folders with `--mount` (by default
`/data/examples` → `<manifest dir>/data` and `/data/output` → `<workspace>/output`,
whenever `/data` itself does not exist here).

A stage process imports only what its stage needs: what `run` alone uses (YAML, the
run-level events and spans) is imported inside it, and what only publishes (the Kafka
client, asyncio) once the stage's work has started. Neither imports pydantic when its
input is good: a stage reads its config with `stage_reader`, `run` its manifest with
`run_reader` and then each stage's config with `stage_reader`, as a stage Job would.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, cast

from lineagehub.api.enums import STAGES, StageName
from lineagehub.api.stage_reader import (
    StageConfigView,
    View,
    read_stage_config_data,
    stage_config_from_env,
)
from lineagehub.datasets import redact_text
from lineagehub.topics import LINEAGE_TOPIC, SPANS_TOPIC
from pipeline_runner.errors import ErrorKind, one_line
from pipeline_runner.result import StageResult, write_termination_message
from pipeline_runner.settings import Settings

if TYPE_CHECKING:
    from lineagehub.api import PipelineRun, StageConfig
    from pipeline_runner.emit import Emitter
    from pipeline_runner.runner import StageRun

DEFAULT_NAMESPACE = "lineage-hub"


def _emitter(kind: str, settings: Settings, stderr: TextIO, stdout: TextIO) -> Emitter:
    # Imported here: a stage makes its emitter once its work has started.
    from pipeline_runner.emit import ConsoleEmitter, KafkaEmitter, NullEmitter

    if kind == "console":
        return ConsoleEmitter(stdout)
    if kind == "none":
        return NullEmitter()
    if not settings.kafka_bootstrap:
        print(
            "warning: KAFKA_BOOTSTRAP is not set: lineage and telemetry are not published",
            file=stderr,
        )
        return NullEmitter()
    return KafkaEmitter(settings.kafka_bootstrap)


def _emitter_beside_the_work(
    kind: str, settings: Settings, stderr: TextIO, stdout: TextIO
) -> Emitter:
    """`_emitter`, made while the stage's work already runs: an emitter that cannot be
    made (librdkafka's client missing or refusing its settings) must not end the process
    under the work, so its error is what each send meets (`Delivery`: one warning line,
    a non-zero exit with telemetry required) once the work is done."""
    try:
        return _emitter(kind, settings, stderr, stdout)
    except Exception as exc:
        from pipeline_runner.emit import FailedEmitter

        return FailedEmitter(f"kafka {settings.kafka_bootstrap}", exc)


# --------------------------------------------------------------------------- stage


def stage_main(argv: Sequence[str] | None = None) -> int:
    """`lineage-hub stage <extract|transform|load>`: run one stage from
    `LINEAGEHUB_STAGE_CONFIG`; exit 0 on success, 1 when the stage failed, 2 when it could
    not start (bad configuration)."""
    parser = argparse.ArgumentParser(prog="lineage-hub stage", description=stage_main.__doc__)
    parser.add_argument("stage", choices=[s.value for s in STAGES])
    parser.add_argument(
        "--emit",
        choices=("kafka", "console", "none"),
        default="kafka",
        help="where lineage and telemetry go (kafka: KAFKA_BOOTSTRAP)",
    )
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    stage = StageName(args.stage)
    return _stage(stage, args.emit, sys.stdout, sys.stderr)


def stage_process(argv: Sequence[str] | None = None) -> NoReturn:
    """`stage_main` as a stage container's whole process (`lineage-hub stage`, `python -m
    pipeline_runner`): once the stage has written everything, the process ends without
    the interpreter's teardown, which frees every module and object one by one (~0.1 s
    of CPU with polars, pydantic and OpenTelemetry loaded) for a process that is about
    to exit anyway. Exit handlers still run and the standard streams are flushed."""
    code = stage_main(argv)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _stage(stage: StageName, emit: str, stdout: TextIO, stderr: TextIO) -> int:
    prefix = f"lineage-hub stage {stage.value}"
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"{prefix}: InternalError: {one_line(str(exc))}", file=stderr)
        return 2
    try:
        # Read without pydantic (`stage_reader`): the models' schema and rules, each
        # error naming its field, never the value refused; the runner reads the result
        # as it reads the model.
        cfg = cast("StageConfig", stage_config_from_env(dict(os.environ)))
        if cfg.stage is not stage:
            raise ValueError(f"the stage config is for {cfg.stage.value}, not {stage.value}")
    except ValueError as exc:
        reason = one_line(redact_text(f"invalid LINEAGEHUB_STAGE_CONFIG: {exc}"), 600)
        failed = StageResult(stage=stage, error=reason, error_kind=ErrorKind.INTERNAL_ERROR)
        write_termination_message(settings.termination_log, failed, stderr)
        print(f"{prefix}: InternalError: {reason}", file=stderr)
        return 2
    # The stage's work (polars and all): imported once its config is known to be good,
    # or already being imported in the background (`stage_entry`).
    from pipeline_runner.runner import Delivery, finish_stage, start_stage
    from pipeline_runner.stage_entry import end_of_start_up

    traceparent = os.environ.get("TRACEPARENT") or cfg.traceparent
    end_of_start_up()
    # The work starts now. Its publishing is made while it runs, on this thread: the
    # emitter (for Kafka: librdkafka's client, asyncio, the producer, which connects in
    # the background) and then the event loop. Nothing of the work waits on them; made
    # before it, they only held the work's modules back (one interpreter lock).
    started = start_stage(cfg, settings, traceparent=traceparent)
    emitter = _emitter_beside_the_work(emit, settings, stderr, stdout)
    import asyncio

    delivery = Delivery(emitter, stderr=stderr)

    async def go() -> StageRun:
        try:
            return await finish_stage(started, delivery, termination_log=settings.termination_log)
        finally:
            await emitter.close()

    outcome = asyncio.run(go())
    result = outcome.result
    if not result.ok:
        kind = result.error_kind.value if result.error_kind else "InternalError"
        print(f"{prefix}: {kind}: {result.error}", file=stderr)
        return 1
    if delivery.error and settings.telemetry_required:
        print(f"{prefix}: InternalError: {delivery.error}", file=stderr)
        return 1
    print(
        f"{prefix}: ok, {result.records_in} rows in, {result.records_out} rows out "
        f"in {result.duration_seconds or 0:.2f}s",
        file=stdout,
    )
    return 0


# --------------------------------------------------------------------------- run


@dataclass(frozen=True)
class RunManifest:
    """What `run` takes from a PipelineRun: its name, its OpenLineage naming, and the
    source, transform and sink every stage's config holds (as the config's JSON has them)."""

    name: str | None
    namespace: str | None
    job: str | None
    source: dict[str, Any]
    transform: dict[str, Any]
    sink: dict[str, Any]

    @classmethod
    def of_model(cls, run: PipelineRun) -> RunManifest:
        spec = run.spec
        return cls(
            name=run.metadata.name,
            namespace=spec.openlineage.namespace,
            job=spec.openlineage.job,
            source=spec.source.model_dump(by_alias=True, exclude_none=True),
            transform=spec.transform.model_dump(by_alias=True, exclude_none=True),
            sink=spec.sink.model_dump(by_alias=True, exclude_none=True),
        )


def load_manifest(path: str) -> RunManifest:
    """The first PipelineRun in a YAML file, read without pydantic (`run_reader`: the
    models' schema and rules). A manifest that reader refuses is the models' to judge:
    their error names the field, as it always did; and what they alone accept (a number
    given as text, a status) runs as they read it."""
    import yaml

    from lineagehub.api.run_reader import ManifestError, read_pipelinerun

    with Path(path).open() as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    doc = next((d for d in docs if isinstance(d, dict) and d.get("kind") == "PipelineRun"), None)
    if doc is None:
        raise ValueError(f"{path} holds no PipelineRun")
    try:
        run = read_pipelinerun(doc)
    except ManifestError:
        from lineagehub.api import PipelineRun

        return RunManifest.of_model(PipelineRun.model_validate(doc))
    spec = doc["spec"]  # as given: checked by the definitions a stage's config is read by
    return RunManifest(
        name=run.metadata.name,
        namespace=run.spec.openlineage.namespace,
        job=run.spec.openlineage.job,
        source=spec["source"],
        transform=spec.get("transform", {}),
        sink=spec["sink"],
    )


def stage_config(
    manifest: RunManifest,
    stage: StageName,
    *,
    name: str,
    workspace: str,
    namespace: str,
    job: str,
    run_id: str,
    traceparent: str,
    source_uri: str,
    sink_uri: str,
) -> StageConfig:
    """`stage`'s config, as the operator would give it to the stage's Job (and read as
    that Job reads it, `stage_reader`), with the source and sink at their local URIs."""
    from lineagehub.api.run_ids import new_run_id

    cfg = read_stage_config_data(
        {
            "runId": new_run_id(),
            "stage": stage.value,
            "pipelineRun": {"namespace": "local", "name": name},
            "source": manifest.source,
            "transform": manifest.transform,
            "sink": manifest.sink,
            "workspace": workspace,
            "openlineageNamespace": namespace,
            "openlineageJob": f"{job}.{stage.value}",
            "parent": {"runId": run_id, "namespace": namespace, "job": job},
            "traceparent": traceparent,
        }
    )
    # The local URIs are put in after the check, not checked: they are this machine's
    # paths (`--mount`), which may hold what a URI in a manifest may not (a space).
    local = {
        "source": View({**vars(cfg.source), "uri": source_uri}),
        "sink": View({**vars(cfg.sink), "uri": sink_uri}),
    }
    return cast("StageConfig", StageConfigView({**vars(cfg), **local}))


def parse_mounts(values: Sequence[str]) -> dict[str, str]:
    mounts: dict[str, str] = {}
    for value in values:
        src, sep, dst = value.partition("=")
        if not sep or not src.startswith("/") or not dst:
            raise ValueError(f"--mount wants /pod/path=local/dir, got {value!r}")
        mounts[src.rstrip("/")] = str(Path(dst).resolve())
    return mounts


def map_uri(uri: str, mounts: dict[str, str]) -> str:
    """A `file://` URI with its path moved to the local folder of the longest matching
    mount; any other URI as it is."""
    if not uri.startswith("file://"):
        return uri
    path = uri[len("file://") :]
    for src in sorted(mounts, key=len, reverse=True):
        if path == src or path.startswith(src + "/"):
            return "file://" + mounts[src] + path[len(src) :]
    return uri


def _default_mounts(manifest: str, workspace: str) -> dict[str, str]:
    if Path("/data").exists():
        return {}
    return {
        "/data/examples": str(Path(manifest).resolve().parent / "data"),
        "/data/output": str(Path(workspace) / "output"),
    }


def _fmt(value: int | float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}{unit}"
    return f"{value:,}{unit}"


def summary_table(runs: list[StageRun], run_id: str, trace_id: str) -> str:
    header = ("stage", "status", "rows in", "rows out", "rejected", "duration", "output")
    rows = [header]
    for r in runs:
        res = r.result
        rows.append(
            (
                res.stage.value,
                "ok" if res.ok else (res.error_kind.value if res.error_kind else "failed"),
                _fmt(res.records_in),
                _fmt(res.records_out),
                _fmt(res.rejected),
                _fmt(res.duration_seconds, "s"),
                res.output_uri or "-",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"run id:   {run_id}")
    lines.append(f"trace id: {trace_id}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`lineage-hub run MANIFEST`: run a PipelineRun's three stages in this process."""
    parser = argparse.ArgumentParser(prog="lineage-hub run", description=main.__doc__)
    parser.add_argument("manifest", help="a YAML file holding a PipelineRun")
    parser.add_argument(
        "--workspace", help="folder for the intermediate files (default: a new temporary folder)"
    )
    parser.add_argument(
        "--emit",
        choices=("kafka", "console", "none"),
        default="kafka",
        help="kafka (at KAFKA_BOOTSTRAP) publishes; console prints the events instead",
    )
    parser.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="POD_PATH=DIR",
        help="read/write file:// paths under POD_PATH in DIR (repeatable)",
    )
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return run_manifest(
        args.manifest,
        workspace=args.workspace,
        emit=args.emit,
        mounts=args.mount,
        stdout=sys.stdout,
        stderr=sys.stderr,
    )


def run_manifest(
    manifest: str,
    *,
    workspace: str | None = None,
    emit: str = "kafka",
    mounts: Sequence[str] = (),
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    emitter: Emitter | None = None,
    settings: Settings | None = None,
) -> int:
    import asyncio
    import secrets
    import tempfile

    import yaml

    from lineagehub.api.run_ids import new_run_id
    from lineagehub.datasets import dataset_of
    from lineagehub.telemetry.lineage import run_event
    from lineagehub.telemetry.spans import FixedSpan, encode
    from pipeline_runner.runner import Delivery, run_stage

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        run = load_manifest(manifest)
        settings = settings or Settings.from_env()
        mount_map = parse_mounts(mounts)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"lineage-hub run: {one_line(str(exc), 2000)}", file=err)
        return 2
    name = run.name or Path(manifest).stem
    ws = str(
        Path(workspace).resolve()
        if workspace
        else Path(tempfile.mkdtemp(prefix=f"lineage-hub-{name}-"))
    )
    if not mount_map:
        mount_map = _default_mounts(manifest, ws)
    source_uri = map_uri(run.source["uri"], mount_map)
    sink_uri = map_uri(run.sink["uri"], mount_map)
    namespace = (
        run.namespace or os.environ.get("LINEAGEHUB_OPENLINEAGE_NAMESPACE") or DEFAULT_NAMESPACE
    )
    job = run.job or name
    run_id = new_run_id()
    trace_id = secrets.token_hex(16)
    root_span_id = secrets.token_hex(8)
    traceparent = f"00-{trace_id}-{root_span_id}-01"
    sink_emitter = emitter or _emitter(emit, settings, err, out)

    print(f"PipelineRun {name}: run {run_id}, trace {trace_id}", file=out)
    print(f"  workspace {ws}", file=out)
    for src, dst in mount_map.items():
        print(f"  mount {src} -> {dst}", file=out)
    print(f"  publishing to {sink_emitter.description}", file=out)

    def config(stage: StageName) -> StageConfig:
        return stage_config(
            run,
            stage,
            name=name,
            workspace=ws,
            namespace=namespace,
            job=job,
            run_id=run_id,
            traceparent=traceparent,
            source_uri=source_uri,
            sink_uri=sink_uri,
        )

    async def go() -> list[StageRun]:
        delivery = Delivery(sink_emitter, stderr=err)
        started = datetime.now(UTC)
        datasets: dict[str, Any] = {
            "inputs": [dataset_of(source_uri)],
            "outputs": [dataset_of(sink_uri)],
        }
        runs: list[StageRun] = []
        try:
            await delivery.send(
                LINEAGE_TOPIC,
                run_id,
                run_event(
                    "START",
                    run_id=run_id,
                    namespace=namespace,
                    job=job,
                    event_time=started,
                    **datasets,
                ),
            )
            for i, stage in enumerate(STAGES, start=1):
                print(f"[{i}/{len(STAGES)}] {stage.value} ...", file=out, flush=True)
                stage_run = await run_stage(config(stage), delivery, settings)
                runs.append(stage_run)
                res = stage_run.result
                if not res.ok:
                    kind = res.error_kind.value if res.error_kind else "InternalError"
                    print(
                        f"[{i}/{len(STAGES)}] {stage.value} FAILED: {kind}: {res.error}", file=out
                    )
                    break
                warned = [q for q in res.quality if not q.success]
                for q in warned:
                    print(f"      warning: check {q.name} ({q.severity}): {q.message}", file=out)
                print(
                    f"[{i}/{len(STAGES)}] {stage.value} ok: {_fmt(res.records_in)} rows in, "
                    f"{_fmt(res.records_out)} rows out, {_fmt(res.duration_seconds, 's')}",
                    file=out,
                    flush=True,
                )
            ok = len(runs) == len(STAGES) and runs[-1].result.ok
            ended = datetime.now(UTC)
            error = None if ok else (runs[-1].result.error if runs else "not started")
            await delivery.send(
                LINEAGE_TOPIC,
                run_id,
                run_event(
                    "COMPLETE" if ok else "FAIL",
                    run_id=run_id,
                    namespace=namespace,
                    job=job,
                    event_time=ended,
                    error=error,
                    **datasets,
                ),
            )
            root = FixedSpan(
                name=f"PipelineRun {name}",
                trace_id=trace_id,
                span_id=root_span_id,
                start=started,
                end=ended,
                ok=ok,
                message=error or "",
                attributes={
                    "lineagehub.run_id": run_id,
                    "lineagehub.pipeline": job,
                    "lineagehub.outcome": "COMPLETE" if ok else "FAIL",
                    "lineagehub.pipelinerun": name,
                },
            )
            await delivery.send(SPANS_TOPIC, trace_id, encode([root], settings.service_name))
        finally:
            await sink_emitter.close()
        return runs

    runs = asyncio.run(go())
    print("", file=out)
    print(summary_table(runs, run_id, trace_id), file=out)
    ok = len(runs) == len(STAGES) and runs[-1].result.ok
    if not ok and runs:
        res = runs[-1].result
        kind = res.error_kind.value if res.error_kind else "InternalError"
        print(f"lineage-hub run: {res.stage.value}: {kind}: {res.error}", file=err)
    return 0 if ok else 1
