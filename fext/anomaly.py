"""Anomaly scores: how unusual each image is in its collection (higher = more unusual).

The default score, `combined`, adds two signals, each divided by its median over the collection
so that neither dominates: *isolation* (mean cosine distance from an image's feature vector to
its K nearest other images) and the autoencoder's *reconstruction* error. Measured on one-class
digits (docs/QUALITY.md), reconstruction error alone is excellent for some classes and worse
than chance for others (images with little ink reconstruct well whatever they show), isolation is
steadier, and their sum beats PCA. Both parts are kept and can be ranked on their own.
"""

from __future__ import annotations

import numpy as np

SCORES = ("combined", "isolation", "reconstruction")
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


def combined(isolation_scores: np.ndarray, recon_scores: np.ndarray,
             reference: tuple[float, float] | None = None) -> np.ndarray:
    """Sum of the two scores, each divided by its median (or by `reference` medians)."""
    iso, rec = np.asarray(isolation_scores, np.float64), np.asarray(recon_scores, np.float64)
    m_iso, m_rec = reference or (np.median(iso), np.median(rec))
    return (iso / max(m_iso, 1e-12) + rec / max(m_rec, 1e-12)).astype(np.float32)


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
