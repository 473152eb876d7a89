"""2-D UMAP map of a collection's features, computed once per extraction and cached beside it.

A seeded UMAP runs single-threaded (umap-learn disables parallelism when given a random_state),
which takes minutes past a few tens of thousands of images. Larger maps are therefore computed
multi-threaded and unseeded: the layout then varies slightly between runs, which is harmless
for a map computed once and cached. They also start from a PCA layout instead of umap-learn's
spectral one, whose eigen-solver took a third of a 70k-point map's time (bench/layout.py: 1.8x
faster in all, with the same share of map neighbours from the same cluster). Small maps stay
seeded, spectral and reproducible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .features import Artifacts
from .progress import ProgressFn, report
from .workspace import Workspace, atomic_path, read_json, write_json

PARALLEL_ABOVE = 20_000  # points; above, speed beats bit-for-bit reproducibility


def umap_2d(features: np.ndarray, n_neighbors: int = 15, min_dist: float = 0.1,
            seed: int | None = 42) -> np.ndarray:
    """UMAP to 2-D; tiny collections (where UMAP's graph is meaningless) fall back to PCA."""
    x = np.asarray(features, np.float32)
    if len(x) < 10:
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        out = np.zeros((len(x), 2), np.float32)
        out[:, :min(2, len(vt))] = centred @ vt[:2].T
        return out
    import umap  # slow to import: only when a map is actually computed

    large = len(x) > PARALLEL_ABOVE
    if large:
        seed = None
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(x) - 1),
                        min_dist=min_dist, random_state=seed, low_memory=True,
                        init="pca" if large else "spectral",
                        n_jobs=1 if seed is not None else -1)
    return reducer.fit_transform(x).astype(np.float32)


def project(ws: Workspace, name: str, n_neighbors: int = 15, min_dist: float = 0.1,
            seed: int | None = 42, progress: ProgressFn | None = None,
            images: str | Path | None = None) -> np.ndarray:
    """The cached map of model `name`'s most recent extraction (or that of folder `images`),
    computing it if missing or stale."""
    progress = report(progress)
    art = Artifacts.open(ws, name, images=images)
    params = {"n_neighbors": n_neighbors, "min_dist": min_dist, "seed": seed,
              "count": int(len(art.items))}
    cached = load_cached(art)
    if cached is not None and read_json(art.dir / "umap.json") == params:
        return cached
    with ws.lock(name):
        progress("umap", 0, 1)
        coords = umap_2d(art.features(), n_neighbors, min_dist, seed)
        with atomic_path(art.dir / "umap.npy", ".npy") as tmp:
            np.save(tmp, coords)
        write_json(art.dir / "umap.json", params)
        progress("umap", 1, 1)
    return coords


def load_cached(art: Artifacts) -> np.ndarray | None:
    path = art.dir / "umap.npy"
    if not path.is_file():
        return None
    coords = np.load(path)
    return coords if len(coords) == len(art.items) else None
