"""Batches from the decoded-image cache to the model, with constant memory.

Numpy in, numpy out, so any Keras backend consumes it. Reads are sorted by row within a batch
so the memory map is read near-sequentially.
"""

from __future__ import annotations

import numpy as np

from .images import to_model_input


def epoch_order(rows: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The training order of an epoch: a pure function of (seed, epoch), so a resumed run
    sees exactly the batches an uninterrupted run would have seen."""
    return np.random.default_rng([seed, epoch]).permutation(np.asarray(rows, np.int64))


def iter_batches(images: np.ndarray, rows: np.ndarray, batch_size: int):
    """(start, float batch) over rows in the given order."""
    rows = np.asarray(rows, dtype=np.int64)
    for start in range(0, len(rows), batch_size):
        idx = rows[start:start + batch_size]
        order = np.argsort(idx, kind="stable")
        batch = np.empty((len(idx),) + images.shape[1:], np.uint8)
        batch[order] = images[idx[order]]  # read the memory map in row order
        yield start, to_model_input(batch)
