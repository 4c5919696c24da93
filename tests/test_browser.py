"""The operator's view: the Dagster web UI in headless Chromium.

Starts ``dagster-webserver`` on the project's ``workspace.yaml`` at a free local port, opens the asset
graph in Debian's Chromium (driven by Playwright through ``executable_path``: Playwright's own browser
downloads are never used), checks that the project's assets are there, launches a materialization
through the webserver's GraphQL API, waits for it to succeed, and saves screenshots. ``.ci/run``
installs Chromium; elsewhere the test is skipped when Chromium is absent.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]


def chromium_path() -> str | None:
    return os.environ.get("NBO_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        out = json.load(resp)
    assert "errors" not in out, out
    return out["data"]


LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

RUN_STATUS = """
query Status($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }
"""


# Each group's own assets (its list), and for the small geo group the upstream its lineage draws.
GROUP_ASSETS = {
    "geo": ("geofence_hits",),
    "notifications": ("notifications", "notification_deliveries"),
    "marts": ("campaign_effectiveness", "notification_funnel", "campaign_report"),
}
GEO_LINEAGE = ("geofence_hits", "location_pings", "stores")


@pytest.fixture
def webserver(tmp_path: Path):
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: .ci/run installs Debian's chromium package")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-m", "nbo_platform.cli", "generate", "--data-dir", str(data), "--preset", "small"],
        check=True,
        capture_output=True,
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    # No daemon runs here: launched runs start at once instead of waiting in the queue.
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    env = {**os.environ, "NBO_DATA_DIR": str(data), "DAGSTER_HOME": str(home)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "webserver.log").open("w")
    webserver = Path(sys.executable).parent / "dagster-webserver"
    proc = subprocess.Popen(
        [str(webserver), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"dagster-webserver did not start:\n{(tmp_path / 'webserver.log').read_text()[-3000:]}")
                time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_ui_shows_the_asset_graph_and_runs_a_materialization(webserver: str, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("NBO_TEST_ARTIFACTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)

    # Launch through the GraphQL API the UI itself uses: the reference data's offers asset.
    launched = graphql(
        webserver,
        LAUNCH,
        {
            "params": {
                "selector": {
                    "repositoryLocationName": "nbo_platform",
                    "repositoryName": "__repository__",
                    "pipelineName": "__ASSET_JOB",
                    "assetSelection": [{"path": ["offers"]}],
                },
                "mode": "default",
            }
        },
    )["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 240
    status = None
    while time.monotonic() < deadline:
        status = graphql(webserver, RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS", f"run {run_id} ended {status}"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{webserver}/asset-groups", wait_until="domcontentloaded")
        for group in ("ingestion", "reference", "offers", "geo", "notifications", "lake", "marts"):
            page.get_by_text(group, exact=True).first.wait_for(timeout=90_000)
        skip = page.get_by_role("button", name="Skip")  # the webserver's first-visit newsletter dialog
        if skip.count():
            skip.first.click()
        page.screenshot(path=str(shots / "asset_lineage.png"))
        for group, assets in GROUP_ASSETS.items():
            page.goto(f"{webserver}/locations/nbo_platform/asset-groups/{group}", wait_until="domcontentloaded")
            for asset in GEO_LINEAGE if group == "geo" else assets[:1]:
                page.get_by_text(asset, exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(shots / f"group_{group}.png"))
            # The lineage draws only the nodes in view; the group's list names every asset.
            page.goto(f"{webserver}/locations/nbo_platform/asset-groups/{group}/list", wait_until="domcontentloaded")
            for asset in assets:
                page.get_by_text(asset, exact=True).filter(visible=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(shots / f"group_{group}_list.png"))

        page.goto(f"{webserver}/assets/offers", wait_until="domcontentloaded")
        page.get_by_text("offers", exact=True).first.wait_for(timeout=60_000)
        page.get_by_text("Latest materialization", exact=False).first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "offers_asset.png"))

        page.goto(f"{webserver}/runs/{run_id}", wait_until="domcontentloaded")
        page.get_by_text("Success", exact=False).first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "run.png"))
        browser.close()
    assert (shots / "group_geo.png").stat().st_size > 10_000
