"""The console in the browser a person uses (Debian's headless Chromium): time to first
render and bytes shipped.

    .venv/bin/python bench/bench_console.py [--nodes 1000] [--repeat 5]

A gateway of its own (a subprocess on a free loopback port) reads an embedded warehouse
filled here with a synthetic lineage graph of `--nodes` nodes (jobs and datasets in a
chain of fan-outs) and one run with its stage runs. Measured from navigation start:

* the dataset page until its graph is drawn (ELK layout of the whole graph), and
* a run page until its lineage graph and waterfall are drawn,
* bytes shipped per page (the Resource Timing API's transfer sizes).

Baseline in the same run: the console's not-found page, which loads the same shell and
libraries and draws nothing (the fixed cost of the page itself); the ratio says what the
data, the layout and the drawing add.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consumers.otel.backend import to_json_each_row
from consumers.warehouse.ddl import LINEAGE_SCHEMA
from consumers.warehouse.decode import decode_lineage
from gateway.clickhouse import ChdbStore
from tests.warehouse_events import dataset_in, dataset_out, later, new_run_id, run_event

REPO = Path(__file__).resolve().parent.parent


def fill(path: str, nodes: int) -> tuple[str, str]:
    """A tree of jobs and datasets with about `nodes` nodes, all downstream of d0."""
    store = ChdbStore(path)
    for sql in LINEAGE_SCHEMA.create("otel", 0):
        store._query(sql)
    events = []
    made, frontier, i = 1, ["d0"], 0
    while made < nodes:
        src = frontier.pop(0)
        for _ in range(3):
            i += 1
            events.append(
                run_event(
                    "COMPLETE",
                    new_run_id(),
                    ("bench", f"job_{i}"),
                    later(i),
                    inputs=[dataset_in("s3://bench", src)],
                    outputs=[dataset_out("s3://bench", f"d{i}", ("id", "int"))],
                )
            )
            frontier.append(f"d{i}")
            made += 2
    merged: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        for table, rows in decode_lineage(event).items():
            merged.setdefault(table, []).extend(rows)
    for table, rows in merged.items():
        store._query(
            f"INSERT INTO otel.{table} FORMAT JSONEachRow\n"
            + to_json_each_row(LINEAGE_SCHEMA.tables[table], rows)
        )
    store.close()
    return "s3://bench", "d0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def measure(driver: Any, url: str, ready_css: str) -> tuple[float, int]:
    """(ms from navigation start until `ready_css` exists, the page's weight: bytes of
    every response body, whether or not the browser's cache saved the transfer)."""
    driver.get("about:blank")
    driver.get(url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = driver.execute_script(
            "return document.querySelector(arguments[0]) ? performance.now() : null", ready_css
        )
        if found is not None:
            size = driver.execute_script(
                "return performance.getEntriesByType('navigation').concat("
                "performance.getEntriesByType('resource'))"
                ".reduce((n, e) => n + (e.encodedBodySize || 0), 0)"
            )
            return float(found), int(size)
        time.sleep(0.01)
    raise SystemExit(f"{url}: {ready_css} never appeared")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ns, name = fill(str(Path(tmp) / "chdb"), args.nodes)
        port = free_port()
        env = {
            **os.environ,
            "LINEAGEHUB_GATEWAY_CHDB_PATH": str(Path(tmp) / "chdb"),
            "LINEAGEHUB_GATEWAY_PUBLIC_READ": "1",
            "LINEAGEHUB_GATEWAY_TOKENS": "",
            "KUBECONFIG": "",
            "CLICKHOUSE_URL": "",
            "CLICKHOUSE_HTTP_URL": "",
        }
        gateway = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "lineage-hub"), "gateway", f"--port={port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        driver = browser()
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.2)
            pages = {
                "baseline: not-found page": (f"{base}/console/nothing-here", "#not-found"),
                f"dataset graph, {args.nodes} nodes": (
                    f"{base}/console/dataset?namespace={ns}&name={name}&up=0&down=10",
                    "#dataset-graph svg",
                ),
                "job page (history chart + graph)": (
                    f"{base}/console/job?namespace=bench&name=job_1",
                    "#job-graph svg",
                ),
            }
            results: dict[str, tuple[float, int]] = {}
            for label, (url, css) in pages.items():
                measure(driver, url, css)  # warm the caches once
                runs = [measure(driver, url, css) for _ in range(args.repeat)]
                results[label] = (statistics.median(t for t, _ in runs), runs[-1][1])
            base_ms = results["baseline: not-found page"][0]
            print(f"console in headless Chromium (median of {args.repeat}, after one warm-up):")
            for label, (ms, size) in results.items():
                print(f"  {label:<36} {ms:8.0f} ms  {size / 1024:8.0f} KiB  x{ms / base_ms:5.1f}")
            depth = driver.execute_script("return document.querySelectorAll('.node').length")
            print(f"  (the last page drew {depth} nodes)")
        finally:
            driver.quit()
            gateway.terminate()
            gateway.wait(10)


if __name__ == "__main__":
    main()
