"""Train an autoencoder on a folder: seeded, checkpointed every epoch, resumable, early-stopped.

The autoencoder's job: its training views and held-out figures, checkpoints and exact resume,
then what is published with the model: its read-out (fext.readout), its reconstruction
metrics and the reference its anomaly scores compare against (fext.anomaly). The loop itself
is fext.loop's, shared with the classifier; every encoding is fext.encoding's.

The run works in ``models/<name>/run/``; the finished model replaces ``models/<name>/model.keras``
only at the very end (atomically), so a failed or killed run never damages the previous model.
Early stopping and the best checkpoint look at the validation split only; the test split is
evaluated once, after the model is chosen. A run in bfloat16 (TrainConfig.precision) trains a
mixed-precision model and publishes it in float32, so what reads a model never knows.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import anomaly, maps, registry
from . import model as model_lib
from .collection import Collection
from .config import RunConfig
from .copies import copy_recall, published_hits, validation_test
from .edits import augment, edit_pool, edit_workers
from .encoding import encode_all, encode_images, extraction_parts, query_encoder, resolve_precision
from .errors import UsageError
from .evaluate import reconstruction_metrics
from .feed import iter_batches, neighbour_groups, sample_rows
from .images import to_model_input
from .loop import EarlyStopping, lower_loss, run_epochs, set_seed
from .progress import ProgressFn, report
from .readout import readout_label, readout_of
from .workspace import Workspace, atomic_path, read_json, write_json


def corrupt(x: np.ndarray, tcfg, epoch: int, step: int) -> np.ndarray:
    """Denoising input: Gaussian noise of std `tcfg.noise`, seeded by (seed, epoch, step)."""
    noise = getattr(tcfg, "noise", 0.0)
    if not noise:
        return x
    rng = np.random.default_rng([tcfg.seed, epoch, step, 1])
    return np.clip(x + rng.normal(0, noise, x.shape).astype(np.float32), 0.0, 1.0)


def views(x: np.ndarray, labels: np.ndarray | None, tcfg, epoch: int, step: int,
          fit: str = "pad", pool=None):
    """(inputs, targets) of one step from a batch of clean images `x` and their label indices.

    The model reconstructs the clean image from an edited view of it (fext.edits.augment: the
    re-saves, resizes, small crops and shifts, blur and colour changes users make), so its
    features learn to ignore those edits. With an invariance weight, each image comes as two
    differently edited views (inputs: views 1 then views 2) whose features must find each
    other, and those of its label's other images (`fext.model.invariance_loss`, which reads
    each view's label index, -1 for none, as its target); the reconstruction is made from
    views 1 only, or from both (`tcfg.decoded_views`).
    Seeded by (seed, epoch, step): resume stays exact, whether `pool` (fext.edits.edit_pool)
    edits them in other processes or this one does."""
    pixels = np.rint(x * 255).astype(np.uint8) if tcfg.augment != "none" else None

    def edited(which: int) -> np.ndarray:
        if pixels is None:
            return x
        return to_model_input(augment(pixels, [tcfg.seed, epoch, step, 2, which], fit, pool))

    if not tcfg.invariance:
        return corrupt(edited(0), tcfg, epoch, step), x
    inputs = corrupt(np.concatenate([edited(0), edited(1)]), tcfg, epoch, step)
    labels = np.full(len(x), -1.0, np.float32) if labels is None else labels.astype(np.float32)
    clean = x if tcfg.decoded_views == 1 else np.concatenate([x, x])  # fext.model.build_trainer
    return inputs, [clean, np.concatenate([labels, labels])[:, None]]


# Validation: each epoch, seeded edited views of (a sample of) the validation split, the same
# views every epoch so that epochs compare
VIEW_SAMPLE = 1024  # validation images viewed each epoch, at most: seconds at any folder size
VALIDATION_EPOCH = 1_000_000  # the views' seeds: (seed, this, ...), never a training epoch's
VALIDATION = "held-out copies (fext.copies.copy_test), then the objective on edited views"
MIN_GAIN = 0.01  # held-out copies found (share) an epoch must add to count as progress: 2.6 of
# the 256 validation copies (the default), about what one epoch's noise moves them by. On 500 photos the
# curve gains 0.004-0.008 an epoch after the fourth (docs/BENCHMARKS.md §9); counting those
# as progress kept runs going twice as long for the same published figure.


class RowFeatures:
    """Features of collection rows under the weights being trained, each row encoded once
    between two optimiser steps: the held-out copies' database at an epoch's end and the next
    epoch's look-alike groups read the same weights, and at 2,000 photos they share most of
    their rows (docs/BENCHMARKS.md §9: the grouping's encoder pass was 1.2 s of a 17 s epoch,
    each image encoded a second time). `moment()` names the weights' state (the optimiser's
    step count); without it nothing is reused. It keeps the rows of its latest call only, so
    memory stays at one call's rows (COPY_DATABASE, or LOOK_ALIKE_WINDOW) at any folder size.
    The features of a row do not depend on the batch it is encoded in, so a resumed run, which
    encodes afresh, groups as the run it continues did (tests/test_train.py)."""

    def __init__(self, encoder, images: np.ndarray, batch_size: int, moment=None):
        self.encoder, self.images, self.batch_size, self.moment = (encoder, images, batch_size,
                                                                   moment)
        self._at, self._rows, self._z = None, np.empty(0, np.int64), None

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """The features of `rows` (in their order; repeats allowed)."""
        rows = np.asarray(rows, np.int64)
        unique = np.unique(rows)
        at = self.moment() if self.moment else None
        if at is None or at != self._at:  # the weights moved (or nothing says they did not)
            self._rows = np.empty(0, np.int64)
        known = np.isin(unique, self._rows, assume_unique=True)
        z = np.empty((len(unique), self.encoder.output.shape[-1]), np.float32)
        if known.any():
            z[known] = self._z[np.searchsorted(self._rows, unique[known])]
        if (~known).any():
            z[~known] = encode_all((self.encoder, None), self.images, unique[~known],
                                   self.batch_size, reconstruct=False)[0]
        self._at, self._rows, self._z = at, unique, z
        return z[np.searchsorted(unique, rows)]

    def queries(self, x: np.ndarray) -> np.ndarray:
        """The features of uint8 images that are not collection rows (edited copies)."""
        return encode_images(self.encoder, x, self.batch_size)


def held_out_copies(features: RowFeatures, test) -> float:
    """Recall@1 of the copy test's edited copies of validation images, searched among the
    collection (fext.copies.copy_test: the same figure `fext evaluate` reports on the test
    split): how well the features find a copy, the product's everyday
    job, on images training never saw. It chooses the published checkpoint.

    Why not the validation loss: the features are the product, and the loss does not follow
    them. On 200 photos the held-out reconstruction error bottomed out after 200 of 600 steps
    (and the objective, whose invariance part is easy on a few held-out images, with it),
    while copy recall on test queries rose from 0.94 there to 0.98 (docs/QUALITY.md)."""
    return copy_recall(test, features.images, features(test.db_rows),
                       features.queries(test.copies))


def held_out_objective(trainer, images: np.ndarray, rows: np.ndarray, targets, tcfg,
                       per_step: int, fit: str, pool=None) -> dict:
    """The training objective (reconstruction of the clean image from edited views, plus the
    invariance term) on seeded edited views of validation images: `val_loss`, the figure
    beside the training loss on the curves, and the tie-break between checkpoints."""
    sums, seen = {}, 0
    for step, (start, x) in enumerate(iter_batches(images, rows, per_step)):
        y = None if targets is None else targets[start:start + len(x)]
        x_in, t = views(x, y, tcfg, VALIDATION_EPOCH, step, fit, pool)
        logs = trainer.test_on_batch(x_in, t, return_dict=True)
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(x)
        seen += len(x)
    out = {"val_loss": sums["loss"] / seen}
    if "reconstruction_loss" in sums:
        out["val_reconstruction_loss"] = sums["reconstruction_loss"] / seen
    return out


LOOK_ALIKE_WINDOW = 4096  # rows grouped at once: a 64 MiB similarity matrix at any folder size


def look_alike_batches(features: RowFeatures, group: int):
    """`fext.loop.run_epochs`' `arrange`: each epoch's images in groups of `group` nearest
    neighbours in the features the model has at the epoch's start (fext.feed.neighbour_groups).
    Costs one encoder pass over the epoch's images (a few per cent of its training; less where
    the last validation encoded them: `RowFeatures`), window by window, so memory does not
    grow with the folder."""

    def arrange(rows: np.ndarray, epoch: int) -> np.ndarray:
        perm = []
        for start in range(0, len(rows), LOOK_ALIKE_WINDOW):
            window = rows[start:start + LOOK_ALIKE_WINDOW]
            perm.append(start + neighbour_groups(features(window), window, group))
        return np.concatenate(perm)

    return arrange


# What sub-folders are: classes (digits filed by digit) or albums (photos filed by date or place)
FOLDER_SAMPLE = 2000  # labelled images compared, at most: a second or two at any folder size
FOLDER_SIDE = 16  # pixels a side they are compared at: colour layout, not detail
CLASS_LIFT = 0.25  # classes when nearest images share a sub-folder at least a quarter of the
# way from chance to always: the zoo's digits 0.93, bursts filed by scene 0.47, albums 0.10
# (docs/QUALITY.md: bursts trained as albums made the duplicate calibration trust wrongly)


@dataclass(frozen=True)
class SubFolders:
    """What training makes of a folder's sub-folders (`sub_folders`), and why, in words."""

    classes: bool  # the --labels share pulls the images of one sub-folder together
    text: str
    count: int = 0  # sub-folders holding images (labels)
    same_folder: float | None = None  # sampled images whose nearest image shares the sub-folder
    chance: float | None = None  # the same share were the sub-folders drawn at random


def sub_folders(images: np.ndarray, items, setting: str = "auto") -> SubFolders:
    """Classes or albums (`--folders`). A folder's sub-folders are not always classes: albums
    of photos (dates, places) hold unrelated pictures, and pulling them together costs copy
    finding (the issue's unseen photo crops: copy recall@1 0.855 with the label share against
    0.925 without). Auto: images whose nearest image, by their pixels at FOLDER_SIDE (colour,
    brightness removed), lies in their own sub-folder far more often than chance are classes."""
    labelled = items[items["label"] != ""]
    names = labelled["label"].unique()
    if len(names) < 2:
        return SubFolders(False, "no sub-folders to learn from (fewer than two)", len(names))
    if setting != "auto":
        return SubFolders(setting == "classes", f"sub-folders taken as {setting} "
                                                f"(--folders {setting})", len(names))
    keep = sample_rows(np.arange(len(labelled)), FOLDER_SAMPLE)
    rows, labels = labelled["row"].to_numpy()[keep], labelled["label"].to_numpy()[keep]
    side = (FOLDER_SIDE, FOLDER_SIDE)
    x = np.stack([np.asarray(Image.fromarray(np.asarray(images[r])).resize(
        side, Image.Resampling.BOX), np.float32).ravel() for r in rows])
    x -= x.mean(axis=1, keepdims=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-6
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    same = float(np.mean(labels[sims.argmax(axis=1)] == labels))
    counts = np.unique(labels, return_counts=True)[1].astype(np.float64)
    chance = float((counts * (counts - 1)).sum() / max(len(labels) * (len(labels) - 1), 1))
    classes = (same - chance) >= CLASS_LIFT * (1 - chance)
    seen = (f"{same:.0%} of {len(labels):,} images have their nearest image (by its pixels) in "
            f"their own sub-folder, {chance:.0%} would by chance")
    text = (f"sub-folders taken as classes: {seen}; --folders albums ignores them" if classes
            else f"sub-folders taken as albums, not classes: only {seen}; --folders classes "
                 "pulls each sub-folder's images together")
    return SubFolders(bool(classes), text, len(names), same, chance)


def label_indices(items, classes: bool = True) -> np.ndarray:
    """Each item's label as an index into the folder's labels, -1 for none; all -1 where the
    folder has fewer than two labels (a single label would pull every image together) or its
    sub-folders are not `classes`."""
    names = sorted(x for x in items["label"].unique() if x)
    if len(names) < 2 or not classes:
        return np.full(len(items), -1, np.int64)
    index = {name: i for i, name in enumerate(names)}
    return np.array([index.get(x, -1) for x in items["label"]], np.int64)


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
        precision = resolve_precision(cfg.train.precision)  # "auto" as on this machine
        run_key = {"config": cfg.to_dict(), "collection": coll.fingerprint,
                   "validation": VALIDATION, "precision": precision}
        state = read_json(run_dir / "state.json") if not fresh else None
        resumable = (state and state.get("key") == run_key and not state.get("finished")
                     and "stopping" in state and (run_dir / "last.keras").is_file())
        if not resumable:
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            state = {"key": run_key, "epoch": 0, "history": []}
        set_seed(cfg.train.seed)
        tc = cfg.train
        folders = sub_folders(coll.images, train_items, tc.folders)
        if resumable:
            trainer = model_lib.load(run_dir / "last.keras")
        else:
            ae = model_lib.build_autoencoder(cfg.model, cfg.data.image_size, precision)
            trainer = (model_lib.build_trainer(ae, tc.invariance, tc.learning_rate,
                                               tc.labels if folders.classes else 0.0,
                                               tc.decoded_views)
                       if tc.invariance else model_lib.compile_autoencoder(ae, tc.learning_rate))
        # the autoencoder itself (validated, checkpointed as best, published); with an
        # invariance term the trainer wraps it and holds the optimiser state
        ae = model_lib.autoencoder_of(trainer) if tc.invariance else trainer

        monitor = "val_loss" if len(val_rows) else "loss"
        # the checkpoint that finds copies best
        copies = bool(tc.invariance and len(val_rows) and tc.held_out_copies)
        key = (lambda row: (row["val_copies"], -row[monitor])) if copies else lower_loss(monitor)
        figure = {"val_copies": "held-out copies have", "val_loss": "the validation loss has",
                  "loss": "the training loss has"}["val_copies" if copies else monitor]
        stopper = EarlyStopping(key, cfg.train.patience, state.get("stopping"),
                                why=figure + (f" not gained {MIN_GAIN:.0%} for {{epochs}}"
                                              if copies else " not improved for {epochs}"),
                                min_gain=MIN_GAIN if copies else 0.0)

        def pace() -> None:  # the next epoch's learning rate: lower after each stalled epoch
            trainer.optimizer.learning_rate = tc.learning_rate * tc.lr_drop ** stopper.stalls

        def on_epoch(row: dict) -> bool:
            row["learning_rate"] = float(trainer.optimizer.learning_rate)  # the epoch's
            end_epoch(ae, trainer, run_dir, state, stopper, row)
            pace()
            return stopper.stop

        pace()  # a resumed run goes on at the rate it had reached

        # with two views per image, a step holds batch_size inputs from batch_size/2 images
        per_step = max(1, tc.batch_size // 2) if tc.invariance else tc.batch_size
        val_sample = sample_rows(val_rows, VIEW_SAMPLE)  # each epoch: seconds at any size
        val_targets = (label_indices(coll.items("val"), folders.classes)[
            np.isin(val_rows, val_sample)] if tc.invariance else None)
        if copies:  # made once: the same copies every epoch, and after a resume
            test = validation_test(coll, tc, cfg.data.fit, progress)

        # the encoder shares the weights being trained; rows it encodes between two steps
        # serve both validation's copy database and the next epoch's look-alike groups
        features = RowFeatures(model_lib.encoder_of(ae), coll.images, tc.batch_size,
                               moment=lambda: int(trainer.optimizer.iterations))

        def validate(_) -> dict:
            row = held_out_objective(trainer, coll.images, val_sample, val_targets, tc,
                                     per_step, cfg.data.fit, pool)
            if copies:
                row["val_copies"] = held_out_copies(features, test)
            return row

        group = min(tc.neighbours, per_step) if tc.invariance else 1  # look-alikes per group
        workers = edit_workers(model_lib.accelerator()) if tc.augment != "none" else 0
        with edit_pool(workers) as pool:  # on an accelerator, the views are edited in parallel
            if not stopper.stop:
                run_epochs(trainer, coll.images, train_rows, epochs=tc.epochs, batch_size=per_step,
                           seed=tc.seed, on_epoch=on_epoch, progress=progress,
                           targets=label_indices(train_items, folders.classes),
                           make_batch=lambda x, y, epoch, step: views(
                               x, y, tc, epoch, step, cfg.data.fit, pool),
                           validate=validate if len(val_rows) else None, start_epoch=state["epoch"],
                           epoch_steps=tc.epoch_steps,
                           arrange=(look_alike_batches(features, group)
                                    if group > 1 else None), stopper=stopper)
        state["stopped_early"] = state["epoch"] < cfg.train.epochs

        # published in float32 whatever it trained in: every reader runs it as it always has
        best = model_lib.in_float32(model_lib.load(run_dir / "best.keras"))
        progress("readout", 0, 1)
        best = readout_of(best, coll.images, train_rows, tc.batch_size, tc.readout)
        with atomic_path(run_dir / "published.keras", ".keras") as tmp:
            best.save(tmp)
        progress("readout", 1, 1)
        progress("evaluate", 0, 1)
        parts = extraction_parts(best)  # what extraction runs: measured once, reused
        found = {}
        if copies:  # the published features' figure (read-out included), as search and
            # `evaluate` have them; the chosen epoch's, on the weights as trained, beside it
            hits = published_hits(test, coll.images, parts, query_encoder(best))
            found = {"val_copies": float(hits.mean()) if len(hits) else 0.0,
                     "val_copies_training": next(r["val_copies"] for r in state["history"]
                                                 if r["epoch"] == stopper.best_epoch)}
        metrics = {
            "splits": reconstruction_metrics(parts, coll, cfg.train.batch_size),
            "best_epoch": stopper.best_epoch, "epochs_run": state["epoch"],
            "steps_run": state["epoch"] * (tc.epoch_steps or math.ceil(len(train_rows) / per_step)),
            "stopped_early": bool(state.get("stopped_early")),
            "train_precision": precision,
            "monitor": "val_copies" if copies else monitor,
            **found,
            "images": {s: int(len(coll.items(s))) for s in ("train", "val", "test")},
            "skipped": int(len(coll.skipped())),
            "folders": asdict(folders),
        }
        progress("evaluate", 1, 1)
        progress("reference", 0, 1)
        reference = anomaly.reference_of(encode_all(parts, coll.images, train_rows, tc.batch_size),
                                         encode_all(parts, coll.images, val_rows, tc.batch_size))
        progress("reference", 1, 1)
        progress("map statistics", 0, 1)  # what its anomaly maps measure against (fext.maps)
        map_stats = maps.fit(parts, coll.images, train_rows, val_rows, tc.batch_size)
        progress("map statistics", 1, 1)
        registry.publish_autoencoder(ws, name, run_dir / "published.keras", cfg, coll, state["history"],
                                     metrics, reference, readout_label(best), map_stats)
        state["finished"] = True
        write_json(run_dir / "state.json", state)
        return metrics
