"""Anomaly maps: where in an image it is unusual, at the model's input size (higher = more unusual).

A map is computed from two signals of the trained autoencoder, each measured against what
*normal* images leave at the same pixel, so a value says "how unusual for this place":

- *residual*: the reconstruction error per pixel (squared, averaged over the channels; the
  reconstruction at the image's own brightness and contrast, as the anomaly scores read it);
- *features*: the distance from each place's encoder features (the first block, at the input's
  resolution, averaged over 3x3 neighbours) to the nearest of a bank of such patch features
  drawn from the training images (as PatchCore does with pretrained features; here with the
  model's own encoder).

`fit` measures, once per model (at training, or on first use for an older model), per pixel
the mean and standard deviation of both over normal images (the validation split, or training
images kept out of the bank) and keeps them, with the bank, beside the model as the anomaly
reference is kept (`maps-<fingerprint>.npz`). A map is the chosen method's z-score, lightly
smoothed (a Gaussian of SMOOTH of the side, as anomaly maps are smoothed in MVTec AD work).

Which signal ships (METHOD) was measured on planted defects with known masks
(bench/anomaly_maps.py, docs/QUALITY.md). Keras is imported only where a model runs: reading
scores never needs it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .anomaly import own_brightness
from .feed import iter_batches, sample_rows

METHODS = ("residual", "residual-z", "features-z", "sum-z")
METHOD = "features-z"  # shipped: above PCA's residual and every other baseline on textures
# and objects, where the sum with the residual z-score was below PCA on textures (docs/QUALITY.md,
# "Anomaly maps from the first block's features")
SMOOTH = 4 / 224  # Gaussian sigma as a share of the side: 1.1 px at 64 px
FEATURE_BLOCK = 1  # the encoder block whose output the feature signal reads: the first sees
# the scratches, spots and blotches of a 64 px crop at full resolution (block 2: half; block 3,
# and blocks 2 and 3 together, PatchCore's choice on 224 px: lower on textures and objects alike)
MAX_GRID = 32  # feature places per side at most: a finer grid is sampled down to it (every
# other place of block 1 at 64 px, each already averaged with its neighbours: the same figures
# at half the search of every place)
BANK = 65_536  # patch feature vectors kept from the training images (4 MB at float16 for 32
# channels): more normal patches, fewer normal places far from all of them (16,384: 0.01-0.02
# lower pixel AUROC, docs/QUALITY.md)
BANK_IMAGES = 512  # training images the bank is drawn from, at most (a seeded sample)
CALIBRATION = 256  # normal images the per-pixel statistics are measured on, at most
MIN_CALIBRATION = 50  # fewer validation images: training images kept out of the bank join in
STD_FLOOR = 0.25  # a pixel's std is at least this share of the median pixel's (a few
# calibration images measure a noisy std; dividing by a tiny one would invent anomalies)
SCALE = (0.5, 0.999)  # quantiles of normal pixels' map values: where colour starts, saturates


def stats_file(fingerprint: str) -> str:
    """The name of a model's map statistics file, beside its model file."""
    return f"maps-{fingerprint}.npz"


@dataclass
class MapStats:
    """What a model keeps of normal images to make its maps: per-pixel mean and std of each
    signal, the bank of patch features, and where normal pixels' values lie (the colour scale)."""

    mean: dict[str, np.ndarray]  # signal -> (size, size) float32
    std: dict[str, np.ndarray]
    bank: np.ndarray  # (m, channels) float16
    layer: str  # the encoder layer the feature signal reads
    scale: dict[str, list[float]]  # method -> [value where colour starts, where it saturates]
    fitted: str  # which images, said in every output
    extra: dict = field(default_factory=dict)

    def save(self, path: Path) -> None:
        meta = {"layer": self.layer, "scale": self.scale, "fitted": self.fitted, **self.extra}
        arrays = {f"{k}_{s}": getattr(self, k)[s] for k in ("mean", "std") for s in self.mean}
        with open(path, "wb") as f:
            np.savez(f, bank=self.bank, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                     **arrays)

    @classmethod
    def load(cls, path: Path) -> MapStats:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            signals = [k.removeprefix("mean_") for k in z.files if k.startswith("mean_")]
            return cls({s: z[f"mean_{s}"] for s in signals}, {s: z[f"std_{s}"] for s in signals},
                       z["bank"], meta.pop("layer"), meta.pop("scale"), meta.pop("fitted"), meta)

    def summary(self) -> dict:
        """What the model's record says of them (fext.registry)."""
        return {"method": METHOD, "fitted": self.fitted, "bank": int(len(self.bank)),
                "layer": self.layer}


# -- the network ------------------------------------------------------------------------------
def feature_layer(encoder, block: int | None = None) -> str:
    """The last convolution of block FEATURE_BLOCK (or of the last block, in a shallower
    model) of an inference encoder (fext.model.inference_parts: conv + ReLU fused), or of the
    autoencoder it was made from (the same layer names); `block`: another block's."""
    blocks = sum(1 for layer in encoder.layers if layer.name.endswith("_pool"))
    prefix = f"enc{min(block or FEATURE_BLOCK, blocks)}_conv"
    return [layer.name for layer in encoder.layers if layer.name.startswith(prefix)][-1]


class Net:
    """One forward pass giving what maps read: (intermediate features, reconstruction)."""

    def __init__(self, parts, layer: str | None = None, eager: bool = False):
        import keras

        encoder, self.decoder = parts
        self.layer = layer or feature_layer(encoder)
        self.encoder = keras.Model(encoder.input, [encoder.get_layer(self.layer).output,
                                                   encoder.output])
        self.size = int(encoder.input.shape[1])
        self._numpy = keras.ops.convert_to_numpy
        self.eager = eager

    def __call__(self, x: np.ndarray, pad_to: int | None = None, reconstruct: bool = True):
        """(features, reconstruction | None) of a float batch; the reconstruction at each
        image's own brightness and contrast, as the anomaly scores read it
        (`anomaly.own_brightness`)."""
        n = len(x)
        if pad_to and 0 < n < pad_to:  # one batch shape: Keras traces its function once
            x = np.concatenate([x, np.zeros((pad_to - n, *x.shape[1:]), x.dtype)])
        if self.eager:  # see `fit`
            feats, z = (np.asarray(self._numpy(v), np.float32)
                        for v in self.encoder(x, training=False))
        else:
            feats, z = (np.asarray(v, np.float32) for v in self.encoder.predict_on_batch(x))
        if not reconstruct:
            return feats[:n], None
        return feats[:n], own_brightness(x[:n], self.decoder.predict_on_batch(z)[:n])


# -- the signals ------------------------------------------------------------------------------
def smooth(maps: np.ndarray) -> np.ndarray:
    """A light Gaussian blur of (n, size, size) maps."""
    from scipy.ndimage import gaussian_filter

    sigma = SMOOTH * maps.shape[-1]
    return gaussian_filter(np.asarray(maps, np.float32), (0, sigma, sigma), mode="nearest")


def residual(x: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Squared reconstruction error per pixel, averaged over the channels: (n, size, size)."""
    d = np.asarray(x, np.float32) - np.asarray(recon, np.float32)
    return (d * d).mean(axis=-1)


def patches(feats: np.ndarray) -> np.ndarray:
    """Each place's features averaged with its 3x3 neighbours (local context, as PatchCore
    does), on a grid of at most MAX_GRID places a side: (n, h, w, channels). Edges repeat
    their border (scipy's uniform_filter, mode "nearest"); only the kept places are averaged,
    as nine strided sums (a quarter of the work of filtering every place, and no pass along a
    strided axis)."""
    n, h, w, c = feats.shape
    step = -(-h // MAX_GRID)
    padded = np.pad(np.asarray(feats, np.float32), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    out = np.zeros((n, -(-h // step), -(-w // step), c), np.float32)
    for dy in range(3):
        for dx in range(3):
            out += padded[:, dy:dy + h:step, dx:dx + w:step, :]
    return out / 9


def upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """(n, h, w) values to (n, size, size), bilinear."""
    if grid.shape[1] == size:
        return grid.astype(np.float32)
    return np.stack([np.asarray(Image.fromarray(g.astype(np.float32), "F")
                                .resize((size, size), Image.Resampling.BILINEAR)) for g in grid])


class Bank:
    """Nearest-neighbour distances to the bank of normal patch features (exact, FAISS)."""

    def __init__(self, bank: np.ndarray):
        import faiss

        self.index = faiss.IndexFlatL2(bank.shape[1])
        self.index.add(np.ascontiguousarray(bank, np.float32))

    def distance(self, grid: np.ndarray) -> np.ndarray:
        """(n, h, w, c) patch features -> (n, h, w) distance to the nearest bank vector."""
        n, h, w, c = grid.shape
        d2, _ = self.index.search(grid.reshape(-1, c), 1)
        return np.sqrt(np.maximum(d2[:, 0], 0.0)).reshape(n, h, w).astype(np.float32)


def signals(net: Net, bank: Bank | None, x: np.ndarray, pad_to: int | None = None):
    """({signal: (n, size, size) smoothed raw values}, reconstructions) of a float batch."""
    feats, recon = net(x, pad_to)
    out = {"residual": smooth(residual(x, recon))}
    if bank is not None:
        out["features"] = smooth(upsample(bank.distance(patches(feats)), net.size))
    return out, recon


def combine(raw: dict[str, np.ndarray], stats: MapStats | None, method: str) -> np.ndarray:
    """The map of `method` from the raw signals: a signal's z-score against normal images at
    each pixel, the sum of both z-scores, or the raw residual."""
    if method == "residual" or stats is None:
        return raw["residual"]
    z = {s: (raw[s] - stats.mean[s]) / stats.std[s] for s in stats.mean if s in raw}
    if method == "sum-z":
        return (z["residual"] + z["features"]).astype(np.float32)
    return z[method.removesuffix("-z")].astype(np.float32)


# -- fitting what normal images leave ---------------------------------------------------------
def fit(parts, images: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray,
        batch_size: int = 64, progress=None, layer: str | None = None) -> MapStats | None:
    """Map statistics of a model from its training collection's normal images: the bank from
    a seeded sample of the training split, per-pixel statistics from the validation split
    (below MIN_CALIBRATION validation images, a third of the training sample, kept out of the
    bank, joins them: a pixel's own bank patches would measure 0). None without training
    images. Costs one pass over at most BANK_IMAGES + CALIBRATION images. `layer`: another
    encoder layer than FEATURE_BLOCK's (bench/anomaly_maps.py compares them)."""
    train_rows, val_rows = np.asarray(train_rows), np.asarray(val_rows)
    if len(train_rows) == 0:
        return None
    # eager, not through a predict function: a new model's predict function is one more
    # tf.function trace, and TensorFlow warns about retracing past a few in a process that
    # trains, evaluates, fits these and extracts (`fext build`); eager costs ~3x a forward pass,
    # a few seconds once per model (the decoder's predict function is traced already)
    net = Net(parts, layer, eager=True)
    pool = sample_rows(train_rows, BANK_IMAGES + (CALIBRATION if len(val_rows) < MIN_CALIBRATION
                                                  else 0))
    if len(val_rows) >= MIN_CALIBRATION:
        bank_rows, calib = pool, sample_rows(val_rows, CALIBRATION)
        fitted = f"{len(calib)} validation images"
    else:
        held = np.zeros(len(pool), bool)
        held[2::3] = len(pool) >= 3  # a third of the sample, when there are three images
        bank_rows = pool[~held]
        calib = np.concatenate([val_rows, pool[held]]) if held.any() or len(val_rows) else pool
        fitted = (f"{len(val_rows)} validation and {int(held.sum())} training images"
                  if held.any() or len(val_rows) else f"{len(calib)} training images (in the bank)")
    bank = _bank(net, images, bank_rows, batch_size)
    sums, samples = _calibrate(net, Bank(bank), images, calib, batch_size)
    count = len(calib)
    mean = {s: (v[0] / count).astype(np.float32) for s, v in sums.items()}
    std = {}
    for s, (_, squares) in sums.items():
        sd = np.sqrt(np.maximum(squares / count - mean[s].astype(np.float64) ** 2, 0.0))
        std[s] = np.maximum(sd, STD_FLOOR * max(float(np.median(sd)), 1e-6)).astype(np.float32)
    stats = MapStats(mean, std, bank.astype(np.float16), net.layer, {}, fitted,
                     {"calibration": int(count), "bank_images": int(len(bank_rows))})
    stats.scale = {m: _scale(_pixels(samples, stats, m)) for m in METHODS}
    return stats


def _bank(net: Net, images: np.ndarray, rows: np.ndarray, batch_size: int) -> np.ndarray:
    """BANK patch feature vectors, the same number from each image, at seeded places."""
    rng = np.random.default_rng(0)
    per = max(1, -(-BANK // max(len(rows), 1)))
    out = []
    for _, x in iter_batches(images, rows, batch_size):
        grid = patches(net(x, batch_size, reconstruct=False)[0])
        flat = grid.reshape(len(x), -1, grid.shape[-1])
        for one in flat:
            out.append(one[rng.choice(len(one), min(per, len(one)), replace=False)])
    bank = np.concatenate(out)
    if len(bank) > BANK:
        bank = bank[np.sort(rng.choice(len(bank), BANK, replace=False))]
    return bank


def _calibrate(net: Net, bank: Bank, images: np.ndarray, rows: np.ndarray, batch_size: int):
    """Per signal: (sum, sum of squares) per pixel over `rows`, and (seeded) sampled pixels
    of each image with their places, for the quantiles of the colour scale."""
    rng = np.random.default_rng(1)
    sums: dict[str, list] = {}
    samples: dict[str, list] = {}
    places = []
    for _, x in iter_batches(images, rows, batch_size):
        raw, _ = signals(net, bank, x, batch_size)
        pick = rng.integers(0, net.size * net.size, (len(x), 64))
        places.append(pick)
        for s, v in raw.items():
            v64 = v.astype(np.float64)
            acc = sums.setdefault(s, [0.0, 0.0])
            acc[0] = acc[0] + v64.sum(axis=0)
            acc[1] = acc[1] + (v64 * v64).sum(axis=0)
            samples.setdefault(s, []).append(np.take_along_axis(v.reshape(len(x), -1), pick, 1))
    where = np.concatenate(places).reshape(-1)
    return sums, {s: (np.concatenate(v).reshape(-1), where) for s, v in samples.items()}


def _pixels(samples: dict, stats: MapStats, method: str) -> np.ndarray:
    """`method`'s values at the sampled pixels of normal images."""
    where = next(iter(samples.values()))[1]
    raw = {s: v[None, :] for s, (v, _) in samples.items()}
    flat = MapStats({s: m.reshape(-1)[where][None, :] for s, m in stats.mean.items()},
                    {s: m.reshape(-1)[where][None, :] for s, m in stats.std.items()},
                    stats.bank, stats.layer, {}, stats.fitted)
    return combine(raw, flat, method)


def _scale(values: np.ndarray) -> list[float]:
    lo, hi = (float(v) for v in np.quantile(values, SCALE))
    return [lo, max(hi, lo + 1e-6)]


# -- a model's maps ---------------------------------------------------------------------------
class Mapper:
    """A model's anomaly maps: its network and statistics, ready for batches of images.
    Thread-safe (one forward pass at a time), for the app's routes."""

    def __init__(self, autoencoder, stats: MapStats | None, note: str = ""):
        from .encoding import extraction_parts

        self.net = Net(extraction_parts(autoencoder), stats.layer if stats else None)
        self.stats = stats
        self.bank = Bank(stats.bank) if stats is not None else None
        self.method = METHOD if stats is not None else "residual"
        self.note = note
        self.size = self.net.size
        self._lock = threading.Lock()

    @classmethod
    def open(cls, ws, record, progress=None) -> Mapper:
        """The mapper of model `record` (fext.registry.ModelRecord): its kept statistics; for a
        model trained before maps existed, computed now from its training collection and kept
        (said in `note`); where that collection is gone, the raw residual (said too). Kept
        statistics of another encoder layer than FEATURE_BLOCK's (fitted before the block
        changed) are fitted again the same way, or used as they are where they cannot be."""
        from .model import load

        autoencoder = load(record.path)
        stats, note = stored_stats(record), ""
        if stats is None or stats.layer != feature_layer(autoencoder):
            stats, note = _first_use(ws, record, autoencoder, progress, stats)
        return cls(autoencoder, stats, note)

    def signals(self, x: np.ndarray, batch_size: int = 64):
        with self._lock:
            return signals(self.net, self.bank, x, batch_size)

    def maps(self, x: np.ndarray, batch_size: int = 64,
             method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(maps (n, size, size) float32, reconstructions (n, size, size, 3)) of a float batch."""
        raw, recon = self.signals(x, batch_size)
        return combine(raw, self.stats, method or self.method), recon

    def scale(self, maps: np.ndarray | None = None) -> list[float]:
        """[value where colour starts, where it saturates]: normal pixels' median and 99.9th
        percentile; without statistics, this image's own (say so where it is shown)."""
        if self.stats is not None:
            return self.stats.scale[self.method]
        return _scale(maps)

    def describe(self) -> dict:
        """What the values mean, for every output that carries maps."""
        return {"method": self.method, "size": self.size,
                "text": meaning(self.method, self.stats.fitted if self.stats else None),
                "scale": [round(v, 6) for v in self.stats.scale[self.method]] if self.stats else None,
                **({"note": self.note} if self.note else {})}


def meaning(method: str, fitted: str | None) -> str:
    """What a map's values are, said wherever maps are shown or written."""
    if fitted is None:
        return ("raw reconstruction residual (squared error per pixel, mean over channels), not "
                "normalised: this model keeps no map statistics")
    return {"sum-z": "sum of two z-scores against normal images at each pixel: the "
                     "reconstruction residual's and the encoder features' distance to the "
                     "nearest normal patch",
            "residual-z": "z-score of the reconstruction residual against normal images at "
                          "each pixel",
            "features-z": "z-score of the encoder features' distance to the nearest normal "
                          "patch, against normal images at each pixel",
            "residual": "raw reconstruction residual"}[method] + f" (statistics of {fitted})"


def kept(record) -> bool:
    """Whether model `record` keeps map statistics (without loading them, or Keras)."""
    return (record.dir / stats_file(record.fingerprint)).is_file()


def stored_stats(record) -> MapStats | None:
    """The map statistics kept with a model, or None (a model trained before they existed)."""
    path = record.dir / stats_file(record.fingerprint)
    try:
        return MapStats.load(path) if path.is_file() else None
    except (OSError, ValueError, KeyError):  # damaged: fitted again on first use, as if missing
        return None


def _first_use(ws, record, autoencoder, progress,
               earlier: MapStats | None = None) -> tuple[MapStats | None, str]:
    """Statistics for a model that has none, or only `earlier` ones of another layer: fitted
    now on its training collection and kept beside it (the next use reads them); where that
    collection is not there, `earlier` as they are, else None."""
    from .collection import Collection
    from .encoding import extraction_parts
    from .workspace import atomic_path

    data = record.config.data
    try:
        coll = Collection.open(ws, data.images, data.image_size, data.fit)
        train, val = (coll.items(s)["row"].to_numpy() for s in ("train", "val"))
    except FileNotFoundError:
        if earlier is not None:  # still a map of this model: the layer maps read before
            return earlier, ""
        return None, ("this model was trained before anomaly maps and its training images are "
                      "no longer scanned here, so the maps are the raw reconstruction residual; "
                      "retrain (or rescan its folder) for normalised maps")
    if progress:
        progress("map statistics", 0, 1)
    stats = fit(extraction_parts(autoencoder), coll.images, train, val)
    if stats is None:
        return earlier, ("" if earlier is not None else
                         "the training collection has no images: raw reconstruction residual")
    with atomic_path(record.dir / stats_file(record.fingerprint), ".npz") as tmp:
        stats.save(tmp)
    if progress:
        progress("map statistics", 1, 1)
    if earlier is not None:
        return stats, (f"this model's map statistics were made for an earlier kind of map: "
                       f"computed again now, on {stats.fitted} of its training collection, and "
                       f"kept with it")
    return stats, (f"this model was trained before anomaly maps: their statistics were computed "
                   f"now, on {stats.fitted} of its training collection, and kept with it")


# -- showing a map over its image -------------------------------------------------------------
def content_box(width: int, height: int, size: int, fit: str) -> tuple[int, int, int, int]:
    """Where an image of width x height lies in its size x size model input (fext.images
    fit_square: `pad` centres it between white bars, as PIL's ImageOps.pad does; `crop` fills
    the square with its centre, so the whole square is the image's centre)."""
    if fit == "crop" or width == height or min(width, height) <= 0:
        return 0, 0, size, size
    if width > height:
        h = round(height / width * size)
        y = round((size - h) * 0.5)
        return 0, y, size, y + h
    w = round(width / height * size)
    x = round((size - w) * 0.5)
    return x, 0, x + w, size


def crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The part of a width x height image a `crop` model input shows: its central square."""
    side = min(width, height)
    x, y = (width - side) // 2, (height - side) // 2
    return x, y, x + side, y + side


# colour ramp of the heat map: (position, r, g, b, alpha); normal pixels stay transparent
RAMP = np.array([(0.0, 40, 60, 200, 0), (0.25, 0, 190, 230, 110), (0.5, 250, 230, 0, 190),
                 (0.75, 250, 130, 0, 225), (1.0, 215, 0, 0, 240)], np.float32)


def colour(values: np.ndarray, scale: list[float]) -> np.ndarray:
    """(h, w) map values to RGBA uint8 through RAMP, from scale[0] (transparent) to scale[1]."""
    t = np.clip((values - scale[0]) / max(scale[1] - scale[0], 1e-9), 0.0, 1.0)
    return np.stack([np.interp(t, RAMP[:, 0], RAMP[:, k]) for k in range(1, 5)], -1).astype(np.uint8)


def heat(values: np.ndarray, scale: list[float], width: int, height: int, fit: str,
         long_side: int = 256) -> Image.Image:
    """The map as an RGBA picture at the image's own aspect ratio (long side `long_side`):
    the model input's padding cut away (`pad`), or transparent outside the central square
    the model saw (`crop`)."""
    size = values.shape[-1]
    width, height = max(int(width), 1), max(int(height), 1)
    k = long_side / max(width, height)
    out_w, out_h = max(1, round(width * k)), max(1, round(height * k))
    rgba = Image.fromarray(colour(values, scale), "RGBA")
    if fit == "crop":
        canvas = Image.new("RGBA", (out_w, out_h), (0, 0, 0, 0))
        x0, y0, x1, y1 = (round(v * k) for v in crop_box(width, height))
        canvas.paste(rgba.resize((max(1, x1 - x0), max(1, y1 - y0)), Image.Resampling.BILINEAR),
                     (x0, y0))
        return canvas
    return rgba.crop(content_box(width, height, size, fit)).resize((out_w, out_h),
                                                                   Image.Resampling.BILINEAR)


def unpadded(pixels: np.ndarray, width: int, height: int, fit: str) -> Image.Image:
    """A model-input picture (size x size x 3, uint8 or [0, 1] floats) cut to the image's own
    aspect ratio: what the model saw of it, without the padding."""
    a = np.asarray(pixels)
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)
    return Image.fromarray(a).crop(content_box(width, height, a.shape[0], fit))


def picture(path: Path, pixels: np.ndarray, fit: str, long_side: int = 256) -> Image.Image:
    """The image at its own aspect ratio, long side `long_side`: the file itself (EXIF
    orientation applied), or, where it cannot be read any more, what the model saw of it."""
    from .images import preview

    try:
        img = preview(path, long_side)
    except Exception:  # a file gone or unreadable since it was scanned
        size = np.asarray(pixels).shape[0]
        img = unpadded(pixels, size, size, fit)
    k = long_side / max(img.size)  # small images are enlarged: a map over 32 px is unreadable
    return img.resize((max(1, round(img.width * k)), max(1, round(img.height * k))),
                      Image.Resampling.LANCZOS if k < 1 else Image.Resampling.BICUBIC)


def overlay(base: Image.Image, values: np.ndarray, scale: list[float], fit: str,
            opacity: float = 0.6) -> Image.Image:
    """The map over the image (`picture`), at the image's aspect ratio."""
    layer = heat(values, scale, base.width, base.height, fit, max(base.size))
    if layer.size != base.size:
        layer = layer.resize(base.size, Image.Resampling.BILINEAR)
    alpha = np.asarray(layer.getchannel("A"), np.float32) * opacity
    layer.putalpha(Image.fromarray(alpha.astype(np.uint8), "L"))
    return Image.alpha_composite(base.convert("RGBA"), layer).convert("RGB")


def display_size(path: Path, width: int, height: int) -> tuple[int, int]:
    """An image's width and height as shown (EXIF orientation applied): the manifest keeps
    the stored ones; a file that cannot be read keeps them."""
    try:
        from .images import open_image

        with open_image(path) as img:
            if img.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated a quarter turn
                return int(height), int(width)
    except Exception:
        pass
    return int(width), int(height)


# -- files, for the command line --------------------------------------------------------------
def file_stem(rank: int, path: str, width: int = 5) -> str:
    """`00003-red_red_001`: the rank (unique, and the files sort as the ranking does) and the
    image's path, with anything but letters, digits, '.', '_' and '-' made '_'."""
    import re

    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(Path(path).with_suffix("")))[:80].strip("._")
    return f"{rank:0{width}d}-{slug or 'image'}"


def write_maps(ws, art, record, ranked, dest: Path, progress=None,
               batch_size: int = 32) -> tuple[dict, list[dict]]:
    """For each row of `ranked` (fext.anomaly.ranking of extraction `art` of model `record`:
    id, rank, path), write into `dest` the map over the image (PNG, at the image's own aspect
    ratio) and the map's values (float32 .npy, size x size, the model input's square: padding
    included). Returns (what the values mean, [{"png", "npy"} per row, in its order])."""
    dest.mkdir(parents=True, exist_ok=True)
    mapper = Mapper.open(ws, record, progress)
    coll = art.collection(ws)
    items = art.items.iloc[ranked["id"].to_numpy()]
    width = max(5, len(str(int(ranked["rank"].max())))) if len(ranked) else 5
    files = []
    for start, x in iter_batches(coll.images, items["row"].to_numpy(), batch_size):
        values, _ = mapper.maps(x, batch_size)
        for j, v in enumerate(values):
            row = ranked.iloc[start + j]
            stem = dest / file_stem(int(row["rank"]), row["path"], width)
            np.save(stem.with_suffix(".npy"), v.astype(np.float32))
            base = picture(art.root / row["path"], x[j], coll.fit)
            overlay(base, v, mapper.scale(v), coll.fit).save(stem.with_suffix(".png"))
            files.append({"png": str(stem.with_suffix(".png")), "npy": str(stem.with_suffix(".npy"))})
        if progress:
            progress("maps", len(files), len(items))
    return {"dir": str(dest), **mapper.describe()}, files
