"""The app in a real browser (Debian's Chromium driven by Playwright): every page, a search by
upload, the features CSV download; a screenshot of each page in tests/artifacts/screens/."""

from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO
from corpus import shape_image

CHROMIUM = "/usr/bin/chromium"
SCREENS = REPO / "tests" / "artifacts" / "screens"
PAGES = {"collection": "", "train": "train", "reconstruction": "reconstruction", "map": "map",
         "search": "search", "anomalies": "anomalies", "features": "features"}
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (make browser)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(app_ws):
    port = free_port()
    env = {**os.environ, "FEXT_WORKSPACE": str(app_ws.root)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.headless", "true"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the app did not start within 90 s")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.goto(url)
    settle(page)
    return page


def settle(page, timeout: float = 90_000) -> None:
    page.wait_for_selector(IDLE, timeout=timeout)
    page.wait_for_timeout(700)  # let charts and images paint
    page.wait_for_selector(IDLE, timeout=timeout)


def test_every_page_opens_without_exception(browser, app_url):
    SCREENS.mkdir(parents=True, exist_ok=True)
    for title, path in PAGES.items():
        page = open_page(browser, f"{app_url}/{path}")
        assert page.locator("[data-testid='stException']").count() == 0, title
        assert page.locator("h1").first.inner_text().lower().startswith(title[:4]), title
        page.screenshot(path=str(SCREENS / f"{title}.png"), full_page=True)
        page.close()


def test_search_by_upload_shows_the_results_grid(browser, app_url, tmp_path):
    query = tmp_path / "query.png"
    shape_image("green", 4, 32).save(query)
    page = open_page(browser, f"{app_url}/search")
    page.locator("input[type='file']").set_input_files(str(query))
    page.wait_for_selector("text=results in", timeout=60_000)
    settle(page)
    assert page.locator("[data-testid='stException']").count() == 0
    captions = page.locator("[data-testid='stImageCaption']").all_inner_texts()
    results = [c for c in captions if c.startswith("#")]
    assert len(results) == 12  # the default k
    assert results[0].startswith("#1") and "green/" in results[0]
    page.screenshot(path=str(SCREENS / "search-results.png"), full_page=True)
    page.close()


def test_features_csv_download(browser, app_url, app_ws):
    page = open_page(browser, f"{app_url}/features")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download features CSV").click()
    rows = list(csv.reader(io.StringIO(Path(info.value.path()).read_text())))
    assert rows[0] == ["path", "label"] + [f"f{i}" for i in range(8)]
    assert len(rows) == 43 and all(len(r) == 10 for r in rows[1:])
    page.close()


def test_eight_concurrent_sessions_get_their_own_results(browser, app_url, app_ws):
    """Eight browser sessions upload different images at once; each gets its own image first."""
    from fext.train import model_info
    root = Path(model_info(app_ws, "demo")["data"]["images"])
    queries = [f"{label}/{label}_{i:03d}.png" for label in ("red", "green", "blue") for i in (1, 6, 11)][:8]
    contexts = [browser.new_context(viewport={"width": 1200, "height": 900}) for _ in queries]
    pages = [c.new_page() for c in contexts]
    for page in pages:
        page.goto(f"{app_url}/search")
    for page in pages:
        settle(page)
    for page, q in zip(pages, queries):  # all uploads go out before any result is awaited
        page.locator("input[type='file']").set_input_files(str(root / q))
    for page, q in zip(pages, queries):
        page.wait_for_selector("text=results in", timeout=90_000)
        settle(page)
        captions = [c for c in page.locator("[data-testid='stImageCaption']").all_inner_texts()
                    if c.startswith("#")]
        assert captions and captions[0].startswith("#1") and q in captions[0], (q, captions[:2])
        assert page.locator("[data-testid='stException']").count() == 0
    for c in contexts:
        c.close()
