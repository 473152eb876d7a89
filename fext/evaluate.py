"""How well a model reconstructs its images: MSE, PSNR and SSIM per image and per split."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from .encoding import predict
from .feed import iter_batches, sample_rows

SPLITS = ("train", "val", "test")
SPLIT_SAMPLE = 10_000  # images a split's mean figures (and training's validation loss) are
# measured on at most: their standard error is already far below what a model change moves


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


PAGE_SAMPLE = 20_000  # images the Reconstruction page reconstructs at most: seconds at a million


def per_image(parts, images: np.ndarray, rows: np.ndarray, batch_size: int = 64) -> dict:
    """Per-image reconstruction MSE, PSNR and SSIM for `rows` of the image cache; `parts` is
    `fext.model.inference_parts(autoencoder)` (the models extraction and the reference run)."""
    encoder, decoder = parts
    n = len(rows)
    mse, sim = np.zeros(n, np.float32), np.zeros(n, np.float32)
    for start, x in iter_batches(images, rows, batch_size):
        r = np.asarray(predict(decoder, predict(encoder, x, batch_size), batch_size), np.float32)
        mse[start:start + len(x)] = ((r - x) ** 2).reshape(len(x), -1).mean(axis=1)
        sim[start:start + len(x)] = ssim(x, r)
    return {"mse": mse, "psnr": psnr(mse).astype(np.float32), "ssim": sim}


def reconstruction_metrics(parts, coll, batch_size: int = 64) -> dict:
    """Mean MSE (the training loss), PSNR and SSIM on each split (on a seeded sample of
    SPLIT_SAMPLE of a larger split: `measured` says how many); `parts` as for `per_image`."""
    out = {}
    for split in SPLITS:
        rows = coll.items(split)["row"].to_numpy()
        if len(rows) == 0:
            out[split] = {"images": 0}
            continue
        measured = sample_rows(rows, SPLIT_SAMPLE)
        m = per_image(parts, coll.images, measured, batch_size)
        out[split] = {"images": int(len(rows)), "measured": int(len(measured)),
                      "loss": float(m["mse"].mean()), "psnr": float(m["psnr"].mean()),
                      "ssim": float(m["ssim"].mean())}
    return out
