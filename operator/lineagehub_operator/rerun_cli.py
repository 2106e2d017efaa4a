"""`lineage-hub rerun RUN [--from STAGE]`: create a PipelineRun that re-runs RUN from a
stage (by default the first one RUN did not finish), reusing its earlier stages' outputs.
The new run has RUN's spec and `spec.rerun`; its lineage names RUN as its parent."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any, cast

from lineagehub.api.pipelinerun import (
    API_GROUP,
    API_GROUP_VERSION,
    API_VERSION,
    KIND,
    PLURAL,
    PipelineRun,
    RerunSpec,
    StageName,
)


def rerun_manifest(
    earlier: Mapping[str, Any], from_stage: StageName | None, name: str | None = None
) -> dict[str, Any]:
    """The new PipelineRun: the earlier run's spec as its author wrote it (inline, or the
    pipelineRef and params), not cancelled or suspended, with `spec.rerun`."""
    run = PipelineRun.model_validate(earlier)
    spec = run.request().model_copy(
        update={
            "cancel": False,
            "suspend": False,
            "rerun": RerunSpec(of=run.metadata.name or "", from_stage=from_stage),
        }
    )
    meta: dict[str, Any] = {"namespace": run.metadata.namespace}
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = f"{(run.metadata.name or 'run')[:50]}-rerun-"
    return {"apiVersion": API_GROUP_VERSION, "kind": KIND, "metadata": meta, "spec": spec.wire()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lineage-hub rerun", description=__doc__)
    parser.add_argument("run", help="the PipelineRun to re-run")
    parser.add_argument(
        "--from",
        dest="from_stage",
        choices=[s.value for s in StageName],
        help="the stage to start at (default: the first one the run did not finish)",
    )
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--name", help="name of the new run (default: generated)")
    args = parser.parse_args(argv)
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from lineagehub_operator.kube import load_config

    custom = client.CustomObjectsApi(load_config())
    try:
        earlier = cast(
            dict[str, Any],
            custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, args.namespace, PLURAL, args.run
            ),
        )
        new = rerun_manifest(
            earlier, StageName(args.from_stage) if args.from_stage else None, args.name
        )
        created = cast(
            dict[str, Any],
            custom.create_namespaced_custom_object(
                API_GROUP, API_VERSION, args.namespace, PLURAL, new
            ),
        )
    except ApiException as err:
        print(f"rerun: {args.namespace}/{args.run}: {err.reason}: {err.body}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"rerun: {args.namespace}/{args.run} cannot be re-run: {err}", file=sys.stderr)
        return 1
    print(f"pipelinerun.{API_GROUP}/{created['metadata']['name']} created")
    return 0
