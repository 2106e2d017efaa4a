"""Open a PipelineRun's source as a polars LazyFrame.

`file://` is read in place; `http(s)://` is downloaded (streamed, with retries and the
size limit) into the workspace first; `s3://` is handed to polars' own object-store
reader with the spec's endpoint and region (credentials from the stage's environment,
`AWS_*`). CSV, NDJSON and Parquet are scanned lazily; a JSON array has to be parsed
whole, so it is read eagerly (the size limit bounds it).

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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpcore
import httpx
import polars as pl
from polars.exceptions import PolarsError

from lineagehub.api import SourceFormat, SourceSpec
from lineagehub.api.egress import (
    ALLOWED_PRIVATE_TARGETS_ENV,
    Resolver,
    TargetPolicy,
    TargetRefused,
    system_resolver,
)
from lineagehub.api.pipelinerun import S3Options
from lineagehub.datasets import redact_text, redact_uri
from pipeline_runner.errors import ErrorKind, StageError, first_line
from pipeline_runner.settings import Settings

CSV_INFER_ROWS = 10_000
#: How much of a CSV file is read to find its header with the csv module.
HEADER_BYTES = 1 << 20
CHUNK = 1 << 20
MAX_REDIRECTS = 10
_FIX_URI = "check spec.source.uri and that the volume holding it is mounted in the stage"
_FIX_TARGET = (
    "point it at a public host, or have the operator's admin allow the target "
    f"({ALLOWED_PRIVATE_TARGETS_ENV})"
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def target_policy() -> TargetPolicy:
    """The private targets this stage may reach, as the operator handed them over."""
    return TargetPolicy.from_env(os.environ)


def refused(what: str, shown: str, err: TargetRefused, kind: ErrorKind) -> StageError:
    return StageError(kind, f"{what} {shown}: {err.reason}", _FIX_TARGET)


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


class _GuardedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the policy allows: the host is resolved here and the
    connection made to the checked address itself (TLS still verifies the host name)."""

    def __init__(self, policy: TargetPolicy, resolve: Resolver) -> None:
        self._policy = policy
        self._resolve = resolve
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._policy.check_host(host, self._resolve)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        last: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last = exc
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not a download target")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool whose every connection is checked."""

    def __init__(self, policy: TargetPolicy, resolve: Resolver = system_resolver) -> None:
        super().__init__()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            network_backend=_GuardedBackend(policy, resolve),
        )


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


def _too_large(uri: str, size: int, limit: int) -> StageError:
    return StageError(
        ErrorKind.SIZE_LIMIT_EXCEEDED,
        f"source {redact_uri(uri)} is larger than the limit ({size} > {limit} bytes)",
        "raise LINEAGEHUB_MAX_SOURCE_BYTES or split the source",
    )


_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def _hop(url: str, origin: str, hop: int, policy: TargetPolicy, resolve: Resolver) -> None:
    """Refuse a hop of a download whose scheme or host the policy does not allow."""
    shown = redact_uri(origin)
    where = f"source {shown}" if hop == 0 else f"source {shown} redirects to {redact_uri(url)}"
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise StageError(
            ErrorKind.INPUT_INVALID,
            f"{where}: a {scheme or 'relative'} URL is not a download",
            "serve the data over http(s) without redirecting elsewhere",
        )
    try:
        policy.check_host(urlsplit(url).hostname or "", resolve)
    except TargetRefused as err:
        raise StageError(ErrorKind.INPUT_INVALID, f"{where}: {err.reason}", _FIX_TARGET) from err
    except OSError:
        return  # does not resolve: the connection fails on its own


def _final_response(
    client: httpx.Client, url: str, policy: TargetPolicy, resolve: Resolver
) -> httpx.Response:
    """GET `url`, following redirects one checked hop at a time; the caller closes the
    (streaming) response."""
    target = url
    for hop in range(MAX_REDIRECTS + 1):
        _hop(target, url, hop, policy, resolve)
        response = client.send(client.build_request("GET", target), stream=True)
        location = response.headers.get("location")
        if response.status_code not in _REDIRECTS or not location:
            return response
        response.close()
        target = str(response.url.join(location))
    raise StageError(
        ErrorKind.INPUT_INVALID,
        f"source {redact_uri(url)} redirects more than {MAX_REDIRECTS} times",
        "point spec.source.uri at where the data is",
    )


def download(
    url: str,
    dest: str,
    settings: Settings,
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    policy: TargetPolicy | None = None,
    resolve: Resolver = system_resolver,
) -> int:
    """Stream `url` into `dest`, retrying transient failures; returns the bytes written.

    A download beyond `settings.max_source_bytes` stops as soon as it crosses the limit
    (checked against Content-Length first, then while streaming). Every redirect hop
    and every connection is checked against `policy` (the stage's environment's when
    None); a refused one fails at once, without a retry.
    """
    allowed = policy if policy is not None else target_policy()
    shown = redact_uri(url)
    attempts = settings.http_retries + 1
    last = ""
    delay = settings.http_backoff
    for attempt in range(1, attempts + 1):
        try:
            with httpx.Client(
                timeout=settings.http_timeout,
                follow_redirects=False,
                trust_env=False,  # a proxy from the environment would bypass the checks
                transport=transport or GuardedTransport(allowed, resolve),
            ) as client:
                response = _final_response(client, url, allowed, resolve)
                try:
                    status = response.status_code
                    if status in (404, 410):
                        raise StageError(
                            ErrorKind.INPUT_NOT_FOUND,
                            f"source {shown} not found (HTTP {status})",
                            "check spec.source.uri",
                        )
                    if status in _RETRY_STATUS:
                        last = f"HTTP {status}"
                    elif status >= 400:
                        raise StageError(
                            ErrorKind.INPUT_INVALID,
                            f"source {shown} refused the download (HTTP {status})",
                            "check spec.source.uri and that it is readable without credentials",
                        )
                    else:
                        length = response.headers.get("content-length")
                        if length and length.isdigit() and int(length) > settings.max_source_bytes:
                            raise _too_large(url, int(length), settings.max_source_bytes)
                        written = 0
                        with Path(dest).open("wb") as out:
                            for chunk in response.iter_bytes(CHUNK):
                                written += len(chunk)
                                if written > settings.max_source_bytes:
                                    raise _too_large(url, written, settings.max_source_bytes)
                                out.write(chunk)
                        return written
                finally:
                    response.close()
        except StageError:
            with contextlib.suppress(FileNotFoundError):
                Path(dest).unlink()
            raise
        except TargetRefused as err:  # the address connected to, after the hop's check
            with contextlib.suppress(FileNotFoundError):
                Path(dest).unlink()
            raise refused("source", shown, err, ErrorKind.INPUT_INVALID) from err
        except (httpx.TransportError, httpx.StreamError) as exc:
            last = f"{type(exc).__name__}: {redact_text(first_line(exc))}"
        with contextlib.suppress(FileNotFoundError):
            Path(dest).unlink()
        if attempt < attempts:
            sleep(delay)
            delay *= 2
    raise StageError(
        ErrorKind.INPUT_NOT_FOUND,
        f"could not download source {shown} after {attempts} attempt(s): {last}",
        "check that the server is reachable from the stage, or raise LINEAGEHUB_HTTP_RETRIES",
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
            raise _too_large(uri, size, settings.max_source_bytes)
    elif scheme in ("http", "https"):
        location = str(Path(workspace) / f"{download_name}.{spec.format.value}")
        temp.append(location)
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
