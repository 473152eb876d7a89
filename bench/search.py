"""Search latency and recall at 10k, 100k and 1M vectors, against exact search in the same run.

Synthetic L2-normalised 128-d vectors, queries new vectors from the same distribution:
`--data clustered` (default) draws 1,000 Gaussian clusters; `--data manifold` a smooth 16-d
manifold without clusters (a fixed random two-layer map of Gaussian latents), where each
point's neighbours spread over many IVF lists: the harder case for an IVF index. For each
size: `VectorIndex.build` (what `fext extract` builds: exact below 50k, IVF with tuned nprobe
above) against a brute-force `IndexFlatIP`,
single-query latency (p50, p99) and recall@10 against exact search. Then the warm app query
end to end: image bytes -> decode -> encoder -> index -> results, via `Searcher.search`.

    .venv/bin/python bench/search.py            # 10k, 100k, 1M (about 5 minutes on 2 cores)
    .venv/bin/python bench/search.py --quick    # 10k, 100k
    .venv/bin/python bench/search.py --sizes 20000,300000
    .venv/bin/python bench/search.py --data manifold --no-app
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from common import Timer, machine, peak_rss_mib, table, write_photos

DIM, CLUSTERS, NOISE = 128, 1000, 1.2
LATENT, MANIFOLD_NOISE = 16, 0.05


def vectors(n: int, seed: int, dim: int = DIM, labels: bool = False):
    """n normalised points around fixed cluster centres (same centres for every seed);
    with `labels`, also each point's cluster."""
    from fext.index import l2_normalize

    centres = np.random.default_rng(7).normal(size=(CLUSTERS, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out, cluster = np.empty((n, dim), np.float32), np.empty(n, np.int64)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        cluster[s:s + m] = rng.integers(0, CLUSTERS, m)
        out[s:s + m] = l2_normalize(centres[cluster[s:s + m]]
                                    + NOISE * rng.standard_normal((m, dim), np.float32))
    return (out, cluster) if labels else out


def manifold(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    """n normalised points near a smooth LATENT-d manifold (the same manifold for every seed):
    tanh(z W1) W2 of Gaussian latents z, plus a little isotropic noise."""
    from fext.index import l2_normalize

    fixed = np.random.default_rng(7)
    w1 = (fixed.standard_normal((LATENT, 256)) / np.sqrt(LATENT)).astype(np.float32)
    w2 = (fixed.standard_normal((256, dim)) / np.sqrt(256)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        h = np.tanh(rng.standard_normal((m, LATENT), np.float32) @ w1) @ w2
        out[s:s + m] = l2_normalize(h + MANIFOLD_NOISE * rng.standard_normal((m, dim), np.float32))
    return out


DATA = {"clustered": vectors, "manifold": manifold}


def latencies(search, queries) -> np.ndarray:
    """Seconds per call of `search(query)`, one query at a time (what an app user waits for)."""
    out = np.empty(len(queries))
    for i, query in enumerate(queries):
        with Timer() as t:
            search(query)
        out[i] = t.seconds
    return out


def one_size(n: int, n_queries: int, n_timed: int, data: str = "clustered") -> list:
    import faiss

    from fext.index import VectorIndex, exact_knn, recall_at_k

    x, q = DATA[data](n, 0), DATA[data](n_queries, 1)
    truth = exact_knn(x, q, 10)
    with Timer() as t_exact:
        exact = faiss.IndexFlatIP(DIM)
        exact.add(x)
    timed = q[:n_timed, None]  # one (1, d) query per call
    base = latencies(lambda v: exact.search(v, 10), timed[:200 if n >= 500_000 else n_timed])
    with Timer() as t_build:
        ix = VectorIndex.build(x)
    ours = latencies(lambda v: ix.search(v, 10), timed)
    _, found = ix.search(q, 10)
    p50, b50 = np.median(ours) * 1e3, np.median(base) * 1e3
    return [n, ix.kind, ix.nprobe, t_build.seconds, recall_at_k(found, truth), p50,
            np.percentile(ours, 99) * 1e3, t_exact.seconds, b50, np.percentile(base, 99) * 1e3,
            b50 / p50]


def app_query(repeats: int = 50) -> list[list]:
    """p50 and p99 (ms) of `Searcher.search(bytes)` on a freshly trained default-preset model,
    each query an edited copy of a collection image (what an upload finding its source is):
    with the pixel check of the first VERIFY results, the extraction's perceptual hashes
    turning most of them away unread (shipped); the same check reading every one of them
    (an extraction without hashes: how search checked before); and without the check
    (VERIFY = 0: the features' order), the three interleaved query by query; and how many
    copies found their source first."""
    import io

    from PIL import Image

    import fext.search
    from fext.config import DataConfig, RunConfig, TrainConfig
    from fext.edits import edit
    from fext.features import extract
    from fext.search import Searcher
    from fext.train import train
    from fext.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="fext-bench-search-"))
    paths = write_photos(tmp / "photos", 300, labels=3)
    ws = Workspace(tmp / "ws")
    cfg = RunConfig(data=DataConfig(images=str(tmp / "photos")), train=TrainConfig(epochs=1))
    train(ws, "bench", cfg)
    extract(ws, "bench")
    s = Searcher.open(ws, "bench")
    data = []
    for i, path in enumerate(paths[:repeats]):
        buf = io.BytesIO()
        edit(Image.open(path), seed=i).save(buf, "JPEG", quality=90)
        data.append(buf.getvalue())
    root = (tmp / "photos").resolve()
    truth = [str(p.resolve().relative_to(root)) for p in paths[:repeats]]
    checked, gate = fext.search.VERIFY, s._near_hashes
    every = lambda pixels, ids: np.ones(len(ids), bool)  # noqa: E731
    arms = {f"first {checked} checked by pixels, far hashes unread (shipped)": (checked, gate),
            f"first {checked} checked by pixels, every file read": (checked, every),
            "features' order (no pixel check)": (0, gate)}
    s.search(data[0])  # warm: first call traces the model
    times, found = {a: [] for a in arms}, dict.fromkeys(arms, 0)
    for query, source in zip(data, truth):
        for arm, (verify, near) in arms.items():
            fext.search.VERIFY, s._near_hashes = verify, near
            with Timer() as t:
                first = s.search(query)[0]["path"]
            times[arm].append(t.seconds)
            found[arm] += first == source
    fext.search.VERIFY, s._near_hashes = checked, gate
    what = f"{cfg.model.preset} preset, {cfg.data.image_size}px, 300 images"
    return [[f"Searcher.search(edited copy's bytes), {what}, {arm}",
             np.median(times[arm]) * 1e3, np.percentile(times[arm], 99) * 1e3,
             f"{found[arm]} of {len(data)}", 300] for arm in arms]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--queries", type=int, default=1000, help="held-out queries for recall")
    p.add_argument("--timed", type=int, default=500, help="queries timed one by one")
    p.add_argument("--data", choices=sorted(DATA), default="clustered",
                   help="vector distribution (manifold: no clusters, the harder case)")
    p.add_argument("--quick", action="store_true", help="10k and 100k only")
    p.add_argument("--no-app", action="store_true", help="skip the end-to-end app query")
    a = p.parse_args()
    sizes = [10_000, 100_000] if a.quick else [int(s) for s in a.sizes.split(",")]
    print(machine())
    rows = [one_size(n, a.queries, a.timed, a.data) for n in sizes]
    print(table(["vectors", "index", "nprobe", "build s", "recall@10", "p50 ms", "p99 ms",
                 "exact build s", "exact p50 ms", "exact p99 ms", "p50 speed-up"], rows,
                f"Single-query search, {DIM}-d {a.data} vectors, k=10 (baseline: exact "
                f"IndexFlatIP, same run)"))
    if not a.no_app:
        print(table(["query", "p50 ms", "p99 ms", "source first", "goal p50 ms"], app_query(),
                    "\nWarm app query end to end (decode + encode + search + pixel check), "
                    "the two interleaved in one run"))
    print(f"\npeak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
