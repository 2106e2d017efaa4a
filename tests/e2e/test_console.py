"""The console in a real browser (Debian's headless Chromium through Selenium), as a
person uses it after a demo run: the run is listed, its page shows the waterfall and
the lineage graph, a column's upstream columns appear on a click, a failed quality
check shows its samples, a hostile name stays text, unknown things are a not-found
page, and no page logs a JavaScript error. Screenshots land in `.artifacts/console/`."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from stack.paths import REPO_ROOT
from tests.e2e.test_end_to_end import Kubectl, apply_example, wait_verified
from tests.helpers import wait_until
from tests.warehouse_events import dataset_out, later, new_run_id, run_event

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(os.environ.get("LINEAGE_HUB_ARTIFACTS", REPO_ROOT / ".artifacts")) / "console"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
HOSTILE = "<img src=x onerror=window.__pwned=1>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert shutil.which(CHROMIUM) and shutil.which(DRIVER), "scripts/setup.sh installs chromium"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1800"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


class Page:
    def __init__(self, driver: Any, base: str) -> None:
        self.driver, self.base = driver, base

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)
        wait_until(
            lambda: self.driver.execute_script("return document.body.dataset.ready === '1'"),
            timeout=30,
        )

    def find(self, css: str, timeout: float = 30) -> Any:
        from selenium.webdriver.common.by import By

        return wait_until(
            lambda: (self.driver.find_elements(By.CSS_SELECTOR, css) or [None])[0],
            timeout=timeout,
            every=0.2,
        )

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def shot(self, name: str) -> None:
        self.driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    def errors(self, allow: tuple[str, ...] = ()) -> list[str]:
        """JavaScript errors (and failed loads) the page logged, minus the expected ones."""
        return [
            e["message"]
            for e in self.driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(a in e["message"] for a in allow)
        ]


@pytest.fixture(scope="module")
def page(browser: Any, stack: Any) -> Page:
    base = stack.env["LINEAGEHUB_GATEWAY_URL"]
    httpx.get(f"{base}/api/v1/console/config", timeout=10).raise_for_status()
    return Page(browser, base)


def test_a_run_as_a_person_sees_it(page: Page, kubectl: Kubectl, namespace: str) -> None:
    apply_example(kubectl, namespace, "orders")
    status = wait_verified(kubectl, namespace, "orders")
    assert status["phase"] == "Succeeded"

    page.open(f"/console/?namespace={namespace}")
    row = page.find('tr[data-run="orders"]')
    wait_until(lambda: "Succeeded" in row.text, timeout=20)
    duration_agrees(row.find_element("css selector", "td.duration"), status)
    page.shot("runs")
    assert page.errors() == []

    row.find_element("css selector", "a").click()
    page.find('.wf-row[data-span="stage load"]')
    stages = {e.get_attribute("data-span") for e in page.all(".wf-row")}
    assert {"stage extract", "stage transform", "stage load"} <= stages
    assert "PipelineRun orders" in stages
    graph = page.find("#lineage-graph svg")
    ids = {g.get_attribute("data-id") for g in graph.find_elements("css selector", ".node")}
    sink = f"dataset:file:/data/output/{namespace}/orders.parquet"
    assert "dataset:file:/data/examples/orders.csv" in ids and sink in ids
    assert {f"job:{namespace}:orders.{s}" for s in ("extract", "transform", "load")} <= ids
    page.driver.execute_script(
        "document.querySelector(`.node[data-id='${arguments[0]}']`)"
        ".dispatchEvent(new MouseEvent('click', {bubbles: true}))",
        sink,
    )
    page.find('#fields button[data-field="gross"]').click()
    upstream = page.find("#upstream-columns")
    columns = [
        li.get_attribute("data-column") for li in upstream.find_elements("css selector", "li")
    ]
    assert "/data/examples/orders.csv:amount" in columns, columns
    assert page.find('#quality tr[data-check="not_null_order_id"]').text.startswith("PASS")
    assert "kubectl describe pipelinerun orders" in page.find("pre").text
    stage_durations_agree(page, status, spans_of(page.base, status["traceId"]))
    page.shot("run")
    assert page.errors() == []

    page.open(f"/console/dataset?namespace=file&name=/data/output/{namespace}/orders.parquet")
    page.find("#dataset-graph svg")
    assert "order_id" in page.find("#schema").text
    page.shot("dataset")
    page.open(f"/console/job?namespace={namespace}&name=orders.transform")
    assert "COMPLETE" in page.find("#job-runs").text
    page.find("#job-graph svg")
    page.shot("job")
    page.open("/console/dashboards")
    page.find('[data-panel="Failed runs by job"]')
    # Stat panels in their Grafana unit: a success rate in percent (not a raw fraction),
    # durations in time units, and both values of a two-value stat.
    rate = page.find('[data-panel="Success rate"] .stat-value').text
    assert re.fullmatch(r"\d{1,3}(\.\d)?%", rate), rate
    durations = page.find('[data-panel="Run duration p50 / p95"] .stat-values').text
    assert "p50" in durations and "p95" in durations, durations
    assert re.search(r"\d (ms|s|min|h)\b", durations), durations
    page.shot("dashboards")
    assert page.errors() == []


def spans_of(base: str, trace_id: str) -> dict[str, int]:
    """{span name: duration in ns} of the run's trace, from the gateway's spans API."""
    reply = httpx.get(f"{base}/api/v1/traces/{trace_id}/spans", timeout=20)
    reply.raise_for_status()
    return {s["name"]: int(s["durationNs"]) for s in reply.json()["spans"]}


def shown_seconds(text: str) -> tuple[float, float]:
    """(seconds, how far off the rounding may make them) of a duration as shown."""
    if found := re.fullmatch(r"(\d+) ms", text):
        return int(found[1]) / 1000, 0.0005
    if found := re.fullmatch(r"(\d+\.\d) s", text):
        return float(found[1]), 0.05
    raise AssertionError(f"not a duration shown to the millisecond: {text!r}")


def _precise_seconds(obj: dict[str, Any]) -> float:
    start, end = (
        datetime.fromisoformat(obj[k].replace("Z", "+00:00"))
        for k in ("startTimePrecise", "completionTimePrecise")
    )
    return (end - start).total_seconds()


def stage_durations_agree(page: Page, status: dict[str, Any], spans: dict[str, int]) -> None:
    """Each stage's Duration is its status's millisecond times' difference (not a whole
    second's "0 ms"), and its Work the stage span's length in the trace."""
    rows = {r.get_attribute("data-stage"): r for r in page.all("#stages tbody tr")}
    assert set(rows) == {"extract", "transform", "load"}
    for stage in status["stages"]:
        row = rows[stage["name"]]
        duration_agrees(row.find_element("css selector", "td.duration"), stage)
        work = filled(row.find_element("css selector", ".stage-work"))
        took, slack = shown_seconds(work)
        assert abs(took - spans[f"stage {stage['name']}"] / 1e9) <= slack + 1e-9, work
    assert "Work (trace)" in page.find("#stages-note").text


def filled(cell: Any) -> str:
    """A cell's text once the page has filled it in (it shows "…" until then)."""
    text: str = wait_until(lambda: cell.text if cell.text != "\N{HORIZONTAL ELLIPSIS}" else None)
    return text


def duration_agrees(cell: Any, obj: dict[str, Any]) -> None:
    """A Duration cell shows `obj`'s millisecond times' difference, saying it does."""
    assert cell.get_attribute("data-precise") == "1", cell.text
    shown, slack = shown_seconds(cell.text)
    exact = _precise_seconds(obj)
    assert exact > 0.001 and abs(shown - exact) <= slack + 1e-9, (cell.text, obj)


def test_a_failed_quality_check_shows_its_samples(
    page: Page, kubectl: Kubectl, namespace: str
) -> None:
    apply_example(kubectl, namespace, "badq", "pipelinerun-quality-fail.yaml")
    status = wait_verified(kubectl, namespace, "badq")
    assert status["phase"] == "Failed"
    page.open(f"/console/run/{namespace}/badq")
    failed = [
        tr
        for tr in page.find("#quality").find_elements("css selector", "tbody tr")
        if tr.text.startswith("FAIL")
    ]
    assert failed, page.find("#quality").text
    samples = failed[0].find_elements("css selector", "td:last-child code")
    assert samples and all(s.text for s in samples)
    assert "QualityCheckFailed" in page.find("#run-reason").text
    page.shot("run-quality-failed")
    assert page.errors() == []


def test_hostile_names_stay_text_and_unknowns_are_not_found(
    page: Page, stack: Any, namespace: str
) -> None:
    base, token_file = (
        stack.env["LINEAGEHUB_GATEWAY_URL"],
        stack.env["LINEAGEHUB_GATEWAY_TOKEN_FILE"],
    )
    token = Path(token_file).read_text().strip()
    event = run_event(
        "COMPLETE",
        new_run_id(),
        (namespace, HOSTILE),
        later(1),
        outputs=[dataset_out("s3://hostile", HOSTILE, (HOSTILE, "string"))],
    )
    reply = httpx.post(
        f"{base}/api/v1/lineage",
        content=event,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=20,
    )
    assert reply.status_code == 201, reply.text
    wait_until(
        lambda: (
            httpx.get(
                f"{base}/api/v1/lineage/job",
                params={"namespace": namespace, "name": HOSTILE},
                timeout=10,
            ).status_code
            == 200
        ),
        timeout=60,
    )
    page.open(f"/console/job?{httpx.QueryParams({'namespace': namespace, 'name': HOSTILE})}")
    assert page.find("h1").text == HOSTILE
    page.find("#job-graph svg")
    page.open(
        f"/console/dataset?{httpx.QueryParams({'namespace': 's3://hostile', 'name': HOSTILE})}"
    )
    assert page.find("h1").text == HOSTILE
    assert HOSTILE in page.find("#schema").text
    assert page.driver.execute_script("return window.__pwned") is None
    assert not page.all("main img")
    page.shot("hostile")

    page.open(f"/console/run/{namespace}/no-such-run")
    assert "no PipelineRun" in page.find("#not-found").text
    page.open("/console/dataset?namespace=s3://nowhere&name=nothing")
    assert "knows no dataset" in page.find("#not-found").text
    page.shot("not-found")
    # The only errors: the not-found answers the pages asked for.
    assert page.errors(allow=("404 (Not Found)",)) == []


def test_cancel_and_run_again_from_the_console(
    page: Page, stack: Any, kubectl: Kubectl, namespace: str
) -> None:
    # A suspended run waits before its next stage: it is still running when cancelled.
    doc = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun.yaml").read_text())
    doc["metadata"] = {"name": "held", "namespace": namespace}
    doc["spec"]["sink"]["uri"] = f"file:///data/output/{namespace}/held.parquet"
    doc["spec"]["suspend"] = True
    kubectl("apply", "-f", "-", input=json.dumps(doc))

    def phase(name: str) -> str:
        got = kubectl("get", "pipelinerun", name, "-n", namespace, "-o", "json")
        return str((json.loads(got.stdout).get("status") or {}).get("phase") or "")

    page.open(f"/console/run/{namespace}/held")
    page.driver.execute_script("window.confirm = () => true")
    page.find("#cancel-run").click()
    # Without a token the console says what it needs, and changes nothing.
    assert "token" in page.find("#action-result .error-box").text
    assert phase("held") != "Cancelled"
    token = Path(stack.env["LINEAGEHUB_GATEWAY_TOKEN_FILE"]).read_text().strip()
    page.driver.execute_script("sessionStorage.setItem('lh-token', arguments[0])", token)
    page.find("#cancel-run").click()
    wait_until(lambda: phase("held") == "Cancelled", timeout=60)

    page.open(f"/console/run/{namespace}/held")
    page.find("#run-again").click()
    wait_until(lambda: not page.driver.current_url.endswith("/held"), timeout=30)
    again = page.driver.current_url.rsplit("/", 1)[1]
    spec = json.loads(kubectl("get", "pipelinerun", again, "-n", namespace, "-o", "json").stdout)[
        "spec"
    ]
    assert (
        spec["sink"] == doc["spec"]["sink"] and not spec.get("suspend") and not spec.get("cancel")
    )
    page.driver.execute_script("sessionStorage.removeItem('lh-token')")
    # Expected: the 401 provoked above, and the warehouse not knowing the brand-new run's
    # lineage yet (its page says so and shows everything else).
    assert page.errors(allow=("401 (Unauthorized)", "/api/v1/lineage/runs/")) == []
