"""The Train and Collection pages in a real browser (Debian's Chromium through Playwright): a
training typed in a terminal appears on an open Train page with its live progress, and a kill
shows as failed without a reload; no table column or figure is cut off. Screenshots land in
tests/artifacts/screens/. The server runs on a private copy of tests/app_fixtures.py's tiny
workspace, whose collection's manifest is grown to the size of a large collection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from tests.app_fixtures import REPO, app_workspace, streamlit_run
from tests.corpus import make_shapes
from tests.helpers import copy_workspace
from tests.test_browser import (  # noqa: F401  (browser: a fixture, used by name)
    CHROMIUM,
    WIDTH,
    browser,
    open_page,
    screenshot,
    settle,
)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (make browser)")

BIG = 120_000  # images in the grown manifest: six-figure counts in every figure
# elements inside `selector` whose content is wider than their box: cut off (clipped or "…")
CUT = """(selector) => Array.from(document.querySelectorAll(selector))
  .flatMap(e => [e, ...e.querySelectorAll('*')])
  .filter(e => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1)
  .map(e => [(e.innerText || e.tagName).slice(0, 60), e.scrollWidth, e.clientWidth])"""
# a table (drawn on a canvas) whose columns are wider than it: [content width, box width]
GRID = """(i) => { const s = document.querySelectorAll("[data-testid='stDataFrame']")[i]
  ?.querySelector('.dvn-scroller'); return s ? [s.scrollWidth, s.clientWidth] : null; }"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A private copy of the tiny workspace; its collection's manifest lists BIG images (the
    tiny collection's readable rows over and over: the pages read the manifest, not the files)."""
    from fext.collection import store_dir
    from fext.registry import open_record

    ws = copy_workspace(app_workspace(tmp_path_factory), tmp_path_factory.mktemp("train-ui") / "ws")
    data = open_record(ws, "demo").config.data
    manifest = store_dir(ws, Path(data.images).resolve(), data.image_size, data.fit) / "manifest.csv"
    rows = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    ok = rows[rows["status"] == "ok"]
    grown = pd.concat([ok] * (BIG // len(ok) + 1), ignore_index=True).head(BIG)
    pd.concat([grown, rows[rows["status"] != "ok"]]).to_csv(manifest, index=False)
    return ws


@pytest.fixture(scope="module")
def app_url(ws, tmp_path_factory):
    log = tmp_path_factory.mktemp("streamlit-train") / "log.txt"
    with streamlit_run(ws, log, "--server.address", "127.0.0.1") as (url, _):
        yield url


def open_at(browser, url: str, width: int):  # noqa: F811
    """A page opened at this window width, painted (tests/test_browser.py's open_page at WIDTH)."""
    page = browser.new_page(viewport={"width": width, "height": 1000})
    page.goto(url)
    settle(page)
    return page


def test_a_training_typed_in_a_terminal_shows_live_and_a_kill_shows_as_failed(
        browser, app_url, ws, tmp_path):  # noqa: F811
    """The page is open before the command starts and is never reloaded: its own poll finds
    the job, follows its epochs, and says it failed once the process is SIGKILLed."""
    page = open_page(browser, f"{app_url}/train")
    make_shapes(tmp_path / "images", per_label=6, size=24)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fext", "train", "--images", str(tmp_path / "images"),
         "--name", "from-cli", "--workspace", str(ws.root), "--preset", "small",
         "--image-size", "16", "--latent-dim", "8", "--batch-size", "8", "--epoch-steps", "2",
         "--held-out-copies", "32", "--epochs", "500", "--patience", "500"],  # runs until killed
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # generous: the command imports TensorFlow and compiles before its first epoch
        expect(page.get_by_text("Running: train from-cli")).to_be_visible(timeout=600_000)
        expect(page.get_by_text(f"Started from the command line (process {proc.pid})")
               ).to_be_visible(timeout=60_000)
        expect(page.get_by_text("After epoch ")).to_be_visible(timeout=600_000)  # its epochs
        expect(page.locator("[data-testid='stProgress']")).to_contain_text("train from-cli")
        screenshot(page, "train-cli-running")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        expect(page.get_by_text("The train from-cli job (started from the command line) "
                                "failed: interrupted")).to_be_visible(timeout=120_000)
        expect(page.get_by_text("Running: train from-cli")).to_have_count(0, timeout=120_000)
        assert page.locator("[data-testid='stException']").count() == 0
        page.get_by_text("Recent jobs").click()  # the same reason, on its line
        recent = page.locator("[data-testid='stExpander']", has_text="Recent jobs")
        expect(recent).to_contain_text("train from-cli · from the command line · failed: "
                                       "interrupted", timeout=30_000)
        settle(page)
        assert page.evaluate(CUT, "[data-testid='stExpander']") == []
        screenshot(page, "train-cli-killed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        page.close()


@pytest.mark.parametrize("width", [WIDTH, 1280])  # 1280: a laptop's window, the sidebar open
def test_no_column_of_the_runs_table_is_cut_off(browser, app_url, width):  # noqa: F811
    page = open_at(browser, f"{app_url}/train", width)
    runs = page.locator("[data-testid='stDataFrame']").first
    runs.wait_for(timeout=60_000)
    header = runs.locator("[role='columnheader']")  # filled in once the table is drawn
    expect(header.first).to_have_text("model", timeout=30_000)
    expect(header.last).to_have_text("image folder", timeout=30_000)
    try:  # the table sizes its columns after it is painted: polled, never a fixed pause
        page.wait_for_function(f"() => {{ const g = ({GRID})(0); return g && g[0] <= g[1]; }}",
                               timeout=30_000)
    except PlaywrightTimeout:
        content, box = page.evaluate(GRID, 0)
        pytest.fail(f"the runs table needs {content} px, has {box}: a column is cut off")
    screenshot(page, f"train-runs-{width}", width)
    page.close()


@pytest.mark.parametrize("width", [WIDTH, 1024])
def test_no_figure_of_a_large_collection_is_cut_off(browser, app_url, width):  # noqa: F811
    page = open_at(browser, app_url, width)
    metric = page.locator("[data-testid='stMetricValue']")
    # the figures, however the page's runs interleave with the jobs' polls
    expect(metric.nth(3)).to_contain_text(" / ", timeout=60_000)
    settle(page)
    values = metric.all_inner_texts()
    assert values[0] == f"{BIG:,}" and len(values[3].split(" / ")) == 3, values
    assert page.evaluate(CUT, "[data-testid='stMetric']") == []
    screenshot(page, f"collection-large-{width}", width)
    page.close()
