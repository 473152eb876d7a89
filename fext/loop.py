"""The training loop every model of FEXT runs: the autoencoder (fext.train) and the classifier
(fext.classifier) alike.

Explicit `train_on_batch` over an order that is a pure function of (seed, epoch), the next
batch prepared in a background thread, and one early-stopping rule whose state is plain JSON:
a resumed run sees exactly the batches, the best epoch and the patience count it would have.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from .feed import batch_rows, epoch_order, feed_threads, load_rows, prefetch
from .progress import ProgressFn


def set_seed(seed: int) -> None:
    """Seed Keras (Python, numpy, backend) and make TensorFlow's ops deterministic."""
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()


class EarlyStopping:
    """The best epoch so far on a monitored figure, and the epochs waited since it improved.

    `key(row)` orders epochs, higher is better: the negated loss, or (accuracy, -loss) where
    accuracy ties are frequent on small validation sets. `state()` is plain JSON, so a resumed
    run goes on with the same best and the same patience count. `why` says, in words, what
    stopping means ("held-out copies have not improved for {epochs}").

    With `min_gain`, the patience counts from the last epoch whose first key figure rose by at
    least that much (`mark`): a gain below what the figure can resolve (a copy or two of the
    held-out copies) is not progress, so a plateau of such gains ends the run. The best epoch
    is still the best one, however small its lead.
    """

    def __init__(self, key: Callable[[dict], tuple], patience: int, state: dict | None = None,
                 why: str = "the monitored figure has not improved for {epochs}",
                 min_gain: float = 0.0):
        self.key, self.patience, self.why, self.min_gain = key, patience, why, min_gain
        state = state or {}
        self.best = tuple(state["best"]) if state.get("best") is not None else None
        self.best_epoch, self.wait = state.get("best_epoch", 0), state.get("wait", 0)
        self.stalls = state.get("stalls", 0)  # epochs that did not gain, in all
        mark = state.get("mark", state.get("best"))
        self.mark = tuple(mark) if mark is not None else None

    def offer(self, row: dict) -> bool:
        """Count epoch `row`; returns whether it is the best so far."""
        k = tuple(self.key(row))
        gained = self.mark is None or (k[0] >= self.mark[0] + self.min_gain if self.min_gain
                                       else k > self.mark)
        self.wait = 0 if gained else self.wait + 1
        self.stalls += not gained
        if gained:
            self.mark = k
        if self.best is not None and k <= self.best:
            return False
        self.best, self.best_epoch = k, row["epoch"]
        return True

    @property
    def stop(self) -> bool:
        return self.wait >= self.patience

    @property
    def reason(self) -> str:
        """Why the run stops, in words (`why` with the patience filled in as {epochs})."""
        return self.why.format(epochs=f"{self.patience} epoch{'s' if self.patience != 1 else ''}")

    def state(self) -> dict:
        return {"best": list(self.best) if self.best is not None else None,
                "best_epoch": self.best_epoch, "wait": self.wait, "stalls": self.stalls,
                "mark": list(self.mark) if self.mark is not None else None}


def lower_loss(monitor: str) -> Callable[[dict], tuple]:
    return lambda row: (-row[monitor],)


def build_state(model, x, y) -> None:
    """Create the optimiser's slots and the loss's trackers for batch (x, y) before the first
    step, as Keras does itself under a distribution strategy. Without it Keras creates them in
    the first traced step, and TensorFlow traces a step that creates variables twice: the
    first step took 9.3 s instead of 5.5 at the shipped settings, 4.6 instead of 2.3 for the
    tests' tiny model (`bench/train.py --first-step`, AMD EPYC without AVX-512).
    Symbolic: no arithmetic, nothing a step's result depends on. (Keras 3's own method, under
    the pinned version; a model without it is left to build itself.)"""
    build = getattr(model, "_symbolic_build", None)
    if build is not None:
        build(data_batch=(x, y, None))


def run_epochs(model, images: np.ndarray, rows: np.ndarray, *, epochs: int, batch_size: int,
               seed: int, on_epoch: Callable[[dict], bool], progress: ProgressFn,
               targets: np.ndarray | None = None, make_batch=None, validate=None,
               start_epoch: int = 0, stage: str = "train", first_epoch: int = 1,
               epoch_steps: int = 0, arrange=None, stopper: EarlyStopping | None = None) -> None:
    """The training loop of every model: epochs from `start_epoch` until `on_epoch(row)` says stop.

    Explicit `train_on_batch` over an order that is a pure function of (seed, epoch): no epoch
    counters or shuffling state, so a resumed run sees exactly the batches it would have seen.
    An epoch is one pass over `rows`, or `epoch_steps` optimiser steps when that is set. The
    next batch (and `make_batch(x, y, epoch, step)` -> (inputs, targets), its edits; y: the
    batch's `targets`, or None) is prepared in a background thread (four for an accelerator:
    fext.feed.feed_threads), in that same order, while the model trains on the current one.
    `arrange(rows, epoch)`, given, reorders each epoch's rows (a permutation of them; a pure
    function of the model at the epoch's start, which a resumed run restores).
    Targets are the images themselves (an autoencoder) unless `targets` (one per row) are
    given. The epoch's row holds the mean of every training log, then `validate(model)`'s.

    Each epoch ends with one `progress(..., epoch_logs=row, epochs=, steps=)` call (what the
    per-epoch lines and the time left are made of: fext.progress.Reporter), which also says,
    given the `stopper` that `on_epoch` consults, whether the epoch is the best so far and
    why the run stops when it does.
    """
    from .model import accelerator

    threads = feed_threads(accelerator())  # several batches made at once for an accelerator
    length = epoch_steps * batch_size if epoch_steps else None
    steps = epoch_steps or math.ceil(len(rows) / batch_size)
    positions = np.arange(len(rows))
    for epoch in range(start_epoch, epochs):
        t0, seen, sums = time.time(), 0, {}
        order = epoch_order(positions, seed, epoch, length)
        if arrange is not None:
            order = order[arrange(rows[order], epoch)]
        ordered, ys = rows[order], (targets[order] if targets is not None else None)

        def prepared(job, ys=ys, epoch=epoch):
            step, (start, idx) = job
            x = load_rows(images, idx)
            y = None if ys is None else ys[start:start + len(x)]
            return step, x, *(make_batch(x, y, epoch, step) if make_batch
                              else (x, x if y is None else y))

        for step, x, x_in, y in prefetch(enumerate(batch_rows(ordered, batch_size)),
                                         work=prepared, threads=threads):
            if epoch == start_epoch and step == 0:
                build_state(model, x_in, y)
            logs = model.train_on_batch(x_in, y, return_dict=True)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(x)
            seen += len(x)
            progress(stage, epoch * steps + step + 1, epochs * steps, epoch=epoch + 1,
                     loss=sums["loss"] / seen)
        row = {"epoch": first_epoch + epoch, **{k: v / seen for k, v in sums.items()}}
        if validate is not None:
            t1 = time.time()
            row.update(validate(model))
            row["validation_seconds"] = round(time.time() - t1, 2)  # its share of the epoch
        row["seconds"] = round(time.time() - t0, 2)
        stop = on_epoch(row)
        notes = {} if stopper is None else {
            "best": stopper.best_epoch == row["epoch"],
            **({"stopping": stopper.reason} if stop and epoch + 1 < epochs else {})}
        progress(stage, (epoch + 1) * steps, epochs * steps, epoch=epoch + 1, epoch_logs=row,
                 epochs=epochs, steps=steps, **notes)
        if stop:
            break
