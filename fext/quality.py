"""The feature-quality study: the product's own paths against raw pixels and PCA, in one run.

Retrieval: test-split queries against the training split, relevant = same label, for the
model's bottleneck vectors and for the baselines on exactly the same rows.

One-class anomaly detection runs what a user runs, not a parallel protocol: for each label,
`train` a model with this model's settings on a folder holding that label's training images
only, `extract --images` a folder of every label's *test* images (never an image the model
was trained on), and read the ranking `anomalies` would print. The baselines are fitted on the
same normal images and score the same test images. The figures are the ones a user gets.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .copies import copy_test, cosine_top, held_out_sources, published_hits, recall_interval, validation_test
from .feed import gather
from .index import l2_normalize
from .progress import ProgressFn, report


def retrieval(db: np.ndarray, db_labels, queries: np.ndarray, q_labels, k: int = 10) -> dict:
    """precision@k and mAP of cosine search: each query against the whole database."""
    db, queries = l2_normalize(db), l2_normalize(queries)
    db_labels, q_labels = np.asarray(db_labels), np.asarray(q_labels)
    precision, ap = [], []
    for start in range(0, len(queries), 256):
        sims = queries[start:start + 256] @ db.T
        order = np.argsort(-sims, axis=1, kind="stable")
        rel = db_labels[order] == q_labels[start:start + 256, None]
        precision.extend(rel[:, :k].mean(axis=1))
        hits = np.cumsum(rel, axis=1)
        ranks = np.arange(1, rel.shape[1] + 1)
        ap.extend((hits / ranks * rel).sum(axis=1) / np.maximum(rel.sum(axis=1), 1))
    return {f"precision@{k}": float(np.mean(precision)), "map": float(np.mean(ap))}


def roc_auc(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(np.asarray(is_anomaly, bool), np.asarray(scores, np.float64)))


class RawPixels:
    """Baseline: the pixels at the model's input size; anomaly = distance to the nearest training image."""

    name = "raw pixels"

    def fit(self, images, rows):
        self.db = l2_normalize(gather(images, rows, flat=True))
        return self

    def features(self, images, rows):
        return gather(images, rows, flat=True)

    def anomaly(self, images, rows):
        q = l2_normalize(gather(images, rows, flat=True))
        return 1.0 - (q @ self.db.T).max(axis=1)


class PCABaseline:
    """Baseline: PCA of the pixels at the model's feature size; anomaly = PCA reconstruction error."""

    def __init__(self, dim: int):
        self.dim = dim
        self.name = f"PCA-{dim}"

    def fit(self, images, rows):
        from sklearn.decomposition import PCA
        x = gather(images, rows, flat=True)
        self.pca = PCA(n_components=min(self.dim, len(x), x.shape[1]), random_state=0).fit(x)
        return self

    def features(self, images, rows):
        return self.pca.transform(gather(images, rows, flat=True))

    def anomaly(self, images, rows):
        x = gather(images, rows, flat=True)
        r = self.pca.inverse_transform(self.pca.transform(x))
        return ((x - r) ** 2).mean(axis=1)


class EncoderFeatures:
    """The method under test: the model's features as extraction computes them (its read-out
    included), through the same encoding step."""

    name = "autoencoder"

    def __init__(self, model):
        from .encoding import extraction_parts
        self.parts = extraction_parts(model)

    def features(self, images, rows):
        from .encoding import encode_all
        return encode_all(self.parts, images, rows, 256, reconstruct=False)[0]


def _labelled(coll, split: str, limit: int | None = None):
    items = coll.items(split)
    items = items[items["label"] != ""]
    if limit and len(items) > limit:  # a deterministic sample keeps evaluation time bounded
        items = items.sort_values("sha1").head(limit)
    return items


def quality(model, record, coll, one_class: bool = False, progress: ProgressFn | None = None,
            max_queries: int = 2000) -> dict:
    """Retrieval (and optionally one-class anomaly detection) of the model against baselines."""
    progress = report(progress)
    train_items, test_items = _labelled(coll, "train"), _labelled(coll, "test", max_queries)
    tr_rows, tr_labels = train_items["row"].to_numpy(), train_items["label"].to_numpy()
    te_rows, te_labels = test_items["row"].to_numpy(), test_items["label"].to_numpy()
    labels = sorted(set(tr_labels))
    if len(labels) < 2 or len(te_rows) == 0:
        return {"note": "retrieval and anomaly figures need at least two labelled sub-folders "
                        "with images in the training and test splits"}
    dim, images = record.config.model.latent_dim, coll.images
    methods = [EncoderFeatures(model), PCABaseline(dim).fit(images, tr_rows), RawPixels()]
    out = {"labels": len(labels), "queries": int(len(te_rows)), "database": int(len(tr_rows)),
           "retrieval": {}}
    for i, m in enumerate(methods):
        progress("retrieval", i, len(methods))
        out["retrieval"][m.name] = retrieval(m.features(images, tr_rows), tr_labels,
                                             m.features(images, te_rows), te_labels)
    progress("retrieval", len(methods), len(methods))
    if one_class:
        out["one_class_auc"] = one_class_auc(record, coll, train_items, test_items, progress)
    return out


def _link_folder(src_root: Path, items, dest: Path) -> Path:
    """A folder of `items` (hard links, or copies across file systems), keeping label sub-folders."""
    for rel in items["path"]:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src_root / rel, target)
        except OSError:
            shutil.copyfile(src_root / rel, target)
    return dest


def one_class_auc(record, coll, train_items, test_items, progress: ProgressFn) -> dict:
    """Per-label and mean ROC AUC, trained on one label through `train` + `extract` + `anomalies`.

    Each label gets a model trained with this model's settings (in a scratch workspace) on a
    folder of that label's training images; a folder of every label's test images is extracted
    with it and ranked by the extraction's default anomaly score, as `fext anomalies` ranks it.
    """
    from .artifacts import Artifacts
    from .features import extract
    from .train import train
    from .workspace import Workspace

    labels = sorted(set(train_items["label"]))
    dim = record.config.model.latent_dim
    per_label: dict[str, dict] = {"autoencoder": {}, f"PCA-{dim}": {}, "raw pixels": {}}
    with tempfile.TemporaryDirectory(prefix="fext-one-class-") as tmp:
        tmp = Path(tmp)
        mixed = _link_folder(coll.root, test_items, tmp / "inspect")
        ws = Workspace(tmp / "ws")
        for i, label in enumerate(labels):
            progress("one-class", i, len(labels), label=label)
            normal = train_items[train_items["label"] == label]
            truth_by_path = dict(zip(test_items["path"], test_items["label"] != label))
            if all(truth_by_path.values()) or not any(truth_by_path.values()):
                continue  # AUC needs normal and anomalous test images
            folder = _link_folder(coll.root, normal, tmp / f"normal-{i}")
            cfg = dataclasses.replace(record.config, data=dataclasses.replace(
                record.config.data, images=str(folder)))
            name = f"one-class-{i}"
            train(ws, name, cfg)
            extract(ws, name, str(mixed))
            art = Artifacts.open(ws, name)
            truth = art.items["path"].map(truth_by_path).to_numpy(bool)
            per_label["autoencoder"][label] = roc_auc(art.scores(), truth)
            rows = test_items.set_index("path").loc[art.items["path"], "row"].to_numpy()
            for method in (PCABaseline(dim), RawPixels()):
                scores = method.fit(coll.images, normal["row"].to_numpy()).anomaly(coll.images, rows)
                per_label[method.name][label] = roc_auc(scores, truth)
    progress("one-class", len(labels), len(labels))
    return {m: {"mean": float(np.mean(list(v.values()))) if v else None, "per_label": v}
            for m, v in per_label.items()}


COPY_QUERIES = 500  # edited copies `fext evaluate` searches for
def copy_detection(model, record, coll, progress: ProgressFn | None = None, seed: int = 0,
                   queries: int = COPY_QUERIES) -> dict:
    """How often an edited copy of one of the collection's held-out images finds its source
    (or a copy of it the collection holds: `CopyTest.hits`) first (fext.copies.copy_test), on
    the test split, with a 95 % interval over its images.

    No labels needed. Each copy is encoded as a query is and searched (cosine) among images
    encoded as extraction encodes them. Raw pixels at the model's input size, PCA of them at
    the feature size and a 64-bit pHash (Hamming) search the same copies among the same
    images. Recall@1 and recall@5 of the source for each; the autoencoder's first result is
    the one search shows first (the features' first VERIFY checked by their pixels), and
    `features alone` its recall@1 without that check. `validation` repeats, on the
    published features, the very test that chose the published epoch (the validation split's
    copies): the figure training reported, which the test split's should match within the
    two intervals."""
    import imagehash
    from sklearn.decomposition import PCA

    from .encoding import encode_images, query_encoder
    from .images import to_model_input
    from .search import VERIFY

    progress = report(progress)
    if len(coll.items()) < 2:
        return {"note": "copy detection needs at least two images"}
    sources, others, name = held_out_sources(coll)
    fit = record.config.data.fit
    test = copy_test(coll, sources, others, fit, seed, queries, progress, name)
    if not len(test.truth):
        return {"note": "none of the sampled images could be read to make copies"}
    db_rows, truth, copies = test.db_rows, test.truth, test.copies
    encoder = query_encoder(model)
    features = EncoderFeatures(model)

    feats, q_feats = features.features(coll.images, db_rows), encode_images(encoder, copies, 256)
    pixels = gather(coll.images, db_rows, flat=True)
    q_pixels = to_model_input(copies).reshape(len(copies), -1)
    dim = record.config.model.latent_dim
    pca = PCA(n_components=min(dim, *pixels.shape), random_state=0).fit(pixels)
    bits = lambda arrays: np.stack([imagehash.phash(Image.fromarray(a)).hash.reshape(-1)  # noqa: E731
                                    for a in arrays])
    db_bits = bits(coll.images[r] for r in db_rows)
    alone = cosine_top(feats, q_feats, k=VERIFY)
    rankings = {"autoencoder": test.verified(coll.images, alone),
                "raw pixels": cosine_top(pixels, q_pixels),
                f"PCA-{dim}": cosine_top(pca.transform(pixels), pca.transform(q_pixels)),
                "pHash 64-bit": _hamming_top(db_bits, bits(copies))}
    def found(top: np.ndarray) -> dict:  # the first five of each ranking
        hits = np.stack([test.hits(coll.images, column) for column in top[:, :5].T], axis=1)
        return {"recall@1": float(hits[:, 0].mean()), "recall@5": float(hits.any(axis=1).mean()),
                "interval": recall_interval(hits[:, 0], truth)}

    out = {"queries": int(len(truth)), "sources": name,
           "images copied": int(len(np.unique(truth))), "database": int(len(db_rows)),
           "methods": {m: found(top) for m, top in rankings.items()}}
    out["methods"]["autoencoder"]["features alone"] = found(alone)["recall@1"]
    if name != "val split" and len(coll.items("val")) and record.config.train.held_out_copies:
        val = validation_test(coll, record.config.train, fit, progress)
        if len(val.truth):
            hits = published_hits(val, coll.images, features.parts, encoder)
            out["validation"] = {"recall@1": float(hits.mean()),
                                 "interval": recall_interval(hits, val.truth),
                                 "queries": int(len(val.truth)),
                                 "images copied": int(len(np.unique(val.truth)))}
    return out


def _hamming_top(db: np.ndarray, queries: np.ndarray, k: int = 5) -> np.ndarray:
    dist = (queries[:, None, :] != db[None, :, :]).sum(axis=2)
    return np.argsort(dist, axis=1, kind="stable")[:, :k]
