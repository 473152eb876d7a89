"""How well a model reconstructs its images: MSE, PSNR and SSIM per image and per split, beside
PCA with as many components as the model has features (the baseline a user reads them against)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from .encoding import predict
from .feed import gather, iter_batches, sample_rows

SPLITS = ("train", "val", "test")
SPLIT_SAMPLE = 10_000  # images a split's mean figures (and training's validation loss) are
# measured on at most: their standard error is already far below what a model change moves


def ssim(a: np.ndarray, b: np.ndarray, win: int = 7) -> np.ndarray:
    """Mean structural similarity per image of two (n, h, w, c) batches in [0, 1].

    Same definition as scikit-image's default (7x7 uniform window, K1=0.01, K2=0.03,
    sample covariance), averaged over channels. In float32: within 1e-6 of float64 on images in
    [0, 1], 1.5x faster (the Reconstruction page measures up to PAGE_SAMPLE images).
    """
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    win = min(win, a.shape[1], a.shape[2])
    win -= 1 - win % 2  # odd window
    size = (1, win, win, 1)
    c1, c2 = np.float32(0.01 ** 2), np.float32(0.03 ** 2)
    cov_norm = np.float32(win * win / (win * win - 1.0))
    mu_a, mu_b = uniform_filter(a, size), uniform_filter(b, size)
    va = cov_norm * (uniform_filter(a * a, size) - mu_a * mu_a)
    vb = cov_norm * (uniform_filter(b * b, size) - mu_b * mu_b)
    cov = cov_norm * (uniform_filter(a * b, size) - mu_a * mu_b)
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    pad = win // 2
    s = s[:, pad:s.shape[1] - pad, pad:s.shape[2] - pad, :]
    return s.reshape(len(s), -1).mean(axis=1, dtype=np.float64)


def psnr(mse: np.ndarray) -> np.ndarray:
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-10))


PAGE_SAMPLE = 20_000  # images the Reconstruction page reconstructs at most: seconds at a million
PCA_VALUES = 1000 * 64 * 64 * 3  # pixel values the PCA baseline is fitted on, at most (~50 MB)


def measure(reconstruct, images: np.ndarray, rows: np.ndarray, batch_size: int = 64) -> dict:
    """Per-image reconstruction MSE, PSNR and SSIM of `rows` of the image cache, for any
    `reconstruct(float batch) -> batch`: the autoencoder and its PCA baseline alike."""
    n = len(rows)
    mse, sim = np.zeros(n, np.float32), np.zeros(n, np.float32)
    for start, x in iter_batches(images, rows, batch_size):
        r = np.asarray(reconstruct(x), np.float32)
        mse[start:start + len(x)] = ((r - x) ** 2).reshape(len(x), -1).mean(axis=1)
        sim[start:start + len(x)] = ssim(x, r)
    return {"mse": mse, "psnr": psnr(mse).astype(np.float32), "ssim": sim}


def autoencoder_of(parts, batch_size: int = 64):
    """`reconstruct` of the autoencoder's inference parts (`fext.model.inference_parts`)."""
    encoder, decoder = parts
    return lambda x: predict(decoder, predict(encoder, x, batch_size), batch_size)


def per_image(parts, images: np.ndarray, rows: np.ndarray, batch_size: int = 64) -> dict:
    """Per-image reconstruction MSE, PSNR and SSIM for `rows` of the image cache; `parts` is
    `fext.encoding.extraction_parts(autoencoder)` (the models extraction and the reference run)."""
    return measure(autoencoder_of(parts, batch_size), images, rows, batch_size)


class PCAReconstruction:
    """The baseline a reconstruction is read against: PCA of the pixels with as many components
    as the model has features, fitted on a seeded sample of the training split (at most
    PCA_VALUES pixel values, so the same ~50 MB whatever the folder's size). Whether the
    autoencoder redraws a user's images better than a linear projection of the same size is
    the first thing to know about its reconstructions (and so about its anomaly maps)."""

    def __init__(self, images: np.ndarray, train_rows: np.ndarray, dim: int):
        from sklearn.decomposition import PCA

        values = int(np.prod(images.shape[1:]))
        rows = sample_rows(train_rows, max(2, PCA_VALUES // values))
        x = gather(images, rows, flat=True)
        self.pca = PCA(n_components=max(1, min(dim, *x.shape)), random_state=0).fit(x)
        self.name = f"PCA-{self.pca.n_components_}"  # fewer where fewer images were sampled
        self.fitted = int(len(rows))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1)
        r = self.pca.inverse_transform(self.pca.transform(flat)).reshape(x.shape)
        return np.clip(r, 0.0, 1.0).astype(np.float32)


def split_metrics(reconstruct, coll, batch_size: int = 64) -> dict:
    """Mean MSE, PSNR and SSIM of `reconstruct` on each split (on a seeded sample of
    SPLIT_SAMPLE of a larger split: `measured` says how many)."""
    out = {}
    for split in SPLITS:
        rows = coll.items(split)["row"].to_numpy()
        if len(rows) == 0:
            out[split] = {"images": 0}
            continue
        measured = sample_rows(rows, SPLIT_SAMPLE)
        m = measure(reconstruct, coll.images, measured, batch_size)
        out[split] = {"images": int(len(rows)), "measured": int(len(measured)),
                      "loss": float(m["mse"].mean()), "psnr": float(m["psnr"].mean()),
                      "ssim": float(m["ssim"].mean())}
    return out


def reconstruction_metrics(parts, coll, batch_size: int = 64) -> dict:
    """Mean MSE (the training loss), PSNR and SSIM on each split (on a seeded sample of
    SPLIT_SAMPLE of a larger split: `measured` says how many); `parts` as for `per_image`."""
    return split_metrics(autoencoder_of(parts, batch_size), coll, batch_size)


def pca_metrics(coll, dim: int, batch_size: int = 256) -> dict:
    """The PCA baseline's figures beside `reconstruction_metrics`: same splits, same images."""
    pca = PCAReconstruction(coll.images, coll.items("train")["row"].to_numpy(), dim)
    return {"method": pca.name, "fitted_on": pca.fitted,
            "splits": split_metrics(pca, coll, batch_size)}
