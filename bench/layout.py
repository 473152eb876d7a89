"""UMAP map of 70k vectors: time and peak memory of fext's settings against umap-learn's
seeded defaults (single-threaded, what fext ran before), each in its own process.

Vectors: 70,000 synthetic clustered, L2-normalised 128-d features (the size of MNIST).
Quality, so speed is not bought with a worse map: the share of each point's 10 nearest
neighbours *on the map* that come from its own cluster (the same share in the 128-d space
itself is printed for reference).

    .venv/bin/python bench/layout.py              # 70k vectors (a few minutes on 2 cores)
    .venv/bin/python bench/layout.py --quick      # 10k vectors
    .venv/bin/python bench/layout.py --n 200000 --no-baseline
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import REPO, machine, peak_rss_mib, table
from search import vectors


def run_one(which: str, n: int) -> dict:
    """Time one UMAP fit in this process (import, data and numba compilation not timed)."""
    x, cluster = vectors(n, 0, labels=True)
    import umap  # noqa: F401  (import and numba start-up are not part of the fit)

    from fext.projection import umap_2d

    warm = vectors(300, 1)  # numba compiles UMAP's kernels on first use: not part of the fit
    umap.UMAP(n_components=2, n_epochs=5, random_state=0 if which != "fext" else None,
              low_memory=True).fit_transform(warm)
    t0 = time.perf_counter()
    if which == "fext":
        coords = umap_2d(x)
    else:
        coords = umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, random_state=42,
                           low_memory=True).fit_transform(x)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mib": peak_rss_mib(), "points": len(coords),
            "kept": same_cluster_share(coords, cluster)}


def same_cluster_share(points, cluster, k: int = 10, sample: int = 5000) -> float:
    """Mean share of the k nearest neighbours (of a sample of points) in the same cluster."""
    import faiss
    import numpy as np

    pts = np.ascontiguousarray(points, np.float32)
    q = np.random.default_rng(0).choice(len(pts), min(sample, len(pts)), replace=False)
    _, ids = faiss.knn(pts[q], pts, k + 1)  # L2; the first hit is the point itself
    return float((cluster[ids[:, 1:]] == cluster[q, None]).mean())


def measure(which: str, n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", which, "--n", str(n)], cwd=REPO,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=70_000)
    p.add_argument("--quick", action="store_true", help="10k vectors")
    p.add_argument("--no-baseline", action="store_true", help="fext's settings only")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    n = 10_000 if a.quick else a.n
    if a.worker:
        print(json.dumps(run_one(a.worker, n)))
        return
    print(machine())
    ours = measure("fext", n)
    rows = [["fext umap_2d (above 20k points: multi-threaded, PCA init)", ours["seconds"],
             ours["peak_mib"], ours["kept"], "-"]]
    if not a.no_baseline:
        base = measure("seeded", n)
        rows.append(["umap-learn defaults, random_state=42 (single thread, spectral init)",
                     base["seconds"], base["peak_mib"], base["kept"],
                     f"{base['seconds'] / ours['seconds']:.2f}x faster"])
    x, cluster = vectors(n, 0, labels=True)
    print(table(["UMAP to 2-D", "seconds", "peak RSS MiB", "10-NN same cluster",
                 "fext speed-up"], rows,
                f"{n:,} x 128-d vectors (goal: <= 90 s at 70k on 2 cores); 10-NN same "
                f"cluster in the 128-d space itself: {same_cluster_share(x, cluster):.3f}"))


if __name__ == "__main__":
    main()
