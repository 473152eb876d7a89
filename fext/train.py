"""Train an autoencoder on a folder: seeded, checkpointed every epoch, resumable, early-stopped.

The run works in ``models/<name>/run/``; the finished model replaces ``models/<name>/model.keras``
only at the very end (atomically), so a failed or killed run never damages the previous model.
Early stopping and the best checkpoint look at the validation split only; the test split is
evaluated once, after the model is chosen.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from . import model as model_lib
from . import registry
from .collection import Collection
from .config import RunConfig
from .edits import augment
from .errors import UsageError
from .evaluate import reconstruction_metrics
from .features import encode_batch, encode_rows, readout_of, reference_of
from .feed import epoch_order, iter_batches, neighbour_groups, prefetch, sample_rows
from .images import to_model_input
from .progress import ProgressFn, report
from .workspace import Workspace, atomic_path, read_json, write_json


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()


def corrupt(x: np.ndarray, tcfg, epoch: int, step: int) -> np.ndarray:
    """Denoising input: Gaussian noise of std `tcfg.noise`, seeded by (seed, epoch, step)."""
    noise = getattr(tcfg, "noise", 0.0)
    if not noise:
        return x
    rng = np.random.default_rng([tcfg.seed, epoch, step, 1])
    return np.clip(x + rng.normal(0, noise, x.shape).astype(np.float32), 0.0, 1.0)


def views(x: np.ndarray, labels: np.ndarray | None, tcfg, epoch: int, step: int,
          fit: str = "pad"):
    """(inputs, targets) of one step from a batch of clean images `x` and their label indices.

    The model reconstructs the clean image from an edited view of it (fext.edits.augment: the
    re-saves, resizes, small crops and shifts, blur and colour changes users make), so its
    features learn to ignore those edits. With an invariance weight, each image comes as two
    differently edited views (inputs: views 1 then views 2) whose features must find each
    other, and those of its label's other images (`fext.model.invariance_loss`, which reads
    each view's label index, -1 for none, as its target).
    Seeded by (seed, epoch, step): resume stays exact."""
    def edited(which: int) -> np.ndarray:
        if tcfg.augment == "none":
            return x
        pixels = np.rint(x * 255).astype(np.uint8)
        return to_model_input(augment(pixels, [tcfg.seed, epoch, step, 2, which], fit))

    if not tcfg.invariance:
        return corrupt(edited(0), tcfg, epoch, step), x
    inputs = corrupt(np.concatenate([edited(0), edited(1)]), tcfg, epoch, step)
    labels = np.full(len(x), -1.0, np.float32) if labels is None else labels.astype(np.float32)
    return inputs, [np.concatenate([x, x]), np.concatenate([labels, labels])[:, None]]


# Validation: each epoch, seeded edited views of (a sample of) the validation split, the same
# views every epoch so that epochs compare
VIEW_SAMPLE = 1024  # validation images viewed each epoch, at most: seconds at any folder size
MIN_VIEWS = 256  # held-out copies searched, at least: a small split is edited several times
VALIDATION_EPOCH = 1_000_000  # the views' seeds: (seed, this, ...), never a training epoch's
COPY_DATABASE = 4096  # clean images the held-out copies are searched among, at most
VALIDATION = "held-out copies, then the objective on edited views"  # in every run's key


def held_out_copies(encoder, images: np.ndarray, val_rows: np.ndarray, train_rows: np.ndarray,
                    tcfg, fit: str, batch_size: int) -> float:
    """Recall@1 of edited views of validation images searched among clean images (those and a
    seeded sample of the training split): how well the features find a copy, the product's
    everyday job, on images training never saw. It chooses the published checkpoint.

    Why not the validation loss: the features are the product, and the loss does not follow
    them. On 200 photos the held-out reconstruction error bottomed out after 200 of 600 steps
    (and the objective, whose invariance part is easy on a few held-out images, with it),
    while copy recall on test queries rose from 0.94 there to 0.98 (docs/QUALITY.md)."""
    db_rows = np.concatenate([val_rows, sample_rows(train_rows, COPY_DATABASE - len(val_rows))])
    db = np.concatenate([z for _, z, _ in encode_rows((encoder, None), images, db_rows,
                                                      batch_size, reconstruct=False)])
    # a small split is repeated, each repeat edited anew, and searched in full batches: a 20-image
    # split costs as many encoder calls as a 256-image one
    queries = np.tile(val_rows, max(1, math.ceil(MIN_VIEWS / max(len(val_rows), 1))))
    hits = 0
    for start, x in iter_batches(images, queries, batch_size):
        pixels = np.rint(x * 255).astype(np.uint8)
        v = to_model_input(augment(pixels, [tcfg.seed, VALIDATION_EPOCH, start, 3], fit))
        z, _ = encode_batch(encoder, v)  # as every query is encoded: cosine against db
        source = (start + np.arange(len(x))) % len(val_rows)  # db's first rows are val_rows
        hits += int((np.argmax(z @ db.T, axis=1) == source).sum())
    return hits / max(len(queries), 1)


def held_out_objective(trainer, images: np.ndarray, rows: np.ndarray, targets, tcfg,
                       per_step: int, fit: str) -> dict:
    """The training objective (reconstruction of the clean image from edited views, plus the
    invariance term) on seeded edited views of validation images: `val_loss`, the figure
    beside the training loss on the curves, and the tie-break between checkpoints."""
    sums, seen = {}, 0
    for step, (start, x) in enumerate(iter_batches(images, rows, per_step)):
        y = None if targets is None else targets[start:start + len(x)]
        x_in, t = views(x, y, tcfg, VALIDATION_EPOCH, step, fit)
        logs = trainer.test_on_batch(x_in, t, return_dict=True)
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(x)
        seen += len(x)
    out = {"val_loss": sums["loss"] / seen}
    if "reconstruction_loss" in sums:
        out["val_reconstruction_loss"] = sums["reconstruction_loss"] / seen
    return out


LOOK_ALIKE_WINDOW = 4096  # rows grouped at once: a 64 MiB similarity matrix at any folder size


def look_alike_batches(autoencoder, images: np.ndarray, group: int, batch_size: int):
    """`run_epochs`' `arrange`: each epoch's images in groups of `group` nearest neighbours in
    the features the model has at the epoch's start (fext.feed.neighbour_groups). Costs one
    encoder pass over the epoch's images (a few per cent of its training), window by window,
    so memory does not grow with the folder."""
    encoder = model_lib.encoder_of(autoencoder)

    def arrange(rows: np.ndarray, epoch: int) -> np.ndarray:
        perm = []
        for start in range(0, len(rows), LOOK_ALIKE_WINDOW):
            window = rows[start:start + LOOK_ALIKE_WINDOW]
            unique, where = np.unique(window, return_inverse=True)
            z = np.concatenate([z for _, z, _ in encode_rows((encoder, None), images, unique,
                                                             batch_size, reconstruct=False)])
            perm.append(start + neighbour_groups(z[where], window, group))
        return np.concatenate(perm)

    return arrange


def label_indices(items) -> np.ndarray:
    """Each item's label as an index into the folder's labels, -1 for none; all -1 where the
    folder has fewer than two labels (a single label would pull every image together)."""
    names = sorted(x for x in items["label"].unique() if x)
    if len(names) < 2:
        return np.full(len(items), -1, np.int64)
    index = {name: i for i, name in enumerate(names)}
    return np.array([index.get(x, -1) for x in items["label"]], np.int64)


class EarlyStopping:
    """The best epoch so far on a monitored figure, and the epochs waited since it improved.

    `key(row)` orders epochs, higher is better: the negated loss, or (accuracy, -loss) where
    accuracy ties are frequent on small validation sets. `state()` is plain JSON, so a resumed
    run goes on with the same best and the same patience count.
    """

    def __init__(self, key: Callable[[dict], tuple], patience: int, state: dict | None = None):
        self.key, self.patience = key, patience
        state = state or {}
        self.best = tuple(state["best"]) if state.get("best") is not None else None
        self.best_epoch, self.wait = state.get("best_epoch", 0), state.get("wait", 0)

    def offer(self, row: dict) -> bool:
        """Count epoch `row`; returns whether it is the best so far."""
        k = tuple(self.key(row))
        if self.best is not None and k <= self.best:
            self.wait += 1
            return False
        self.best, self.best_epoch, self.wait = k, row["epoch"], 0
        return True

    @property
    def stop(self) -> bool:
        return self.wait >= self.patience

    def state(self) -> dict:
        return {"best": list(self.best) if self.best is not None else None,
                "best_epoch": self.best_epoch, "wait": self.wait}


def lower_loss(monitor: str) -> Callable[[dict], tuple]:
    return lambda row: (-row[monitor],)


def run_epochs(model, images: np.ndarray, rows: np.ndarray, *, epochs: int, batch_size: int,
               seed: int, on_epoch: Callable[[dict], bool], progress: ProgressFn,
               targets: np.ndarray | None = None, make_batch=None, validate=None,
               start_epoch: int = 0, stage: str = "train", first_epoch: int = 1,
               epoch_steps: int = 0, arrange=None) -> None:
    """The training loop of every model: epochs from `start_epoch` until `on_epoch(row)` says stop.

    Explicit `train_on_batch` over an order that is a pure function of (seed, epoch): no epoch
    counters or shuffling state, so a resumed run sees exactly the batches it would have seen.
    An epoch is one pass over `rows`, or `epoch_steps` optimiser steps when that is set. The
    next batch (and `make_batch(x, y, epoch, step)` -> (inputs, targets), its edits; y: the
    batch's `targets`, or None) is prepared in a background thread, in that same order, while
    the model trains on the current one. `arrange(rows, epoch)`, given, reorders each epoch's
    rows (a permutation of them; a pure function of the model at the epoch's start, which a
    resumed run restores).
    Targets are the images themselves (an autoencoder) unless `targets` (one per row) are
    given. The epoch's row holds the mean of every training log, then `validate(model)`'s.
    """
    length = epoch_steps * batch_size if epoch_steps else None
    steps = epoch_steps or math.ceil(len(rows) / batch_size)
    positions = np.arange(len(rows))
    for epoch in range(start_epoch, epochs):
        t0, seen, sums = time.time(), 0, {}
        order = epoch_order(positions, seed, epoch, length)
        if arrange is not None:
            order = order[arrange(rows[order], epoch)]
        ordered, ys = rows[order], (targets[order] if targets is not None else None)

        def prepared(step: int, start: int, x: np.ndarray, ys=ys, epoch=epoch):
            y = None if ys is None else ys[start:start + len(x)]
            return step, x, *(make_batch(x, y, epoch, step) if make_batch
                              else (x, x if y is None else y))

        batches = (prepared(step, start, x)
                   for step, (start, x) in enumerate(iter_batches(images, ordered, batch_size)))
        for step, x, x_in, y in prefetch(batches):
            logs = model.train_on_batch(x_in, y, return_dict=True)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(x)
            seen += len(x)
            progress(stage, epoch * steps + step + 1, epochs * steps, epoch=epoch + 1,
                     loss=sums["loss"] / seen)
        row = {"epoch": first_epoch + epoch, **{k: v / seen for k, v in sums.items()}}
        if validate is not None:
            row.update(validate(model))
        row["seconds"] = round(time.time() - t0, 2)
        stop = on_epoch(row)
        progress(stage, (epoch + 1) * steps, epochs * steps, epoch=epoch + 1, epoch_logs=row)
        if stop:
            break


def readout_label(model) -> dict:
    """What a published model's features are, for its record and every extraction's meta."""
    from .features import SHRINKAGE

    if model_lib.has_readout(model):
        return {"kind": "whitened", "text": "whitened on the training images (PCA whitening, "
                f"shrinkage {SHRINKAGE})"}
    return {"kind": "raw", "text": "the raw bottleneck"}


def end_epoch(model, trainer, run_dir: Path, state: dict, stopper: EarlyStopping,
              row: dict) -> None:
    """Record an epoch: history, best checkpoint (on the monitored loss), last checkpoint, patience.

    Everything is on disk before the next epoch starts, so a killed run resumes from the last
    completed epoch (the trainer, with its optimiser state) with the same best score and
    patience counter. The best checkpoint is the model alone.
    """
    if stopper.offer(row):
        with atomic_path(run_dir / "best.keras", ".keras") as tmp:
            model.save(tmp)
    with atomic_path(run_dir / "last.keras", ".keras") as tmp:
        trainer.save(tmp)
    state["history"].append(row)
    state["epoch"] = row["epoch"]
    state["stopping"] = stopper.state()
    write_json(run_dir / "state.json", state)


def train(ws: Workspace, name: str, cfg: RunConfig, progress: ProgressFn | None = None,
          fresh: bool = False) -> dict:
    """Train model `name` on cfg.data.images; returns its metrics. Resumes an unfinished run."""
    cfg.validate()
    progress = report(progress)
    with ws.lock(name):
        coll = Collection.for_data(ws, cfg.data, progress=progress)
        cfg.data.images = str(coll.root)
        train_items = coll.items("train")
        train_rows = train_items["row"].to_numpy()
        val_rows = coll.items("val")["row"].to_numpy()
        if len(train_rows) == 0:
            raise UsageError(f"no readable images in the training split of {coll.root} "
                             f"({len(coll.skipped())} files skipped)")
        model_dir = ws.model_dir(name)
        run_dir = model_dir / "run"
        run_key = {"config": cfg.to_dict(), "collection": coll.fingerprint,
                   "validation": VALIDATION}
        state = read_json(run_dir / "state.json") if not fresh else None
        resumable = (state and state.get("key") == run_key and not state.get("finished")
                     and "stopping" in state and (run_dir / "last.keras").is_file())
        if not resumable:
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            state = {"key": run_key, "epoch": 0, "history": []}
        set_seed(cfg.train.seed)
        tc = cfg.train
        if resumable:
            trainer = model_lib.load(run_dir / "last.keras")
        else:
            ae = model_lib.build_autoencoder(cfg.model, cfg.data.image_size)
            trainer = (model_lib.build_trainer(ae, tc.invariance, tc.learning_rate, tc.labels)
                       if tc.invariance else model_lib.compile_autoencoder(ae, tc.learning_rate))
        # the autoencoder itself (validated, checkpointed as best, published); with an
        # invariance term the trainer wraps it and holds the optimiser state
        ae = model_lib.autoencoder_of(trainer) if tc.invariance else trainer

        monitor = "val_loss" if len(val_rows) else "loss"
        copies = bool(tc.invariance and len(val_rows))  # the checkpoint that finds copies best
        key = (lambda row: (row["val_copies"], -row[monitor])) if copies else lower_loss(monitor)
        stopper = EarlyStopping(key, cfg.train.patience, state.get("stopping"))

        def on_epoch(row: dict) -> bool:
            end_epoch(ae, trainer, run_dir, state, stopper, row)
            return stopper.stop

        # with two views per image, a step holds batch_size inputs from batch_size/2 images
        per_step = max(1, tc.batch_size // 2) if tc.invariance else tc.batch_size
        val_sample = sample_rows(val_rows, VIEW_SAMPLE)  # each epoch: seconds at any size
        val_targets = (label_indices(coll.items("val"))[np.isin(val_rows, val_sample)]
                       if tc.invariance else None)

        encoder = model_lib.encoder_of(ae)  # shares the weights being trained

        def validate(_) -> dict:
            row = held_out_objective(trainer, coll.images, val_sample, val_targets, tc,
                                     per_step, cfg.data.fit)
            if copies:
                row["val_copies"] = held_out_copies(encoder, coll.images, val_sample, train_rows,
                                                    tc, cfg.data.fit, tc.batch_size)
            return row

        group = min(tc.neighbours, per_step) if tc.invariance else 1  # look-alikes per group
        if not stopper.stop:
            run_epochs(trainer, coll.images, train_rows, epochs=tc.epochs, batch_size=per_step,
                       seed=tc.seed, on_epoch=on_epoch, progress=progress,
                       targets=label_indices(train_items),
                       make_batch=lambda x, y, epoch, step: views(x, y, tc, epoch, step, cfg.data.fit),
                       validate=validate if len(val_rows) else None, start_epoch=state["epoch"],
                       epoch_steps=tc.epoch_steps,
                       arrange=(look_alike_batches(ae, coll.images, group, tc.batch_size)
                                if group > 1 else None))
        state["stopped_early"] = state["epoch"] < cfg.train.epochs

        best = model_lib.load(run_dir / "best.keras")
        progress("readout", 0, 1)
        best = readout_of(best, coll.images, train_rows, tc.batch_size, tc.readout)
        with atomic_path(run_dir / "published.keras", ".keras") as tmp:
            best.save(tmp)
        progress("readout", 1, 1)
        progress("evaluate", 0, 1)
        metrics = {
            "splits": reconstruction_metrics(best, coll, cfg.train.batch_size),
            "best_epoch": stopper.best_epoch, "epochs_run": state["epoch"],
            "steps_run": state["epoch"] * (tc.epoch_steps or math.ceil(len(train_rows) / per_step)),
            "stopped_early": bool(state.get("stopped_early")),
            "monitor": "val_copies" if copies else monitor,
            **({"val_copies": next(r["val_copies"] for r in state["history"]
                                   if r["epoch"] == stopper.best_epoch)} if copies else {}),
            "images": {s: int(len(coll.items(s))) for s in ("train", "val", "test")},
            "skipped": int(len(coll.skipped())),
        }
        progress("evaluate", 1, 1)
        progress("reference", 0, 1)
        reference = reference_of(best, coll.images, train_rows, val_rows, tc.batch_size)
        progress("reference", 1, 1)
        registry.publish_autoencoder(ws, name, run_dir / "published.keras", cfg, coll, state["history"],
                                     metrics, reference, readout_label(best))
        state["finished"] = True
        write_json(run_dir / "state.json", state)
        return metrics
