"""Property-based fuzzing of the OpenLineage validation both doors run.

Inputs are OpenLineage-shaped events built from Hypothesis strategies (every field
sometimes valid, sometimes any JSON value or missing; typed and custom facets; the
three kinds and wrong schemaURLs; event times and URIs near Marquez's edges; lone
surrogates, numbers beyond Jackson's and Python's digit limits), JSON texts with odd
numbers, and plain random bytes.

The properties: nothing raises, neither the validator, the consumer's `validate`,
the gateway's body parsing and `check`, nor the HTTP endpoint (no 500); a refusal
names at least one JSON path; the gateway and the consumer agree on every event; and
the fast validator (jsonschema-rs) and the slow one (jsonschema) agree on the schema.
"""

from __future__ import annotations

import copy
import json
import re
import string
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from consumers.dlq import Rejection
from consumers.lineage.validate import ValidEvent, validate
from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.body import parse_json
from gateway.config import Settings
from gateway.lineage import Checked, Invalid, check
from lineagehub.openlineage_schema import (
    MAX_MESSAGE_CHARS,
    MAX_REPORTED_ERRORS,
    EventKind,
    _fast_error,
    _validator,
    date_time_problem,
    describe,
    event_kind,
    loads,
    loads_exact,
    schema_errors,
    uri_problem,
)
from tests.fuzz import fuzz_settings

FUZZ = fuzz_settings(300, HealthCheck.data_too_large)
HTTP_EXAMPLES = 120

# Every reason the consumer gives for a record; a new one must be added here on purpose.
CONSUMER_REASONS = {"empty", "too_large", "invalid_json", "schema"}
PATH = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\]|\[\".*?\"\])*$")
SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/"

# ---------------------------------------------------------------- strategies

odd_strings = st.sampled_from(
    ["", " ", "\x00", "\ud800", "a\udfffb", "🕷", "\u2028", "x" * 300, "null", "{}", "[]"]
)
texts = st.one_of(st.text(max_size=12), odd_strings)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 1735787045, 9_300_000_000_000, -210_863_520_001, 1e308, -0.0]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=12,
)


def sometimes(valid: st.SearchStrategy[Any], odds: int = 15) -> st.SearchStrategy[Any]:
    """`valid` `odds` times out of `odds + 1`, else any JSON value. (`one_of` with
    repeated strategies would not weigh them: it picks a branch about evenly.)"""
    # The odd one out is the last index: Hypothesis favours the first when it draws.
    return st.sampled_from(range(odds + 1)).flatmap(lambda i: valid if i < odds else json_values)


valid_times = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 1),
        timezones=st.one_of(
            st.none(),
            st.integers(-18 * 60, 18 * 60).map(lambda m: timezone(timedelta(minutes=m))),
        ),
    ).map(lambda d: d.isoformat()),
    st.integers(min_value=-210_863_520_000, max_value=9_224_318_015_999),
)
edge_times = st.sampled_from(
    [
        "2025-01-02T03:04",
        "2025-02-30T00:00:00Z",
        "2025-01-02T24:00",
        "2025-01-02T24:00:01",
        "2025-01-02 03:04:05",
        "2025-01-02T03:04:05+0200",
        "2025-01-02T03:04:05+18:01",
        "+300000-01-01T00:00Z",
        "-0000-01-01T00:00Z",
        "2025-01-02T03:04:05.1234567890",
        " 2025-01-02t03:04:05z ",
        "",
        9_300_000_000_000,
    ]
)
times = sometimes(
    st.sampled_from(range(8)).flatmap(
        lambda i: valid_times if i < 6 else [edge_times, numbers][i - 6]
    )
)
uris = sometimes(
    st.one_of(
        st.sampled_from([SPEC + "RunFacet", "https://openlineage.io/spec/facets/1-0-1/S.json"]),
        st.sampled_from(["me", "", "x:", ":x", "http://", "http://h/a b", "http://h/[x]"]),
        st.sampled_from(["urn:a[b]", "a#b#c", "%zz"]),
        texts,
    )
)
names = sometimes(
    st.one_of(
        st.sampled_from(["s3://bucket", "file", "postgres://db:5432", "dbt", "kafka://k:9092"]),
        st.sampled_from(["kafka://a:9092,b:9092", "ns;x=1", "", " ", "🕷"]),
        texts,
    )
)


def facet(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A typed facet: its own fields plus _producer/_schemaURL, each maybe missing."""
    producer = {"_producer": uris, "_schemaURL": uris}
    return sometimes(
        st.one_of(
            st.fixed_dictionaries(producer, optional={"_deleted": st.booleans(), **fields}),
            st.fixed_dictionaries({}, optional={**producer, **fields}),
        )
    )


custom_facets = st.dictionaries(
    st.sampled_from(["acme", "spark.logicalPlan", "airflow", "processing_engine", "x y"]),
    json_values,
    max_size=2,
)
run_ref = sometimes(st.fixed_dictionaries({"runId": names}))
job_ref = sometimes(st.fixed_dictionaries({"namespace": names, "name": names}))
run_facets = sometimes(
    st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "nominalTime": facet(nominalStartTime=times, nominalEndTime=times),
                "parent": facet(run=run_ref, job=job_ref),
                "parentRun": facet(run=run_ref, job=job_ref),
            },
        ),
        custom_facets,
    )
)
job_facets = sometimes(
    st.fixed_dictionaries(
        {},
        optional={
            "jobType": facet(
                processingType=sometimes(st.sampled_from(["BATCH", "STREAMING", "streaming"])),
                integration=names,
                jobType=names,
            ),
            "sql": facet(query=texts),
            "documentation": facet(description=texts),
            "sourceCodeLocation": facet(type=texts, url=uris),
            "acme": json_values,
        },
    )
)
schema_fields = sometimes(
    st.lists(
        sometimes(st.fixed_dictionaries({"name": names}, optional={"type": texts})), max_size=3
    )
)
input_fields = st.lists(
    sometimes(st.fixed_dictionaries({"namespace": names, "name": names, "field": names})),
    max_size=2,
)
output_columns = st.dictionaries(
    texts,
    sometimes(
        st.fixed_dictionaries(
            {},
            optional={"inputFields": sometimes(input_fields), "transformationType": texts},
        )
    ),
    max_size=2,
)
identifiers = st.lists(
    sometimes(st.fixed_dictionaries({"namespace": names, "name": names})), max_size=2
)
dataset_facets = sometimes(
    st.fixed_dictionaries(
        {},
        optional={
            "schema": facet(fields=schema_fields),
            "columnLineage": facet(fields=sometimes(output_columns)),
            "symlinks": facet(identifiers=sometimes(identifiers)),
            "dataSource": facet(name=texts, uri=texts),
            "documentation": facet(description=texts),
            "lifecycleStateChange": facet(lifecycleStateChange=texts),
            "description": sometimes(texts, odds=2),
            "acme": json_values,
        },
    )
)
dataset = st.fixed_dictionaries(
    {"namespace": names, "name": names},
    optional={
        "facets": dataset_facets,
        "inputFacets": sometimes(custom_facets),
        "outputFacets": sometimes(custom_facets),
    },
)
datasets = sometimes(st.lists(sometimes(dataset), max_size=3))
jobs = sometimes(
    st.fixed_dictionaries({"namespace": names, "name": names}, optional={"facets": job_facets})
)
runs = sometimes(st.fixed_dictionaries({"runId": names}, optional={"facets": run_facets}))
event_types = sometimes(st.sampled_from(["START", "COMPLETE", "fail", "OTHER", "DONE"]))
schema_urls = st.one_of(
    st.sampled_from(
        [
            SPEC + "RunEvent",
            SPEC + "DatasetEvent",
            SPEC + "JobEvent",
            "https://openlineage.io/spec/1-0-1/OpenLineage.json#/definitions/DatasetEvent",
            "DatasetEvent",
            "x/JobEvent/",
        ]
    ),
    uris,
)
head = {"eventTime": times, "producer": sometimes(texts)}
# Events with their kind's required fields (mostly accepted), and wild ones.
events = st.one_of(
    st.fixed_dictionaries(
        {**head, "run": runs, "job": jobs},
        optional={
            "eventType": event_types,
            "schemaURL": sometimes(st.just(SPEC + "RunEvent")),
            "inputs": datasets,
            "outputs": datasets,
            "extra": json_values,
        },
    ),
    st.fixed_dictionaries(
        {**head, "schemaURL": sometimes(st.just(SPEC + "DatasetEvent")), "dataset": dataset}
    ),
    st.fixed_dictionaries(
        {**head, "schemaURL": sometimes(st.just(SPEC + "JobEvent")), "job": jobs},
        optional={"inputs": datasets, "outputs": datasets, "eventType": event_types},
    ),
    st.fixed_dictionaries(
        {},
        optional={
            **head,
            "eventType": event_types,
            "schemaURL": schema_urls,
            "run": runs,
            "job": jobs,
            "dataset": sometimes(dataset),
            "inputs": datasets,
            "outputs": datasets,
        },
    ),
)


# ---------------------------------------------------------------- helpers


def assert_errors_name_paths(errors: list[Any]) -> None:
    assert 1 <= len(errors) <= MAX_REPORTED_ERRORS
    for error in errors:
        assert PATH.match(error.path), error
        assert error.message and len(error.message) <= MAX_MESSAGE_CHARS


def has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


# ---------------------------------------------------------------- the validator


@FUZZ
@given(events)
def test_every_event_is_judged_the_same_by_both_doors(event: dict[str, Any]) -> None:
    kind = event_kind(event)
    errors = schema_errors(copy.deepcopy(event), kind)
    gateway = check(copy.deepcopy(event), max_event_bytes=10_000_000)
    consumer = validate(json.dumps(event).encode())  # ASCII escapes: any string fits
    if errors:
        assert_errors_name_paths(errors)
        assert isinstance(gateway, Invalid) and gateway.errors == errors
        assert consumer == Rejection("schema", describe(errors))
    elif has_lone_surrogate(event):
        # Marquez's parser takes the escape (the consumer forwards it); the gateway
        # cannot write it as UTF-8 and says where it is.
        assert isinstance(gateway, Invalid) and gateway.status == 400
        assert_errors_name_paths(gateway.errors)
        assert "surrogate" in gateway.errors[0].message
        assert isinstance(consumer, ValidEvent)
    else:
        assert isinstance(gateway, Checked) and gateway.kind is kind
        assert isinstance(consumer, ValidEvent)
        assert (consumer.kind, consumer.key) == (kind, gateway.key)
        assert json.loads(gateway.value) == event


@FUZZ
@given(events, st.sampled_from(list(EventKind)))
def test_the_fast_and_the_slow_validator_agree(event: dict[str, Any], kind: EventKind) -> None:
    fast_passes = _fast_error(event, kind) is None
    slow_passes = next(iter(_validator(kind).iter_errors(event)), None) is None
    assert fast_passes == slow_passes


@FUZZ
@given(json_values)
def test_any_json_value_is_judged_without_raising(value: Any) -> None:
    for kind in EventKind:
        errors = schema_errors(value, kind)
        if not isinstance(value, dict):
            assert [e.path for e in errors] == ["$"]
        elif errors:
            assert_errors_name_paths(errors)
    assert isinstance(check(value, 1_000_000), Checked | Invalid)


# ---------------------------------------------------------------- bytes


def number_literal(digits: str, sign: bool, fraction: str) -> str:
    return (
        ("-" if sign else "") + (digits.lstrip("0") or "0") + (f".{fraction}" if fraction else "")
    )


@st.composite
def json_texts(draw: st.DrawFn) -> bytes:
    """A RunEvent's JSON with one value replaced by an odd number or token."""
    event = {
        "eventTime": "2025-01-02T03:04:05Z",
        "producer": "p",
        "run": {"runId": "r"},
        "job": {"namespace": "n", "name": "j"},
    }
    text = json.dumps(event)
    odd = draw(
        st.one_of(
            st.builds(
                number_literal,
                st.text(string.digits, min_size=1, max_size=5000),
                st.booleans(),
                st.text(string.digits, max_size=1200),
            ),
            st.sampled_from(
                ["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "1E-400", '"\\ud800"', "[]"]
            ),
        )
    )
    target = draw(st.sampled_from(['"r"', '"n"', '"2025-01-02T03:04:05Z"', '"p"']))
    return text.replace(target, odd, 1).encode()


raw_bodies = st.one_of(
    st.binary(max_size=300),
    json_texts(),
    events.map(lambda e: json.dumps(e).encode()),
    st.lists(events, max_size=3).map(lambda b: json.dumps(b).encode()),
)


@FUZZ
@given(raw_bodies)
def test_the_consumer_never_raises_on_a_record(raw: bytes) -> None:
    verdict = validate(raw)
    if isinstance(verdict, Rejection):
        assert verdict.reason in CONSUMER_REASONS, verdict
        assert verdict.detail
        if verdict.reason == "schema":
            assert verdict.detail.startswith("$")
    else:
        assert isinstance(verdict, ValidEvent)
        if verdict.kind is EventKind.RUN:  # any string is a run id to Marquez, "" too
            assert verdict.key == verdict.run_id == verdict.run_id.lower()
        else:
            assert verdict.key.startswith(("dataset:", "job:")) and verdict.run_id == ""


@FUZZ
@given(raw_bodies)
def test_the_gateway_body_parser_never_raises(raw: bytes) -> None:
    value, problem = parse_json(raw)
    if problem is None:
        # What parses is JSON Marquez's parser reads the same way.
        assert loads_exact(raw) == (value, None)
        assert repr(loads_exact(raw)) == repr((value, None))  # ints stay ints, -0.0 its sign
    else:
        assert value is None and problem
        assert loads_exact(raw)[0] is None


@FUZZ
@given(st.sampled_from("123456789"), st.text(string.digits, min_size=1000, max_size=6000))
def test_numbers_beyond_jacksons_limit_are_reasons(first: str, rest: str) -> None:
    digits = first + rest  # JSON has no leading zeros
    raw = b'{"eventTime": ' + digits.encode() + b"}"
    assert loads(raw) == (
        None,
        f"a number has {len(digits)} digits; Marquez's JSON parser refuses more than 1000: "
        "send it as a string",
    )
    verdict = validate(raw)
    assert isinstance(verdict, Rejection) and verdict.reason == "invalid_json"


# ---------------------------------------------------------------- formats


@FUZZ
@given(
    st.datetimes(
        min_value=datetime(1, 1, 1),
        timezones=st.one_of(
            st.none(),
            st.integers(-18 * 3600, 18 * 3600).map(lambda s: timezone(timedelta(seconds=s))),
        ),
    ),
    st.sampled_from(["auto", "hours", "minutes", "seconds", "milliseconds", "microseconds"]),
)
def test_every_python_isoformat_is_an_event_time_marquez_reads(
    when: datetime, timespec: str
) -> None:
    text = when.isoformat(timespec=timespec)
    assume(timespec != "hours")  # "2025-01-02T03" has no minutes: not ISO_LOCAL_DATE_TIME
    assert date_time_problem(text) is None, text


@FUZZ
@given(st.text(max_size=40))
def test_date_time_problem_never_raises(text: str) -> None:
    problem = date_time_problem(text)
    assert problem is None or isinstance(problem, str)


URL_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/"


@FUZZ
@given(
    st.sampled_from(["http", "https", "s3", "file", "gs"]),
    st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
    st.text(URL_CHARS, max_size=30),
    st.text(URL_CHARS + "?/[]", max_size=20),
    st.sampled_from(['"', "<", ">", "\\", "^", "`", "{", "|", "}", " ", "\t", "\x7f", "\u3000"]),
    st.integers(min_value=0),
)
def test_uris_java_parses_and_characters_it_never_takes(
    scheme: str, host: str, path: str, query: str, bad: str, where: int
) -> None:
    uri = f"{scheme}://{host}/{path}?{query}#{path}"
    assert uri_problem(uri) is None, uri
    at = 1 + where % (len(uri) - 1)  # inside: Jackson trims the ends
    spoiled = uri[:at] + bad + uri[at:]
    assert uri_problem(spoiled) is not None, spoiled


# ---------------------------------------------------------------- the HTTP endpoint


class Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, key: str, value: bytes) -> None:
        self.sent.append((topic, key, value))


TOKEN = "fuzz-openlineage-token-0001"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings_ = Settings(
        tokens=parse_tokens(f"{TOKEN}:lineage:write"),
        kafka_bootstrap="127.0.0.1:1",
        rate_per_s=0,
    )
    app = create_app(settings_, publisher=Publisher(), runs=None, metrics_store=None)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@settings(FUZZ, max_examples=HTTP_EXAMPLES)
@given(raw=raw_bodies)
def test_the_lineage_endpoint_never_answers_500(client: TestClient, raw: bytes) -> None:
    r = client.post(
        "/api/v1/lineage",
        content=raw,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert r.status_code in {200, 201, 400, 413}, (r.status_code, r.text)
    body = r.json()
    if r.status_code == 400:
        detail = body["detail"]
        errors = detail["errors"] if isinstance(detail, dict) else []
        assert all(PATH.match(e["path"]) for e in errors), errors
        assert errors or detail == {"message": "the batch is empty", "errors": []}
    if r.status_code == 200:  # a batch: every item answered, refusals with paths
        for item in body["results"]:
            assert item["status"] in {201, 400, 413}
            if item["status"] == 400:
                assert item["errors"] and all(PATH.match(e["path"]) for e in item["errors"])


def test_huge_numbers_and_lone_surrogates_are_400s_naming_the_problem(
    client: TestClient,
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    event = {
        "eventTime": "2025-01-02T03:04:05Z",
        "producer": "p",
        "run": {"runId": "r"},
        "job": {"namespace": "n", "name": "j"},
    }
    huge = json.dumps({**event, "x": 1}).replace(": 1}", ": " + "9" * 4500 + "}").encode()
    r = client.post("/api/v1/lineage", content=huge, headers=auth)
    assert r.status_code == 400
    assert "4500 digits" in r.json()["detail"]["errors"][0]["message"]
    surrogate = json.dumps({**event, "job": {"namespace": "n", "name": "j\ud800"}}).encode()
    r = client.post("/api/v1/lineage", content=surrogate, headers=auth)
    assert r.status_code == 400, r.text
    (error,) = r.json()["detail"]["errors"]
    assert error["path"] == "$.job.name" and "surrogate" in error["message"]
