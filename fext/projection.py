"""2-D UMAP map of a collection's features, computed once per extraction and cached beside it.

A seeded UMAP runs single-threaded (umap-learn disables parallelism when given a random_state),
which takes minutes past a few tens of thousands of images. Larger maps are therefore computed
multi-threaded and unseeded: the layout then varies slightly between runs, which is harmless
for a map computed once and cached. They also start from a PCA layout instead of umap-learn's
spectral one, whose eigen-solver took a third of a 70k-point map's time (bench/layout.py: 1.8x
faster in all, with the same share of map neighbours from the same cluster). Small maps stay
seeded, spectral and reproducible.

A new extraction of the same folder by the same model keeps the map: images already on it keep
their place, new ones are placed at their nearest laid-out neighbours (`carry`), and deleted ones
leave with their rows. UMAP's own `transform` would need the fitted model kept (its graph is
gigabytes at a million points); the neighbours are already computed by extraction. The map says
how many images were placed; recomputing the layout (`fext.features.project(..., fresh=True)`)
lays out all. The same placement makes maps past SAMPLE images: UMAP is fitted on a seeded
sample of that size and the rest placed (`layout`), which keeps a million-image map within
minutes and a couple of gigabytes here.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from .feed import sample_rows
from .workspace import atomic_path, read_json, write_json

PARALLEL_ABOVE = 20_000  # points; above, speed beats bit-for-bit reproducibility
LAYOUT, PLACED, PARAMS = "umap.npy", "placed.npy", "umap.json"
SAMPLE = 100_000  # images UMAP is fitted on at most; the others are placed by their neighbours


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
    umap = _umap()
    large = len(x) > PARALLEL_ABOVE
    if large:
        seed = None
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(x) - 1),
                        min_dist=min_dist, random_state=seed, low_memory=True,
                        init="pca" if large else "spectral",
                        n_jobs=1 if seed is not None else -1)
    return reducer.fit_transform(x).astype(np.float32)


@cache
def _umap():
    """umap-learn (slow to import: only when a map is actually computed), its compiled functions
    kept on disk. umap-learn compiles them with numba in every new process and asks numba to
    cache few of them: about 20 s of two cores before a new process's first map, the larger part
    of the bundled demo's map. Cached (numba's own cache, beside their source or in the user's
    cache folder, keyed by the source files), a later process loads them (docs/BENCHMARKS.md
    §10). Not a parallel twin: where umap-learn makes a serial and a parallel dispatcher of one
    function, numba's cache keys an entry by the function, not its options, so the two would
    load each other's code (a seeded map must stay serial to be reproducible); the serial one
    is cached, the parallel one compiles as before."""
    import sys
    from collections import Counter

    import umap
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    compiled = [value for name, module in list(sys.modules.items())
                if module is not None and name.split(".")[0] == "umap"
                for value in list(vars(module).values()) if isinstance(value, Dispatcher)]
    made = Counter(id(d.py_func) for d in {id(d): d for d in compiled}.values())
    for d in compiled:
        twin = made[id(d.py_func)] > 1 and d.targetoptions.get("parallel")
        if isinstance(d._cache, NullCache) and not twin:
            d.enable_caching()
    return umap


def warm() -> None:
    """Draw a small map once, so umap-learn's compiled functions are on disk before a user's
    first map (`make setup` runs it: about 40 s there, 11 s saved by each new process that maps)."""
    rng = np.random.default_rng(0)
    umap_2d(rng.standard_normal((200, 16)).astype(np.float32))


def carry(previous: Path | None, version: Path, items: pd.DataFrame, nearest: np.ndarray,
          similarity: np.ndarray) -> None:
    """Keep the map of the `previous` extraction of the same folder (same model) in `version`:
    images on it keep their place, the others are placed at the similarity-weighted mean of
    their nearest laid-out neighbours (`nearest`/`similarity`: each image's nearest others,
    as extraction found them). Nothing is written where there was no map."""
    if previous is None or not (previous / LAYOUT).is_file():
        return
    old = pd.read_csv(previous / "items.csv", usecols=["path", "sha1"],
                      dtype={"path": str, "sha1": str}, keep_default_na=False)
    old_coords = np.load(previous / LAYOUT)
    if len(old_coords) != len(old):
        return
    key = old["path"] + "\0" + old["sha1"]  # the same file with the same content
    known = pd.Series(np.arange(len(old)), index=key.to_numpy()).reindex(
        (items["path"] + "\0" + items["sha1"]).to_numpy()).to_numpy()
    laid = ~np.isnan(known)
    coords = np.zeros((len(items), 2), np.float32)
    coords[laid] = old_coords[known[laid].astype(np.int64)]
    placed = ~laid
    old_placed = np.load(previous / PLACED) if (previous / PLACED).is_file() else None
    if old_placed is not None and len(old_placed) == len(old):  # placed before: still placed, not laid out
        placed[laid] = old_placed[known[laid].astype(np.int64)]
    place(coords, laid, nearest, similarity)
    write(version, coords, placed, {**read_json(previous / PARAMS, {}), "count": len(coords)})


def layout(features: np.ndarray, nearest: np.ndarray | None, similarity: np.ndarray | None,
           n_neighbors: int = 15, min_dist: float = 0.1, seed: int | None = 42,
           sample: int = SAMPLE) -> tuple[np.ndarray, int | None]:
    """(coordinates, the size of the sample the layout was fitted on, or None: all of them).

    Past `sample` images (and where the neighbours are known) UMAP is fitted on a seeded
    sample and every other image placed at its nearest laid-out neighbours: UMAP's memory and
    time grow past what a million images allow here (70k points: 1.3 GB, 43 s)."""
    n = len(features)
    if nearest is None or n <= sample:
        return umap_2d(features, n_neighbors, min_dist, seed), None
    rows = sample_rows(np.arange(n), sample)
    coords = np.zeros((n, 2), np.float32)
    coords[rows] = umap_2d(np.asarray(features[rows]), n_neighbors, min_dist, seed)
    laid = np.zeros(n, bool)
    laid[rows] = True
    place(coords, laid, nearest, similarity)
    return coords, sample


def place(coords: np.ndarray, laid: np.ndarray, nearest: np.ndarray, similarity: np.ndarray,
          rounds: int = 12) -> None:
    """Fill `coords` of the images not `laid` out: each at the similarity-weighted mean of its
    laid-out nearest neighbours (and a little seeded jitter, so copies do not stack), round by
    round, so an image whose neighbours are all new is placed once they are. The few left
    (no neighbour placed after every round) go to the middle of the map."""
    todo = np.flatnonzero(~laid)
    sample = coords[laid][:1000]
    spread = float(np.median(np.abs(np.diff(sample, axis=0)))) if len(sample) > 1 else 0.0
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        if not len(todo):
            break
        nbr, sim = np.asarray(nearest[todo]), np.maximum(np.asarray(similarity[todo]), 1e-3)
        ok = (nbr >= 0) & laid[np.maximum(nbr, 0)]
        has = ok.any(1)
        w = np.where(ok, sim, 0)[has]
        pos = (coords[np.maximum(nbr[has], 0)] * w[..., None]).sum(1) / w.sum(1, keepdims=True)
        coords[todo[has]] = pos + rng.normal(0, 0.05 * spread, pos.shape)
        laid[todo[has]] = True
        todo = todo[~has]
    coords[todo] = np.median(coords[laid], axis=0) if laid.any() else 0


def write(folder: Path, coords: np.ndarray, placed: np.ndarray | None, params: dict) -> None:
    """The map files of an extraction folder; `placed`: which images were placed, not laid out."""
    (folder / PLACED).unlink(missing_ok=True)
    if placed is not None:
        with atomic_path(folder / PLACED, ".npy") as tmp:
            np.save(tmp, placed)
    with atomic_path(folder / LAYOUT, ".npy") as tmp:
        np.save(tmp, coords.astype(np.float32))
    write_json(folder / PARAMS, params)


def load_cached(art) -> np.ndarray | None:
    path = art.dir / LAYOUT
    if not path.is_file():
        return None
    coords = np.load(path)
    return coords if len(coords) == len(art.items) else None


def placed_of(art) -> np.ndarray | None:
    """Which images were placed by their neighbours rather than laid out (None: all laid out)."""
    path = art.dir / PLACED
    if not path.is_file():
        return None
    placed = np.load(path)
    return placed if len(placed) == len(art.items) and placed.any() else None
