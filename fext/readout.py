"""The read-out: what a published model's features are, fitted once when the model is trained.

Raw bottleneck vectors are dominated by a few high-variance directions, so cosine search among
them mostly compares those; the "whiten" read-out (TrainConfig.readout) weighs every direction
alike (PCA whitening with shrinkage, Jegou & Chum, ECCV 2012). It is stored in the model file
as two layers after the bottleneck (`fext.model.READOUT` and its inverse), so every extraction,
query, reference and map of the model lives in one vector space and the reconstruction is
unchanged. Keras is imported only where a model is changed.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from .encoding import predict
from .feed import iter_batches, sample_rows
from .model import BOTTLENECK, READOUT, READOUT_INVERSE, inference_parts

SHRINKAGE = 0.1  # of the whitening: eigenvalues + SHRINKAGE x their mean, so tiny ones do not blow up
WHITEN_SAMPLE = 100_000  # training images the whitening is fitted on at most: a 128-d covariance
# is settled long before, and a million-image folder is not encoded one extra time for it


def whitening(feats: np.ndarray, shrinkage: float = SHRINKAGE) -> tuple[np.ndarray, np.ndarray]:
    """(mean, transform) of PCA whitening with shrinkage, fitted on `feats` (n, d).

    Shrinkage keeps directions of almost no variance (fewer images than dimensions, or noise)
    from being blown up. Full rank, so it is invertible."""
    feats = np.asarray(feats, np.float64)
    mean = feats.mean(axis=0)
    cov = np.cov(feats - mean, rowvar=False, bias=True).reshape(feats.shape[1], feats.shape[1])
    values, vectors = np.linalg.eigh(cov)
    values = np.clip(values, 0, None)
    scale = 1.0 / np.sqrt(values + shrinkage * max(values.mean(), 1e-12))
    return mean.astype(np.float32), (vectors * scale).astype(np.float32)


def with_readout(autoencoder: keras.Model, mean: np.ndarray, transform: np.ndarray) -> keras.Model:
    """The autoencoder with a linear read-out after the bottleneck, (z - mean) @ transform, and
    its inverse before the decoder: the encoder then gives read-out features and the
    reconstruction is unchanged. A model that already has one gets the new one instead."""
    chain = [layer for layer in autoencoder.layers[1:] if layer.name not in (READOUT, READOUT_INVERSE)]
    d = len(mean)
    inverse = np.linalg.inv(transform.astype(np.float64))
    readout = layers.Dense(d, name=READOUT, dtype="float32")
    back = layers.Dense(d, name=READOUT_INVERSE, dtype="float32")
    image = keras.Input(autoencoder.input.shape[1:], name="image")
    x = image
    for layer in chain:
        x = layer(x)
        if layer.name == BOTTLENECK:
            x = back(readout(x))
    readout.set_weights([transform.astype(np.float32), (-mean @ transform).astype(np.float32)])
    back.set_weights([inverse.astype(np.float32), mean.astype(np.float32)])
    return keras.Model(image, x, name=autoencoder.name)


def has_readout(autoencoder: keras.Model) -> bool:
    return any(layer.name == READOUT for layer in autoencoder.layers)


def readout_of(autoencoder, images: np.ndarray, train_rows: np.ndarray, batch_size: int = 128,
               kind: str = "whiten"):
    """The model to publish: `autoencoder` with its features whitened on the training split's
    own vectors ("whiten"; a seeded sample of WHITEN_SAMPLE of them in a larger folder), or as
    it is ("raw"). The whitening is fitted on the raw bottleneck (not L2-normalised: the
    read-out comes before the normalisation every encoding applies)."""
    if kind == "raw" or len(train_rows) < 2:
        return autoencoder
    train_rows = sample_rows(train_rows, WHITEN_SAMPLE)
    encoder = inference_parts(autoencoder)[0]
    raw = np.concatenate([predict(encoder, x, batch_size)
                          for _, x in iter_batches(images, train_rows, batch_size)])
    return with_readout(autoencoder, *whitening(raw))


def readout_label(model) -> dict:
    """What a published model's features are, for its record and every extraction's meta."""
    if has_readout(model):
        return {"kind": "whitened", "text": "whitened on the training images (PCA whitening, "
                f"shrinkage {SHRINKAGE})"}
    return {"kind": "raw", "text": "the raw bottleneck"}
