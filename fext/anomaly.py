"""Anomaly scores: how badly the autoencoder reconstructs each image (higher = more unusual)."""

from __future__ import annotations

import numpy as np


def reconstruction_error(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Per-image mean squared error between inputs and reconstructions, both in [0, 1]."""
    d = np.asarray(x, np.float32) - np.asarray(r, np.float32)
    return (d * d).reshape(len(d), -1).mean(axis=1)


def ranking(items, scores: np.ndarray, top: int | None = None):
    """Items sorted by score, most anomalous first, with rank and score columns."""
    df = items.assign(score=np.asarray(scores, np.float64))
    df = df.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df.head(top) if top else df
