"""How well a model reconstructs its images: MSE, PSNR and SSIM per image and per split."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from .feed import iter_batches

SPLITS = ("train", "val", "test")


def ssim(a: np.ndarray, b: np.ndarray, win: int = 7) -> np.ndarray:
    """Mean structural similarity per image of two (n, h, w, c) batches in [0, 1].

    Same definition as scikit-image's default (7x7 uniform window, K1=0.01, K2=0.03,
    sample covariance), averaged over channels.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    win = min(win, a.shape[1], a.shape[2])
    win -= 1 - win % 2  # odd window
    size = (1, win, win, 1)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    cov_norm = win * win / (win * win - 1.0)
    mu_a, mu_b = uniform_filter(a, size), uniform_filter(b, size)
    va = cov_norm * (uniform_filter(a * a, size) - mu_a * mu_a)
    vb = cov_norm * (uniform_filter(b * b, size) - mu_b * mu_b)
    cov = cov_norm * (uniform_filter(a * b, size) - mu_a * mu_b)
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    pad = win // 2
    s = s[:, pad:s.shape[1] - pad, pad:s.shape[2] - pad, :]
    return s.reshape(len(s), -1).mean(axis=1)


def psnr(mse: np.ndarray) -> np.ndarray:
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-10))


def to_input(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Model input for `rows` of the image cache, in the given order."""
    return np.concatenate([x for _, x in iter_batches(images, rows, 512)])


def per_image(model, images: np.ndarray, rows: np.ndarray, batch_size: int = 64) -> dict:
    """Per-image reconstruction MSE, PSNR and SSIM for `rows` of the image cache."""
    n = len(rows)
    mse, sim = np.zeros(n, np.float32), np.zeros(n, np.float32)
    for start, x in iter_batches(images, rows, batch_size):
        r = np.asarray(model.predict_on_batch(x), np.float32)
        mse[start:start + len(x)] = ((r - x) ** 2).reshape(len(x), -1).mean(axis=1)
        sim[start:start + len(x)] = ssim(x, r)
    return {"mse": mse, "psnr": psnr(mse).astype(np.float32), "ssim": sim}


def reconstruction_metrics(model, coll, batch_size: int = 64) -> dict:
    """Mean MSE (the training loss), PSNR and SSIM on each split."""
    out = {}
    for split in SPLITS:
        rows = coll.items(split)["row"].to_numpy()
        if len(rows) == 0:
            out[split] = {"images": 0}
            continue
        m = per_image(model, coll.images, rows, batch_size)
        out[split] = {"images": int(len(rows)), "loss": float(m["mse"].mean()),
                      "psnr": float(m["psnr"].mean()), "ssim": float(m["ssim"].mean())}
    return out


# -- retrieval and anomaly detection, against baselines ------------------------------------------

def _flat(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.concatenate([x.reshape(len(x), -1) for _, x in iter_batches(images, rows, 512)])


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def retrieval(db: np.ndarray, db_labels, queries: np.ndarray, q_labels, k: int = 10) -> dict:
    """precision@k and mAP of cosine search: each query against the whole database."""
    db, queries = _unit(db), _unit(queries)
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
        self.db = _unit(_flat(images, rows))
        return self

    def features(self, images, rows):
        return _flat(images, rows)

    def anomaly(self, images, rows):
        q = _unit(_flat(images, rows))
        return 1.0 - (q @ self.db.T).max(axis=1)


class PCABaseline:
    """Baseline: PCA of the pixels at the model's feature size; anomaly = PCA reconstruction error."""

    def __init__(self, dim: int):
        self.dim = dim
        self.name = f"PCA-{dim}"

    def fit(self, images, rows):
        from sklearn.decomposition import PCA
        x = _flat(images, rows)
        self.pca = PCA(n_components=min(self.dim, len(x), x.shape[1]), random_state=0).fit(x)
        return self

    def features(self, images, rows):
        return self.pca.transform(_flat(images, rows))

    def anomaly(self, images, rows):
        x = _flat(images, rows)
        r = self.pca.inverse_transform(self.pca.transform(x))
        return ((x - r) ** 2).mean(axis=1)


class EncoderFeatures:
    """The method under test: the autoencoder's bottleneck vectors."""

    name = "autoencoder"

    def __init__(self, model):
        from .model import encoder_of
        self.encoder = encoder_of(model)

    def features(self, images, rows):
        return np.concatenate([np.asarray(self.encoder.predict_on_batch(x))
                               for _, x in iter_batches(images, rows, 256)])


def _labelled(coll, split: str, limit: int | None = None):
    items = coll.items(split)
    items = items[items["label"] != ""]
    if limit and len(items) > limit:  # a deterministic sample keeps evaluation time bounded
        items = items.sort_values("sha1").head(limit)
    return items["row"].to_numpy(), items["label"].to_numpy()


def quality(model, info: dict, coll, one_class: bool = False, progress=None,
            max_queries: int = 2000) -> dict:
    """Retrieval (and optionally one-class anomaly detection) of the model against baselines.

    Retrieval: test-split queries against the training split, relevant = same label.
    One-class: for each label, fit on that label's training images, score the whole test split;
    the other labels are the anomalies; ROC AUC averaged over labels. Baselines are fitted on
    exactly the same rows in the same run: raw pixels, and PCA at the model's feature size.
    """
    from .progress import report

    progress = report(progress)
    tr_rows, tr_labels = _labelled(coll, "train")
    te_rows, te_labels = _labelled(coll, "test", max_queries)
    labels = sorted(set(tr_labels))
    if len(labels) < 2 or len(te_rows) == 0:
        return {"note": "retrieval and anomaly figures need at least two labelled sub-folders "
                        "with images in the training and test splits"}
    dim, images = info["model"]["latent_dim"], coll.images
    methods = [EncoderFeatures(model), PCABaseline(dim).fit(images, tr_rows), RawPixels()]
    out = {"labels": len(labels), "queries": int(len(te_rows)), "database": int(len(tr_rows)),
           "retrieval": {}}
    for i, m in enumerate(methods):
        progress("retrieval", i, len(methods))
        out["retrieval"][m.name] = retrieval(m.features(images, tr_rows), tr_labels,
                                             m.features(images, te_rows), te_labels)
    progress("retrieval", len(methods), len(methods))
    if one_class:
        out["one_class_auc"] = one_class_auc(info, coll, tr_rows, tr_labels, te_rows, te_labels,
                                             labels, progress)
    return out


ONE_CLASS_MIN_STEPS = 200


def one_class_scores(ae, images: np.ndarray, reference: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The product's combined score, with the one class's training images as the reference:
    distance to the nearest reference vector + reconstruction error, each divided by its median
    over the reference (leave-one-out for the distances)."""
    from .anomaly import combined, distance_to_reference, reconstruction_error

    enc = EncoderFeatures(ae)
    ref_f, f = enc.features(images, reference), enc.features(images, rows)
    unit = _unit(ref_f)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    ref_dist = 1.0 - sims.max(axis=1)

    def recon(r):
        return np.concatenate([reconstruction_error(x, np.asarray(ae.predict_on_batch(x)))
                               for _, x in iter_batches(images, r, 256)])

    return combined(distance_to_reference(ref_f, f), recon(rows),
                    reference=(float(np.median(ref_dist)), float(np.median(recon(reference)))))


def one_class_auc(info, coll, tr_rows, tr_labels, te_rows, te_labels, labels, progress) -> dict:
    """Mean ROC AUC over labels: trained on one label, the other labels are the anomalies."""
    from .config import RunConfig
    from .train import fit_in_memory

    cfg = RunConfig.from_dict({k: info[k] for k in ("data", "model", "train")})
    val_rows, val_labels = _labelled(coll, "val")
    images, dim = coll.images, info["model"]["latent_dim"]
    per_label = {"autoencoder": {}, f"PCA-{dim}": {}, "raw pixels": {}}
    for i, label in enumerate(labels):
        progress("one-class", i, len(labels), label=label)
        own, own_val = tr_rows[tr_labels == label], val_rows[val_labels == label]
        truth = te_labels != label
        if truth.all() or not truth.any():  # AUC needs normal and anomalous test images
            continue
        ae = fit_in_memory(cfg, images, own, own_val, min_steps=ONE_CLASS_MIN_STEPS)
        per_label["autoencoder"][label] = roc_auc(one_class_scores(ae, images, own, te_rows), truth)
        for method, baseline in ((f"PCA-{dim}", PCABaseline(dim)), ("raw pixels", RawPixels())):
            scores = baseline.fit(images, own).anomaly(images, te_rows)
            per_label[method][label] = roc_auc(scores, truth)
    progress("one-class", len(labels), len(labels))
    return {m: {"mean": float(np.mean(list(v.values()))) if v else None, "per_label": v}
            for m, v in per_label.items()}
