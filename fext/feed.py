"""Batches from the decoded-image cache to the model, with constant memory.

Numpy in, numpy out, so any Keras backend consumes it. Reads are sorted by row within a batch
so the memory map is read near-sequentially. `prefetch` prepares the next batches in a
background thread (four for an accelerator) while the model computes the current one, in the
same order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
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


def neighbour_groups(features: np.ndarray, rows: np.ndarray, group: int) -> np.ndarray:
    """A permutation of `rows` that puts each image beside its `group - 1` nearest look-alikes
    (cosine between `features`, one per row), so batches fill with such groups.

    Why: the invariance term learns from the other images of a batch. Random ones are too easy
    by the end of training (its loss falls to about 0.1), while a copy search is lost to an
    image's nearest look-alikes (another crop of the same flat sky): hard negatives. Anchors
    are taken in the order's own seeded sequence, and an image is never grouped with another
    occurrence of itself. Memory is len(rows)², so callers hand it a window of an epoch.
    """
    from .index import l2_normalize

    rows = np.asarray(rows)
    if group <= 1:
        return np.arange(len(rows))
    unit = l2_normalize(features)
    sim = unit @ unit.T
    sim[rows[:, None] == rows[None, :]] = -np.inf
    free = np.ones(len(rows), bool)
    out = []
    for i in range(len(rows)):
        if not free[i]:
            continue
        free[i] = False
        candidates = np.where(free, sim[i], -np.inf)
        k = min(group - 1, int(free.sum()))
        mates = np.argpartition(-candidates, k - 1)[:k] if k else np.empty(0, np.int64)
        mates = mates[np.isfinite(candidates[mates])]
        mates = mates[np.argsort(-candidates[mates], kind="stable")]
        free[mates] = False
        out.extend([i, *mates])
    return np.asarray(out, np.int64)


def batch_rows(rows: np.ndarray, batch_size: int):
    """(start, rows of the batch) over `rows` in the given order: what a batch is made from."""
    rows = np.asarray(rows, dtype=np.int64)
    for start in range(0, len(rows), batch_size):
        yield start, rows[start:start + batch_size]


def load_rows(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The float batch of cache `rows`, in their order, read from the memory map in row order."""
    order = np.argsort(rows, kind="stable")
    batch = np.empty((len(rows),) + images.shape[1:], np.uint8)
    batch[order] = images[rows[order]]
    return to_model_input(batch)


def iter_batches(images: np.ndarray, rows: np.ndarray, batch_size: int):
    """(start, float batch) over rows in the given order."""
    for start, idx in batch_rows(rows, batch_size):
        yield start, load_rows(images, idx)


def gather(images: np.ndarray, rows: np.ndarray, flat: bool = False) -> np.ndarray:
    """Model input (float) of cache `rows`, in their order, all in memory: for the few thousand
    images a page, a figure or a pixel baseline holds at once (training and extraction stream
    with `iter_batches`). `flat`: one vector of pixels per image, as the baselines use them."""
    shape = (len(rows), int(np.prod(images.shape[1:]))) if flat else (len(rows),) + images.shape[1:]
    if len(rows) == 0:
        return np.zeros(shape, np.float32)
    return np.concatenate([x for _, x in iter_batches(images, rows, 512)]).reshape(shape)


T = TypeVar("T")
U = TypeVar("U")
_END = object()


def feed_threads(accelerator: bool) -> int:
    """Threads that prepare batches ahead of the model: one where the CPU computes the model
    (its cores are busy with it), four where an accelerator does: with one, an H200 waited
    55-64 % of an extraction's time for batches of 1,024 images, and half of a vgg16 training
    step for its edited views even with the edits in other processes; with four, 26-31 % and
    6 % (docs/BENCHMARKS.md §5). Numpy's large array operations release the GIL, so the
    threads work side by side."""
    return 4 if accelerator else 1


def prefetch(items: Iterable[T], depth: int = 1, work: Callable[[T], U] | None = None,
             threads: int = 1) -> Iterator[U]:
    """`work(item)` (the item itself without `work`) for each of `items`, in order, made up to
    `depth` ahead by a background thread, or by `threads` threads side by side.

    Why: gathering a batch from the memory map and converting it to float takes milliseconds
    (about 8 ms for 128 images of 128 px); on an accelerator that is a large share of a training
    step unless it overlaps the step. Order and content are unchanged, so training stays exactly
    resumable. An error in the producer is raised here; leaving the loop early stops the thread.
    Memory: at most depth + threads + 1 results exist at once (made ahead, being used).
    """
    if threads > 1 and work is not None:
        yield from _in_threads(items, work, threads, depth)
        return
    if work is not None:
        items = map(work, items)
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


def _in_threads(items: Iterable[T], work: Callable[[T], U], threads: int,
                depth: int) -> Iterator[U]:
    """`prefetch` with `threads` workers: the next items' work submitted as results are taken."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    ahead = threads + max(1, depth) - 1
    with ThreadPoolExecutor(threads, thread_name_prefix="fext-prefetch") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(work, item))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
