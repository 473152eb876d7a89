"""Encode a collection with a trained model: features, FAISS index and anomaly scores.

Everything is written into a fresh version folder under ``index/<name>/`` and published in one
atomic step, so searches keep using the previous index until the new one is complete. Vectors
stream to a memory-mapped ``features.npy``: memory does not grow with the collection. Images
whose content was already encoded by the same model are reused, not recomputed, so adding
files to a folder costs only the new files. The encoding itself is fext.encoding's (the one
step training and queries run too); the published folder is read with fext.artifacts.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import anomaly, duplicates, projection
from .artifacts import AGREE_FILE, HASH_FILE, NEIGHBOUR_FILES, SCORE_FILES, VARIANCE_FILE, Artifacts
from .collection import Collection
from .config import ExtractConfig
from .encoding import (
    EncodeJob,
    Encoder,
    batch_for,
    encode_all,
    encode_batch,
    extraction_parts,
    local_encoder,
    query_encoder,
    resolve_precision,
)
from .errors import NotFoundError, StaleError, UsageError
from .images import to_model_input
from .index import VectorIndex, nearest_others
from .progress import ProgressFn, report
from .registry import ModelRecord, open_record, reference_entry, update_extras
from .workspace import Workspace, atomic_path, read_json, write_json

ITEM_COLUMNS = ["id", "path", "label", "split", "sha1", "row", "width", "height", "mtime_ns"]


def _previous(ws: Workspace, name: str, fingerprint: str, reconstruct: bool,
              precision: str, images: Path) -> tuple[dict[str, tuple[np.ndarray, float]], Path | None]:
    """What a new extraction of folder `images` keeps from the one before it by the same model:
    sha1 -> (feature, reconstruction error) when it ran at the same precision (and has
    reconstruction errors, if wanted), and its folder (whose map the new one carries on)."""
    try:
        prev = Artifacts.open(ws, name, check=False, images=images)
    except FileNotFoundError:
        return {}, None
    if prev.meta.get("model") != fingerprint:
        return {}, None
    has_recon = ("reconstruction" in prev.score_kinds
                 and prev.meta.get("reconstruction") == anomaly.RECONSTRUCTION)
    if (reconstruct and not has_recon) or prev.meta.get("precision", "float32") != precision:
        return {}, prev.dir
    feats = prev.features()
    recon = prev.reconstruction_errors() if has_recon else np.zeros(len(feats), np.float32)
    return {s: (feats[i], recon[i]) for i, s in enumerate(prev.items["sha1"])}, prev.dir


def extract(ws: Workspace, name: str, images: str | Path | None = None,
            progress: ProgressFn | None = None, batch_size: int | None = None,
            index_kind: str = "auto", encoder: Encoder | None = None,
            store_url: str | None = None, scores: str = "all", precision: str = "auto",
            reference: str = "auto") -> dict:
    """Features, index and anomaly scores of `images` (default: the training folder).

    Each folder's extraction is kept (the most recent one is what pages and commands show by
    default). `reference`: "auto" scores a folder other than the training folder against the
    model's training collection (the `reference` score, the default ranking there) as well as
    within itself; "model" does so for any folder; "none" only within the folder.

    `encoder` runs the encoding step (default: in this process; fext.scaleout.RayEncoder on a
    Ray cluster). `store_url` also serves the vectors from a Qdrant store (fext.stores).
    `scores="isolation"` skips the decoder pass (reconstruction errors): about three times
    faster on a CPU, with isolation as the only anomaly score. `precision` of the forward
    passes: "auto" (see `fext.encoding.resolve_precision`), "float32" or "bfloat16"; recorded,
    so queries are encoded the same way. The settings are ExtractConfig's, checked by it.
    """
    ExtractConfig(index=index_kind, scores=scores, precision=precision,
                  reference=reference).validate()
    reconstruct = scores == "all"
    precision = resolve_precision(precision)
    progress = report(progress)
    with ws.lock(name):
        record = open_record(ws, name)
        coll = Collection.for_data(ws, record.config.data, images, progress)
        items = coll.items()
        if len(items) == 0:
            raise UsageError(f"no readable images in {coll.root} ({len(coll.skipped())} skipped)")
        items = items.assign(id=np.arange(len(items)))[ITEM_COLUMNS]
        reuse, previous = _previous(ws, name, record.fingerprint, reconstruct, precision,
                                    coll.root)
        other_folder = str(coll.root) != str(Path(record.images).resolve())
        use_reference = reference == "model" or (reference == "auto" and other_folder)
        if use_reference and reconstruct:
            record = _current_reference(ws, record, progress)
        version = ws.new_index_version(name)
        try:
            job = EncodeJob(record.path, coll.store / "images.u8",
                            coll.image_size, np.empty(0, np.int64),
                            batch_size or batch_for(coll.image_size), reconstruct, precision)
            meta = _encode(name, record, coll, items, reuse, version, progress, index_kind, job,
                           encoder or local_encoder, use_reference, previous)
            if store_url:
                from .stores import publish_to_store

                meta["store"] = publish_to_store(store_url, name, version)
                write_json(version / "meta.json", meta)
        except BaseException:
            shutil.rmtree(version, ignore_errors=True)
            raise
        ws.publish_index(name, version, replaces=lambda old: read_json(
            old / "meta.json", {}).get("images") == meta["images"])
        return meta


def _encode(name, record: ModelRecord, coll, items, reuse, version, progress, index_kind,
            job: EncodeJob, encoder: Encoder, use_reference: bool, previous: Path | None) -> dict:
    n, latent = len(items), record.config.model.latent_dim
    feats = np.lib.format.open_memmap(version / ".features.npy", "w+", np.float32, (n, latent))
    recon = np.zeros(n, np.float32)
    known = np.array([s in reuse for s in items["sha1"]], bool)
    for i in np.flatnonzero(known):
        feats[i], recon[i] = reuse[items["sha1"].iat[i]]
    todo = np.flatnonzero(~known)
    if len(todo):
        job.rows = items["row"].to_numpy()[todo]
        progress("encode", 0, len(todo), reused=int(known.sum()))
        done = np.zeros(len(todo), bool)
        for pos, z, err in encoder(job):
            feats[todo[pos]] = z
            if job.reconstruct:
                recon[todo[pos]] = err
            done[pos] = True
            progress("encode", int(done.sum()), len(todo), reused=int(known.sum()))
        if not done.all():
            raise RuntimeError(f"the encoder returned {int(done.sum())} of {len(todo)} images")
    feats.flush()
    del feats
    (version / ".features.npy").rename(version / "features.npy")
    feats = np.load(version / "features.npy", mmap_mode="r")
    if job.reconstruct:
        with atomic_path(version / "recon.npy", ".npy") as tmp:
            np.save(tmp, recon)
    with atomic_path(version / "items.csv") as tmp:
        items.to_csv(tmp, index=False)
    progress("index", 0, 1)
    index = VectorIndex.build(feats, items["id"].to_numpy(), kind=index_kind)
    index.save(version / "faiss.index")
    progress("index", 1, 1, kind=index.kind)
    nearest, similarity = nearest_others(index, feats, duplicates.K, progress)
    for file, values in ((NEIGHBOUR_FILES[0], nearest), (NEIGHBOUR_FILES[1], similarity)):
        with atomic_path(version / file, ".npy") as tmp:
            np.save(tmp, values)
    projection.carry(previous, version, items, nearest, similarity)
    progress("duplicate threshold", 0, 1)
    hashes = duplicates.hashes_of(coll.images, items["row"].to_numpy())
    with atomic_path(version / HASH_FILE, ".npy") as tmp:
        np.save(tmp, hashes)
    from .model import load  # Keras only here, where the model runs

    encoder = query_encoder(load(record.path), job.precision)
    batch = duplicates.CALIBRATION_BATCH
    calibration = duplicates.calibrate(
        lambda x: encode_batch(encoder, to_model_input(x), pad_to=batch)[0], coll, items, feats,
        nearest, similarity, hashes, coll.fit, progress=progress)
    if calibration.pixels:
        agree = duplicates.pixel_edges(nearest, similarity, items, coll.images, hashes,
                                       calibration, coll.fit, progress, coll.root)
        with atomic_path(version / AGREE_FILE, ".npy") as tmp:
            np.save(tmp, agree)
    progress("duplicate threshold", 1, 1)
    progress("anomaly scores", 0, 1)
    written = {"isolation": anomaly.folder_isolation(feats)}
    looks = version / ".appearance-statistics.npy"  # read back a slice at a time, then dropped
    statistics = np.lib.format.open_memmap(looks, "w+", np.float32, (n, anomaly.APPEARANCE_SIZE))
    variance = anomaly.pixel_statistics(coll.images, items["row"].to_numpy(), out=statistics)
    written["appearance"] = anomaly.folder_appearance(statistics)
    del statistics
    looks.unlink()
    if job.reconstruct:
        with atomic_path(version / VARIANCE_FILE, ".npy") as tmp:
            np.save(tmp, variance)
        written["combined"] = anomaly.combined(
            written["isolation"], anomaly.folder_reconstruction(recon, variance),
            written["appearance"])
    ref = record.extras.get("reference") if use_reference else None
    if ref and not anomaly.ReferenceStats.from_dict(ref).current:
        ref = None  # its errors were measured otherwise, and its training images are gone
    if ref and job.reconstruct:
        written["reference"] = _reference_scores(record, ref, feats, recon)
    for kind, values in written.items():
        with atomic_path(version / SCORE_FILES[kind], ".npy") as tmp:
            np.save(tmp, values)
    progress("anomaly scores", 1, 1)
    kinds = [k for k in anomaly.REFERENCE_SCORES if (version / SCORE_FILES[k]).is_file()]
    meta = {"name": name, "model": record.fingerprint, "collection": coll.fingerprint,
            "images": str(coll.root), "image_size": coll.image_size, "fit": coll.fit,
            "count": n, "dim": latent, "encoded": int(len(todo)), "reused": int(known.sum()),
            "skipped": int(len(coll.skipped())),
            "index": {"kind": index.kind, "nprobe": index.nprobe, "recall": index.recall},
            "scores": kinds, "reference": _reference_label(record, ref if "reference" in written
                                                           else None, use_reference, job),
            "precision": job.precision, "reconstruction": anomaly.RECONSTRUCTION,
            "folder_reconstruction": anomaly.FOLDER_RECONSTRUCTION,
            "readout": record.extras.get("readout", {}).get("kind", "raw"),
            "duplicates": {**calibration.to_dict(), "k": duplicates.K},
            "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(version / "meta.json", meta)
    return meta


def project(ws: Workspace, name: str, n_neighbors: int = 15, min_dist: float = 0.1,
            seed: int | None = 42, progress: ProgressFn | None = None,
            images: str | Path | None = None, fresh: bool = False) -> np.ndarray:
    """The map (fext.projection) of model `name`'s most recent extraction (or that of folder
    `images`): the cached one, or computed if missing, made with other settings, or `fresh`
    is asked for (which also lays out the images placed by neighbours since the last layout)."""
    progress = report(progress)
    art = Artifacts.open(ws, name, images=images)
    params = {"n_neighbors": n_neighbors, "min_dist": min_dist, "seed": seed}
    cached = projection.load_cached(art)
    stored = read_json(art.dir / projection.PARAMS, {})
    if cached is not None and not fresh and {k: stored.get(k) for k in params} == params:
        return cached
    with ws.lock(name):
        progress("umap", 0, 1)
        try:
            nearest, similarity = art.neighbours()
        except StaleError:  # made before the neighbours were kept: every image laid out
            nearest = similarity = None
        coords, sample = projection.layout(art.features(), nearest, similarity, n_neighbors,
                                           min_dist, seed)
        projection.write(art.dir, coords, None,
                         {**params, "count": int(len(coords)), "sample": sample})
        progress("umap", 1, 1)
    return coords


def _current_reference(ws: Workspace, record: ModelRecord, progress) -> ModelRecord:
    """`record`, its reference statistics measured again where they read reconstruction
    errors measured as before `anomaly.RECONSTRUCTION` (a model trained earlier): on its
    training collection, with the model's extraction passes, as training measures them, and
    kept with it (the next extraction reads them). Where that collection is no longer scanned
    here, `record` as it is, and its reference scores nothing."""
    ref = record.extras.get("reference")
    if not ref or anomaly.ReferenceStats.from_dict(ref).current:
        return record
    from .model import load  # Keras only here, where the model runs

    data = record.config.data
    try:
        coll = Collection.open(ws, data.images, data.image_size, data.fit)
    except FileNotFoundError:
        return record
    progress("reference", 0, 1)
    parts = extraction_parts(load(record.path))
    train, val = (encode_all(parts, coll.images, coll.items(s)["row"].to_numpy(),
                             record.config.train.batch_size) for s in ("train", "val"))
    fitted = anomaly.reference_of(train, val)
    progress("reference", 1, 1)
    if fitted is None:
        return record
    index, stats = fitted
    with atomic_path(record.dir / ref["file"], ".faiss") as tmp:
        index.save(tmp)
    return update_extras(record, reference=reference_entry(index, stats, ref["file"]))


def _reference_scores(record: ModelRecord, ref: dict, feats: np.ndarray,
                      recon: np.ndarray) -> np.ndarray:
    """Scores against the model's training collection (anomaly.reference_score)."""
    index = VectorIndex.load(record.dir / ref["file"], ref["kind"], ref.get("nprobe", 0),
                             ref.get("recall", 1.0))
    stats = anomaly.ReferenceStats.from_dict(ref)
    return anomaly.reference_score(anomaly.distance_to_index(index, feats), recon, stats)


def _reference_label(record: ModelRecord, ref: dict | None, wanted: bool, job) -> dict:
    """What the extraction's anomaly scores were measured against, said in every output."""
    if ref is not None:
        return {"kind": "model", "text": f"unlike the training collection of {record.name!r} "
                f"({ref['count']} images, {record.images})", "threshold": ref["threshold"],
                "false_alarm_rate": anomaly.FALSE_ALARMS, "calibration": ref["calibration"]}
    if not wanted:
        why = ""
    elif not job.reconstruct:
        why = " (--scores isolation skips the reconstruction the reference score needs)"
    elif record.extras.get("reference"):
        why = (" (the model's reference statistics read reconstruction errors measured as "
               "before, and its training images are no longer scanned here; retrain it, or "
               "rescan its folder, to score new images against it)")
    else:
        why = (" (the model has no reference statistics: it was trained before they existed, "
               "or on too few images; retrain it to score new images against it)")
    return {"kind": "folder", "text": f"odd ones out of this folder{why}",
            "share": anomaly.FOLDER_SHARE}


def write_csv(art: Artifacts, out) -> int:
    """Write `path,label,f0,...,f{d-1}` to a text stream, one row per image, in chunks."""
    feats = art.features()
    cols = ["path", "label"] + [f"f{i}" for i in range(feats.shape[1])]
    out.write(",".join(cols) + "\n")
    for start in range(0, len(art.items), 10_000):
        part = art.items.iloc[start:start + 10_000]
        block = pd.DataFrame(np.asarray(feats[start:start + len(part)]), columns=cols[2:])
        block.insert(0, "label", part["label"].to_numpy())
        block.insert(0, "path", part["path"].to_numpy())
        block.to_csv(out, header=False, index=False, float_format="%.7g")
    return len(art.items)


def export_csv(ws: Workspace, name: str, dest: str | Path, images: str | Path | None = None) -> int:
    """The features CSV of model `name` (its most recent extraction, or that of folder `images`)
    written atomically to `dest`; returns the row count."""
    art = Artifacts.open(ws, name, images=images)
    if not Path(dest).expanduser().parent.is_dir():
        raise NotFoundError(f"folder for the CSV not found: {Path(dest).parent}")
    with atomic_path(Path(dest).expanduser()) as tmp, open(tmp, "w", newline="") as f:
        return write_csv(art, f)
