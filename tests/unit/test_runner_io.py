"""Sources and sinks: HTTP downloads (retries, size limit), file sinks (formats, modes,
atomicity), the ClickHouse sink on embedded chdb."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import polars as pl
import pytest

from lineagehub.api import SinkFormat, SourceSpec, WriteMode
from pipeline_runner.download import download
from pipeline_runner.errors import ErrorKind, StageError
from pipeline_runner.settings import Settings
from pipeline_runner.sinks import FileSink, clickhouse_type, parse_clickhouse_uri
from pipeline_runner.sources import open_source

CSV = b"id,name\n1,a\n2,b\n"


def _settings(**kw: int) -> Settings:
    return Settings(http_backoff=0.0, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- http


def test_download_retries_then_succeeds(tmp_path: Path) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        if len(calls) == 2:
            return httpx.Response(503)
        return httpx.Response(200, content=CSV)

    dest = tmp_path / "d.csv"
    n = download(
        "http://data.test/x.csv", str(dest), _settings(), transport=httpx.MockTransport(handler)
    )
    assert n == len(CSV) and dest.read_bytes() == CSV
    assert len(calls) == 3


def test_download_gives_up(tmp_path: Path) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(502))
    with pytest.raises(StageError) as err:
        download("http://data.test/x.csv", str(tmp_path / "d"), _settings(), transport=transport)
    assert err.value.kind is ErrorKind.INPUT_NOT_FOUND
    assert "after 4 attempt(s)" in str(err.value) and "fix:" in str(err.value)
    assert not (tmp_path / "d").exists()


def test_download_404_is_not_retried(tmp_path: Path) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(404)

    with pytest.raises(StageError) as err:
        download(
            "http://data.test/x.csv",
            str(tmp_path / "d"),
            _settings(),
            transport=httpx.MockTransport(handler),
        )
    assert err.value.kind is ErrorKind.INPUT_NOT_FOUND and len(calls) == 1


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_download_over_limit(tmp_path: Path, declared: bool) -> None:
    body = b"x" * 5000

    def handler(request: httpx.Request) -> httpx.Response:
        if declared:
            return httpx.Response(200, content=body)
        return httpx.Response(200, content=iter([body[:2500], body[2500:]]))

    with pytest.raises(StageError) as err:
        download(
            "http://data.test/big.csv",
            str(tmp_path / "d"),
            _settings(max_source_bytes=1000),
            transport=httpx.MockTransport(handler),
        )
    assert err.value.kind is ErrorKind.SIZE_LIMIT_EXCEEDED
    assert "http://data.test/big.csv" in str(err.value)
    assert not (tmp_path / "d").exists()


def test_http_source_is_downloaded_then_cleaned(tmp_path: Path) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=CSV))
    spec = SourceSpec(uri="https://data.test/orders.csv", format="csv")
    opened = open_source(spec, str(tmp_path), _settings(), transport=transport)
    assert opened.frame.collect().height == 2
    assert opened.bytes_read == len(CSV)
    opened.cleanup()
    assert list(tmp_path.iterdir()) == []


def test_file_uri_needs_absolute_path(tmp_path: Path) -> None:
    spec = SourceSpec(uri="file://data/orders.csv", format="csv")
    with pytest.raises(StageError) as err:
        open_source(spec, str(tmp_path), _settings())
    assert "file:///data/orders.csv" in str(err.value)


# --------------------------------------------------------------------------- file sinks


def _result(tmp_path: Path, frame: pl.DataFrame) -> str:
    path = tmp_path / "transform.parquet"
    frame.write_parquet(path)
    return str(path)


FRAME = pl.DataFrame({"id": [1, 2], "name": ["a", "b"]})
READ: dict[SinkFormat, Callable[[Path], pl.DataFrame]] = {
    SinkFormat.PARQUET: pl.read_parquet,
    SinkFormat.CSV: pl.read_csv,
    SinkFormat.NDJSON: pl.read_ndjson,
}


@pytest.mark.parametrize("fmt", [SinkFormat.PARQUET, SinkFormat.CSV, SinkFormat.NDJSON])
def test_file_sink_overwrite_then_append(tmp_path: Path, fmt: SinkFormat) -> None:
    src = _result(tmp_path, FRAME)
    target = tmp_path / "out" / f"result.{fmt.value}"
    sink = FileSink(f"file://{target}", fmt)
    stats = sink.write(src, WriteMode.OVERWRITE)
    assert stats.rows == 2 and stats.bytes == target.stat().st_size
    assert sink.write(src, WriteMode.OVERWRITE).rows == 2
    assert READ[fmt](target).equals(FRAME)
    size = target.stat().st_size
    stats = sink.write(src, WriteMode.APPEND)
    assert stats.rows == 2
    assert READ[fmt](target).equals(pl.concat([FRAME, FRAME]))
    if fmt is not SinkFormat.PARQUET:
        assert stats.bytes == target.stat().st_size - size
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_append_with_other_columns_leaves_the_sink_alone(tmp_path: Path) -> None:
    target = tmp_path / "out" / "result.parquet"
    sink = FileSink(f"file://{target}", SinkFormat.PARQUET)
    sink.write(_result(tmp_path, FRAME), WriteMode.OVERWRITE)
    before = target.read_bytes()
    other = _result(tmp_path, pl.DataFrame({"id": [3], "other": ["x"]}))
    with pytest.raises(StageError) as err:
        sink.write(other, WriteMode.APPEND)
    assert err.value.kind is ErrorKind.SINK_ERROR
    assert str(target) in str(err.value) and "overwrite" in str(err.value)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_csv_sink_cannot_hold_nested_columns(tmp_path: Path) -> None:
    target = tmp_path / "out" / "result.csv"
    nested = _result(tmp_path, pl.DataFrame({"id": [1], "tags": [["a", "b"]]}))
    with pytest.raises(StageError) as err:
        FileSink(f"file://{target}", SinkFormat.CSV).write(nested, WriteMode.OVERWRITE)
    assert err.value.kind is ErrorKind.SINK_ERROR
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out" / "result.ndjson"
    sink = FileSink(f"file://{target}", SinkFormat.NDJSON)
    sink.write(_result(tmp_path, FRAME), WriteMode.OVERWRITE)
    before = target.read_bytes()

    def boom(self: pl.LazyFrame, path: object, **kw: object) -> None:
        Path(str(path)).write_text('{"id": 1')  # half a file, then the disk "fails"
        raise OSError("No space left on device")

    monkeypatch.setattr(pl.LazyFrame, "sink_ndjson", boom)
    with pytest.raises(StageError) as err:
        sink.write(_result(tmp_path, FRAME), WriteMode.OVERWRITE)
    assert "No space left" in str(err.value)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == [target.name]


# --------------------------------------------------------------------------- clickhouse


def test_clickhouse_uri_forms() -> None:
    a = parse_clickhouse_uri("clickhouse://u:p@ch.test:9440/analytics.orders")
    assert (a.host, a.port, a.user, a.password, a.database, a.table) == (
        "ch.test",
        9440,
        "u",
        "p",
        "analytics",
        "orders",
    )
    b = parse_clickhouse_uri("clickhouse://ch.test/analytics/orders")
    assert (b.port, b.database, b.table) == (9000, "analytics", "orders")
    with pytest.raises(StageError):
        parse_clickhouse_uri("clickhouse://ch.test/orders")


def test_clickhouse_types() -> None:
    assert clickhouse_type(pl.Int64()) == "Nullable(Int64)"
    assert clickhouse_type(pl.Datetime("us", "UTC")) == "Nullable(DateTime64(6, 'UTC'))"
    assert clickhouse_type(pl.List(pl.String())) == "Array(Nullable(String))"
    assert clickhouse_type(pl.Date()) == "Nullable(Date32)"


CHDB_SCRIPT = textwrap.dedent(
    """
    import sys
    import polars as pl
    from lineagehub.api import WriteMode
    from pipeline_runner.errors import StageError
    from pipeline_runner.sinks import ChdbBackend, ClickHouseSink

    tmp, chdb_path = sys.argv[1], sys.argv[2]
    frame = pl.DataFrame({"id": [1, 2], "name": ["a", None],
                          "at": pl.Series([0, 1]).cast(pl.Datetime("us", "UTC"))})
    src = f"{tmp}/transform.parquet"
    frame.write_parquet(src)
    backend = ChdbBackend(chdb_path)
    backend.close = lambda: None  # one session per process: keep it for the checks
    sink = ClickHouseSink("clickhouse://localhost:9000/shop.orders", backend=backend)
    assert sink.write(src, WriteMode.OVERWRITE).rows == 2
    assert sink.write(src, WriteMode.APPEND).rows == 2
    count = backend.rows("SELECT count() FROM shop.orders")[0][0]
    print("after append", count)
    assert sink.write(src, WriteMode.OVERWRITE).rows == 2
    print("after overwrite", backend.rows("SELECT count() FROM shop.orders")[0][0])
    bad = f"{tmp}/bad.parquet"
    pl.DataFrame({"id": ["not a number"], "name": ["x"], "at": [None]}).write_parquet(bad)
    try:
        sink.write(bad, WriteMode.APPEND)
    except StageError as exc:
        print("error", exc.kind.value)
    print("after failed append", backend.rows("SELECT count() FROM shop.orders")[0][0])
    print("tables", sorted(r[0] for r in backend.rows("SHOW TABLES FROM shop")))
    """
)


def test_clickhouse_sink_on_chdb(tmp_path: Path) -> None:
    # chdb allows one session per process, and other tests may hold one: run apart.
    proc = subprocess.run(
        [sys.executable, "-c", CHDB_SCRIPT, str(tmp_path), str(tmp_path / "chdb")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        "after append 4",
        "after overwrite 2",
        "error SinkError",
        "after failed append 2",
        "tables ['orders']",
    ]
