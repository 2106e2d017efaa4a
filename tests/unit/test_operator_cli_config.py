"""A bad self-tracing setting stops the operator at once, naming the variable: kopf
would retry a failing startup handler forever, leaving an operator that is up but never
reconciles a run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ],
)
def test_a_bad_tracing_setting_exits_2_naming_it(setting: dict[str, str], named: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    # Nowhere to reach: were the check missing, kopf would start and never return.
    env.update(setting, KUBECONFIG="/nonexistent", KUBERNETES_SERVICE_HOST="")
    done = subprocess.run(
        [sys.executable, "-m", "lineagehub.cli", "operator", "--liveness", ""],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("lineage-hub operator: bad configuration: ")
    assert named in line
