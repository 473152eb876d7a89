"""The app in a real browser (Debian's Chromium driven by Playwright): every page, a search by
upload, the features CSV download, concurrent sessions; a full-page screenshot of each page in
tests/artifacts/screens/. The server runs on tests/app_fixtures.py's tiny trained workspace."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.app_fixtures import DIM, REPO, app_workspace, streamlit_run
from tests.corpus import COLOURS, READABLE
from tests.corpus import shape_image as shape

CHROMIUM = "/usr/bin/chromium"
SCREENS = REPO / "tests" / "artifacts" / "screens"
PAGES = {"collection": "", "train": "train", "reconstruction": "reconstruction", "map": "map",
         "search": "search", "anomalies": "anomalies", "duplicates": "duplicates",
         "features": "features",
         "classifier": "classifier"}
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]
WIDTH = 1400
# every image loaded and every Plotly chart drawn: what a person would see
PAINTED = """() => {
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  const imgs = Array.from(main.querySelectorAll('img'));
  const charts = main.querySelectorAll('[data-testid="stPlotlyChart"]').length;
  const drawn = main.querySelectorAll('[data-testid="stPlotlyChart"] .main-svg').length;
  return imgs.every(i => i.complete && i.naturalWidth > 0) && drawn >= charts;
}"""
# The page at rest: the script idle, everything painted, Plotly laid out at its container's width,
# all of it holding for `frames` consecutive animation frames (a rerun that starts right after a
# paint breaks the streak). Polled once per frame: a condition, never a fixed pause.
AT_REST = """(frames) => {
  const idle = document.querySelector("[data-testid='stApp'][data-test-script-state='notRunning']");
  const laidOut = Array.from(document.querySelectorAll('.js-plotly-plot')).every(
    p => p._fullLayout && Math.abs(p._fullLayout.width - p.clientWidth) < 2);
  const ok = idle && laidOut && (""" + PAINTED + """)();
  window.__fextRest = ok ? (window.__fextRest || 0) + 1 : 0;
  return window.__fextRest >= frames;
}"""
MAIN_HEIGHT = """() => Math.max(...Array.from(document.querySelectorAll(
  '[data-testid="stMain"], [data-testid="stAppViewContainer"]')).map(e => e.scrollHeight))"""

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (make browser)")


@pytest.fixture(scope="session")
def app_ws(tmp_path_factory):
    return app_workspace(tmp_path_factory)


@pytest.fixture(scope="module")
def app_url(app_ws, tmp_path_factory):
    """`streamlit run app.py` on a free port, as a user starts it, until the module ends."""
    log = tmp_path_factory.mktemp("streamlit") / "log.txt"
    with streamlit_run(app_ws, log, "--server.address", "127.0.0.1") as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def settle(page, timeout: float = 90_000) -> None:
    """Wait until the script has finished and everything it drew is painted. The page's title
    first: before its first run starts, a freshly loaded app also reads as idle and painted."""
    page.wait_for_selector("[data-testid='stMain'] h1", timeout=timeout)
    page.wait_for_selector(IDLE, timeout=timeout)
    page.wait_for_function(AT_REST, arg=10, polling="raf", timeout=timeout)


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": WIDTH, "height": 1000}, accept_downloads=True)
    page.goto(url)
    settle(page)
    return page


def full_page(page, path: Path, width: int = WIDTH) -> None:
    """The whole page as a picture at `path`, the window `width` wide: Streamlit scrolls
    inside its main block, so the window grows to fit it (and stays so)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = min(max(int(page.evaluate(MAIN_HEIGHT)) + 40, 1000), 8000)
    page.set_viewport_size({"width": width, "height": height})
    settle(page)  # charts re-lay out to the new size before the streak of still frames ends
    page.screenshot(path=str(path), full_page=True)


def screenshot(page, name: str, width: int = WIDTH) -> None:
    """The whole page in tests/artifacts/screens/NAME.png."""
    full_page(page, SCREENS / f"{name}.png", width)


def result_captions(page) -> list[str]:
    return [c for c in page.locator("[data-testid='stImageCaption']").all_inner_texts()
            if c.startswith("#")]


def test_every_page_opens_without_exception(browser, app_url):
    for title, path in PAGES.items():
        page = open_page(browser, f"{app_url}/{path}")
        assert page.locator("[data-testid='stException']").count() == 0, title
        assert page.locator("h1").first.inner_text().lower().startswith(title[:4]), title
        # the sidebar offers every page and the model picker opens on the demo model
        nav = page.locator("[data-testid='stSidebarNav']")
        for t in PAGES:  # the navigation may still be drawing: wait for each entry
            nav.get_by_text(t.capitalize(), exact=True).first.wait_for(timeout=30_000)
        sidebar = page.locator("[data-testid='stSidebar']")
        expect(sidebar).to_contain_text("Model", timeout=30_000)
        expect(sidebar).to_contain_text(f"{DIM}-d features", timeout=30_000)
        screenshot(page, title)
        page.close()


def test_sidebar_links_navigate_between_pages(browser, app_url):
    page = open_page(browser, app_url)
    for title in ("Map", "Features", "Collection"):
        page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()
        page.wait_for_function(f"() => document.querySelector('h1')?.innerText.startsWith('{title}')",
                               timeout=60_000)
        settle(page)
        assert page.locator("[data-testid='stException']").count() == 0, title
    page.close()


def test_search_by_upload_shows_the_results_grid(browser, app_url, tmp_path):
    query = tmp_path / "query.png"
    shape("green", 4).save(query)
    page = open_page(browser, f"{app_url}/search")
    page.locator("input[type='file']").set_input_files(str(query))
    page.wait_for_selector("text=results in", timeout=60_000)
    settle(page)
    assert page.locator("[data-testid='stException']").count() == 0
    results = result_captions(page)
    assert len(results) == 12  # the default k
    assert results[0].startswith("#1 · ") and "green/green_004.png" in results[0]
    assert all(" · " in r and ".png" in r for r in results)  # rank, score and path on each
    screenshot(page, "search-results")
    page.close()


def download(page, name: str, timeout: float = 60) -> tuple[str, str]:
    """Click the download link `name` (it opens one of the app's CSV routes, in a new tab) and
    return the file's suggested name and text, whichever tab the browser saves it from."""
    got = []
    page.on("download", lambda d: got.append(d))
    page.context.on("page", lambda tab: tab.on("download", lambda d: got.append(d)))
    page.get_by_role("link", name=name).click()
    deadline = time.time() + timeout
    while not got and time.time() < deadline:
        page.wait_for_timeout(50)  # polling the download list, the condition waited on
    assert got, f"no download from {name!r}"
    return got[0].suggested_filename, Path(got[0].path()).read_text()


def test_features_csv_download(browser, app_url):
    page = open_page(browser, f"{app_url}/features")
    filename, text = download(page, "Download features CSV")
    assert filename == "demo-features.csv"
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["path", "label"] + [f"f{i}" for i in range(DIM)]
    assert len(rows) == 1 + READABLE and all(len(r) == 2 + DIM for r in rows[1:])
    assert {r[1] for r in rows[1:]} == set(COLOURS)
    page.close()


def test_eight_concurrent_sessions_get_their_own_results(browser, app_url, app_ws):
    """Eight browser sessions upload different images at once; each gets its own image first."""
    from fext.registry import open_record
    root = Path(open_record(app_ws, "demo").images)
    queries = [f"{label}/{label}_{i:03d}.png" for label in COLOURS for i in (1, 5, 9)][:8]
    assert len(queries) == 8
    contexts = [browser.new_context(viewport={"width": 1200, "height": 900}) for _ in queries]
    pages = [c.new_page() for c in contexts]
    for page in pages:
        page.goto(f"{app_url}/search")
    for page in pages:
        settle(page)
    for page, q in zip(pages, queries):  # all uploads go out before any result is awaited
        page.locator("input[type='file']").set_input_files(str(root / q))
    for n, (page, q) in enumerate(zip(pages, queries)):
        try:
            page.wait_for_selector("text=results in", timeout=180_000)
            settle(page)
            page.wait_for_selector("[data-testid='stImageCaption']:has-text('#1 ·')",
                                   timeout=60_000)
        except Exception:
            SCREENS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENS / f"concurrent-{n}.png"))
            raise
        settle(page)
        captions = result_captions(page)
        # its own image comes back with the top score (tiny 8-d test features can tie at 1.000)
        parsed = [(c.split(" · ")[1], c.split(" · ")[-1]) for c in captions]  # score, path
        assert captions[0].startswith("#1") and (parsed[0][0], q) in parsed, (q, captions[:3])
        assert page.locator("[data-testid='stException']").count() == 0
    for c in contexts:
        c.close()


# -- the map ----------------------------------------------------------------------------------
MAP_READY = ".fext-map[data-ready='1']"
# where drawn point i sits on the screen, and the image id it stands for
POINT = """(i) => { const gd = document.querySelector('.fext-plot'); const fl = gd._fullLayout;
  const t = gd._fullData[0]; const r = gd.getBoundingClientRect();
  return {x: r.left + fl._size.l + fl.xaxis.l2p(t.x[i]), y: r.top + fl._size.t + fl.yaxis.l2p(t.y[i]),
          id: gd.__fextIds[i]}; }"""
# ids of the drawn points inside a screen rectangle
INSIDE = """([x0, y0, x1, y1]) => { const gd = document.querySelector('.fext-plot');
  const fl = gd._fullLayout; const t = gd._fullData[0]; const r = gd.getBoundingClientRect();
  const out = [];
  for (let i = 0; i < t.x.length; i++) {
    const x = r.left + fl._size.l + fl.xaxis.l2p(t.x[i]), y = r.top + fl._size.t + fl.yaxis.l2p(t.y[i]);
    if (x > x0 && x < x1 && y > y0 && y < y1) out.push(gd.__fextIds[i]);
  }
  return out; }"""


def open_map(browser, app_url):
    page = open_page(browser, f"{app_url}/map")
    page.wait_for_selector(MAP_READY, timeout=60_000)
    return page


def test_hovering_a_map_point_shows_its_thumbnail(browser, app_url, app_ws):
    from fext.artifacts import Artifacts
    items = Artifacts.open(app_ws, "demo").items
    page = open_map(browser, app_url)
    for i in (0, 7):
        point = page.evaluate(POINT, i)
        page.mouse.move(point["x"], point["y"])
        page.wait_for_function("""(id) => { const t = document.querySelector('.fext-tip');
            const img = t.querySelector('img');
            return !t.hidden && img.src.endsWith('/thumb/' + id) && img.complete
                   && img.naturalWidth > 0; }""", arg=point["id"], timeout=10_000)
        caption = page.locator(".fext-tip .fext-cap")
        expect(caption).to_contain_text(items["path"].iat[point["id"]], timeout=10_000)
    screenshot(page, "map-hover")
    page.close()


def test_a_lasso_on_the_map_fills_the_gallery_and_its_csv(browser, app_url, app_ws):
    from fext.artifacts import Artifacts
    items = Artifacts.open(app_ws, "demo").items
    page = open_map(browser, app_url)
    box = page.locator(".fext-plot").bounding_box()
    # the left half of the plot, drawn as a lasso
    x0, y0 = box["x"] + 15, box["y"] + 15
    x1, y1 = box["x"] + box["width"] / 2, box["y"] + box["height"] - 15
    expected = sorted(items["path"].iloc[page.evaluate(INSIDE, [x0, y0, x1, y1])])
    assert 0 < len(expected) < len(items)
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in ((x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)):
        page.mouse.move(x, y, steps=8)
    page.mouse.up()
    captions = page.locator("[data-testid='stImageCaption']")
    expect(page.get_by_text(f"{len(expected)} selected", exact=True)).to_be_visible(timeout=60_000)
    expect(captions).to_have_count(min(len(expected), 48), timeout=60_000)
    settle(page)
    assert {c.split(" · ")[0] for c in captions.all_inner_texts()} <= set(expected)
    filename, text = download(page, f"Download {len(expected)} as CSV")
    table = list(csv.DictReader(io.StringIO(text)))
    assert filename == "demo-selection.csv" and sorted(r["path"] for r in table) == expected
    screenshot(page, "map-lasso")
    # "search similar" takes the selection's first image to the Search page as the query
    button = page.get_by_role("button", name="Search similar to ")
    path = button.inner_text().split("Search similar to ", 1)[1].strip()
    assert path in expected
    button.click()
    expect(page.get_by_text(f"Query: {path}", exact=True)).to_be_visible(timeout=60_000)
    settle(page)
    first = page.locator("[data-testid='stImageCaption']", has_text="#1 · ").first
    assert first.inner_text().endswith(f" · {path}")
    page.close()


def test_ranking_csv_download(browser, app_url):
    page = open_page(browser, f"{app_url}/anomalies")
    filename, text = download(page, "Download ranking CSV")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert filename.startswith("demo-anomalies-") and len(rows) == READABLE
    assert [int(r["rank"]) for r in rows] == list(range(1, READABLE + 1))
    page.close()


# the drawn points inside the plot's current axes, and where each sits on the screen
ON_SCREEN = """() => { const gd = document.querySelector('.fext-plot'); const fl = gd._fullLayout;
  const t = gd._fullData[0], r = gd.getBoundingClientRect();
  const [x0, x1] = fl.xaxis.range, [y0, y1] = fl.yaxis.range, out = [];
  for (let i = 0; i < t.x.length; i++) {
    if (t.x[i] >= x0 && t.x[i] <= x1 && t.y[i] >= y0 && t.y[i] <= y1)
      out.push({id: gd.__fextIds[i], x: r.left + fl._size.l + fl.xaxis.l2p(t.x[i]),
                y: r.top + fl._size.t + fl.yaxis.l2p(t.y[i]), colour: t.marker.color[i]});
  }
  return out; }"""


def test_zooming_in_draws_the_points_as_their_pictures(browser, app_url, app_ws):
    """A small collection is drawn as pictures at once; the mouse wheel zooms in, and every point
    left on screen is still drawn as its picture, from the atlas route, at its own place."""
    from PIL import Image

    from fext.artifacts import Artifacts
    labels = Artifacts.open(app_ws, "demo").items["label"]
    atlases = []
    page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
    page.on("request", lambda r: atlases.append(r.url) if "/atlas/" in r.url else None)
    page.goto(f"{app_url}/map")
    settle(page)
    page.wait_for_selector(MAP_READY, timeout=60_000)
    pictures = ".fext-map[data-pictures='{}']"
    page.wait_for_selector(pictures.format(READABLE), state="attached", timeout=30_000)
    expect(page.locator(".fext-pics")).to_have_text(f"{READABLE} images drawn as pictures")
    box = page.locator(".fext-plot").bounding_box()
    first = page.evaluate(POINT, 0)  # zoom in on a point: the wheel, as a user does
    page.mouse.move(first["x"], first["y"])
    span = ("() => { const r = document.querySelector('.fext-plot')._fullLayout.xaxis.range; "
            "return r[1] - r[0]; }")
    for _ in range(3):  # a notch at a time, each applied (plotly ends a wheel zoom with a relayout)
        before = page.evaluate(span)
        page.mouse.wheel(0, -200)
        page.wait_for_function(f"() => ({span})() < {before} * 0.95", timeout=30_000)
    settle(page)
    on = page.evaluate(ON_SCREEN)
    assert 0 < len(on) < READABLE
    page.wait_for_selector(pictures.format(len(on)), state="attached", timeout=30_000)
    expect(page.locator(".fext-pics")).to_have_text(f"{len(on)} images drawn as pictures")
    assert page.locator(".fext-map").get_attribute("data-renderer") == "webgl"
    assert any(u.endswith("/slots") for u in atlases) and any(u.endswith("/0") for u in atlases)
    page.mouse.move(5, 5)  # no hover tip over the pictures in the screenshot
    screenshot(page, "map-pictures")
    # in the screenshot, each point on screen shows its image's shape, in the shape's colour
    # (the dots are drawn in other colours), within the picture's square around the point
    on = page.evaluate(ON_SCREEN)
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"), np.int16)
    half = 14  # the smallest picture is 28 px a side
    shown = framed = 0
    for p in on:
        x, y = int(p["x"]), int(p["y"])
        if not (box["x"] + half < x < box["x"] + box["width"] - half):
            continue
        patch = shot[y - half:y + half, x - half:x + half]
        near = (np.abs(patch - COLOURS[labels.iat[p["id"]]]) < 40).all(-1).sum()
        shown += near >= 12
        # framed in the point's colour (its label's, as the legend shows it): the frame of a
        # picture 28-48 px a side lies within 25 px of the point; the dots, drawn translucent
        # and under the pictures, never match the colour itself
        rgb = [int(p["colour"][k:k + 2], 16) for k in (1, 3, 5)]
        ring = shot[y - 25:y + 25, x - 25:x + 25]
        framed += (np.abs(ring - rgb) <= 6).all(-1).sum() >= 40
    assert shown >= 0.8 * len(on), (shown, len(on))
    assert framed >= 0.8 * len(on), (framed, len(on))
    # the pictures leave the hover alone: the point under the cursor still shows its thumbnail
    page.mouse.move(on[0]["x"], on[0]["y"])
    page.wait_for_function("""() => { const t = document.querySelector('.fext-tip');
        return !t.hidden && t.querySelector('img')?.complete; }""", timeout=10_000)
    # another colouring redraws the same map: its pictures come back (from the atlases it has)
    page.mouse.move(5, 5)
    loaded = page.locator(".fext-map").get_attribute("data-atlases")
    page.get_by_text("folder", exact=True).click()
    page.wait_for_function("""() => { const m = document.querySelector('.fext-map');
        return m.dataset.key.includes('/colour/folder') && m.dataset.ready === '1'
               && +m.dataset.pictures > 0 && m.dataset.pictures === m.dataset.onscreen; }""",
                           timeout=60_000)
    assert page.locator(".fext-map").get_attribute("data-atlases") == loaded
    page.close()
