"""What a PipelineRun may make its stages do, and what never leaves a stage.

- the operator's run policy (`lineagehub_operator/policy.py`): a table of hostile specs,
  each refused with a reason naming its field, and the specs it lets through;
- the refusal itself (`decide.refuse`): Failed/PolicyViolation, no Job;
- the runner's HTTP reader: every redirect hop and every connection checked;
- ClickHouse identifiers from a hostile CSV header, on real chdb;
- credentials out of dataset names, spans and status; the S3 Secret wired into the Job;
- the operator's I/O: Kubernetes calls that time out, a results cache that forgets,
  store answers that are not answers turned into verdicts.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from kubernetes import client as k8s
from lineagehub_operator import policy
from lineagehub_operator.checker import StoreChecker
from lineagehub_operator.config import OperatorConfig
from lineagehub_operator.decide import CreateJob, EmitRunEvent, RecordEvent, RunIds, decide, refuse
from lineagehub_operator.kube import KubeApi
from lineagehub_operator.manifests import stage_job
from lineagehub_operator.observed import JobState, ObservedJob, ResultCache

from lineagehub.api.egress import ALLOWED_PRIVATE_TARGETS_ENV, TargetPolicy, address_kind
from lineagehub.api.pipelinerun import (
    CONDITION_LINEAGE_RECORDED,
    CONDITION_SUCCEEDED,
    CONDITION_TRACE_RECORDED,
    Phase,
    PipelineRun,
    PipelineRunSpec,
    SourceFormat,
    SourceSpec,
    StageName,
)
from lineagehub.datasets import dataset_of, redact_text, redact_uri
from pipeline_runner.errors import ErrorKind, StageError
from pipeline_runner.settings import Settings
from pipeline_runner.sources import GuardedTransport, download, open_source
from pipeline_runner.telemetry import StageTelemetry
from tests.loopback_http import QuietHandler, serving

RUNNER = "ghcr.io/lineage-hub/lineage-hub:0.1.0"
CONFIG = OperatorConfig(runner_image=RUNNER, data_host_path="/srv/data", data_mount_path="/data")
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
IDS = RunIds(
    "019ac0f0-0000-7000-8000-000000000001", "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
)
SECRET = "s3cr3t-pw"
#: What the fake DNS answers; anything else does not resolve.
DNS = {
    "data.example.com": ["93.184.216.34"],
    "cdn.example.com": ["151.101.1.1"],
    "metadata.internal": ["169.254.169.254"],
    "intranet.example.com": ["10.20.30.40"],
    "split.example.com": ["93.184.216.34", "10.1.1.1"],
    "localhost": ["127.0.0.1", "::1"],
    "minio.data.svc": ["10.96.0.12"],
}


def fake_dns(host: str) -> Sequence[str]:
    try:
        return DNS[host]
    except KeyError:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} does not resolve") from None


def spec(**changes: Any) -> PipelineRunSpec:
    base: dict[str, Any] = {
        "source": {"uri": "file:///data/examples/orders.csv", "format": "csv"},
        "sink": {"uri": "file:///data/output/orders.parquet", "format": "parquet"},
    }
    for key, value in changes.items():
        side, _, field = key.partition("__")
        if field:
            base[side] = {**base[side], field: value}
        else:
            base[side] = value
    return PipelineRunSpec.model_validate(base)


# --------------------------------------------------------------------------- the policy table

HOSTILE: list[tuple[str, PipelineRunSpec, OperatorConfig, str, str]] = [
    # (case, spec, config, field named, words the problem must say)
    ("unknown image", spec(image="docker.io/evil/miner:latest"), CONFIG, "spec.image", "miner"),
    (
        "image that only starts like the runner's",
        spec(image=RUNNER + "-evil"),
        CONFIG,
        "spec.image",
        "not one the operator runs",
    ),
    (
        "cloud metadata by address",
        spec(source={"uri": "http://169.254.169.254/latest/meta-data/iam", "format": "csv"}),
        CONFIG,
        "spec.source.uri",
        "link-local",
    ),
    (
        "cloud metadata by name",
        spec(source={"uri": "http://metadata.internal/computeMetadata/v1/", "format": "csv"}),
        CONFIG,
        "spec.source.uri",
        "resolves to 169.254.169.254, a link-local address",
    ),
    (
        "private network",
        spec(source={"uri": "https://intranet.example.com/hr.csv", "format": "csv"}),
        CONFIG,
        "spec.source.uri",
        "private",
    ),
    (
        "one private answer among public ones",
        spec(source={"uri": "https://split.example.com/x.csv", "format": "csv"}),
        CONFIG,
        "spec.source.uri",
        "10.1.1.1",
    ),
    (
        "loopback",
        spec(source={"uri": "http://127.0.0.1:10250/pods", "format": "json"}),
        CONFIG,
        "spec.source.uri",
        "loopback",
    ),
    (
        "IPv6 loopback",
        spec(source={"uri": "http://[::1]:8080/x.csv", "format": "csv"}),
        CONFIG,
        "spec.source.uri",
        "loopback",
    ),
    (
        "link-local behind an IPv4-mapped IPv6 address",
        spec(source={"uri": "http://[::ffff:169.254.169.254]/x", "format": "csv"}),
        CONFIG,
        "spec.source.uri",
        "link-local",
    ),
    (
        "the service-account token",
        spec(
            source={
                "uri": "file:///var/run/secrets/kubernetes.io/serviceaccount/token",
                "format": "csv",
            }
        ),
        CONFIG,
        "spec.source.uri",
        "outside the folders a stage may use",
    ),
    (
        "out of the data mount with ..",
        spec(source={"uri": "file:///data/../etc/passwd", "format": "csv"}),
        CONFIG,
        "spec.source.uri",
        "climbs out",
    ),
    (
        "out of the data mount with an encoded ..",
        spec(source={"uri": "file:///data/%2e%2e/proc/self/environ", "format": "csv"}),
        CONFIG,
        "spec.source.uri",
        "climbs out",
    ),
    (
        "a path that only starts like the mount",
        spec(source={"uri": "file:///database/x.csv", "format": "csv"}),
        CONFIG,
        "spec.source.uri",
        "outside",
    ),
    (
        "a file URI with a host",
        spec(source={"uri": "file://evil.test/data/x.csv", "format": "csv"}),
        CONFIG,
        "spec.source.uri",
        "names host",
    ),
    (
        "a sink over the host's files",
        spec(sink={"uri": "file:///etc/cron.d/job", "format": "csv"}),
        CONFIG,
        "spec.sink.uri",
        "outside",
    ),
    (
        "the data folder when no data volume is mounted",
        spec(sink={"uri": "file:///workspace/out.parquet", "format": "parquet"}),
        OperatorConfig(runner_image=RUNNER),
        "spec.source.uri",
        "no data volume is mounted",
    ),
    (
        "an s3 endpoint on the metadata address",
        spec(
            source={
                "uri": "s3://bucket/x.csv",
                "format": "csv",
                "s3": {"endpoint": "http://169.254.169.254"},
            }
        ),
        CONFIG,
        "spec.source.s3.endpoint",
        "link-local",
    ),
    (
        "an s3 endpoint on loopback by name",
        spec(
            sink={
                "uri": "s3://bucket/out.parquet",
                "format": "parquet",
                "s3": {"endpoint": "http://localhost:9000"},
            }
        ),
        CONFIG,
        "spec.sink.s3.endpoint",
        "loopback",
    ),
    (
        "a clickhouse sink on a private address, with credentials",
        spec(
            sink={"uri": f"clickhouse://admin:{SECRET}@10.0.0.9:9000/db.t", "format": "clickhouse"}
        ),
        CONFIG,
        "spec.sink.uri",
        "private",
    ),
    (
        "a hostile clickhouse table name",
        spec(sink={"uri": "clickhouse://ch.example.com/db.t`;DROP", "format": "clickhouse"}),
        CONFIG,
        "spec.sink.uri",
        "plain identifiers",
    ),
    (
        "a host dressed as the allowed prefix",
        spec(
            source={
                "uri": "https://data.example.com@cdn.example.com/exports/x.csv",
                "format": "csv",
            }
        ),
        OperatorConfig(
            runner_image=RUNNER,
            data_host_path="/srv/data",
            allowed_uri_prefixes=("https://data.example.com/exports/", "file:///data/"),
        ),
        "spec.source.uri",
        "none of the allowed prefixes",
    ),
    (
        "a folder that only starts like the allowed prefix",
        spec(source={"uri": "https://data.example.com/exports-private/x.csv", "format": "csv"}),
        OperatorConfig(
            runner_image=RUNNER,
            data_host_path="/srv/data",
            allowed_uri_prefixes=("https://data.example.com/exports", "file:///data/"),
        ),
        "spec.source.uri",
        "none of the allowed prefixes",
    ),
]


@pytest.mark.parametrize(
    ("run_spec", "config", "field", "words"),
    [case[1:] for case in HOSTILE],
    ids=[case[0] for case in HOSTILE],
)
def test_hostile_spec_is_refused_naming_the_field(
    run_spec: PipelineRunSpec, config: OperatorConfig, field: str, words: str
) -> None:
    violations = policy.evaluate(run_spec, config, fake_dns)
    assert [v.field for v in violations] == [field], violations
    (violation,) = violations
    assert words in str(violation)
    assert violation.fix, "a refusal says how to fix it"
    text = policy.message(violations)
    assert text.startswith("Refused by the operator's policy: ")
    assert field in text
    assert SECRET not in text, "credentials never reach the status message"


ALLOWED: list[tuple[str, PipelineRunSpec, OperatorConfig]] = [
    ("the example run", spec(), CONFIG),
    ("the runner image named explicitly", spec(image=RUNNER), CONFIG),
    (
        "an image the admin allowed by prefix",
        spec(image="registry.example/runner:2.1"),
        OperatorConfig(
            runner_image=RUNNER,
            data_host_path="/srv/data",
            allowed_images=("registry.example/runner:*",),
        ),
    ),
    (
        "a public https source",
        spec(source={"uri": "https://data.example.com/exports/x.csv", "format": "csv"}),
        CONFIG,
    ),
    (
        "a host that does not resolve (the stage checks what it connects to)",
        spec(source={"uri": "https://nowhere.invalid/x.csv", "format": "csv"}),
        CONFIG,
    ),
    (
        "the run's workspace",
        spec(sink={"uri": "file:///workspace/out.csv", "format": "csv"}),
        CONFIG,
    ),
    (
        "an allowed private target by address",
        spec(source={"uri": "http://127.0.0.1:8080/x.csv", "format": "csv"}),
        OperatorConfig(
            runner_image=RUNNER,
            data_host_path="/srv/data",
            private_targets=TargetPolicy.from_text("127.0.0.1"),
        ),
    ),
    (
        "an allowed private target by name",
        spec(
            sink={
                "uri": "s3://bucket/out.parquet",
                "format": "parquet",
                "s3": {"endpoint": "http://minio.data.svc:9000"},
            }
        ),
        OperatorConfig(
            runner_image=RUNNER,
            data_host_path="/srv/data",
            private_targets=TargetPolicy.from_text("minio.data.svc"),
        ),
    ),
    (
        "an s3 source on AWS",
        spec(
            source={
                "uri": "s3://bucket/x.parquet",
                "format": "parquet",
                "s3": {"region": "eu-west-1"},
            }
        ),
        CONFIG,
    ),
    (
        "a URI under an allowed prefix",
        spec(source={"uri": "https://data.example.com/exports/2026/x.csv", "format": "csv"}),
        OperatorConfig(
            runner_image=RUNNER,
            data_host_path="/srv/data",
            allowed_uri_prefixes=("https://data.example.com/exports", "file:///data/output/"),
        ),
    ),
]


@pytest.mark.parametrize(
    ("run_spec", "config"), [case[1:] for case in ALLOWED], ids=[case[0] for case in ALLOWED]
)
def test_allowed_spec_passes(run_spec: PipelineRunSpec, config: OperatorConfig) -> None:
    assert policy.evaluate(run_spec, config, fake_dns) == []


def test_every_problem_of_a_spec_is_named_at_once() -> None:
    hostile = spec(
        image="evil:1",
        source={"uri": "http://169.254.169.254/x", "format": "csv"},
        sink={"uri": "file:///etc/passwd", "format": "csv"},
    )
    fields = [v.field for v in policy.evaluate(hostile, CONFIG, fake_dns)]
    assert fields == ["spec.image", "spec.source.uri", "spec.sink.uri"]


def test_the_policy_resolves_hosts_off_the_loop_and_bounded() -> None:
    def slow_then_private(host: str) -> Sequence[str]:
        return ["10.0.0.1"]

    hostile = spec(source={"uri": "http://internal.test/x.csv", "format": "csv"})
    found = asyncio.run(policy.check(hostile, CONFIG, slow_then_private))
    assert [v.field for v in found] == ["spec.source.uri"]

    answer = threading.Event()

    def hangs(host: str) -> Sequence[str]:
        answer.wait(30)
        return ["10.0.0.1"]

    async def check_then_answer() -> list[policy.Violation]:
        try:
            return await policy.check(hostile, CONFIG, hangs, resolve_seconds=0.05)
        finally:
            # The check returned while the resolver still hangs; let its thread end now,
            # or asyncio.run waits the whole 30 s for the executor's shutdown.
            answer.set()

    # A resolver that does not answer in time counts as not resolvable: no verdict hangs.
    assert asyncio.run(check_then_answer()) == []


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.53", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:a9fe:a9fe::1", "link-local"),
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_kinds(address: str, kind: str | None) -> None:
    assert address_kind(address) == kind


# --------------------------------------------------------------------------- the refusal


def started_run(run_spec: PipelineRunSpec) -> PipelineRun:
    run = PipelineRun(
        metadata={"name": "orders", "namespace": "ns", "uid": "u", "generation": 1},
        spec=run_spec,
    )
    return run.model_copy(update={"status": decide(run, {}, T0, IDS).status})


def test_a_refused_run_fails_before_any_job_with_policy_violation() -> None:
    hostile = spec(source={"uri": "http://169.254.169.254/latest", "format": "csv"})
    run = started_run(hostile)
    planned = decide(run, {}, T0, IDS)
    assert CreateJob(StageName.EXTRACT) in planned.actions  # what the handler checks for
    message = policy.message(policy.evaluate(hostile, CONFIG, fake_dns))
    decision = refuse(run, message, T0)
    status = decision.status
    assert status.phase == Phase.FAILED
    assert not any(isinstance(a, CreateJob) for a in decision.actions)
    succeeded = status.condition(CONDITION_SUCCEEDED)
    assert succeeded is not None and succeeded.status == "False"
    assert succeeded.reason == "PolicyViolation"
    assert "spec.source.uri" in succeeded.message
    assert [s.phase for s in status.stages] == [Phase.PENDING] * 3
    # Nothing ran: no lineage event is sent, and nothing is waited for.
    assert not any(isinstance(a, EmitRunEvent) for a in decision.actions)
    for kind in (CONDITION_LINEAGE_RECORDED, CONDITION_TRACE_RECORDED):
        cond = status.condition(kind)
        assert cond is not None and (cond.status, cond.reason) == ("False", "PolicyViolation")
    warning = [a for a in decision.actions if isinstance(a, RecordEvent)]
    assert warning and warning[0].type == "Warning" and warning[0].reason == "PolicyViolation"
    # The refusal is final: deciding again changes nothing.
    done = run.model_copy(update={"status": status})
    again = decide(done, {}, T0, IDS)
    assert again.status == status and not again.actions


def test_a_run_refused_between_stages_closes_its_lineage_run() -> None:
    run = started_run(spec())
    extract = ObservedJob(
        stage=StageName.EXTRACT,
        name="orders-extract",
        uid="j1",
        state=JobState.COMPLETE,
        attempts=1,
    )
    for _ in range(2):
        run = run.model_copy(
            update={"status": decide(run, {StageName.EXTRACT: extract}, T0, IDS).status}
        )
    decision = refuse(run, "Refused by the operator's policy: spec.image: ...", T0)
    assert EmitRunEvent("FAIL") in decision.actions
    assert decision.status.condition(CONDITION_LINEAGE_RECORDED) is None  # verified as usual


# --------------------------------------------------------------------------- the runner's reader


def _settings() -> Settings:
    return Settings(http_backoff=0.0, http_retries=0)


def _redirecting(routes: dict[str, httpx.Response], seen: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return routes.get(str(request.url), httpx.Response(404))

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://metadata.internal/computeMetadata/v1/", "resolves to 169.254.169.254"),
        ("http://[::1]:2379/v2/keys", "loopback"),
        ("https://intranet.example.com/hr.csv", "private"),
        (
            "file:///var/run/secrets/kubernetes.io/serviceaccount/token",
            "file URL is not a download",
        ),
    ],
)
def test_a_redirect_to_a_refused_target_is_never_followed(
    tmp_path: Path, location: str, words: str
) -> None:
    seen: list[str] = []
    start = "https://data.example.com/x.csv"
    transport = _redirecting({start: httpx.Response(302, headers={"location": location})}, seen)
    with pytest.raises(StageError) as err:
        download(
            start,
            str(tmp_path / "d"),
            _settings(),
            transport=transport,
            policy=TargetPolicy(),
            resolve=fake_dns,
        )
    assert err.value.kind is ErrorKind.INPUT_INVALID
    assert "redirects to" in err.value.reason and words in err.value.reason
    assert seen == [start], "the refused hop was never requested"
    assert not (tmp_path / "d").exists()


def test_redirects_between_allowed_hosts_are_followed_hop_by_hop(tmp_path: Path) -> None:
    seen: list[str] = []
    routes = {
        "https://data.example.com/x.csv": httpx.Response(
            301, headers={"location": "https://cdn.example.com/a/x.csv"}
        ),
        "https://cdn.example.com/a/x.csv": httpx.Response(307, headers={"location": "../b/x.csv"}),
        "https://cdn.example.com/b/x.csv": httpx.Response(200, content=b"a,b\n1,2\n"),
    }
    n = download(
        "https://data.example.com/x.csv",
        str(tmp_path / "d"),
        _settings(),
        transport=_redirecting(routes, seen),
        policy=TargetPolicy(),
        resolve=fake_dns,
    )
    assert n == 8 and (tmp_path / "d").read_bytes() == b"a,b\n1,2\n"
    assert seen == list(routes)


def test_endless_redirects_stop(tmp_path: Path) -> None:
    seen: list[str] = []
    loop = "https://data.example.com/x.csv"
    transport = _redirecting({loop: httpx.Response(302, headers={"location": loop})}, seen)
    with pytest.raises(StageError, match="redirects more than 10 times"):
        download(loop, str(tmp_path / "d"), _settings(), transport=transport, resolve=fake_dns)
    assert len(seen) == 11


def test_the_stage_takes_its_allowed_targets_from_the_job_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    url = "http://10.20.30.40/x.csv"
    transport = _redirecting({url: httpx.Response(200, content=b"a\n1\n")}, seen)
    source = SourceSpec(uri=url, format=SourceFormat.CSV)
    monkeypatch.delenv(ALLOWED_PRIVATE_TARGETS_ENV, raising=False)
    with pytest.raises(StageError, match=r"10\.20\.30\.40 is a private address"):
        open_source(source, str(tmp_path), _settings(), transport=transport)
    assert seen == []
    monkeypatch.setenv(ALLOWED_PRIVATE_TARGETS_ENV, "10.20.30.0/24")
    opened = open_source(source, str(tmp_path), _settings(), transport=transport)
    assert opened.frame.collect()["a"].to_list() == [1]
    opened.cleanup()


def test_the_stage_checks_s3_endpoints_and_clickhouse_servers_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Object stores and ClickHouse servers are reached by clients of their own: the
    stage checks their host against its policy before handing it over."""
    import polars as pl

    from lineagehub.api.pipelinerun import SinkSpec, WriteMode
    from pipeline_runner.sinks import ClickHouseSink, sink_for

    monkeypatch.delenv(ALLOWED_PRIVATE_TARGETS_ENV, raising=False)
    source = SourceSpec.model_validate(
        {"uri": "s3://b/x.csv", "format": "csv", "s3": {"endpoint": "http://169.254.169.254"}}
    )
    with pytest.raises(StageError, match=r"spec\.source\.s3\.endpoint .* link-local"):
        open_source(source, str(tmp_path), _settings())
    sink = SinkSpec.model_validate(
        {"uri": "s3://b/y.csv", "format": "csv", "s3": {"endpoint": "http://[::1]:9000"}}
    )
    with pytest.raises(StageError, match=r"spec\.sink\.s3\.endpoint .* loopback"):
        sink_for(sink, _settings())
    parquet = tmp_path / "t.parquet"
    pl.DataFrame({"a": [1]}).write_parquet(parquet)
    server = ClickHouseSink(f"clickhouse://admin:{SECRET}@10.0.0.9:9000/db.t")
    with pytest.raises(StageError) as err:
        server.write(str(parquet), WriteMode.OVERWRITE)
    assert "10.0.0.9 is a private address" in err.value.reason
    assert SECRET not in err.value.reason


class _Csv(QuietHandler):
    def do_GET(self) -> None:
        self.reply(200, b"a,b\n1,2\n")


@pytest.fixture
def loopback_server() -> Iterator[int]:
    with serving(_Csv) as served:
        yield served.port


def test_the_connection_itself_is_checked_against_a_changed_dns_answer(
    tmp_path: Path, loopback_server: int
) -> None:
    """DNS rebinding: the hop check sees a public answer, the connection a loopback one.
    The guarded transport resolves again and refuses before connecting."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])

    def rebinding(host: str) -> Sequence[str]:
        return next(answers)

    url = f"http://rebind.example.com:{loopback_server}/x.csv"
    with pytest.raises(StageError, match=r"resolves to 127\.0\.0\.1, a loopback"):
        download(url, str(tmp_path / "d"), _settings(), policy=TargetPolicy(), resolve=rebinding)


def test_the_guarded_transport_reaches_an_allowed_private_target(
    tmp_path: Path, loopback_server: int
) -> None:
    url = f"http://127.0.0.1:{loopback_server}/x.csv"
    with pytest.raises(StageError, match="loopback"):
        download(url, str(tmp_path / "d"), _settings(), policy=TargetPolicy())
    allowed = TargetPolicy.from_text("127.0.0.1/32")
    assert download(url, str(tmp_path / "d"), _settings(), policy=allowed) == 8
    with (
        httpx.Client(transport=GuardedTransport(TargetPolicy())) as plain,
        pytest.raises(Exception, match="loopback"),
    ):
        plain.get(url)


# --------------------------------------------------------------------------- ClickHouse names

HOSTILE_HEADER_SCRIPT = textwrap.dedent(
    """
    import csv as csv_module, json, sys
    import polars as pl
    from lineagehub.api import WriteMode
    from pipeline_runner.sinks import ChdbBackend, ClickHouseSink

    tmp, chdb_path = sys.argv[1], sys.argv[2]
    headers = json.loads(sys.argv[3])
    csv = tmp + "/hostile.csv"
    with open(csv, "w", newline="") as f:
        writer = csv_module.writer(f)
        writer.writerow(headers)
        writer.writerow(range(len(headers)))
    src = tmp + "/transform.parquet"
    pl.read_csv(csv).write_parquet(src)
    backend = ChdbBackend(chdb_path)
    backend.close = lambda: None
    sink = ClickHouseSink("clickhouse://localhost:9000/shop.orders", backend=backend)
    written = sink.write(src, WriteMode.OVERWRITE).rows
    print(json.dumps({"rows": written, "columns": pl.read_parquet_schema(src).names()}))
    s = backend._session
    out = lambda q: json.dumps(json.loads(str(s.query(q, "JSONCompact")))["data"])
    print(out("SELECT name FROM system.columns WHERE database = 'shop' AND table = 'orders' "
              "ORDER BY position"))
    print(out("SELECT name, engine FROM system.tables WHERE database = 'shop' ORDER BY name"))
    print(out("SELECT * FROM shop.orders"))
    """
)

HOSTILE_HEADERS = [
    "id",
    "a` String) ENGINE = Memory AS SELECT 1 --",
    "b\\` Int8, `c",
    "back\\slash",
    "quote'\"",
    "`",
]


def test_a_hostile_csv_header_cannot_rewrite_the_clickhouse_statement(tmp_path: Path) -> None:
    """Each header stays one column of its own name, in a MergeTree table: before, the
    second header closed the backquotes and turned the table into a Memory one."""
    import json

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            HOSTILE_HEADER_SCRIPT,
            str(tmp_path),
            str(tmp_path / "chdb"),
            json.dumps(HOSTILE_HEADERS),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows, columns, tables, data = (json.loads(line) for line in proc.stdout.splitlines())
    assert rows["rows"] == 1
    # Every column of the result arrives under its own name; the backquoted ones too.
    assert [c[0] for c in columns] == rows["columns"]
    assert [h for h in HOSTILE_HEADERS if "`" in h or "\\" in h] == [
        c[0] for c in columns if "`" in c[0] or "\\" in c[0]
    ]
    assert tables == [["orders", "MergeTree"]], "no staging table left, none rewritten"
    assert [[int(v) for v in row] for row in data] == [list(range(len(HOSTILE_HEADERS)))]


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    ("uri", "dataset"),
    [
        (
            f"https://reader:{SECRET}@data.example.com:8443/x.csv",
            ("https://data.example.com:8443", "/x.csv"),
        ),
        (f"clickhouse://admin:{SECRET}@ch:9000/db.t", ("clickhouse://ch:9000", "db.t")),
        (f"s3://AKIA:{SECRET}@bucket/key.parquet", ("s3://bucket", "key.parquet")),
        (f"http://{SECRET}@h/x", ("http://h", "/x")),
        (f"https://u:{SECRET}@{SECRET}@h/x", ("https://h", "/x")),
    ],
)
def test_credentials_are_no_part_of_a_dataset_name(uri: str, dataset: tuple[str, str]) -> None:
    assert dataset_of(uri) == dataset
    assert SECRET not in redact_uri(uri)
    assert SECRET not in redact_text(f"source {uri} failed: {uri}")


def test_credentials_never_reach_a_span(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"https://reader:{SECRET}@data.example.com/x.csv"
    tel = StageTelemetry(Settings(), traceparent=None)
    with tel.stage_span("stage extract", {"lineagehub.source": uri}) as span:
        with pytest.raises(StageError), tel.step("read", {"lineagehub.source": uri}):
            raise StageError(ErrorKind.INPUT_NOT_FOUND, f"source {uri} not found")
        tel.fail(span, "InputNotFound", f"source {uri} not found")
    spans = tel.spans
    assert len(spans) == 2
    for finished in spans:
        texts = [str(v) for v in finished.attributes.values()]
        texts += [finished.message]
        texts += [str(v) for e in finished.events for v in e.attributes.values()]
        assert not [t for t in texts if SECRET in t], finished.name
        assert any("data.example.com" in t for t in texts)
    tel.finish()


def test_credentials_in_a_stage_error_never_reach_the_status() -> None:
    run = started_run(
        spec(source={"uri": f"https://u:{SECRET}@data.example.com/x.csv", "format": "csv"})
    )
    from lineagehub_operator.observed import StageResult

    failed = ObservedJob(
        stage=StageName.EXTRACT,
        name="orders-extract",
        uid="j1",
        state=JobState.FAILED,
        attempts=1,
        result=StageResult.parse(
            '{"error": "source https://u:' + SECRET + '@data.example.com/x.csv not found"}'
        ),
    )
    decision = decide(run, {StageName.EXTRACT: failed}, T0, IDS)
    wire = decision.status.model_dump_json()
    assert SECRET not in wire
    assert "https://data.example.com/x.csv" in wire
    assert all(SECRET not in a.message for a in decision.actions if isinstance(a, RecordEvent))


def test_s3_credentials_come_from_the_secret_into_the_stages_that_use_them() -> None:
    run = started_run(
        spec(
            source={
                "uri": "s3://in/x.parquet",
                "format": "parquet",
                "s3": {"credentialsSecretRef": {"name": "reader"}},
            },
            sink={
                "uri": "s3://out/y.parquet",
                "format": "parquet",
                "s3": {
                    "credentialsSecretRef": {
                        "name": "writer",
                        "accessKeyIdKey": "id",
                        "secretAccessKeyKey": "key",
                        "sessionTokenKey": "token",
                    }
                },
            },
        )
    )

    def env(stage: StageName) -> dict[str, Any]:
        (container,) = stage_job(run, stage, CONFIG)["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}

    def ref(name: str, key: str) -> dict[str, Any]:
        return {"secretKeyRef": {"name": name, "key": key}}

    extract = env(StageName.EXTRACT)
    assert extract["AWS_ACCESS_KEY_ID"] == ref("reader", "AWS_ACCESS_KEY_ID")
    assert extract["AWS_SECRET_ACCESS_KEY"] == ref("reader", "AWS_SECRET_ACCESS_KEY")
    assert "AWS_SESSION_TOKEN" not in extract
    load = env(StageName.LOAD)
    assert load["AWS_ACCESS_KEY_ID"] == ref("writer", "id")
    assert load["AWS_SECRET_ACCESS_KEY"] == ref("writer", "key")
    assert load["AWS_SESSION_TOKEN"] == ref("writer", "token")
    transform = env(StageName.TRANSFORM)
    assert not [k for k in transform if k.startswith("AWS_")], "transform reads no bucket"
    # The stage checks its own connections against what the operator allowed.
    assert extract[ALLOWED_PRIVATE_TARGETS_ENV] == CONFIG.private_targets.to_text()


# --------------------------------------------------------------------------- operator I/O


@pytest.fixture
def silent_api_server() -> Iterator[str]:
    """Accepts connections and never answers (an API server that hangs)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "call",
    [
        lambda api: api.patch_status("ns", "orders", {"phase": "Running"}),
        lambda api: api.latest_pod("ns", "orders-extract"),
        lambda api: api.delete_claim("ns", "orders-workspace"),
    ],
    ids=["patch status", "list pods", "delete claim"],
)
def test_a_silent_api_server_cannot_hang_the_operator(
    silent_api_server: str, call: Callable[[KubeApi], Any]
) -> None:
    configuration = k8s.Configuration(host=silent_api_server)
    configuration.retries = 0
    api = KubeApi(k8s.ApiClient(configuration), timeout=0.2)
    with pytest.raises(Exception, match=r"(?i)timed? ?out"):
        asyncio.run(call(api))


def test_the_results_cache_forgets_a_finished_run_and_is_bounded() -> None:
    cache = ResultCache(limit=3)
    cache.put("run-a", "job-1", '{"recordsOut": 5}', None)
    cache.put("run-b", "job-2", None, "DeadlineExceeded")
    known = cache.get("run-a", "job-1")
    assert known is not None and known[0] is not None and known[0].records_out == 5
    cache.forget("run-a")
    assert cache.get("run-a", "job-1") is None and len(cache) == 1
    for i in range(5):
        cache.put("run-c", f"job-{i}", None, None)
    assert len(cache) == 3
    assert cache.get("run-b", "job-2") is None, "the oldest entry went first"


def _finished_run() -> PipelineRun:
    run = started_run(spec())
    jobs = {
        s: ObservedJob(stage=s, name=f"orders-{s}", uid=s, state=JobState.COMPLETE, attempts=1)
        for s in StageName
    }
    for _ in range(3):
        run = run.model_copy(update={"status": decide(run, jobs, T0, IDS).status})
    assert run.status is not None and run.status.phase == Phase.SUCCEEDED
    return run


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (httpx.Response(403, text="forbidden"), "HTTP 403"),
        (httpx.Response(401), "HTTP 401"),
        (httpx.Response(200, text="<html>login</html>"), "not JSON"),
        (httpx.Response(200, json=["a", "list"]), "not a JSON object"),
        (httpx.Response(200, json={"spanCount": "many", "columnEdges": "x"}), "not a number"),
        (httpx.Response(302, headers={"location": "http://elsewhere/"}), "redirect"),
    ],
    ids=["403", "401", "html", "json list", "bad count", "redirect"],
)
def test_a_store_answer_that_is_no_answer_becomes_a_verdict(
    reply: httpx.Response, words: str
) -> None:
    config = OperatorConfig(
        marquez_url="http://marquez.test",
        trace_store_url="http://store.test",
        lineage_store_url="http://store.test",
        jaeger_query_url="http://jaeger.test",
    )

    async def check() -> Any:
        checker = StoreChecker(config, transport=httpx.MockTransport(lambda request: reply))
        try:
            return await checker.check(_finished_run(), T0)
        finally:
            await checker.close()

    status = asyncio.run(check())
    lineage = status.condition(CONDITION_LINEAGE_RECORDED)
    trace = status.condition(CONDITION_TRACE_RECORDED)
    assert lineage is not None and trace is not None
    assert lineage.status == trace.status == "Unknown"  # waited for, until the deadline
    assert lineage.reason.endswith("Unavailable") and trace.reason.endswith("Unavailable")
    assert words in lineage.message + trace.message


# --------------------------------------------------------------------------- the daemon


class FakeApi:
    """The operator's KubeApi, recording what the daemon asks of the API server."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.calls: list[tuple[str, str, str]] = []
        self.version = 1

    async def create_owned(self, obj: dict[str, Any], owner: str) -> None:
        self.calls.append(("create", obj["kind"], obj["metadata"]["name"]))

    async def delete_job(self, namespace: str, name: str) -> None:
        self.calls.append(("delete", "Job", name))

    async def delete_claim(self, namespace: str, name: str) -> None:
        self.calls.append(("delete", "PersistentVolumeClaim", name))

    async def latest_pod(self, namespace: str, job: str) -> dict[str, Any]:
        message = '{"recordsIn": 3, "recordsOut": 3}'
        return {"status": {"containerStatuses": [{"state": {"terminated": {"message": message}}}]}}

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        self.version += 1
        meta = {**self.body["metadata"], "resourceVersion": str(self.version)}
        self.body = {**self.body, "metadata": meta, "status": status}
        return self.body

    async def delete_run(self, namespace: str, name: str) -> None:
        self.calls.append(("delete", "PipelineRun", name))


class FakeTelemetry:
    async def emit(self, run: PipelineRun, event_type: str, now: datetime) -> None:
        return


class FakeChecker:
    """Every store holds the run when first asked (a second after its end)."""

    def awaiting(self, run: PipelineRun, now: datetime) -> Any:
        from lineagehub_operator.verify import Links, awaiting

        links = Links("ns", "orders", None, None)
        stores = {"marquez": False, "warehouse": True, "trace_store": True, "jaeger": False}
        return awaiting(run, links, now, **stores)

    async def check(self, run: PipelineRun, now: datetime) -> Any:
        from lineagehub.api.pipelinerun import ConditionStatus, set_condition

        status = run.status
        assert status is not None
        status = status.model_copy(deep=True)
        for kind in (CONDITION_LINEAGE_RECORDED, CONDITION_TRACE_RECORDED):
            status.conditions = set_condition(
                status.conditions, type_=kind, status=ConditionStatus.TRUE, reason="Recorded"
            )
        return status


class NeverStopped:
    def __bool__(self) -> bool:
        return False

    async def wait(self) -> None:
        await asyncio.Event().wait()


def _daemon(
    run: PipelineRun,
    jobs: list[ObservedJob],
    config: OperatorConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[FakeApi, dict[str, Any], list[tuple[str, str]]]:
    import logging

    import kopf
    from lineagehub_operator import handlers

    events: list[tuple[str, str]] = []
    monkeypatch.setattr(
        kopf,
        "event",
        lambda body, *, type, reason, message: events.append((reason, message)),
    )
    body = {"apiVersion": "lineagehub.io/v1alpha1", "kind": "PipelineRun", **run.wire()}
    body["metadata"] = {**body["metadata"], "resourceVersion": "1"}
    api = FakeApi(body)
    memo: dict[str, Any] = {
        "config": config,
        "api": api,
        "wakers": {},
        "results": ResultCache(),
        "telemetry": FakeTelemetry(),
        "checker": FakeChecker(),
    }
    reconcile = cast(Callable[..., Coroutine[Any, Any, None]], handlers.reconcile)
    asyncio.run(
        reconcile(
            body=body,
            uid="u",
            namespace="ns",
            memo=memo,
            stopped=NeverStopped(),
            logger=logging.getLogger("test"),
            stage_jobs={("ns", "u"): jobs},
            run_queue={},
            namespace_limits={},  # no namespace sets an active-run limit
            stage_pods={},  # no stage pod has exited yet
            config_waits={},  # no stage pod waits for a missing ConfigMap
            claim_waits={},  # nor for a claim
        )
    )
    return api, memo, events


def test_the_workspace_claim_goes_when_the_run_ends_and_its_results_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = started_run(spec())

    def job(stage: StageName, state: JobState) -> ObservedJob:
        return ObservedJob(
            stage=stage, name=f"orders-{stage}", uid=f"j-{stage}", state=state, attempts=1
        )

    running = {s: job(s, JobState.COMPLETE) for s in (StageName.EXTRACT, StageName.TRANSFORM)}
    running[StageName.LOAD] = job(StageName.LOAD, JobState.ACTIVE)
    for _ in range(3):
        run = run.model_copy(update={"status": decide(run, running, T0, IDS).status})
    assert run.status is not None and run.status.phase == Phase.RUNNING
    done = [job(s, JobState.COMPLETE) for s in StageName]
    api, memo, _ = _daemon(run, done, CONFIG, monkeypatch)
    assert api.body["status"]["phase"] == "Succeeded"
    assert api.calls == [("delete", "PersistentVolumeClaim", "orders-workspace")]
    assert len(memo["results"]) == 0, "the ended run's results are forgotten"
    # A host-path workspace is the node's: nothing to delete.
    host_path = OperatorConfig(
        runner_image=RUNNER, data_host_path="/srv/data", workspace_host_path="/srv/ws"
    )
    api, _, _ = _daemon(run, done, host_path, monkeypatch)
    assert api.calls == []


def test_the_daemon_refuses_a_hostile_run_without_creating_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = started_run(spec(image="docker.io/evil/miner:1"))
    api, _, events = _daemon(run, [], CONFIG, monkeypatch)
    assert not [c for c in api.calls if c[0] == "create"], api.calls
    status = api.body["status"]
    assert status["phase"] == "Failed"
    succeeded = next(c for c in status["conditions"] if c["type"] == "Succeeded")
    assert succeeded["reason"] == "PolicyViolation" and "spec.image" in succeeded["message"]
    assert [reason for reason, _ in events] == ["PolicyViolation"]
