"""Batches from the decoded-image cache to the model, with constant memory.

Numpy in, numpy out, so any Keras backend consumes it. Reads are sorted by row within a batch
so the memory map is read near-sequentially. `prefetch` prepares the next batch in a
background thread while the model computes the current one, in the same order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np

from .images import to_model_input


def sample_rows(rows: np.ndarray, limit: int) -> np.ndarray:
    """A seeded sample of at most `limit` of `rows`, in their order: what summary figures,
    fitted statistics and pages read of a folder too large to read whole for them."""
    rows = np.asarray(rows)
    if len(rows) <= limit:
        return rows
    keep = np.sort(np.random.default_rng(0).choice(len(rows), limit, replace=False))
    return rows[keep]


def epoch_order(rows: np.ndarray, seed: int, epoch: int, length: int | None = None) -> np.ndarray:
    """The training order of an epoch: a pure function of (seed, epoch), so a resumed run
    sees exactly the batches an uninterrupted run would have seen.

    An epoch is one pass (a permutation of `rows`), or, given `length`, the epoch-th stretch
    of `length` rows of an endless stream of passes: training counted in optimiser steps,
    the same for a folder of 300 images as for one of a million."""
    rows = np.asarray(rows, np.int64)
    if length is None:
        return np.random.default_rng([seed, epoch]).permutation(rows)
    n = len(rows)
    start, stop = epoch * length, (epoch + 1) * length
    passes = [np.random.default_rng([seed, k]).permutation(rows)
              for k in range(start // n, (stop - 1) // n + 1)]
    first = (start // n) * n
    return np.concatenate(passes)[start - first:stop - first]


def iter_batches(images: np.ndarray, rows: np.ndarray, batch_size: int):
    """(start, float batch) over rows in the given order."""
    rows = np.asarray(rows, dtype=np.int64)
    for start in range(0, len(rows), batch_size):
        idx = rows[start:start + batch_size]
        order = np.argsort(idx, kind="stable")
        batch = np.empty((len(idx),) + images.shape[1:], np.uint8)
        batch[order] = images[idx[order]]  # read the memory map in row order
        yield start, to_model_input(batch)


T = TypeVar("T")
_END = object()


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """The items of `items`, in order, produced up to `depth` ahead by a background thread.

    Why: gathering a batch from the memory map and converting it to float takes milliseconds
    (about 8 ms for 128 images of 128 px); on an accelerator that is a large share of a training
    step unless it overlaps the step. Order and content are unchanged, so training stays exactly
    resumable. An error in the producer is raised here; leaving the loop early stops the thread.
    Memory: at most depth + 2 items exist at once (queued, being made, being used).
    """
    buffer: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as error:  # handed to the consumer, raised there
            put((_END, error))

    worker = threading.Thread(target=produce, name="fext-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = buffer.get()
            if item is _END:
                if error is not None:
                    try:
                        raise error
                    finally:
                        del error  # no cycle keeping the producer's last batch alive
                return
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
