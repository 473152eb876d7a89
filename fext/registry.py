"""Finished models: one typed record each, and the one place `config.json` is read or written.

A model lives in ``models/<name>/``: a ``model-<fingerprint>.keras`` file, ``config.json`` (the
record below, which names that file), ``history.csv``, ``metrics.json`` and ``manifest.csv``.
Writing config.json is the single commit point of a training run: the model file has a fresh
name per run, so until config.json is replaced the previous model (file and settings) stays
whole and consistent. The classifier publishes the same way into its own folder.

Reading a record never imports Keras: the commands that only read artefacts start fast.
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig
from .errors import ModelNotFoundError
from .workspace import NAME_RE, Workspace, atomic_path, read_json, write_json

RECORD = "config.json"


@dataclass(frozen=True)
class ModelRecord:
    """A finished autoencoder: its settings, its file, and when and on what it was trained.

    `extras` is where later stages store what belongs to the model rather than to one
    extraction (reference statistics, a whitening transform); it is saved and read back as is.
    """

    name: str
    dir: Path
    config: RunConfig
    fingerprint: str
    model_file: str
    collection: str = ""
    trained_at: str = ""
    backend: str = ""
    extras: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.dir / self.model_file

    @property
    def images(self) -> str:
        return self.config.data.images

    def to_dict(self) -> dict:
        """The content of config.json (settings at the top level, as every earlier version)."""
        return {**self.config.to_dict(), "fingerprint": self.fingerprint,
                "model_file": self.model_file, "collection": self.collection,
                "trained_at": self.trained_at, "backend": self.backend, "extras": self.extras}

    @classmethod
    def from_dict(cls, name: str, folder: Path, d: dict) -> ModelRecord:
        return cls(name, folder, RunConfig.from_dict(d), d["fingerprint"], d["model_file"],
                   d.get("collection", ""), d.get("trained_at", ""), d.get("backend", ""),
                   d.get("extras", {}))


def find(ws: Workspace, name: str) -> ModelRecord | None:
    """The record of model `name`, or None while it has no finished model."""
    folder = ws.model_dir(name)
    d = read_json(folder / RECORD)
    if not d or not (folder / d.get("model_file", "-")).is_file():
        return None
    return ModelRecord.from_dict(name, folder, d)


def open_record(ws: Workspace, name: str) -> ModelRecord:
    """The record of model `name`; a clear error saying how to train it when there is none."""
    record = find(ws, name)
    if record is None:
        there = names(ws)
        raise ModelNotFoundError(
            f"no trained model named {name!r} in {ws.root}; "
            + (f"the models there: {', '.join(there)}; or " if there else "")
            + f"train one with: python -m fext train --images DIR --name {name}")
    return record


def list_records(ws: Workspace) -> list[ModelRecord]:
    """Every finished model of the workspace, newest first."""
    base = ws.root / "models"
    if not base.is_dir():
        return []
    found = [find(ws, p.name) for p in base.iterdir()  # files beside the folders are not models
             if p.is_dir() and NAME_RE.match(p.name)]
    return sorted((r for r in found if r), key=lambda r: r.trained_at, reverse=True)


def names(ws: Workspace) -> list[str]:
    """Names of the finished models, newest first."""
    return [r.name for r in list_records(ws)]


def load(ws: Workspace, name: str):
    """(Keras model, record) of model `name`."""
    from .model import load as load_keras

    record = open_record(ws, name)
    return load_keras(record.path), record


def update_extras(record: ModelRecord, **extras) -> ModelRecord:
    """Store more with a finished model (atomically; the model file is untouched)."""
    new = dataclasses.replace(record, extras={**record.extras, **extras})
    write_json(record.dir / RECORD, new.to_dict())
    return new


def write_history(path: Path, rows: list[dict]) -> None:
    """An epoch history as CSV (columns: every key seen, in order of first appearance)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)) or ["epoch"])
        w.writeheader()
        w.writerows(rows)


def publish(folder: Path, prefix: str, save: Callable[[Path], None], record_file: str,
            record: dict, histories: dict[str, list[dict]], extra_files=()) -> dict:
    """Put a finished model in place: file, curves, extra files, then the record (the commit point).

    `save(path)` writes the model file (under a fresh name, so the previous one stays valid
    until the record is replaced); `histories` maps a CSV name to its rows; `extra_files` are
    (name, writer) pairs written atomically before the record. Older model files go last.
    Returns the record as written, with `model_file`, `trained_at` and `backend` filled in.
    """
    import keras

    folder.mkdir(parents=True, exist_ok=True)
    model_file = f"{prefix}-{uuid.uuid4().hex[:16]}.keras"
    with atomic_path(folder / model_file, ".keras") as tmp:
        save(tmp)
    for csv_name, rows in histories.items():
        write_history(folder / csv_name, rows)
    for file_name, writer in extra_files:
        with atomic_path(folder / file_name) as tmp:
            writer(tmp)
    record = {**record, "model_file": model_file, "trained_at": time.strftime("%Y-%m-%d %H:%M:%S"),
              "backend": keras.backend.backend()}
    write_json(folder / record_file, record)
    for old in folder.glob(f"{prefix}-*.keras"):
        if old.name != model_file:
            old.unlink(missing_ok=True)
    return record


def reference_entry(index, stats, file: str) -> dict:
    """What a model's record keeps of its reference (`fext.anomaly.reference_of`): the
    statistics, the name of the index file beside the model, and how to search that index."""
    return {**stats.to_dict(), "file": file, "kind": index.kind, "nprobe": index.nprobe,
            "recall": index.recall}


def publish_autoencoder(ws: Workspace, name: str, best_file: Path, cfg: RunConfig, coll,
                        history: list[dict], metrics: dict, reference=None,
                        readout: dict | None = None, maps=None) -> ModelRecord:
    """Publish a finished training run of model `name` (its best checkpoint).

    `reference` (index, stats) is the training collection new images are scored against; its
    index file is named after the model's fingerprint, so it always matches its model.
    `readout` says what the model's features are (whitened or the raw bottleneck). `maps`
    (fext.maps.MapStats) is what its anomaly maps measure against, kept the same way.
    """
    folder = ws.model_dir(name)
    fingerprint = uuid.uuid4().hex[:16]
    manifest = lambda tmp: coll.items()[["path", "label", "sha1", "split"]].to_csv(tmp, index=False)
    files = [("manifest.csv", manifest), ("metrics.json", lambda tmp: write_json(tmp, metrics))]
    extras = {"readout": readout} if readout else {}
    if reference is not None:
        index, stats = reference
        ref_file = f"reference-{fingerprint}.faiss"
        files.append((ref_file, lambda tmp: index.save(tmp)))
        extras["reference"] = reference_entry(index, stats, ref_file)
    if maps is not None:
        from .maps import stats_file

        files.append((stats_file(fingerprint), lambda tmp: maps.save(tmp)))
        extras["maps"] = {**maps.summary(), "file": stats_file(fingerprint)}
    d = publish(folder, "model", lambda tmp: shutil.copyfile(best_file, tmp), RECORD,
                {**cfg.to_dict(), "fingerprint": fingerprint, "collection": coll.fingerprint,
                 "extras": extras}, {"history.csv": history}, files)
    for pattern, kept in (("reference-*.faiss", "reference"), ("maps-*.npz", "maps")):
        for old in folder.glob(pattern):
            if old.name != extras.get(kept, {}).get("file"):
                old.unlink(missing_ok=True)
    return ModelRecord.from_dict(name, folder, d)
