"""Batches from the decoded-image cache to the model, with constant memory.

Numpy in, numpy out, so any Keras backend consumes it. Reads are sorted by row within a batch
so the memory map is read near-sequentially.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from .images import to_model_input


class ImageBatches(keras.utils.PyDataset):
    """Autoencoder batches (x, x) over `rows` of `images`; reshuffled each epoch from (seed, epoch)."""

    def __init__(self, images: np.ndarray, rows: np.ndarray, batch_size: int,
                 shuffle: bool = False, seed: int = 0, epoch: int = 0, **kwargs):
        super().__init__(**kwargs)
        if len(rows) == 0:
            raise ValueError("no images to feed")
        self.images, self.rows = images, np.asarray(rows, dtype=np.int64)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = epoch
        self._order = self._make_order()

    def _make_order(self) -> np.ndarray:
        if not self.shuffle:
            return self.rows
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.rows)

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, i: int):
        idx = np.sort(self._order[i * self.batch_size:(i + 1) * self.batch_size])
        x = to_model_input(self.images[idx])
        return x, x

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._make_order()


def iter_batches(images: np.ndarray, rows: np.ndarray, batch_size: int):
    """(start, float batch) over rows in order, for inference."""
    rows = np.asarray(rows, dtype=np.int64)
    for start in range(0, len(rows), batch_size):
        yield start, to_model_input(images[rows[start:start + batch_size]])
