"""Open a PipelineRun's source as a polars LazyFrame.

`file://` is read in place; `http(s)://` is downloaded (streamed, with retries and the
size limit) into the workspace first; `s3://` is handed to polars' own object-store
reader with the spec's endpoint and region (credentials from the stage's environment,
`AWS_*`). CSV, NDJSON and Parquet are scanned lazily; a JSON array has to be parsed
whole, so it is read eagerly (the size limit bounds it).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import polars as pl
from polars.exceptions import PolarsError

from lineagehub.api import SourceFormat, SourceSpec
from lineagehub.api.pipelinerun import S3Options
from pipeline_runner.errors import ErrorKind, StageError, first_line
from pipeline_runner.settings import Settings

CSV_INFER_ROWS = 10_000
CHUNK = 1 << 20
_FIX_URI = "check spec.source.uri and that the volume holding it is mounted in the stage"


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
        raise StageError(
            ErrorKind.INPUT_INVALID,
            f"{uri} names host {parts.netloc!r}; a file URI needs an absolute path",
            f"write {what} as file:///{parts.netloc}{parts.path}",
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
        f"source {uri} is larger than the limit ({size} > {limit} bytes)",
        "raise LINEAGEHUB_MAX_SOURCE_BYTES or split the source",
    )


_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def download(
    url: str,
    dest: str,
    settings: Settings,
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Stream `url` into `dest`, retrying transient failures; returns the bytes written.

    A download beyond `settings.max_source_bytes` stops as soon as it crosses the limit
    (checked against Content-Length first, then while streaming).
    """
    attempts = settings.http_retries + 1
    last = ""
    delay = settings.http_backoff
    for attempt in range(1, attempts + 1):
        try:
            with (
                httpx.Client(
                    timeout=settings.http_timeout, follow_redirects=True, transport=transport
                ) as client,
                client.stream("GET", url) as response,
            ):
                status = response.status_code
                if status in (404, 410):
                    raise StageError(
                        ErrorKind.INPUT_NOT_FOUND,
                        f"source {url} not found (HTTP {status})",
                        "check spec.source.uri",
                    )
                if status in _RETRY_STATUS:
                    last = f"HTTP {status}"
                elif status >= 400:
                    raise StageError(
                        ErrorKind.INPUT_INVALID,
                        f"source {url} refused the download (HTTP {status})",
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
        except StageError:
            with contextlib.suppress(FileNotFoundError):
                Path(dest).unlink()
            raise
        except (httpx.TransportError, httpx.StreamError) as exc:
            last = f"{type(exc).__name__}: {first_line(exc)}"
        with contextlib.suppress(FileNotFoundError):
            Path(dest).unlink()
        if attempt < attempts:
            sleep(delay)
            delay *= 2
    raise StageError(
        ErrorKind.INPUT_NOT_FOUND,
        f"could not download source {url} after {attempts} attempt(s): {last}",
        "check that the server is reachable from the stage, or raise LINEAGEHUB_HTTP_RETRIES",
    )


def scan(
    location: str, fmt: SourceFormat, storage_options: dict[str, str] | None = None
) -> pl.LazyFrame:
    """A lazy scan of `location` (a local path or an object-store URI)."""
    if fmt is SourceFormat.CSV:
        return pl.scan_csv(
            location, infer_schema_length=CSV_INFER_ROWS, storage_options=storage_options
        )
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
) -> OpenedSource:
    """Check and open the source; the frame is lazy (nothing but the schema is read yet,
    except for JSON arrays and downloads)."""
    uri = spec.uri
    scheme = urlsplit(uri).scheme.lower()
    temp: list[str] = []
    storage: dict[str, str] | None = None
    if scheme == "file":
        location = file_path(uri)
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
        size = download(uri, location, settings, transport=transport)
    elif scheme == "s3":
        location = uri
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
    uri = spec.uri
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
            ErrorKind.INPUT_NOT_FOUND, f"source {uri} not found: {first_line(exc)}", _FIX_URI
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
    return _invalid(uri, fmt, exc)
