"""The app at 10k, 100k (and 1M) images: every page opened in headless Chromium on a running app.

For each size, a workspace is built through the product's own commands (`fext train`,
`fext extract` and `fext project` on a folder of tiny generated images), `streamlit run app.py`
is started, every page is opened once (a warm server,
as the goals are stated), and then each page is reached by a click in the navigation. Printed per
page and size: seconds until the script is idle, until its images and charts are drawn (the map:
its points), the map's hover-to-thumbnail latency, and the server's resident memory not counting
memory-mapped files (RssAnon) after every page was visited and the map zoomed in. The ratio
column compares each size with the smallest, measured in the same run.

The map's pictures: how many are drawn zoomed out (none above 2,000 points on screen), then the
map zoomed in on four places (about 1,000 points on screen each, atlases not made yet): seconds
from the zoom until every point on screen is drawn as its picture, atlases under the view, and
hover -> thumbnail over the pictures; then every atlas of the map fetched once from the running
server (made on first request: ms, KB) and the server's memory after. Last, what a million
images cost (`atlas_cost`): an atlas made from 64 px photo crops (the default model size), and
the atlas order of the 200,000 points a million-image map draws.

    .venv/bin/python bench/app_scale.py [--sizes 10000,100000] [--keep DIR]
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
import urllib.request
from pathlib import Path

import numpy as np
from common import REPO, machine, status_kib, table
from PIL import Image

from fext import atlas

# The model is named "demo", as in the app tests: a server started on a workspace without one
# prepares the bundled demo in a background job (its child process), which would train beside
# the pages measured and count in the server's memory.
NAME = "demo"
PAGES = ["Collection", "Train", "Reconstruction", "Map", "Search", "Anomalies", "Duplicates",
         "Classifier", "Features"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
DRAWN = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const imgs = Array.from(main.querySelectorAll('img'));
  const charts = main.querySelectorAll('[data-testid="stPlotlyChart"]').length;
  const drawn = main.querySelectorAll('[data-testid="stPlotlyChart"] .main-svg').length;
  const map = main.querySelector('.fext-map');
  return imgs.every(i => i.complete && i.naturalWidth > 0) && drawn >= charts
         && (!map || map.dataset.ready === '1');
}"""
POINT = """(i) => { const gd = document.querySelector('.fext-plot'); const fl = gd._fullLayout;
  const t = gd._fullData[0]; const r = gd.getBoundingClientRect();
  return {x: r.left + fl._size.l + fl.xaxis.l2p(t.x[i]), y: r.top + fl._size.t + fl.yaxis.l2p(t.y[i]),
          id: gd.__fextIds[i], n: t.x.length}; }"""
# the tip shows a loaded thumbnail (whichever point is nearest the cursor: points overlap)
THUMB = """() => { const t = document.querySelector('.fext-tip');
  const img = t && t.querySelector('img');
  return t && !t.hidden && img && img.src.includes('/thumb/') && img.complete
         && img.naturalWidth > 0; }"""
FORGET = "() => document.querySelector('.fext-tip img')?.removeAttribute('src')"
# zoom on drawn point i until at most `target` points are on screen; returns how many are, and
# the few nearest the centre (to hover: well inside the plot, and the window)
ZOOM = """([i, target]) => { const gd = document.querySelector('.fext-plot'); const t = gd._fullData[0];
  const fl = gd._fullLayout, cx = t.x[i], cy = t.y[i];
  let hx = (fl.xaxis.range[1] - fl.xaxis.range[0]) / 2, hy = (fl.yaxis.range[1] - fl.yaxis.range[0]) / 2;
  const inside = () => { const out = [];
    for (let k = 0; k < t.x.length; k++)
      if (t.x[k] >= cx - hx && t.x[k] <= cx + hx && t.y[k] >= cy - hy && t.y[k] <= cy + hy) out.push(k);
    return out; };
  let on = inside();
  while (on.length > target) { hx /= 1.25; hy /= 1.25; on = inside(); }
  window.Plotly.relayout(gd, {'xaxis.range': [cx - hx, cx + hx], 'yaxis.range': [cy - hy, cy + hy]});
  const off = (k) => Math.abs(t.x[k] - cx) / hx + Math.abs(t.y[k] - cy) / hy;
  return {on: on.length, some: on.sort((a, b) => off(a) - off(b)).slice(0, 8)}; }"""
# every point on screen drawn as its picture (the map's own count of what is on screen)
PICTURES = """() => { const d = document.querySelector('.fext-map').dataset;
  return +d.pictures > 0 && d.pictures === d.onscreen; }"""


def tiny_images(folder: Path, count: int) -> None:
    """`count` 16x16 PNGs in 10 folders: seeded colour blobs, distinct per image."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (10, 3))
    for start in range(0, count, 10_000):
        n = min(10_000, count - start)
        cls = rng.integers(0, 10, n)
        noise = rng.integers(-40, 40, (n, 16, 16, 3))
        pixels = np.clip(base[cls][:, None, None, :] + noise, 0, 255).astype(np.uint8)
        for j in range(n):
            sub = folder / f"c{cls[j]}"
            sub.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[j]).save(sub / f"img_{start + j:07d}.png", compress_level=1)


def fx(ws: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "fext", *args, "--workspace", str(ws)], cwd=REPO,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def build(root: Path, count: int) -> tuple[Path, dict]:
    """Images, a model trained on them (100 steps: what is measured is the app, not the model),
    the folder extracted and mapped: the commands a user runs."""
    images, ws = root / "images", root / "ws"
    took = {}
    if not (ws / "index").is_dir():
        t = time.perf_counter()
        tiny_images(images, count)
        took["images"] = time.perf_counter() - t
        for step in (["train", "--images", str(images), "--preset", "small", "--image-size", "16",
                      "--latent-dim", "16", "--epochs", "1"], ["extract"], ["project"]):
            t = time.perf_counter()
            fx(ws, step[0], "--name", NAME, *step[1:])
            took[step[0]] = time.perf_counter() - t
    return ws, took


def rss_anon_mib(pid: int) -> float:
    """Resident anonymous memory of the server and its children (not memory-mapped files)."""
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return sum(status_kib(p, "RssAnon") for p in [pid, *children]) / 1024


def measure(ws: Path) -> dict:
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FEXT_WORKSPACE": str(ws)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port",
                             str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    out = {}
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector(IDLE, timeout=600_000)
            for warm in (True, False):  # every page once to warm the server, then measured
                for title in PAGES:
                    t0 = time.perf_counter()
                    page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()
                    page.wait_for_function(
                        f"() => document.querySelector('h1')?.innerText.startsWith('{title}')",
                        timeout=600_000)
                    page.wait_for_selector(IDLE, timeout=600_000)
                    idle = time.perf_counter() - t0
                    page.wait_for_function(DRAWN, timeout=600_000, polling=50)
                    drawn = time.perf_counter() - t0
                    if not warm:
                        out[title] = (idle, drawn)
            page.locator("[data-testid='stSidebarNav'] a", has_text="Map").first.click()
            page.wait_for_selector(".fext-map[data-ready='1']", timeout=600_000)
            hovers = []
            n = page.evaluate(POINT, 0)["n"]
            for i in np.linspace(0, n - 1, 8).astype(int):
                page.mouse.move(5, 5)
                page.evaluate(FORGET)
                point = page.evaluate(POINT, int(i))
                t0 = time.perf_counter()
                page.mouse.move(point["x"], point["y"])
                page.wait_for_function(THUMB, timeout=10_000, polling="raf")
                hovers.append(time.perf_counter() - t0)
            out["hover"] = statistics.median(hovers)
            out["drawn points"] = n
            made: set[str] = set()  # atlases the browser asked for
            page.on("request", lambda r: made.add(r.url) if "/atlas/" in r.url else None)
            out.update(pictures(page, url, n))
            out["rss"] = rss_anon_mib(proc.pid)
            out.update(every_atlas(page, url, made))
            out["rss atlases"] = rss_anon_mib(proc.pid)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def pictures(page, url: str, n: int) -> dict:
    """The map zoomed out (how many pictures), then zoomed in on four places: seconds until every
    point on screen is drawn as its picture, atlases fetched, hover -> thumbnail over them."""
    page.mouse.move(5, 5)
    out = {"pictures out": int(page.locator(".fext-map").get_attribute("data-pictures"))}
    zooms, counts, atlases, hovers = [], [], [], []
    for i in (np.array([0.2, 0.4, 0.6, 0.8]) * (n - 1)).astype(int):
        page.evaluate("() => Plotly.relayout(document.querySelector('.fext-plot'), "
                      "{'xaxis.autorange': true, 'yaxis.autorange': true})")
        t0 = time.perf_counter()
        view = page.evaluate(ZOOM, [int(i), 1000])
        page.wait_for_function(PICTURES, timeout=60_000, polling="raf")
        zooms.append(time.perf_counter() - t0)
        counts.append(int(page.locator(".fext-map").get_attribute("data-pictures")))
        atlases.append(int(page.locator(".fext-map").get_attribute("data-needed")))
        for k in view["some"][:4]:
            page.mouse.move(5, 5)
            page.evaluate(FORGET)
            point = page.evaluate(POINT, int(k))
            t0 = time.perf_counter()
            page.mouse.move(point["x"], point["y"])
            page.wait_for_function(THUMB, timeout=10_000, polling="raf")
            hovers.append(time.perf_counter() - t0)
    page.mouse.move(5, 5)
    out.update({"zoom s": statistics.median(zooms), "zoom max s": max(zooms),
                "pictures in": statistics.median(counts), "atlases per view": statistics.median(atlases),
                "hover pictures": statistics.median(hovers),
                "caption": page.locator(".fext-pics").inner_text()})
    return out


def every_atlas(page, url: str, made: set) -> dict:
    """Every atlas of the map fetched once from the server: ms per request of those the zooms
    had not asked for (made by that request), KB per atlas, MB for all of them."""
    base = url + page.locator(".fext-map").get_attribute("data-atlas")
    drawn = len(urllib.request.urlopen(base + "/slots").read()) // 4
    took, sizes = [], []
    for b in range(-(-drawn // atlas.BLOCK)):
        t0 = time.perf_counter()
        sizes.append(len(urllib.request.urlopen(f"{base}/{b}").read()))
        if f"{base}/{b}" not in made:
            took.append(time.perf_counter() - t0)
    return {"atlases": len(sizes), "atlas ms": 1000 * statistics.median(took) if took else 0.0,
            "atlases timed": len(took), "atlas KB": statistics.mean(sizes) / 1024,
            "atlases MB": sum(sizes) / 2**20}


def atlas_cost(drawn: int = 200_000, image_size: int = 64) -> dict:
    """What a million images' map costs in atlases, measured here: one atlas of 64 px photo
    crops (the default model size; the generated images of the app benchmark are flat blobs)
    made and encoded, and the atlas order of the 200,000 points such a map draws."""
    from photos import crops

    pixels = np.stack([np.asarray(img.resize((image_size, image_size), Image.BILINEAR))
                       for _, img in crops(atlas.BLOCK, seed=0, sizes=(96, 160))])
    took, body = [], b""
    for _ in range(5):
        t0 = time.perf_counter()
        body = atlas.jpeg(atlas.sheet(pixels, np.arange(atlas.BLOCK)))
        took.append(time.perf_counter() - t0)
    xy = np.random.default_rng(0).normal(size=(drawn, 2)).astype(np.float32)
    t0 = time.perf_counter()
    atlas.slots(atlas.arrange(xy))
    order_s = time.perf_counter() - t0
    count = -(-drawn // atlas.BLOCK)
    return {"ms": 1000 * statistics.median(took), "KB": len(body) / 1024, "count": count,
            "MB": count * len(body) / 2**20, "all s": count * statistics.median(took),
            "order s": order_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--keep", default=None, help="build workspaces here and reuse them next time")
    a = p.parse_args()
    print(machine())
    sizes = [int(s) for s in a.sizes.split(",")]
    base = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="fext-app-scale-"))
    results, builds = {}, {}
    for n in sizes:
        ws, builds[n] = build(base / f"n{n}", n)
        print(f"{n:,} images built: " + ", ".join(f"{k} {v:.0f} s" for k, v in builds[n].items()),
              flush=True)
        results[n] = measure(ws)
    first = sizes[0]
    rows = []
    for title in PAGES:
        for n in sizes:
            idle, drawn = results[n][title]
            rows.append([title, f"{n:,}", f"{idle:.2f}", f"{drawn:.2f}",
                         f"{drawn / results[first][title][1]:.2f}"])
    print(table(["page", "images", "idle s", "drawn s", f"drawn / at {first:,}"], rows,
                "Each page reached by a click in the navigation, warm server"))
    print(table(["images", "map points drawn", "hover -> thumbnail ms (median of 8)",
                 "server RssAnon MiB after every page"],
                [[f"{n:,}", f"{results[n]['drawn points']:,}", f"{results[n]['hover'] * 1000:.0f}",
                  f"{results[n]['rss']:,.0f}"] for n in sizes]))
    print(table(["images", "pictures zoomed out", "on screen zoomed in", "zoom -> all pictures s "
                 "(median / max of 4)", "atlases under the view", "hover over pictures ms"],
                [[f"{n:,}", results[n]["pictures out"], f"{results[n]['pictures in']:,.0f}",
                  f"{results[n]['zoom s']:.2f} / {results[n]['zoom max s']:.2f}",
                  f"{results[n]['atlases per view']:.0f}",
                  f"{results[n]['hover pictures'] * 1000:.0f}"] for n in sizes],
                "The map zoomed in on four places, atlases not made yet"))
    print(table(["images", "atlases", "first request ms (median; not made by a zoom)", "KB an atlas",
                 "MB all", "server RssAnon MiB after all"],
                [[f"{n:,}", results[n]["atlases"],
                  f"{results[n]['atlas ms']:.0f} ({results[n]['atlases timed']} atlases)",
                  f"{results[n]['atlas KB']:.0f}", f"{results[n]['atlases MB']:.1f}",
                  f"{results[n]['rss atlases']:,.0f}"] for n in sizes],
                "Every atlas of the map fetched once from the running server"))
    cost = atlas_cost()
    print(f"A 1,000,000-image map draws at most 200,000 points: {cost['count']} atlases of "
          f"{atlas.BLOCK:,} pictures ({atlas.THUMB} px). One atlas of 64 px photo crops: made and "
          f"encoded in {cost['ms']:.0f} ms, {cost['KB']:.0f} KB; all of them would be "
          f"{cost['MB']:.0f} MB and {cost['all s']:.0f} s (made on demand: a view needs a few). "
          f"Atlas order of the 200,000 points: {cost['order s']:.2f} s.")


if __name__ == "__main__":
    main()
