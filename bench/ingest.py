"""Ingest + feature extraction throughput on realistic JPEG photos, against decoding and
resizing alone, and peak memory at two collection sizes.

Photos: 640x480 JPEGs generated here (gradients, shapes, sensor noise: realistic file sizes).
A pool of distinct photos is generated once; larger collections hard-link them under new names
(decoding a link costs the same; identical content is still decoded and encoded per file).

Measured, each in a fresh process so peak memory is its own:
- baseline: plain PIL open -> convert("RGB") -> resize to the model size, over every file,
  with the same number of threads as fext's scan; run before and after fext, averaged;
- fext, ingest + feature extraction: `extract --scores isolation` (scan, hash, decode into
  the cache, encoder forward pass of the default medium model, FAISS index, isolation anomaly
  scores) on a model trained beforehand (not timed). This is the goal's row;
- fext, full extraction (`extract`, the default): the same plus the decoder forward pass for the
  reconstruction anomaly scores, at the first collection size only (skip: --no-full).

Peak memory: the process's VmHWM (includes pages of the memory-mapped cache, which are file
cache the kernel can drop) and the peak of its anonymous memory (RssAnon, sampled every
0.1 s): the part that would have to grow with the collection if anything were held in RAM.

    .venv/bin/python bench/ingest.py --quick              # 1,000 and 5,000 images
    .venv/bin/python bench/ingest.py                      # 10,000 and 100,000 images
    .venv/bin/python bench/ingest.py --counts 10000,30000 --distinct 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import REPO, Timer, machine, peak_rss_mib, status_kib, table, write_photos

IMAGE_SIZE = 64  # the product's default model input


def baseline(folder: str, workers: int) -> dict:
    """Decode and resize every file with plain PIL, `workers` threads; images/s."""
    from PIL import Image

    files = sorted(str(p) for p in Path(folder).rglob("*.jpg"))

    def one(path: str) -> int:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE))).shape[0]

    with Timer() as t, ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(one, files, chunksize=64):
            pass
    return {"images": len(files), "seconds": t.seconds}


def fext_extract(folder: str, workspace: str, scores: str) -> dict:
    """`extract` of the folder with the trained model, timing each stage."""
    from fext.features import extract
    from fext.workspace import Workspace

    stages: dict[str, float] = {}
    t0 = time.perf_counter()

    def progress(stage, done, total, **info):
        stages.setdefault(stage, time.perf_counter() - t0)

    meta = extract(Workspace(workspace), "bench", folder, progress, scores=scores)
    total = time.perf_counter() - t0
    return {"images": meta["count"], "seconds": total, "index": meta["index"]["kind"],
            "scan_s": stages.get("encode", total) - stages.get("scan", 0.0),
            "encode_s": stages.get("index", total) - stages.get("encode", total),
            "index_scores_s": total - stages.get("index", total)}


def measure(kind: str, folder: Path, workspace: Path, workers: int) -> dict:
    """Run one side in a child process; sample its anonymous memory while it runs.
    `kind`: "baseline", or "isolation" / "all" (fext extract with those scores)."""
    shutil.rmtree(workspace / "index", ignore_errors=True)  # no cache, nothing to reuse
    cmd = [sys.executable, __file__, "--worker", kind, "--folder", str(folder),
           "--workspace", str(workspace), "--workers", str(workers)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    peak_anon = 0
    while proc.poll() is None:
        try:
            peak_anon = max(peak_anon, status_kib(proc.pid, "RssAnon"))
        except (FileNotFoundError, ProcessLookupError, RuntimeError):
            pass  # it ended between poll and read (gone, or a zombie with no memory fields)
        time.sleep(0.1)
    out = proc.stdout.read()
    if proc.returncode:
        sys.exit(f"{kind} failed ({proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_anon_mib"] = peak_anon / 1024
    return result


def train_model(workspace: Path, folder: Path) -> None:
    """The default medium model, briefly trained on a few photos (weights do not change cost)."""
    from fext.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from fext.train import train
    from fext.workspace import Workspace

    cfg = RunConfig(data=DataConfig(images=str(folder), image_size=IMAGE_SIZE),
                    model=ModelConfig(preset="medium"), train=TrainConfig(epochs=1))
    train(Workspace(workspace), "bench", cfg)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--counts", default="10000,100000", help="collection sizes")
    p.add_argument("--distinct", type=int, default=1000, help="distinct photos generated")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="decode threads (fext's default: min(8, cores))")
    p.add_argument("--data", default=None, help="folder for the photos (default: temporary)")
    p.add_argument("--quick", action="store_true", help="1,000 and 5,000 images")
    p.add_argument("--no-full", action="store_true",
                   help="skip the full extraction (with reconstruction scores) row")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    p.add_argument("--workspace", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        out = (baseline(a.folder, a.workers) if a.worker == "baseline"
               else fext_extract(a.folder, a.workspace, a.worker))
        print(json.dumps({**out, "peak_rss_mib": peak_rss_mib()}))
        return
    counts = [1000, 5000] if a.quick else [int(c) for c in a.counts.split(",")]
    distinct = min(a.distinct, 300) if a.quick else a.distinct
    print(machine())
    tmp = Path(a.data or tempfile.mkdtemp(prefix="fext-bench-ingest-"))
    with Timer() as t:
        folders = {n: write_photos(tmp / f"photos-{n}", n, distinct)[0].parent for n in counts}
    sizes = [p.stat().st_size for p in list(folders[counts[0]].glob("*.jpg"))[:200]]
    print(f"generated photos in {t.seconds:.0f} s; mean JPEG size {np.mean(sizes) / 1024:.0f} KiB")
    train_model(tmp / "ws", write_photos(tmp / "train", 200)[0].parent)
    rows, mem, full = [], [], []
    for n in counts:
        # The baseline runs before and after fext and the two are averaged: this host's speed
        # drifts over minutes, and bracketing keeps the drift out of the ratio.
        base = measure("baseline", folders[n], tmp / "ws", a.workers)
        ours = measure("isolation", folders[n], tmp / "ws", a.workers)
        after = measure("baseline", folders[n], tmp / "ws", a.workers)
        ips_base = (base["images"] / base["seconds"] + after["images"] / after["seconds"]) / 2
        rows.append(stage_row(n, a.workers, ips_base, ours))
        mem.append([n, base["peak_rss_mib"], ours["peak_rss_mib"], ours["peak_anon_mib"]])
        print(f"{n}: baseline {base['images'] / base['seconds']:.0f} and "
              f"{after['images'] / after['seconds']:.0f} img/s, fext {rows[-1][-2]:.0f} img/s",
              file=sys.stderr, flush=True)  # partial results survive an interrupted run
        if n == counts[0] and not a.no_full:
            full.append(stage_row(n, a.workers, ips_base,
                                  measure("all", folders[n], tmp / "ws", a.workers)))
    headers = ["images", "threads", "baseline decode+resize img/s", "fext ingest img/s",
               "ingest ratio", "encode img/s", "index+scores s", "fext total img/s", "ratio"]
    print(table(headers, rows,
                f"Ingest + feature extraction (extract --scores isolation), 640x480 JPEG -> "
                f"{IMAGE_SIZE}px, medium model (baseline: PIL decode+resize alone, same run; "
                f"goal ratio >= 0.8)"))
    if full:
        print(table(headers, full, "\nFull extraction (extract: features + reconstruction "
                                   "anomaly scores, i.e. encoder and decoder passes), same run"))
    print(table(["images", "baseline peak RSS MiB", "fext peak RSS MiB (incl. mapped cache)",
                 "fext peak anonymous MiB"], mem, "\nPeak memory of the process"))


def stage_row(n: int, workers: int, ips_base: float, ours: dict) -> list:
    """One table row: throughput of each stage and of the whole, and the ratios to baseline."""
    ips_scan, ips_ours = ours["images"] / ours["scan_s"], ours["images"] / ours["seconds"]
    return [n, workers, ips_base, ips_scan, ips_scan / ips_base,
            ours["images"] / ours["encode_s"], ours["index_scores_s"], ips_ours,
            ips_ours / ips_base]


if __name__ == "__main__":
    main()
