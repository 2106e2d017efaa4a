"""No secret a dataset URI carries reaches a message, a status, a span or a lineage event:
neither `user:password@` nor the secret parameters of presigned and token URLs."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lineagehub.api import STAGE_CONFIG_ENV, QualityCheck, SourceSpec, StageName, TransformSpec
from lineagehub.datasets import dataset_of, redact_text, redact_uri
from lineagehub.telemetry.lineage import run_event
from pipeline_runner.cli import stage_main
from pipeline_runner.emit import MemoryEmitter
from pipeline_runner.runner import Delivery, StageRun, run_stage
from pipeline_runner.settings import Settings
from tests.unit.test_runner_stages import make_config, write_source

SIG = "9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"

#: (URL, the secret values in it, the parameters that must stay as they are).
PRESIGNED: list[tuple[str, list[str], list[str]]] = [
    (  # AWS SigV4 presigned GET with a session token
        "https://orders-bucket.s3.eu-west-1.amazonaws.com/exports/2026/orders.csv"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=ASIAQEXAMPLEKEY7XYZ%2F20261130%2Feu-west-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20261130T120000Z&X-Amz-Expires=3600"
        "&X-Amz-Security-Token=IQoJb3JpZ2luX2VjEJr%2F%2F%2F%2FSESSIONTOKENx9"
        f"&X-Amz-SignedHeaders=host&X-Amz-Signature={SIG}",
        ["ASIAQEXAMPLEKEY7XYZ", "IQoJb3JpZ2luX2VjEJr", SIG],
        ["X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Expires=3600", "X-Amz-SignedHeaders=host"],
    ),
    (  # the same, with lower-case names as some clients write them
        f"https://s3.amazonaws.com/b/k.parquet?x-amz-signature={SIG}&x-amz-date=20261130T120000Z",
        [SIG],
        ["x-amz-date=20261130T120000Z"],
    ),
    (  # GCS V4 signed URL
        "https://storage.googleapis.com/lake/orders.ndjson?X-Goog-Algorithm=GOOG4-RSA-SHA256"
        "&X-Goog-Credential=loader%40proj-7.iam.gserviceaccount.com%2F20261130%2Fauto"
        "%2Fstorage%2Fgoog4_request&X-Goog-Date=20261130T120000Z&X-Goog-Expires=900"
        f"&X-Goog-SignedHeaders=host&X-Goog-Signature={SIG}",
        ["loader%40proj-7", SIG],
        ["X-Goog-Expires=900", "X-Goog-Algorithm=GOOG4-RSA-SHA256"],
    ),
    (  # GCS V2 signed URL
        "https://storage.googleapis.com/lake/orders.csv?GoogleAccessId=loader%40proj-7.iam"
        ".gserviceaccount.com&Expires=1796040000&Signature=bXlzaWduYXR1cmVWMg%3D%3D",
        ["loader%40proj-7", "bXlzaWduYXR1cmVWMg"],
        ["Expires=1796040000"],
    ),
    (  # Azure blob SAS: with a signature, every SAS field is part of the credential
        "https://acct01.blob.core.windows.net/raw/orders.csv?sp=r&st=2026-11-30T09:00:00Z"
        "&se=2026-11-30T17:00:00Z&spr=https&sv=2022-11-02&sr=b"
        "&sig=Zm9vYmFyYmF6c2lnbmF0dXJl%2Bx%3D&comp=list",
        ["Zm9vYmFyYmF6c2lnbmF0dXJl", "2026-11-30T17:00:00Z", "2022-11-02"],
        ["comp=list"],
    ),
    (  # generic tokens and keys, one of them in the fragment
        "https://api.example.com/v2/export.csv?page=2&token=tok-4f1e2d&api_key=ak-93b1"
        "&format=csv#access_token=at-77aa&state=xyz",
        ["tok-4f1e2d", "ak-93b1", "at-77aa"],
        ["page=2", "format=csv", "state=xyz"],
    ),
    (  # credentials in the authority and in the query together
        "https://reader:pw-s3cr3t@data.example.com/x.csv?password=pw-2nd&secret=sec-3rd"
        "&client_secret=cs-4th&apikey=ak-5th&Access_Token=at-6th&refresh-token=rt-7th",
        ["pw-s3cr3t", "pw-2nd", "sec-3rd", "cs-4th", "ak-5th", "at-6th", "rt-7th"],
        [],
    ),
    (  # a Google API key
        "https://sheets.googleapis.com/v4/spreadsheets/1x/values/A1:D9?alt=csv&key=AIzaSyEXAMPLE",
        ["AIzaSyEXAMPLE"],
        ["alt=csv"],
    ),
    (  # s3:// with an access key in the authority
        "s3://AKIAEXAMPLE:wJalrXUtnFEMI%2FK7MDENG@bucket/path/orders.parquet?versionId=3",
        ["AKIAEXAMPLE", "wJalrXUtnFEMI"],
        ["versionId=3"],
    ),
]


@pytest.mark.parametrize(("url", "secrets", "kept"), PRESIGNED)
def test_presigned_and_token_urls_are_shown_without_their_secrets(
    url: str, secrets: list[str], kept: list[str]
) -> None:
    host = url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]
    shown = [redact_uri(url), redact_text(f"source {url} failed: '{url}' (HTTP 403)")]
    for text in shown:
        assert not [s for s in secrets if s in text], text
        assert host in text
        assert all(k in text for k in kept), text
    # The dataset a URI names never held its query string.
    namespace, name = dataset_of(url)
    assert "?" not in name and not [s for s in secrets if s in namespace + name]


@pytest.mark.parametrize(
    "url",
    [
        "https://data.example.com/orders.csv",
        "https://data.example.com/orders.csv?format=csv&page=2&monkey=1&keyword=k&sort=asc",
        # SAS field names without a SAS signature are ordinary parameters.
        "https://data.example.com/a.csv?sv=1&se=2&sp=3",
        "file:///data/examples/orders.csv",
        "clickhouse://ch.example.com:9000/analytics.orders",
    ],
)
def test_urls_without_secrets_are_shown_as_they_are(url: str) -> None:
    assert redact_uri(url) == url
    assert redact_text(f"sink {url} failed") == f"sink {url} failed"


def test_a_secret_parameter_with_an_empty_value_is_left_alone() -> None:
    assert redact_uri("https://h/x?token=&a=1") == "https://h/x?token=&a=1"


def test_the_run_level_fail_event_carries_no_secret() -> None:
    event = run_event(
        "FAIL",
        run_id="019ac0f0-0000-7000-8000-000000000001",
        namespace="tests",
        job="orders",
        event_time=datetime(2026, 11, 30, tzinfo=UTC),
        error=f"source {PRESIGNED[0][0]} not found",
    )
    assert SIG.encode() not in event
    assert json.loads(event)["run"]["facets"]["errorMessage"]["message"].startswith(
        "source https://orders-bucket.s3.eu-west-1.amazonaws.com/exports/2026/orders.csv?"
    )


# --------------------------------------------------------------------------- a stage

TOKEN = "tok-e1b2c3d4e5f6"
PASSWORD = "pw-9z8y7x"


def _run(
    tmp_path: Path, stage: StageName, source: SourceSpec, transform: TransformSpec
) -> tuple[StageRun, MemoryEmitter, str]:
    cfg = make_config(tmp_path, stage, source=source, transform=transform)
    emitter = MemoryEmitter()
    term = tmp_path / f"termination-{stage.value}"
    outcome = asyncio.run(run_stage(cfg, Delivery(emitter), Settings(), termination_log=str(term)))
    return outcome, emitter, term.read_text()


def _assert_no_secret(outcome: StageRun, emitter: MemoryEmitter, termination: str) -> None:
    shown = [outcome.result.error or "", outcome.result.output_uri or "", termination]
    shown += [value.decode("utf-8", "replace") for _, _, value in emitter.records]
    for text in shown:
        assert TOKEN not in text and PASSWORD not in text, text[:300]


def _secret_source(tmp_path: Path, text: str, name: str = "orders.csv") -> SourceSpec:
    path = write_source(tmp_path, text, name)
    return SourceSpec(
        uri=f"file://{path}?X-Amz-Security-Token={TOKEN}&password={PASSWORD}", format="csv"
    )


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("order_id,amount\n", "InputInvalid"),  # no data rows
        ("a,b\n" + "1,2\n" * 20_000 + "1,2,3\n", "InputInvalid"),  # a ragged row found late
    ],
)
def test_an_extract_failure_shows_the_source_without_secrets(
    tmp_path: Path, text: str, kind: str
) -> None:
    outcome, emitter, termination = _run(
        tmp_path, StageName.EXTRACT, _secret_source(tmp_path, text), TransformSpec()
    )
    assert outcome.result.error_kind is not None
    assert outcome.result.error_kind.value == kind
    assert "orders.csv?X-Amz-Security-Token=REDACTED" in (outcome.result.error or "")
    assert json.loads(termination)["errorKind"] == kind
    assert emitter.lineage()[-1]["eventType"] == "FAIL"
    _assert_no_secret(outcome, emitter, termination)


def test_a_failed_quality_check_shows_the_source_without_secrets(tmp_path: Path) -> None:
    source = _secret_source(tmp_path, "order_id,amount\n1,5\n1,6\n")
    first, *_ = _run(tmp_path, StageName.EXTRACT, source, TransformSpec())
    assert first.result.ok, first.result.error
    check = QualityCheck.model_validate({"type": "unique", "column": "order_id"})
    outcome, emitter, termination = _run(
        tmp_path, StageName.TRANSFORM, source, TransformSpec(quality=[check])
    )
    assert outcome.result.error_kind is not None
    assert outcome.result.error_kind.value == "QualityCheckFailed"
    assert "REDACTED" in (outcome.result.error or "")
    _assert_no_secret(outcome, emitter, termination)


def test_a_successful_stage_names_its_source_without_secrets(tmp_path: Path) -> None:
    outcome, emitter, termination = _run(
        tmp_path, StageName.EXTRACT, _secret_source(tmp_path, "a,b\n1,2\n"), TransformSpec()
    )
    assert outcome.result.ok, outcome.result.error
    spans = [
        s
        for req in emitter.spans()
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    read = next(s for s in spans if s.name == "read")
    attrs = {kv.key: kv.value.string_value for kv in read.attributes}
    assert attrs["lineagehub.source"].endswith("X-Amz-Security-Token=REDACTED&password=REDACTED")
    _assert_no_secret(outcome, emitter, termination)


def test_a_refused_stage_config_does_not_quote_the_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = json.loads(make_config(tmp_path, StageName.EXTRACT).to_env_value())
    # A space breaks the URI pattern: pydantic's error quotes the value, cut short.
    config["source"]["uri"] = f"https://reader:{PASSWORD}@data.example.com/a b.csv?token={TOKEN}"
    term = tmp_path / "termination"
    monkeypatch.setenv(STAGE_CONFIG_ENV, json.dumps(config))
    monkeypatch.setenv("LINEAGEHUB_TERMINATION_LOG", str(term))
    assert stage_main(["extract", "--emit", "none"]) == 2
    err = capsys.readouterr().err
    for text in (err, term.read_text()):
        assert "source.uri: String should match pattern" in text
        assert PASSWORD not in text and TOKEN not in text, text


#: Passwords typed raw with characters `urlsplit` reads as the start of a query, a
#: fragment or the end of the authority: the whole userinfo still goes.
@pytest.mark.parametrize(
    ("uri", "secret", "shown"),
    [
        ("postgres://u:p#ss-91@host/db.t", "p#ss-91", "postgres://host/db.t"),
        ("postgres://u:p?ss-92@host:5432/db.t", "p?ss-92", "postgres://host:5432/db.t"),
        ("clickhouse://u:p ss-93@ch:9000/db.t", "p ss-93", "clickhouse://ch:9000/db.t"),
        ("https://u:a@b#c-94@h/x.csv", "a@b#c-94", "https://h/x.csv"),
    ],
)
def test_a_raw_password_with_url_delimiters_is_dropped(uri: str, secret: str, shown: str) -> None:
    assert redact_uri(uri) == shown
    if " " not in secret:  # in free text a space ends the URI: nothing tells it from prose
        said = redact_text(f"cannot read {uri} now")
        assert secret not in said and "now" in said


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a quote inside a secret does not end it
        ("https://h/x?token=ab'cd", "https://h/x?token=REDACTED"),
        ("reading 'https://h/x?token=ab'cd' failed", "reading 'https://h/x?token=REDACTED' failed"),
        # punctuation that closes a sentence is not part of the value
        ("read https://h/x?Token=abc: boom", "read https://h/x?Token=REDACTED: boom"),
        ("(see https://h/x?sig=abc).", "(see https://h/x?sig=REDACTED)."),
        # names that carry a secret
        (
            "https://h/x?pass=p1&private_key=k1&credential=c1&code=o1&v=1",
            "https://h/x?pass=REDACTED&private_key=REDACTED&credential=REDACTED&code=REDACTED&v=1",
        ),
        # an `@` in a path after the host is no userinfo
        ("https://host/users/@me/x.csv", "https://host/users/@me/x.csv"),
    ],
)
def test_secret_values_end_where_the_parameter_ends(text: str, expected: str) -> None:
    assert redact_text(text) == expected
