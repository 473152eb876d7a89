"""Anomaly scores (higher = more unusual), answering one of two questions.

*Odd ones out of this folder* (no reference): `combined` weighs, for each image, how odd it is
by three measures, each counted as the share of the folder the image is odder than:
*isolation* (cosine distance from its feature vector to the nearest 5 % of the folder: odd ones
out often come as a series, each other's nearest images), the autoencoder's *reconstruction*
error (over the square root of the image's contrast: `folder_reconstruction`) and its
*appearance* (how far its colour, contrast and edge statistics lie from the nearest 5 % of the
folder's: `appearance`). The flag threshold is a stated share of the folder.

*Unlike what the model learned* (`reference`): images the model was not trained on, scored
against its training collection, the way anomaly-detection tools fit on good and score new: the
mean cosine distance to the K nearest vectors of the training split (a FAISS index made once,
when the model is trained, and kept with it) plus the reconstruction error, each divided by its
median over the validation split (images the model did not train on, like the new ones). The
flag threshold is the validation scores' 99th percentile: about 1 % of normal images flagged.
Isolation within a mixed folder is the wrong question here: an encoder trained on one kind of
image spreads that kind out and packs every other kind together (docs/QUALITY.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

SCORES = ("combined", "isolation", "reconstruction", "appearance")
REFERENCE_SCORES = ("reference",) + SCORES
NEIGHBOURS = 5
FOLDER_NEIGHBOURS = 0.05  # a folder's isolation: distance to the nearest 5 % of it, ...
FOLDER_SAMPLE = 4096  # ... counted in a seeded sample of at most this many images
RECONSTRUCTION = "mse/variance, own brightness"  # how reconstruction errors are measured
# (recorded with them and with a model's reference): the decoder's output at the image's own
# brightness and contrast (`own_brightness`), then its error over the image's pixel variance
EARLIER_RECONSTRUCTION = "mse/variance"  # what extractions and references recorded before
GREY_LEVEL = 1 / 255  # a reconstruction flatter than this has no contrast to stretch
FOLDER_RECONSTRUCTION = "mse/sqrt(variance)"  # ... and how a folder's ranking reads them
RELATIVE_FLOOR = 1e-3  # added to an image's pixel variance, so a flat image's error stays finite
VARIANCE_CHUNK = 1024  # images whose pixel statistics are computed at once (12 MB at 64 px)
APPEARANCE_SIDE = 32  # appearance statistics are measured at (at most) this side, and ...
APPEARANCE_COARSE = 4  # ... again after averaging blocks of this side (8 px from 32)
GREY_LEVELS = 8  # bins of the grey-level histogram of `appearance`
SPREAD_FLOOR = 0.1  # an appearance statistic's robust spread is at least this share of its std
APPEARANCE_SIZE = 2 * 3 * 2 * 3 + GREY_LEVELS  # statistics per image: 2 scales x 3 maps x mean,
# spread x 3 channels, and the histogram
FOLDER_SHARE = 0.02  # without a reference, the top 2 % of a folder are flagged
FALSE_ALARMS = 0.01  # with one, the threshold flags about 1 % of normal images
MIN_CALIBRATION = 100  # fewer validation images than this: the training images help calibrate
SCORE_HELP = (  # what each score means, for the CLI's help and the Anomalies page
    "reference (default where the extraction has it: a folder other than the training folder): "
    "unlike the model's training collection, distance to its 5 nearest training images + "
    "reconstruction error, each relative to its median on validation images; combined (default "
    "otherwise): odd ones out of this folder, the share of the folder with less evidence of "
    "being odd, the evidence of the two of isolation, reconstruction and appearance that find "
    "the image oddest (-log(1 - the share of the folder it is odder than), summed); isolation: "
    "distance to the nearest 5 percent of the folder; reconstruction: the autoencoder's "
    "reconstruction error (its output at the image's own brightness and contrast) relative to the "
    "square root of the image's own contrast (its pixel variance); appearance: distance of "
    "the image's colour, contrast and edge statistics to the nearest 5 percent of the folder's")


@dataclass(frozen=True)
class ReferenceStats:
    """What a model keeps of its training collection to score new images against it."""

    count: int  # training vectors in the reference index
    median_distance: float  # over validation images, to their K nearest training vectors
    median_reconstruction: float  # over validation images
    threshold: float  # the FALSE_ALARMS quantile of validation images' reference scores
    calibration: str  # which images set the medians and the threshold
    reconstruction: str = RECONSTRUCTION  # how the errors were measured

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ReferenceStats:
        """Stats as a model keeps them (those kept before errors were measured at the image's
        own brightness say so: `reconstruction` is then EARLIER_RECONSTRUCTION)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name != "reconstruction"},
                   reconstruction=d.get("reconstruction", EARLIER_RECONSTRUCTION))

    @property
    def current(self) -> bool:
        """Whether new images' errors, measured as extraction measures them now, read
        against these medians and this threshold."""
        return self.reconstruction == RECONSTRUCTION


def reference_score(distance: np.ndarray, recon: np.ndarray, stats: ReferenceStats) -> np.ndarray:
    """Distance to the training vectors plus reconstruction error, each over its normal median."""
    return relative_sum(distance, recon, (stats.median_distance, stats.median_reconstruction))


def distance_to_index(index, features: np.ndarray, k: int = NEIGHBOURS, skip_self: bool = False,
                      chunk: int = 4096) -> np.ndarray:
    """Mean cosine distance of each vector to its k nearest vectors of `index` (a VectorIndex);
    `skip_self`: the vectors are the index's own rows 0..n-1, each leaving itself out."""
    if skip_self:
        from .index import nearest_others

        return isolation_of(nearest_others(index, features, k)[1])
    n = len(features)
    out = np.zeros(n, np.float32)
    k = max(1, min(k, len(index)))
    for start in range(0, n, chunk):
        q = np.ascontiguousarray(features[start:start + chunk], np.float32)
        sims, ids = index.search(q, k)
        sims = np.where(ids < 0, np.nan, sims)
        out[start:start + len(q)] = 1.0 - np.nanmean(sims, axis=1)
    return out


def isolation_of(similarities: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Mean cosine distance to the k nearest other images, from their similarities (n, >= k)."""
    sims = np.asarray(similarities, np.float32)[:, :k]
    if sims.shape[1] == 0 or np.isnan(sims).all():
        return np.zeros(len(sims), np.float32)
    with np.errstate(invalid="ignore"):
        return (1.0 - np.nanmean(sims, axis=1)).astype(np.float32)


def folder_isolation(features: np.ndarray, share: float = FOLDER_NEIGHBOURS,
                     sample: int = FOLDER_SAMPLE, chunk: int = 4096, seed: int = 0,
                     metric: str = "cosine") -> np.ndarray:
    """Each image's distance to the nearest `share` of the folder: to its k-th nearest other
    image, k = `share` of the folder, counted in a seeded sample of at most `sample` images
    (N x `sample` products, not N x N; exact where the folder is no larger). `metric`:
    "cosine" (of L2-normalised features) or "euclidean".

    Why not the nearest 5: odd ones out often come as a series (a scanned page among photos,
    40 of one digit among 1,600 of nine others) and are each other's nearest images, so
    distance to the nearest few ranks them below normal images; measured past the size of a
    series, only an image that belongs to a small part of the folder stands out
    (docs/QUALITY.md, "Odd ones out that come in a series")."""
    x = features
    n = len(x)
    if n < 2:
        return np.zeros(n, np.float32)
    rows = folder_sample(n, sample, seed)
    k = int(min(max(NEIGHBOURS, np.ceil(share * (len(rows) - 1))), len(rows) - 1))
    db = np.ascontiguousarray(x[rows], np.float32)
    db_sq = (db * db).sum(axis=1)
    where = np.full(n, -1)
    where[rows] = np.arange(len(rows))
    out = np.empty(n, np.float32)
    for start in range(0, n, chunk):
        q = np.asarray(x[start:start + chunk], np.float32)
        sims = q @ db.T
        if metric == "euclidean":  # as a similarity: minus the squared distance
            sims = 2 * sims - (q * q).sum(axis=1)[:, None] - db_sq[None, :]
        own = where[start:start + chunk]
        mine = np.flatnonzero(own >= 0)
        sims[mine, own[mine]] = -np.inf  # an image is not its own neighbour
        kth = np.partition(sims, -k, axis=1)[:, -k]
        out[start:start + len(q)] = (np.sqrt(np.maximum(-kth, 0)) if metric == "euclidean"
                                     else 1.0 - kth)
    return out


def folder_sample(n: int, sample: int = FOLDER_SAMPLE, seed: int = 0) -> np.ndarray:
    """The seeded, sorted sample of a folder's `n` images that its isolation is counted in."""
    return (np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
            if n > sample else np.arange(n))


def appearance(images: np.ndarray) -> np.ndarray:
    """What an image looks like, whatever it shows: for each colour channel, the mean and spread
    of its values and of its horizontal and vertical differences, at 32 px and at 8 px, and the
    image's grey-level histogram (8 bins); 44 numbers per image of a uint8 batch (n, s, s, 3).

    Why: the invariance recipe's features group images by what they show and ignore how they
    were taken, so a scanned page, a digit or a blank frame among photos can lie inside the
    photos' cloud of features, where isolation cannot see it (docs/QUALITY.md, "Odd ones out
    by their appearance"). These statistics, of the kind image retrieval used before learnt
    features (colour moments, edge density, histograms), set such an image apart."""
    x = np.asarray(images)
    n, s = len(x), x.shape[1]
    side = max(d for d in range(1, min(s, APPEARANCE_SIDE) + 1) if s % d == 0)
    f = s // side
    y = x.reshape(n, side, f, side, f, 3).mean(axis=(2, 4), dtype=np.float32) * (1.0 / 255.0)
    coarse = max(c for c in (APPEARANCE_COARSE, 2, 1) if side % c == 0)
    out = []
    for z in (y, y.reshape(n, side // coarse, coarse, side // coarse, coarse, 3).mean(axis=(2, 4))):
        for v in (z, np.abs(np.diff(z, axis=2)), np.abs(np.diff(z, axis=1))):
            out += [v.mean(axis=(1, 2)), v.std(axis=(1, 2))]
    grey = np.minimum((y.mean(axis=3) * GREY_LEVELS).astype(np.int64), GREY_LEVELS - 1)
    grey = grey.reshape(n, -1) + GREY_LEVELS * np.arange(n)[:, None]
    hist = np.bincount(grey.ravel(), minlength=n * GREY_LEVELS).reshape(n, GREY_LEVELS)
    out.append(hist.astype(np.float32) / (side * side))
    return np.concatenate(out, axis=1).astype(np.float32)


def folder_appearance(statistics: np.ndarray, sample: int = FOLDER_SAMPLE,
                      seed: int = 0) -> np.ndarray:
    """The appearance part of a folder's ranking: each image's distance to the nearest 5 % of
    the folder in `appearance` statistics, each statistic over its spread in the folder (the
    median absolute deviation, at least SPREAD_FLOOR of its standard deviation, so a statistic
    nearly constant over the folder does not let one image lead on it alone)."""
    x = np.asarray(statistics)
    rows = folder_sample(len(x), sample, seed)
    ref = np.asarray(x[rows], np.float64)
    centre = np.median(ref, axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(ref - centre), axis=0),
                        SPREAD_FLOOR * ref.std(axis=0)) + 1e-6
    return folder_isolation(Standardised(x, centre, spread), sample=sample, seed=seed,
                            metric="euclidean")


class Standardised:
    """Rows of `x` (a memory-mapped array, for one) over their centre and spread, read a slice
    at a time: what `folder_isolation` reads, without a standardised copy of the folder."""

    def __init__(self, x, centre, spread):
        self.x, self.centre, self.spread = x, centre.astype(np.float32), spread.astype(np.float32)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key) -> np.ndarray:
        return (np.asarray(self.x[key], np.float32) - self.centre) / self.spread


def reference_stats(count: int, distances: np.ndarray, recon: np.ndarray, calibration: str,
                    others: tuple[np.ndarray, np.ndarray] | None = None) -> ReferenceStats:
    """Medians and threshold of the reference score over normal images (`distances` to the
    `count` training vectors and reconstruction errors of each). `others`: (distances,
    errors) of more normal images that join the threshold's quantile, each part over those
    images' own medians (training images, which the model redraws better than new ones)."""
    med_d = float(max(np.median(distances), 1e-12))
    med_r = float(max(np.median(recon), 1e-12))
    scores = relative_sum(distances, recon, (med_d, med_r))
    if others is not None:
        own = [float(max(np.median(v), 1e-12)) for v in others]
        scores = np.concatenate([scores, relative_sum(*others, own)])
    return ReferenceStats(count, med_d, med_r, float(np.quantile(scores, 1 - FALSE_ALARMS)),
                          calibration, RECONSTRUCTION)


def reference_of(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray]):
    """What a model keeps of its training collection to score new images against it, from the
    (L2-normalised features, reconstruction errors) of its training and validation splits as
    the encoding step computes them (`fext.encoding.encode_all`; training encodes, this only
    counts, so reading scores never needs Keras): (a FAISS index of the training features,
    ReferenceStats of the validation split's distances to it). Below MIN_CALIBRATION
    validation images (a 99th percentile of a handful is no threshold), the training images
    join the threshold's quantile, each leaving itself out of the neighbours it is measured
    against, and each part of their scores over the training images' own medians.

    Why their own medians: the model redraws the images it trained on better than new ones
    (their median reconstruction error is 0.64-1.08 of the validation images' on the zoo's
    collections, about 0.2 on 150 images of one digit), so pooled as they were they pulled the
    medians and the threshold down: 3-4 in 100 held-out normal images were flagged on some
    collections where 1 in 100 was stated (docs/QUALITY.md, "The anomaly threshold with the
    training images over their own medians"). None where there is nothing to calibrate on (a
    single training image and no validation split)."""
    from .index import VectorIndex

    (train_feats, train_recon), (val_feats, val_recon) = train, val
    index = VectorIndex.build(train_feats)
    dist, recon = distance_to_index(index, val_feats), val_recon
    calibration = f"{len(val_feats)} validation images"
    others = None
    if len(val_feats) < MIN_CALIBRATION and len(train_feats) > 1:
        others = (distance_to_index(index, train_feats, skip_self=True), train_recon)
        calibration += f" and {len(train_feats)} training images (leave-one-out)"
        if len(dist) == 0:  # nothing new to read the medians on: the training images alone
            dist, recon, others = *others, None
    if len(dist) == 0:
        return None
    return index, reference_stats(len(index), dist, recon, calibration, others)


def own_brightness(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Reconstructions `r` at the brightness and contrast of their images `x`: each shifted
    and scaled (one offset and one gain for all its pixels and channels, as a brightness or
    contrast edit changes them) to its image's mean and standard deviation, then clipped to
    [0, 1]. Its tint stays the decoder's.

    Why: the features are trained to ignore brightness and contrast edits (the invariance
    term's views differ by them, `fext.edits`), so the decoder cannot know an image's exact
    exposure, and its error on a flat crop of sky was mostly that: on zoo seed 6's albums the
    five held-out normal images over the reference threshold (1 % stated) were such crops, at
    10 to 30 times the median error. Matching each channel on its own (tint too) flagged one
    where this flags two, but would forgive an image its wrong colours, which the features do
    not ignore (docs/QUALITY.md, "Reconstruction errors at the image's own brightness")."""
    x, r = np.asarray(x, np.float32), np.asarray(r, np.float32)
    mx, mr = x.mean(axis=(1, 2, 3), keepdims=True), r.mean(axis=(1, 2, 3), keepdims=True)
    sx, sr = x.std(axis=(1, 2, 3), keepdims=True), r.std(axis=(1, 2, 3), keepdims=True)
    return np.clip((r - mr) * (sx / np.maximum(sr, GREY_LEVEL)) + mx, 0.0, 1.0)


def reconstruction_error(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Per-image reconstruction error relative to the image's own contrast: the mean squared
    error between input and reconstruction (both in [0, 1]; the reconstruction at the image's
    own brightness and contrast, `own_brightness`) divided by the input's pixel variance (+ RELATIVE_FLOOR).

    Why relative: plain MSE ranks images with little content (a thin stroke, a flat sky) as
    normal whatever they show, because there is little to get wrong; relative to the image's
    own variance the error measures how much of the picture the model failed to explain.
    Measured through the product's one-class path on the demo digits: plain MSE's AUC
    0.82-1.00, this 0.84-1.00, higher on every digit measured (docs/QUALITY.md)."""
    x = np.asarray(x, np.float32)
    d = x - own_brightness(x, r)
    mse = (d * d).reshape(len(d), -1).mean(axis=1)
    return mse / (x.reshape(len(x), -1).var(axis=1) + RELATIVE_FLOOR)


def pixel_statistics(images: np.ndarray, rows: np.ndarray, out=None,
                     chunk: int = VARIANCE_CHUNK) -> np.ndarray:
    """The pixel variance of each of `images[rows]` (a collection's memory-mapped decoded
    images) as the model sees it (`fext.images.to_model_input`, every pixel and channel), a
    chunk at a time: memory does not grow with the collection. `out`, where given, receives
    each image's `appearance` statistics in the same pass (an array, memory-mapped for one,
    of len(rows) x APPEARANCE_SIZE)."""
    from .images import to_model_input

    rows = np.asarray(rows, np.int64)
    variance = np.zeros(len(rows), np.float32)
    for i in range(0, len(rows), chunk):
        pixels = images[rows[i:i + chunk]]
        x = to_model_input(pixels)
        variance[i:i + len(x)] = x.reshape(len(x), -1).var(axis=1)
        if out is not None:
            out[i:i + len(x)] = appearance(pixels)
    return variance


def folder_reconstruction(recon: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """The reconstruction part of a folder's ranking, from the errors relative to contrast
    (`reconstruction_error`) and each image's pixel variance: the mean squared error over the
    square root of the variance (+ RELATIVE_FLOOR), halfway between the plain error and the
    relative one.

    Why not relative, as the reference score keeps it: in a folder of photographs the model
    redraws, a flat crop (a patch of sky) leaves 19 times its variance and ranks first, and so
    do blank frames planted among photos only as much as the folder's own flat crops (AUC 0.80);
    odd ones out with much contrast (digits among wallpapers) rank last (0.38). Over the square
    root (a power fitted across photo folders: 0.3-0.5), blank frames among photos rank at AUC
    0.96 (0.61), photo folders gain up to 0.05 and digit folders stay within 0.01. Plain error,
    the other extreme, passes over odd ones out with little content (docs/QUALITY.md,
    "Reconstruction over the square root of contrast")."""
    v = np.asarray(variance, np.float64) + RELATIVE_FLOOR
    return (np.asarray(recon, np.float64) * np.sqrt(v)).astype(np.float32)


def combined(*parts: np.ndarray) -> np.ndarray:
    """Odd ones out of a folder from its parts (isolation, reconstruction, appearance): the
    share of the folder with less evidence of being odd. An image's evidence on a part is
    -log(1 - the share of the folder it is odder than), as in Fisher's method; its evidence is
    the sum over the two parts that find it oddest.

    Why ranks and not a sum of the values: their spreads differ, and a sum is led by the widest
    (a sum over medians ranked another digit planted among one digit at AUC 0.48, where
    isolation alone found it at 1.00). Why evidence and not the largest share, as shipped
    before with two parts: every part has normal images at the top of its own ranking (flat
    crops for reconstruction, unusual photographs for appearance), which the largest share
    ranks as high as a true odd one, while an odd one is usually odd on two parts (a page among
    photos: appearance and reconstruction). Why the two strongest and not all three: each part
    sees its own kind of odd image, and the part an odd one looks ordinary on (a digit among
    other digits, by its appearance) would only count against it (docs/QUALITY.md, "Odd ones
    out by their appearance")."""
    n = len(parts[0])
    evidence = np.sort([-np.log1p(-share_below(part) * (n / (n + 1))) for part in parts], axis=0)
    return share_below(evidence[-2:].sum(axis=0)).astype(np.float32)


def share_below(scores: np.ndarray) -> np.ndarray:
    """Per score, the share of `scores` strictly lower (0 for the lowest; ties share a value)."""
    s = np.asarray(scores, np.float64)
    return np.searchsorted(np.sort(s), s, side="left") / max(len(s), 1)


def relative_sum(distance: np.ndarray, recon: np.ndarray, medians: tuple[float, float]) -> np.ndarray:
    """Distance plus reconstruction error, each divided by its median over normal images."""
    d, r = np.asarray(distance, np.float64), np.asarray(recon, np.float64)
    return (d / max(medians[0], 1e-12) + r / max(medians[1], 1e-12)).astype(np.float32)


def ranking(items, scores: np.ndarray, top: int | None = None):
    """Items sorted by score, most anomalous first, with rank and score columns."""
    df = items.assign(score=np.asarray(scores, np.float64))
    df = df.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df.head(top) if top else df


def score_parts(kind: str, values: dict[str, float], sorted_scores: dict[str, np.ndarray],
                stats: ReferenceStats | None = None) -> list[dict]:
    """What makes up one image's `kind` score, for a person asking why it ranks where it does:
    each part's value and its share. For `reference`, each part over its normal median and its
    share of their sum (the score); otherwise each part's share of the folder the image is
    odder than (`combined` weighs those: `combined`). `values` holds the image's "isolation",
    "reconstruction", "appearance" (and "reference") values, those it has; `sorted_scores`,
    each part's values over the folder, sorted."""
    if kind == "reference" and stats is not None and "reconstruction" in values:
        recon = values["reconstruction"] / max(stats.median_reconstruction, 1e-12)
        distance = values["reference"] - recon  # the score is their sum (`reference_score`)
        total = max(distance + recon, 1e-12)
        return [{"part": "distance to the nearest training images", "relative": distance,
                 "value": distance * stats.median_distance, "share": distance / total},
                {"part": "reconstruction error", "relative": recon,
                 "value": values["reconstruction"], "share": recon / total}]
    return [{"part": FOLDER_PARTS[p], "value": values[p],
             "share": float(np.searchsorted(sorted_scores[p], values[p], side="left")
                            / max(len(sorted_scores[p]), 1))}
            for p in FOLDER_PARTS if p in values]


FOLDER_PARTS = {  # what a folder's `combined` ranking weighs, as a person reads each part
    "isolation": "isolation (distance to the nearest 5 % of the folder)",
    "reconstruction": "reconstruction error",
    "appearance": "appearance (colour, contrast and edges against the nearest 5 % of the folder)"}
