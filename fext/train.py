"""Train an autoencoder on a folder: seeded, checkpointed every epoch, resumable, early-stopped.

The run works in ``models/<name>/run/``; the finished model replaces ``models/<name>/model.keras``
only at the very end (atomically), so a failed or killed run never damages the previous model.
Early stopping and the best checkpoint look at the validation split only; the test split is
evaluated once, after the model is chosen.
"""

from __future__ import annotations

import csv
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
from .feed import ImageBatches
from .progress import ProgressFn, report
from .workspace import Workspace, atomic_path, read_json, write_json


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()


class RunState(keras.callbacks.Callback):
    """Per epoch: history row, best checkpoint (on validation loss), last checkpoint, early stop.

    All of it is written before the next epoch starts, so a killed run resumes from the last
    completed epoch with the same best score and patience counter.
    """

    def __init__(self, run_dir: Path, monitor: str, patience: int, epochs: int,
                 progress: ProgressFn, state: dict):
        super().__init__()
        self.run_dir, self.monitor, self.patience, self.epochs = run_dir, monitor, patience, epochs
        self.progress, self.state = progress, state
        self.t0 = time.time()

    def on_train_batch_end(self, batch, logs=None):
        per_epoch = self.state.get("steps_per_epoch") or 1
        done = self.state["epoch"] * per_epoch + batch + 1
        self.progress("train", done, self.epochs * per_epoch, epoch=self.state["epoch"] + 1,
                      loss=float((logs or {}).get("loss", float("nan"))))

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        row = {"epoch": epoch + 1, **logs, "seconds": round(time.time() - self.t0, 2)}
        self.t0 = time.time()
        value = logs.get(self.monitor, np.inf)
        improved = value < self.state["best"]
        if improved:
            self.state.update(best=value, best_epoch=epoch + 1, wait=0)
            with atomic_path(self.run_dir / "best.keras", ".keras") as tmp:
                self.model.save(tmp)
        else:
            self.state["wait"] += 1
        with atomic_path(self.run_dir / "last.keras", ".keras") as tmp:
            self.model.save(tmp)
        history = self.state.setdefault("history", [])
        history.append(row)
        self.state["epoch"] = epoch + 1
        stop = self.state["wait"] >= self.patience
        self.state["stopped_early"] = stop and epoch + 1 < self.epochs
        write_json(self.run_dir / "state.json", self.state)
        per_epoch = self.state.get("steps_per_epoch") or 1
        self.progress("train", (epoch + 1) * per_epoch, self.epochs * per_epoch,
                      epoch=epoch + 1, epoch_logs=row, best_epoch=self.state["best_epoch"])
        if stop:
            self.model.stop_training = True


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
            keras.utils.set_random_seed(cfg.train.seed + state["epoch"])
        else:
            ae = model_lib.compile_autoencoder(
                model_lib.build_autoencoder(cfg.model, cfg.data.image_size), cfg.train.learning_rate)

        images = coll.images
        bs = cfg.train.batch_size
        train_data = ImageBatches(images, train_rows, bs, shuffle=True, seed=cfg.train.seed,
                                  epoch=state["epoch"])
        val_data = ImageBatches(images, val_rows, bs) if len(val_rows) else None
        state["steps_per_epoch"] = len(train_data)
        monitor = "val_loss" if val_data is not None else "loss"
        callback = RunState(run_dir, monitor, cfg.train.patience, cfg.train.epochs, progress, state)
        if state["epoch"] < cfg.train.epochs and state["wait"] < cfg.train.patience:
            ae.fit(train_data, validation_data=val_data, epochs=cfg.train.epochs,
                   initial_epoch=state["epoch"], callbacks=[callback], verbose=0)

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
