"""Train an autoencoder on a folder: seeded, checkpointed every epoch, resumable, early-stopped.

The run works in ``models/<name>/run/``; the finished model replaces ``models/<name>/model.keras``
only at the very end (atomically), so a failed or killed run never damages the previous model.
Early stopping and the best checkpoint look at the validation split only; the test split is
evaluated once, after the model is chosen.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import shutil
import time
import uuid
from pathlib import Path

import keras
import numpy as np

from . import model as model_lib
from .collection import Collection
from .config import RunConfig
from .evaluate import reconstruction_metrics
from .feed import epoch_order, iter_batches, prefetch
from .progress import ProgressFn, report
from .workspace import Workspace, atomic_path, read_json, write_json


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()


def mean_loss(model, images: np.ndarray, rows: np.ndarray, batch_size: int) -> float:
    """Reconstruction loss over `rows` in inference mode (batch-size weighted mean)."""
    total = 0.0
    for _, x in iter_batches(images, rows, batch_size):
        total += float(model.test_on_batch(x, x, return_dict=True)["loss"]) * len(x)
    return total / len(rows)


def corrupt(x: np.ndarray, tcfg, epoch: int, step: int) -> np.ndarray:
    """Denoising input: Gaussian noise of std `tcfg.noise`, seeded by (seed, epoch, step)."""
    noise = getattr(tcfg, "noise", 0.0)
    if not noise:
        return x
    rng = np.random.default_rng([tcfg.seed, epoch, step, 1])
    return np.clip(x + rng.normal(0, noise, x.shape).astype(np.float32), 0.0, 1.0)


def run_epochs(model, images: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray,
               tcfg, start_epoch: int, on_epoch, progress: ProgressFn) -> None:
    """The training loop: epochs from `start_epoch` until `on_epoch(history_row)` says stop.

    Explicit `train_on_batch` over an order that is a pure function of (seed, epoch): no epoch
    counters or shuffling state, so a resumed run sees exactly the batches it would have seen.
    The next batch (and its noise) is prepared in a background thread, in that same order,
    while the model trains on the current one.
    """
    bs, epochs = tcfg.batch_size, tcfg.epochs
    steps = math.ceil(len(train_rows) / bs)
    for epoch in range(start_epoch, epochs):
        t0, seen, total = time.time(), 0, 0.0
        order = epoch_order(train_rows, tcfg.seed, epoch)
        batches = ((step, x, corrupt(x, tcfg, epoch, step))
                   for step, (_, x) in enumerate(iter_batches(images, order, bs)))
        for step, x, x_in in prefetch(batches):
            total += float(model.train_on_batch(x_in, x, return_dict=True)["loss"]) * len(x)
            seen += len(x)
            progress("train", epoch * steps + step + 1, epochs * steps, epoch=epoch + 1,
                     loss=total / seen)
        row = {"epoch": epoch + 1, "loss": total / seen}
        if len(val_rows):
            row["val_loss"] = mean_loss(model, images, val_rows, bs)
        row["seconds"] = round(time.time() - t0, 2)
        stop = on_epoch(row)
        progress("train", (epoch + 1) * steps, epochs * steps, epoch=epoch + 1, epoch_logs=row)
        if stop:
            break


def fit_in_memory(cfg: RunConfig, images: np.ndarray, train_rows: np.ndarray,
                  val_rows: np.ndarray, progress: ProgressFn | None = None, min_steps: int = 0):
    """Train a fresh autoencoder without checkpoints (for evaluations); returns the best model.

    `min_steps` raises the epoch count for small subsets (one label of a collection), which
    would otherwise get only a handful of optimiser steps.
    """
    steps = math.ceil(len(train_rows) / cfg.train.batch_size)
    epochs = max(cfg.train.epochs, math.ceil(min_steps / steps))
    # with a minimum step count, patience would cut it short on a tiny, noisy validation set
    patience = epochs if min_steps else cfg.train.patience
    cfg = RunConfig(cfg.data, cfg.model,
                    dataclasses.replace(cfg.train, epochs=epochs, patience=patience))
    set_seed(cfg.train.seed)
    ae = model_lib.compile_autoencoder(model_lib.build_autoencoder(cfg.model, cfg.data.image_size),
                                       cfg.train.learning_rate)
    monitor = "val_loss" if len(val_rows) else "loss"
    best = {"value": float("inf"), "weights": None, "wait": 0}

    def on_epoch(row: dict) -> bool:
        if row[monitor] < best["value"]:
            best.update(value=row[monitor], weights=ae.get_weights(), wait=0)
        else:
            best["wait"] += 1
        return best["wait"] >= cfg.train.patience

    run_epochs(ae, images, train_rows, val_rows, cfg.train, 0, on_epoch, report(progress))
    ae.set_weights(best["weights"])
    return ae


def end_epoch(model, run_dir: Path, state: dict, row: dict, monitor: str, patience: int) -> None:
    """Record an epoch: history, best checkpoint (on the monitored loss), last checkpoint, patience.

    Everything is on disk before the next epoch starts, so a killed run resumes from the last
    completed epoch with the same best score and patience counter.
    """
    if row[monitor] < state["best"]:
        state.update(best=row[monitor], best_epoch=row["epoch"], wait=0)
        with atomic_path(run_dir / "best.keras", ".keras") as tmp:
            model.save(tmp)
    else:
        state["wait"] += 1
    with atomic_path(run_dir / "last.keras", ".keras") as tmp:
        model.save(tmp)
    state["history"].append(row)
    state["epoch"] = row["epoch"]
    write_json(run_dir / "state.json", state)


def train(ws: Workspace, name: str, cfg: RunConfig, progress: ProgressFn | None = None,
          fresh: bool = False) -> dict:
    """Train model `name` on cfg.data.images; returns its metrics. Resumes an unfinished run."""
    cfg.validate()
    progress = report(progress)
    with ws.lock(name):
        coll = Collection.sync(ws, cfg.data.images, cfg.data.image_size, cfg.data.fit,
                               cfg.data.val_fraction, cfg.data.test_fraction, progress)
        cfg.data.images = str(coll.root)
        train_rows = coll.items("train")["row"].to_numpy()
        val_rows = coll.items("val")["row"].to_numpy()
        if len(train_rows) == 0:
            raise ValueError(f"no readable images in the training split of {coll.root} "
                             f"({len(coll.skipped())} files skipped)")
        model_dir = ws.model_dir(name)
        run_dir = model_dir / "run"
        run_key = {"config": cfg.to_dict(), "collection": coll.fingerprint}
        state = read_json(run_dir / "state.json") if not fresh else None
        resumable = (state and state.get("key") == run_key and not state.get("finished")
                     and (run_dir / "last.keras").is_file())
        if not resumable:
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            state = {"key": run_key, "epoch": 0, "best": float("inf"), "best_epoch": 0, "wait": 0,
                     "history": []}
        set_seed(cfg.train.seed)
        if resumable:
            ae = model_lib.load(run_dir / "last.keras")
        else:
            ae = model_lib.compile_autoencoder(
                model_lib.build_autoencoder(cfg.model, cfg.data.image_size), cfg.train.learning_rate)

        monitor = "val_loss" if len(val_rows) else "loss"

        def on_epoch(row: dict) -> bool:
            end_epoch(ae, run_dir, state, row, monitor, cfg.train.patience)
            return state["wait"] >= cfg.train.patience

        if state["wait"] < cfg.train.patience:
            run_epochs(ae, coll.images, train_rows, val_rows, cfg.train, state["epoch"], on_epoch,
                       progress)
        state["stopped_early"] = state["epoch"] < cfg.train.epochs

        best = model_lib.load(run_dir / "best.keras")
        progress("evaluate", 0, 1)
        metrics = {
            "splits": reconstruction_metrics(best, coll, cfg.train.batch_size),
            "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
            "stopped_early": bool(state.get("stopped_early")), "monitor": monitor,
            "images": {s: int(len(coll.items(s))) for s in ("train", "val", "test")},
            "skipped": int(len(coll.skipped())),
        }
        progress("evaluate", 1, 1)
        publish(model_dir, run_dir, cfg, coll, state["history"], metrics)
        state["finished"] = True
        write_json(run_dir / "state.json", state)
        return metrics


def publish(model_dir: Path, run_dir: Path, cfg: RunConfig, coll: Collection, history: list[dict],
            metrics: dict) -> None:
    """Put the finished model in place; writing config.json is the single commit point.

    The model file has a fresh name per run and config.json names it, so until config.json is
    replaced the previous model (file and settings) stays whole and consistent.
    """
    fingerprint = uuid.uuid4().hex[:16]
    model_file = f"model-{fingerprint}.keras"
    shutil.copyfile(run_dir / "best.keras", model_dir / f".{model_file}.tmp")
    (model_dir / f".{model_file}.tmp").rename(model_dir / model_file)
    with atomic_path(model_dir / "history.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            keys = list(dict.fromkeys(k for row in history for k in row))
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(history)
    with atomic_path(model_dir / "manifest.csv") as tmp:
        coll.items()[["path", "label", "sha1", "split"]].to_csv(tmp, index=False)
    write_json(model_dir / "metrics.json", metrics)
    write_json(model_dir / "config.json", {**cfg.to_dict(), "fingerprint": fingerprint,
                                           "model_file": model_file,
                                           "collection": coll.fingerprint,
                                           "trained_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                                           "backend": keras.backend.backend()})
    for old in model_dir.glob("model-*.keras"):
        if old.name != model_file:
            old.unlink(missing_ok=True)


def model_info(ws: Workspace, name: str) -> dict:
    """The saved settings of a finished model (raises a clear error when there is none)."""
    info = read_json(ws.model_dir(name) / "config.json")
    if not info or not (ws.model_dir(name) / info.get("model_file", "-")).is_file():
        raise FileNotFoundError(f"no trained model named {name!r} in {ws.root}; "
                                f"train one with: python -m fext train --images DIR --name {name}")
    return info


def load_model(ws: Workspace, name: str) -> tuple[keras.Model, dict]:
    info = model_info(ws, name)
    return model_lib.load(ws.model_dir(name) / info["model_file"]), info
