"""Encode a collection with a trained model: features, FAISS index and anomaly scores.

Everything is written into a fresh version folder under ``index/<name>/`` and published in one
atomic step, so searches keep using the previous index until the new one is complete. Vectors
stream to a memory-mapped ``features.npy``: memory does not grow with the collection. Images
whose content was already encoded by the same model are reused, not recomputed, so adding
files to a folder costs only the new files.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import anomaly, duplicates, projection
from .collection import Collection
from .config import PRECISIONS
from .errors import FextError, NotFoundError, UsageError
from .feed import iter_batches, prefetch, sample_rows
from .images import to_model_input
from .index import VectorIndex, l2_normalize, nearest_others
from .progress import ProgressFn, report
from .registry import ModelRecord, open_record
from .workspace import Workspace, atomic_path, read_json, write_json

ITEM_COLUMNS = ["id", "path", "label", "split", "sha1", "row", "width", "height", "mtime_ns"]
SCORE_FILES = {"reference": "reference.npy", "combined": "scores.npy", "isolation": "isolation.npy",
               "reconstruction": "recon.npy"}
SCORE_MODES = ("all", "isolation")  # extract's `scores`: everything, or no decoder pass
NEIGHBOUR_FILES = ("neighbours.npy", "neighbour_sims.npy")  # each image's nearest others
REFERENCES = ("auto", "model", "none")  # extract's `reference`: see `extract`
BATCH_PIXELS = 256 * 64 * 64  # images per forward pass x pixels per image (bench/ingest.py)


def batch_for(image_size: int) -> int:
    """Images per forward pass: large batches amortise per-call overhead (256 at 64 px is
    ~5 % faster than 128 on CPU), fewer for large images so activations stay bounded."""
    return int(min(256, max(8, BATCH_PIXELS // (image_size * image_size))))


class StaleError(FextError, RuntimeError):
    """An artefact was built from another model or collection state than the current one."""


@dataclass
class Artifacts:
    """One published extraction: what it was built from and the arrays it holds."""

    name: str
    dir: Path
    meta: dict
    items: pd.DataFrame

    @classmethod
    def open(cls, ws: Workspace, name: str, check: bool = True,
             images: str | Path | None = None) -> Artifacts:
        """The most recent extraction of model `name`, or the one of folder `images`."""
        art = cls.at(name, cls.locate(ws, name, images))
        if check:
            art.check(ws)
        return art

    @staticmethod
    def locate(ws: Workspace, name: str, images: str | Path | None = None) -> Path:
        """The folder of the most recent extraction of `name`, or of the one of `images`."""
        if images is None:
            version = ws.current_index(name)
        else:
            root = str(Path(images).expanduser().resolve())
            version = next((v for v in ws.index_versions(name)
                            if read_json(v / "meta.json", {}).get("images") == root), None)
        if version is None or not (version / "meta.json").is_file():
            where = "" if images is None else f" --images {images}"
            raise NotFoundError(f"model {name!r} has no features{' of ' + str(images) if images else ''}"
                                f" yet; run: python -m fext extract --name {name}{where}")
        return version

    def check(self, ws: Workspace) -> None:
        """Raise StaleError if the model was retrained after this extraction."""
        if self.meta.get("model") != open_record(ws, self.name).fingerprint:
            raise StaleError(
                f"the index of {self.name!r} was built by an earlier version of the model; "
                f"rebuild it with: python -m fext extract --name {self.name}")

    @classmethod
    def at(cls, name: str, version: Path) -> Artifacts:
        """The extraction in folder `version`, as it is (no staleness check)."""
        items = pd.read_csv(version / "items.csv", dtype={"path": str, "label": str, "sha1": str},
                            keep_default_na=False)
        return cls(name, version, read_json(version / "meta.json"), items)

    @property
    def root(self) -> Path:
        return Path(self.meta["images"])

    def features(self) -> np.ndarray:
        return np.load(self.dir / "features.npy", mmap_mode="r")

    @property
    def precision(self) -> str:
        """Of the forward passes that made these features; queries must be encoded alike."""
        return self.meta.get("precision", "float32")

    @property
    def score_kinds(self) -> tuple[str, ...]:
        """The anomaly scores this extraction has, the default first. Extractions made with
        `scores="isolation"` skipped the decoder pass and have no reconstruction errors."""
        return tuple(self.meta.get("scores", anomaly.SCORES))

    def scores(self, kind: str | None = None) -> np.ndarray:
        """Anomaly scores, one per item: "reference" (against the training collection, where
        the extraction has it), "combined", "isolation" or "reconstruction"."""
        kind = kind or self.score_kinds[0]
        if kind not in anomaly.REFERENCE_SCORES:
            raise UsageError(f"unknown score {kind!r}; use one of "
                             f"{', '.join(anomaly.REFERENCE_SCORES)}")
        if kind == "reference" and kind not in self.score_kinds:
            raise UsageError(f"this extraction of {self.name!r} was not scored against the "
                             f"training collection: {self.reference['text']}")
        if kind not in self.score_kinds:
            raise UsageError(
                f"the features of {self.name!r} were extracted without reconstruction errors "
                f"(--scores isolation), so only {', '.join(self.score_kinds)} can be ranked; "
                f"for the others run: python -m fext extract --name {self.name}")
        return np.load(self.dir / SCORE_FILES[kind])

    @property
    def reference(self) -> dict:
        """What the scores were measured against (meta's "reference"; extractions made before
        it existed ranked the folder against itself)."""
        return self.meta.get("reference") or {"kind": "folder", "text": "odd ones out of this folder",
                                              "share": anomaly.FOLDER_SHARE}

    def threshold(self, kind: str | None = None) -> dict:
        """Where flagging starts for score `kind`: calibrated on the model's validation images
        for the reference score, a stated share of the folder for the others."""
        kind = kind or self.score_kinds[0]
        if kind == "reference":
            return {"value": float(self.reference["threshold"]),
                    "false_alarm_rate": self.reference["false_alarm_rate"],
                    "text": f"expected false-alarm rate on normal images: "
                            f"{self.reference['false_alarm_rate']:.0%} (calibrated on "
                            f"{self.reference['calibration']})"}
        share = anomaly.FOLDER_SHARE
        return {"value": float(np.quantile(self.scores(kind), 1 - share)), "share": share,
                "text": f"the top {share:.0%} of this folder"}

    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, similarities) of each image's nearest other images, memory-mapped; extractions
        made before duplicate detection existed have none."""
        if not (self.dir / NEIGHBOUR_FILES[0]).is_file():
            raise self.stale("before duplicate detection existed")
        return tuple(np.load(self.dir / f, mmap_mode="r") for f in NEIGHBOUR_FILES)

    def stale(self, when: str) -> StaleError:
        """The error for an extraction made `when`, with the command that refreshes it."""
        return StaleError(f"this extraction of {self.name!r} was made {when}; refresh it with: "
                          f"python -m fext extract --name {self.name}"
                          + (f" --images {self.root}" if self.meta.get("images") else ""))

    def index(self) -> VectorIndex:
        """The FAISS index; an IVF-PQ one re-ranks its candidates from the memory-mapped features."""
        ix = self.meta["index"]
        vectors = self.features() if ix["kind"] == "ivfpq" else None
        return VectorIndex.load(self.dir / "faiss.index", ix["kind"], ix.get("nprobe", 0),
                                ix.get("recall", 1.0), vectors)

    def collection(self, ws: Workspace) -> Collection:
        return Collection.open(ws, self.root, self.meta["image_size"], self.meta["fit"])


@dataclass
class EncodeJob:
    """What an encoder needs: everything is a file path or numbers, so it pickles to workers."""

    model_path: Path  # the trained autoencoder (.keras)
    cache_path: Path  # the collection's decoded-image cache (uint8 rows of size x size x 3)
    image_size: int
    rows: np.ndarray  # cache rows to encode, in output order
    batch_size: int = 128
    reconstruct: bool = True  # also run the decoder, for reconstruction anomaly scores
    precision: str = "float32"  # of the forward passes (fext.model.inference_parts)

    def images(self) -> np.ndarray:
        """The cache, memory-mapped read-only."""
        n = self.cache_path.stat().st_size // (self.image_size * self.image_size * 3)
        return np.memmap(self.cache_path, np.uint8, "r",
                         shape=(n, self.image_size, self.image_size, 3))


# An encoder turns a job into (positions into job.rows, L2-normalised features, reconstruction
# errors or None) blocks, in any order and any block size; every position must come exactly once.
Encoder = Callable[[EncodeJob], Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]]


def encode_batch(encoder, x: np.ndarray, decoder=None) -> tuple[np.ndarray, np.ndarray | None]:
    """(L2-normalised features, reconstruction errors | None) of a float batch: the one
    encoding step every engine and every query runs, so all compute the same vectors. The
    decoder, twice the encoder's cost, runs only when given."""
    z = np.asarray(encoder.predict_on_batch(x))
    err = (None if decoder is None
           else anomaly.reconstruction_error(x, np.asarray(decoder.predict_on_batch(z))))
    return l2_normalize(z), err


def encode_rows(parts, images: np.ndarray, rows: np.ndarray, batch_size: int,
                reconstruct: bool = True):
    """(positions, features, reconstruction errors | None) per batch of `rows`, so a worker of
    a cluster computes what this process would. `parts` is
    `fext.model.inference_parts(autoencoder)`. The next batch is read while this one is encoded."""
    encoder, decoder = parts
    for start, x in prefetch(iter_batches(images, rows, batch_size)):
        z, err = encode_batch(encoder, x, decoder if reconstruct else None)
        yield np.arange(start, start + len(x)), z, err


SHRINKAGE = 0.1  # of the whitening: eigenvalues + SHRINKAGE x their mean, so tiny ones do not blow up
WHITEN_SAMPLE = 100_000  # training images the whitening is fitted on at most: a 128-d covariance
# is settled long before, and a million-image folder is not encoded one extra time for it


def whitening(feats: np.ndarray, shrinkage: float = SHRINKAGE) -> tuple[np.ndarray, np.ndarray]:
    """(mean, transform) of PCA whitening with shrinkage, fitted on `feats` (n, d).

    Raw bottleneck vectors are dominated by a few high-variance directions, so cosine search
    among them mostly compares those; whitening weighs every direction alike (Jegou & Chum,
    ECCV 2012). Shrinkage keeps directions of almost no variance (fewer images than
    dimensions, or noise) from being blown up. Full rank, so it is invertible."""
    feats = np.asarray(feats, np.float64)
    mean = feats.mean(axis=0)
    cov = np.cov(feats - mean, rowvar=False, bias=True).reshape(feats.shape[1], feats.shape[1])
    values, vectors = np.linalg.eigh(cov)
    values = np.clip(values, 0, None)
    scale = 1.0 / np.sqrt(values + shrinkage * max(values.mean(), 1e-12))
    return mean.astype(np.float32), (vectors * scale).astype(np.float32)


def readout_of(autoencoder, images: np.ndarray, train_rows: np.ndarray, batch_size: int = 128,
               kind: str = "whiten"):
    """The model to publish: `autoencoder` with its features whitened on the training split's
    own vectors ("whiten"; a seeded sample of WHITEN_SAMPLE of them in a larger folder), or as
    it is ("raw"). Fitted once per model, so every extraction, query, reference and map of the
    model lives in one vector space."""
    from .model import inference_parts, with_readout

    if kind == "raw" or len(train_rows) < 2:
        return autoencoder
    train_rows = sample_rows(train_rows, WHITEN_SAMPLE)
    encoder = inference_parts(autoencoder)[0]
    raw = np.concatenate([np.asarray(encoder.predict_on_batch(x))
                          for _, x in iter_batches(images, train_rows, batch_size)])
    return with_readout(autoencoder, *whitening(raw))


def reference_of(autoencoder, images: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray,
                 batch_size: int = 128) -> tuple[VectorIndex, anomaly.ReferenceStats] | None:
    """What a model keeps of its training collection to score new images against it: a FAISS
    index of its training split's features, and the reference score's medians and threshold
    on the validation split. Below MIN_CALIBRATION validation images (a 99th percentile of a
    handful is no threshold), the training images join in, each leaving itself out of the
    neighbours it is measured against. None where there is nothing to calibrate on (a single
    training image and no validation split)."""
    from .model import inference_parts

    parts = inference_parts(autoencoder)

    def encode(rows):
        feats = np.zeros((len(rows), parts[0].output.shape[-1]), np.float32)
        recon = np.zeros(len(rows), np.float32)
        for pos, z, err in encode_rows(parts, images, rows, batch_size):
            feats[pos], recon[pos] = z, err
        return feats, recon

    train_feats, train_recon = encode(train_rows)
    index = VectorIndex.build(train_feats)
    val_feats, val_recon = encode(val_rows)
    dist, recon = anomaly.distance_to_index(index, val_feats), val_recon
    calibration = f"{len(val_rows)} validation images"
    if len(val_rows) < anomaly.MIN_CALIBRATION and len(train_rows) > 1:
        dist = np.concatenate([dist, anomaly.distance_to_index(index, train_feats, skip_self=True)])
        recon = np.concatenate([recon, train_recon])
        calibration += f" and {len(train_rows)} training images (leave-one-out)"
    if len(dist) == 0:
        return None  # a single training image and no validation split: nothing to calibrate on
    return index, anomaly.reference_stats(len(index), dist, recon, calibration)


def local_encoder(job: EncodeJob):
    """Encode in this process, batch after batch (the default engine)."""
    from .model import inference_parts, load  # Keras only where a model runs: reading stays fast

    parts = inference_parts(load(job.model_path), job.precision)
    yield from encode_rows(parts, job.images(), job.rows, job.batch_size, job.reconstruct)


def _query_encoder(record: ModelRecord, precision: str):
    """The model's encoder in this process, as a query is encoded (whatever engine extracted)."""
    from .model import inference_parts, load

    return inference_parts(load(record.path), precision)[0]


def resolve_precision(precision: str) -> str:
    """"auto": bfloat16 where the CPU computes it natively (2x the float32 forward pass on
    such CPUs, features within 1e-5 cosine of float32: docs/BENCHMARKS.md), else float32."""
    if precision == "auto":
        from .model import native_bfloat16

        return "bfloat16" if native_bfloat16() else "float32"
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; use auto, {', '.join(PRECISIONS)}")
    return precision


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
    recon = prev.scores("reconstruction") if has_recon else np.zeros(len(feats), np.float32)
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
    passes: "auto" (see `resolve_precision`), "float32" or "bfloat16"; recorded, so queries
    are encoded the same way.
    """
    if scores not in SCORE_MODES:
        raise UsageError(f"unknown scores {scores!r}; use one of {', '.join(SCORE_MODES)}")
    if reference not in REFERENCES:
        raise UsageError(f"unknown reference {reference!r}; use one of {', '.join(REFERENCES)}")
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
    encoder = _query_encoder(record, job.precision)
    calibration = duplicates.calibrate(lambda x: encode_batch(encoder, to_model_input(x))[0], coll,
                                       items, feats, nearest, similarity, coll.fit, progress=progress)
    progress("duplicate threshold", 1, 1)
    progress("anomaly scores", 0, 1)
    isolation = anomaly.isolation_of(similarity)
    written = {"isolation": isolation}
    if job.reconstruct:
        written["combined"] = anomaly.combined(isolation, recon)
    ref = record.extras.get("reference") if use_reference else None
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


def extractions(ws: Workspace, name: str) -> list[dict]:
    """The kept extractions of model `name` (one per folder), newest first: folder, count, when."""
    return [{"images": m["images"], "count": m["count"], "created": m["created"],
             "version": v.name} for v in ws.index_versions(name)
            if (m := read_json(v / "meta.json", {})).get("images")]


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
    why = ("" if not wanted else " (the model has no reference statistics: it was trained before "
           "they existed, or on too few images; retrain it to score new images against it)"
           if job.reconstruct else
           " (--scores isolation skips the reconstruction the reference score needs)")
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
