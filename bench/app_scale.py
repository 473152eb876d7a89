"""The app at 10k, 100k (and 1M) images: every page opened in headless Chromium on a running app.

For each size, a workspace is built through the product's own commands (`fext train`,
`fext extract` and `fext project` on a folder of tiny generated images), `streamlit run app.py`
is started, every page is opened once (a warm server,
as the goals are stated), and then each page is reached by a click in the navigation. Printed per
page and size: seconds until the script is idle, until its images and charts are drawn (the map:
its points), the map's hover-to-thumbnail latency, and the server's resident memory not counting
memory-mapped files (RssAnon) after every page was visited. The ratio column compares each size
with the smallest, measured in the same run.

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
            fx(ws, step[0], "--name", "scale", *step[1:])
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
            out["rss"] = rss_anon_mib(proc.pid)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


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


if __name__ == "__main__":
    main()
