"""The encoding step: images in, L2-normalised feature vectors (and reconstruction errors) out.

One home for it, so training (held-out copies, look-alike batches, the reference kept with a
model), extraction on any engine, the quality study and every query compute the same vectors
the same way. Keras is imported only where a model is loaded or built, so the commands that
only read artefacts never pay for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .anomaly import reconstruction_error
from .feed import batch_rows, feed_threads, load_rows, prefetch
from .index import l2_normalize

BATCH_PIXELS = 256 * 64 * 64  # images per forward pass x pixels per image (bench/ingest.py)


def batch_for(image_size: int) -> int:
    """Images per forward pass: large batches amortise per-call overhead (256 at 64 px is
    ~5 % faster than 128 on CPU), fewer for large images so activations stay bounded."""
    return int(min(256, max(8, BATCH_PIXELS // (image_size * image_size))))


def resolve_precision(precision: str) -> str:
    """The precision of forward passes, extraction's and training's (one of the settings'
    choices, validated there): "auto" is bfloat16 where the machine computes it natively
    (`fext.model.native_bfloat16`: 2x the float32 forward pass on such CPUs, features within
    1e-5 cosine of float32; a GPU's tensor cores: docs/BENCHMARKS.md §5), else float32
    (emulated bfloat16 is slower)."""
    if precision != "auto":
        return precision
    from .model import native_bfloat16

    return "bfloat16" if native_bfloat16() else "float32"


def extraction_parts(autoencoder):
    """`fext.model.inference_parts` at the precision extraction runs by default: the passes
    behind a model's own figures (its reconstruction, copy detection, reference, map
    statistics), so they describe the features a user gets, at extraction's speed (bfloat16
    is about 3x float32's reconstruction pass on a CPU that computes it natively)."""
    from .config import ExtractConfig
    from .model import inference_parts

    return inference_parts(autoencoder, resolve_precision(ExtractConfig().precision))


def predict(model, x: np.ndarray, pad_to: int | None = None) -> np.ndarray:
    """`model` on a batch, in inference mode. A batch shorter than `pad_to` is padded to it
    (and the padding dropped): a pass over a folder then shows the model one batch shape,
    not a second one for its last batch, and Keras traces its predict function once per
    model instead of twice (tracing costs about a second, and TensorFlow warns about it)."""
    n = len(x)
    if pad_to is not None and 0 < n < pad_to:
        x = np.concatenate([x, np.zeros((pad_to - n, *x.shape[1:]), x.dtype)])
    return np.asarray(model.predict_on_batch(x))[:n]


def encode_batch(encoder, x: np.ndarray, decoder=None,
                 pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(L2-normalised features, reconstruction errors | None) of a float batch: the one
    encoding step every engine and every query runs, so all compute the same vectors. The
    decoder, twice the encoder's cost, runs only when given. `pad_to`: see `predict`."""
    z = predict(encoder, x, pad_to)
    err = None if decoder is None else reconstruction_error(x, predict(decoder, z, pad_to))
    return l2_normalize(z), err


def encode_images(encoder, images: np.ndarray, batch_size: int) -> np.ndarray:
    """L2-normalised features of uint8 images that are not collection rows (edited copies,
    queries), `batch_size` at a time, each batch padded to that size (one traced shape)."""
    from .images import to_model_input

    return np.concatenate([encode_batch(encoder, to_model_input(images[i:i + batch_size]),
                                        pad_to=batch_size)[0]
                           for i in range(0, len(images), batch_size)])


def encode_rows(parts, images: np.ndarray, rows: np.ndarray, batch_size: int,
                reconstruct: bool = True):
    """(positions, features, reconstruction errors | None) per batch of `rows`, so a worker of
    a cluster computes what this process would. `parts` is
    `fext.model.inference_parts(autoencoder)`. The next batches are read while this one is
    encoded (by several threads for an accelerator: fext.feed.feed_threads)."""
    from .model import accelerator

    encoder, decoder = parts
    load = lambda job: (job[0], load_rows(images, job[1]))  # noqa: E731
    for start, x in prefetch(batch_rows(rows, batch_size), work=load,
                             threads=feed_threads(accelerator())):
        z, err = encode_batch(encoder, x, decoder if reconstruct else None, pad_to=batch_size)
        yield np.arange(start, start + len(x)), z, err


def encode_all(parts, images: np.ndarray, rows: np.ndarray, batch_size: int,
               reconstruct: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(features, reconstruction errors | None) of `rows`, in their order, in memory: for the
    few thousand rows training and the quality study encode at once (extraction streams)."""
    feats = np.zeros((len(rows), parts[0].output.shape[-1]), np.float32)
    recon = np.zeros(len(rows), np.float32) if reconstruct else None
    for pos, z, err in encode_rows(parts, images, rows, batch_size, reconstruct):
        feats[pos] = z
        if reconstruct:
            recon[pos] = err
    return feats, recon


def query_encoder(autoencoder, precision: str = "float32"):
    """The encoder a query runs (image -> features), at the extraction's precision, whatever
    engine extracted the collection."""
    from .model import inference_parts

    return inference_parts(autoencoder, precision)[0]


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


def local_encoder(job: EncodeJob):
    """Encode in this process, batch after batch (the default engine)."""
    from .model import inference_parts, load  # Keras only where a model runs: reading stays fast

    parts = inference_parts(load(job.model_path), job.precision)
    yield from encode_rows(parts, job.images(), job.rows, job.batch_size, job.reconstruct)
