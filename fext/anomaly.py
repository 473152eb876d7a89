"""Anomaly scores: how far each image sits from the rest of its collection (higher = more unusual).

Two scores are kept for every image. The default, `isolation`, is the mean cosine distance from
an image's feature vector to its K nearest other images: measured on one-class digits it beats
PCA, while the autoencoder's raw reconstruction error ranks anomalies worse than PCA (images with
little ink reconstruct well whatever they show; docs/QUALITY.md has the figures).
`reconstruction` (per-image MSE) is kept for inspection and for the Reconstruction page.
"""

from __future__ import annotations

import numpy as np

SCORES = ("isolation", "reconstruction")
NEIGHBOURS = 5


def reconstruction_error(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Per-image mean squared error between inputs and reconstructions, both in [0, 1]."""
    d = np.asarray(x, np.float32) - np.asarray(r, np.float32)
    return (d * d).reshape(len(d), -1).mean(axis=1)


def isolation(index, features: np.ndarray, k: int = NEIGHBOURS, chunk: int = 4096) -> np.ndarray:
    """Mean cosine distance of each indexed vector to its k nearest *other* vectors.

    `index` is a fext.index.VectorIndex holding `features` under ids 0..n-1.
    """
    n = len(features)
    out = np.zeros(n, np.float32)
    if n < 2:
        return out
    k = min(k, n - 1)
    for start in range(0, n, chunk):
        q = np.ascontiguousarray(features[start:start + chunk], np.float32)
        sims, ids = index.search(q, k + 1)
        own = ids == np.arange(start, start + len(q))[:, None]
        # drop the image itself (or, for exact duplicates, the last of the k+1)
        keep = np.where(own.any(axis=1, keepdims=True), ~own, np.arange(k + 1) < k)
        sims = np.where(ids < 0, np.nan, sims)
        out[start:start + len(q)] = 1.0 - np.nanmean(np.where(keep, sims, np.nan), axis=1)
    return out


def distance_to_reference(reference: np.ndarray, queries: np.ndarray, k: int = 1) -> np.ndarray:
    """Mean cosine distance of each query to its k nearest reference vectors (one-class scoring)."""
    from .index import exact_knn, l2_normalize

    ref, q = l2_normalize(reference), l2_normalize(queries)
    ids = exact_knn(ref, q, k)
    sims = np.einsum("qd,qkd->qk", q, ref[ids])
    return 1.0 - sims.mean(axis=1)


def ranking(items, scores: np.ndarray, top: int | None = None):
    """Items sorted by score, most anomalous first, with rank and score columns."""
    df = items.assign(score=np.asarray(scores, np.float64))
    df = df.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df.head(top) if top else df
