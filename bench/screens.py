"""Every page of the app as a user sees it, on the bundled demo and on a folder of photos:
full-page screenshots in Debian's Chromium, to be looked at (docs/SCREENS.md says what was
checked on each). Not a benchmark: the look a person gives the product before calling it done.

The workspace gets what a user's would: the demo (`fext demo`) and, with `--photos DIR`, a model
trained on that folder through the CLI with the shipped defaults (`fext build --name photos`).
Then `streamlit run app.py` on it; for each model, one browser session picks the model in the
sidebar and walks the pages through the sidebar, as a user clicks, and also captures the map
zoomed in (points drawn as their pictures) and the Anomalies page's panel for the top image.
A page that shows an exception fails the run.

    .venv/bin/python bench/screens.py --out /tmp/screens                      # the demo
    .venv/bin/python bench/screens.py --out /tmp/screens --photos DIR         # and DIR
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import REPO, fext

sys.path.insert(0, str(REPO))
from fext import registry  # noqa: E402
from fext.workspace import Workspace  # noqa: E402
from tests.app_fixtures import streamlit_run  # noqa: E402  (the app started as the tests do)
from tests.test_browser import (  # noqa: E402
    CHROMIUM,
    FLAGS,
    MAP_READY,
    WIDTH,
    full_page,
    settle,
)

PAGES = ["Collection", "Train", "Reconstruction", "Map", "Search", "Anomalies", "Duplicates",
         "Classifier", "Features"]


def prepared(ws: Workspace, photos: Path | None) -> list[str]:
    """The models to look at, trained first where the workspace lacks them."""
    names = registry.names(ws)
    if "demo" not in names:
        fext("demo", "--workspace", str(ws.root))
    models = ["demo"]
    if photos is not None:
        if "photos" not in names:
            fext("build", "--name", "photos", "--images", str(photos),
                 "--workspace", str(ws.root))
        models.append("photos")
    return models


def shoot(page, path: Path) -> None:
    """The whole page (the tests' `full_page`), then the window back to its size; a page that
    shows an exception ends the run."""
    full_page(page, path)
    page.set_viewport_size({"width": WIDTH, "height": 1000})
    if page.locator("[data-testid='stException']").count():
        sys.exit(f"{path.stem}: the page shows an exception")
    print(path)


def walk(browser, url: str, model: str, out: Path) -> None:
    """One session: the model picked in the sidebar, then every page through the sidebar."""
    out.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
    page.goto(url)
    settle(page, timeout=600_000)
    picker = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first
    picker.click()
    page.get_by_role("option", name=model, exact=True).click()
    settle(page)
    nav = page.locator("[data-testid='stSidebarNav']")
    for n, title in enumerate(PAGES, 1):
        nav.get_by_text(title, exact=True).first.click()
        page.wait_for_function("(t) => document.querySelector('h1')?.innerText.startsWith(t)",
                               arg=title, timeout=120_000)
        settle(page, timeout=600_000)
        if title == "Map":  # the whole map drawn, then zoomed in
            page.wait_for_selector(MAP_READY, timeout=120_000)
            shoot(page, out / f"{n:02d}-map.png")
            zoomed(page, out / f"{n:02d}-map-zoomed.png")
        else:
            shoot(page, out / f"{n:02d}-{title.lower()}.png")
        if title == "Anomalies":
            page.get_by_role("button", name="Inspect").first.click()
            page.locator(".st-key-anomaly-panel img.fext-anomaly-map").wait_for(timeout=300_000)
            settle(page, timeout=300_000)
            shoot(page, out / f"{n:02d}-anomalies-panel.png")
    page.close()


def zoomed(page, path: Path) -> None:
    """The map after four notches of the mouse wheel at its centre, as a user zooms in."""
    settle(page)  # laid out again at the window's own size
    box = page.locator(".fext-plot").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    span = ("() => { const r = document.querySelector('.fext-plot')._fullLayout.xaxis.range; "
            "return r[1] - r[0]; }")
    for _ in range(4):
        before = page.evaluate(span)
        page.mouse.wheel(0, -200)
        page.wait_for_function(f"() => ({span})() < {before} * 0.95", timeout=30_000)
    settle(page)
    page.screenshot(path=str(path))
    print(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the screenshots")
    p.add_argument("--photos", type=Path, help="a folder of photos to train a model on")
    p.add_argument("--workspace", type=Path, help="workspace to use (default: a new one)")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    root = args.workspace or Path(tempfile.mkdtemp(prefix="fext-screens-"))
    ws = Workspace(root)
    models = prepared(ws, args.photos)
    args.out.mkdir(parents=True, exist_ok=True)
    with streamlit_run(ws, args.out / "streamlit.log", "--server.address", "127.0.0.1") as (
            url, _), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for model in models:
            walk(browser, url, model, args.out / model)
        browser.close()


if __name__ == "__main__":
    main()
