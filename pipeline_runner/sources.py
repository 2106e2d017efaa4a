"""Open a PipelineRun's source as a polars LazyFrame.

`file://` is read in place; `http(s)://` is downloaded (streamed, with retries and the
size limit) into the workspace first (`pipeline_runner.download`, loaded only then);
`s3://` is handed to polars' own object-store reader with the spec's endpoint and
region (credentials from the stage's environment, `AWS_*`). CSV, NDJSON and Parquet
are scanned lazily; a JSON array has to be parsed whole, so it is read eagerly (the
size limit bounds it).

Network targets follow the operator's policy (`lineagehub.api.egress`): a download
follows redirects itself, checking every hop's host before it is requested, and each
connection goes only to an address the policy allows (checked on the address actually
connected to, so a DNS answer that changed since the check cannot reach a refused one).
Loopback, private and link-local targets are refused unless listed in
`LINEAGEHUB_ALLOWED_PRIVATE_TARGETS`, which the operator sets on every stage Job. URIs
appear in messages without their credentials.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import polars as pl
from polars.exceptions import PolarsError

from lineagehub.api.egress import (
    ALLOWED_PRIVATE_TARGETS_ENV,
    Resolver,
    TargetPolicy,
    TargetRefused,
    system_resolver,
)
from lineagehub.api.enums import SourceFormat
from lineagehub.datasets import redact_text, redact_uri
from pipeline_runner.errors import ErrorKind, StageError, first_line
from pipeline_runner.settings import Settings

if TYPE_CHECKING:
    import httpx

    from lineagehub.api import SourceSpec
    from lineagehub.api.stage_spec import S3Options

CSV_INFER_ROWS = 10_000
#: How much of a CSV file is read to find its header with the csv module.
HEADER_BYTES = 1 << 20
_FIX_URI = "check spec.source.uri and that the volume holding it is mounted in the stage"
FIX_TARGET = (
    "point it at a public host, or have the operator's admin allow the target "
    f"({ALLOWED_PRIVATE_TARGETS_ENV})"
)


def target_policy() -> TargetPolicy:
    """The private targets this stage may reach, as the operator handed them over."""
    return TargetPolicy.from_env(os.environ)


def refused(what: str, shown: str, err: TargetRefused, kind: ErrorKind) -> StageError:
    return StageError(kind, f"{what} {shown}: {err.reason}", FIX_TARGET)


def check_target(
    url: str,
    what: str,
    kind: ErrorKind,
    policy: TargetPolicy | None = None,
    resolve: Resolver = system_resolver,
) -> None:
    """Raise a StageError when the host of `url` is one the policy refuses. A host that
    does not resolve is left to the connection, which fails on its own."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError as exc:
        raise StageError(kind, f"{what} {redact_uri(url)} is not a valid URL: {exc}") from exc
    try:
        (policy or target_policy()).check_host(host, resolve)
    except TargetRefused as err:
        raise refused(what, redact_uri(url), err, kind) from err
    except OSError:
        return


@dataclass
class OpenedSource:
    """A source ready to stream: its frame, schema and what reading it cost."""

    frame: pl.LazyFrame
    schema: pl.Schema
    bytes_read: int | None
    temp_files: list[str] = field(default_factory=list)

    def cleanup(self) -> None:
        for path in self.temp_files:
            with contextlib.suppress(FileNotFoundError):
                Path(path).unlink()


def file_path(uri: str, what: str = "spec.source.uri") -> str:
    """The local path of a `file://` URI (only absolute paths: `file:///data/x.csv`)."""
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        host = parts.netloc.rpartition("@")[2]
        raise StageError(
            ErrorKind.INPUT_INVALID,
            f"{redact_uri(uri)} names host {host!r}; a file URI needs an absolute path",
            f"write {what} as file:///{host}{parts.path}",
        )
    return unquote(parts.path)


def s3_storage_options(options: S3Options | None) -> dict[str, str]:
    """polars/object_store options for an s3:// URI. Credentials come from the environment
    (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), which the operator
    fills from `s3.credentialsSecretRef`."""
    out: dict[str, str] = {}
    if options is not None and options.endpoint:
        out["aws_endpoint_url"] = options.endpoint
        if options.endpoint.startswith("http://"):
            out["aws_allow_http"] = "true"
    if options is not None and options.region:
        out["aws_region"] = options.region
    for env, key in (
        ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
        ("AWS_SESSION_TOKEN", "aws_session_token"),
    ):
        if os.environ.get(env):
            out[key] = os.environ[env]
    return out


def too_large(uri: str, size: int, limit: int) -> StageError:
    return StageError(
        ErrorKind.SIZE_LIMIT_EXCEEDED,
        f"source {redact_uri(uri)} is larger than the limit ({size} > {limit} bytes)",
        "raise LINEAGEHUB_MAX_SOURCE_BYTES or split the source",
    )


def scan(
    location: str, fmt: SourceFormat, storage_options: dict[str, str] | None = None
) -> pl.LazyFrame:
    """A lazy scan of `location` (a local path or an object-store URI)."""
    if fmt is SourceFormat.CSV:
        frame = pl.scan_csv(
            location, infer_schema_length=CSV_INFER_ROWS, storage_options=storage_options
        )
        return frame if storage_options is not None else _unescaped_header(frame, location)
    if fmt is SourceFormat.NDJSON:
        return pl.scan_ndjson(
            location, infer_schema_length=CSV_INFER_ROWS, storage_options=storage_options
        )
    if fmt is SourceFormat.PARQUET:
        return pl.scan_parquet(location, storage_options=storage_options)
    if storage_options is not None:
        raise StageError(
            ErrorKind.INPUT_INVALID,
            f"source {location}: a JSON array cannot be read from an object store",
            "store the source as ndjson or parquet",
        )
    return pl.read_json(location).lazy()


def csv_header(path: str) -> list[str] | None:
    """The column names of a local CSV file's header as the CSV format defines them
    (quoted fields unescaped), or None when its start cannot be read as CSV text."""
    try:
        with Path(path).open(encoding="utf-8", newline="") as f:
            start = f.read(HEADER_BYTES)
        return next(csv.reader(io.StringIO(start), strict=True), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _unescaped_header(frame: pl.LazyFrame, path: str) -> pl.LazyFrame:
    """polars keeps a header's doubled quote (`"a""b"` is read as the column `a""b`, the
    values are unescaped): name such columns as the header does (`a"b`)."""
    names = frame.collect_schema().names()
    if not any('""' in n for n in names):
        return frame
    header = csv_header(path)
    fixed = [n.replace('""', '"') for n in names]
    if header != fixed or len(set(fixed)) != len(fixed):
        return frame
    return frame.rename(dict(zip(names, fixed, strict=True)))


def _invalid(uri: str, fmt: SourceFormat, exc: BaseException) -> StageError:
    text = first_line(exc)
    fix = "repair the file or set spec.source.format to the format it really has"
    if fmt is SourceFormat.CSV and "more fields" in text:
        fix = "give every row as many fields as the header (some row has more), then re-run"
    elif "could not parse" in text:
        fix = (
            "repair the value: each column's type is inferred from the first "
            f"{CSV_INFER_ROWS} rows and every later value must fit it"
        )
    return StageError(
        ErrorKind.INPUT_INVALID, f"source {uri} is not valid {fmt.value}: {text}", fix
    )


def open_source(
    spec: SourceSpec,
    workspace: str,
    settings: Settings,
    *,
    download_name: str = ".source",
    transport: httpx.BaseTransport | None = None,
    policy: TargetPolicy | None = None,
    resolve: Resolver = system_resolver,
) -> OpenedSource:
    """Check and open the source; the frame is lazy (nothing but the schema is read yet,
    except for JSON arrays and downloads)."""
    uri = redact_uri(spec.uri)  # as messages show it
    scheme = urlsplit(uri).scheme.lower()
    temp: list[str] = []
    storage: dict[str, str] | None = None
    if scheme == "file":
        location = file_path(spec.uri)
        path = Path(location)
        if not path.exists():
            raise StageError(
                ErrorKind.INPUT_NOT_FOUND, f"source {uri} not found (no file {location})", _FIX_URI
            )
        if not path.is_file():
            raise StageError(
                ErrorKind.INPUT_INVALID,
                f"source {uri} is not a regular file",
                "point spec.source.uri at one file",
            )
        size: int | None = path.stat().st_size
        assert size is not None
        if size > settings.max_source_bytes:
            raise too_large(uri, size, settings.max_source_bytes)
    elif scheme in ("http", "https"):
        location = str(Path(workspace) / f"{download_name}.{spec.format.value}")
        temp.append(location)
        from pipeline_runner.download import download  # httpx: for http(s) sources only

        size = download(
            spec.uri, location, settings, transport=transport, policy=policy, resolve=resolve
        )
    elif scheme == "s3":
        location = spec.uri
        if spec.s3 is not None and spec.s3.endpoint:
            check_target(
                spec.s3.endpoint,
                "spec.source.s3.endpoint",
                ErrorKind.INPUT_INVALID,
                policy,
                resolve,
            )
        storage = s3_storage_options(spec.s3)
        size = None
    else:  # pragma: no cover - the model's pattern allows no other scheme
        raise StageError(ErrorKind.INPUT_INVALID, f"unsupported source URI {uri}")

    try:
        return _open(spec, location, storage, size, temp)
    except BaseException:
        for leftover in temp:
            with contextlib.suppress(FileNotFoundError):
                Path(leftover).unlink()
        raise


def _open(
    spec: SourceSpec,
    location: str,
    storage: dict[str, str] | None,
    size: int | None,
    temp: list[str],
) -> OpenedSource:
    uri = redact_uri(spec.uri)
    if size == 0:
        raise StageError(
            ErrorKind.INPUT_INVALID,
            f"source {uri} is empty (0 bytes)",
            "check that the producer of the source finished writing it",
        )
    try:
        frame = scan(location, spec.format, storage)
        schema = frame.collect_schema()
    except StageError:
        raise
    except FileNotFoundError as exc:
        raise StageError(
            ErrorKind.INPUT_NOT_FOUND,
            f"source {uri} not found: {redact_text(first_line(exc))}",
            _FIX_URI,
        ) from exc
    except (PolarsError, OSError, ValueError) as exc:
        raise _invalid(uri, spec.format, exc) from exc
    if not schema:
        raise StageError(
            ErrorKind.INPUT_INVALID,
            f"source {uri} has no columns",
            "check the source file and spec.source.format",
        )
    return OpenedSource(frame=frame, schema=schema, bytes_read=size, temp_files=temp)


def invalid_source(uri: str, fmt: SourceFormat, exc: BaseException) -> StageError:
    """The error for a source that fails while it is streamed (bad rows found late)."""
    return _invalid(redact_uri(uri), fmt, exc)


def __getattr__(name: str) -> Any:
    """`download` and `GuardedTransport` live in `pipeline_runner.download`, loaded on
    first use (PEP 562)."""
    if name in ("download", "GuardedTransport"):
        from pipeline_runner import download

        return getattr(download, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
