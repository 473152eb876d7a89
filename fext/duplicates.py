"""Exact and near-duplicate groups of a collection, with a threshold fitted to the collection.

Extraction does the expensive part once: each image's `K` nearest other images with their
cosine similarities (`fext.index.nearest_others`: one batched index search, two N x K arrays,
memory linear in N; the isolation anomaly score reads the same search), and the threshold calibrated on
edited copies of a sample of the collection's own images (`calibrate`). `groups` only reads
those arrays, so a new threshold regroups a million images without searching again.

The score two images are grouped by is their cosine similarity *above the background*: less
the mean of the two images' similarity to their K-th nearest other image (`copy_scores`, the
score normalisation of copy-detection benchmarks). A textured photo's unrelated neighbours are
far closer than a flat one's, so one cosine cut-off cannot fit both; measured on 703 photos
with planted copies, pairwise F1 0.71 at the best cosine threshold, 0.92 with the score
(docs/QUALITY.md).

Grouping rule (no chaining): files with identical content (same SHA-1) are one item. Items
are visited in order of their closest match (items with identical files first, then the
highest score an item has with any other, then how many items pass the threshold with it,
then manifest order), so a pair of copies is grouped before a look-alike with many partners
can take one of them; an item not yet grouped becomes a group's *representative*, and every
not-yet-grouped item among its neighbours that passes the threshold *with the representative*
joins it. So every member is directly similar to its representative, a long string of
slightly-different images never merges into one group, and each file is in at most one group.
The suggested keeper of a group is the file with the most pixels, then the oldest
modification time, then the shortest path.

A pair is called a copy only when a second signal, independent of the model, agrees: the two
images' 64-bit perceptual hashes (`perceptual_hashes`, pHash of the model's input) differ in at
most MAX_HASH_DISTANCE bits, as unrelated images do only 1 % of the time. Features alone grouped
crops of one texture, and look-alike photo crops, whose hashes disagree (docs/QUALITY.md).

A suggested pair must pass a third check: its pixels agree once one image is aligned onto the
other (`fext.agreement`). Scores and hashes compare summaries of two images; two crops of one
photograph can match in both (a held-out folder of 100 photo crops, zoo seed 4: one suggested
removal, a different crop of the same retina), never in aligned pixels. Since the pixels keep
look-alikes out, the hashes need only rule out unrelated images (MAX_HASH_DISTANCE): the
look-alikes' own 1 % distance turned away edited copies whose pixels agreed (a third of the
photos' missed copies on zoo seed 3; on seed 4, a tenth of the textures' and documents').
Where look-alikes crowd the copies (photos, bursts: scores and hashes alone cannot keep them
apart), the scores only shortlist. The pixel check is computed at extraction for the pairs that
pass the first two (`pixel_edges`, an N x K array beside the neighbours); a pair too smooth at
the model's input size to pin down gets a second look at twice the side, read from its files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

K = 8  # nearest other images kept per image: a group is at most K + 1 distinct images
CALIBRATION_SAMPLE = 500  # images whose edited copies calibrate the threshold, at most
CALIBRATION_BATCH = 256  # copies encoded at once
KEEP_COPIES = 0.95  # the threshold keeps at least this share of the edited copies ...
FALSE_GROUPING = 0.005  # ... while at most this share of images is estimated falsely grouped
MAX_COPY_SHARE = 0.5  # more images than this "having a copy" means look-alikes score as copies
MIN_COPIES_KEPT = 0.5  # a threshold finding fewer of the edited copies than this is not offered
MAX_CROWDING = 0.02  # look-alikes passing with this share of images where KEEP_COPIES of copies
# pass: the two overlap too much for a raised threshold to be estimated to 0.5 %. On the zoo,
# every calibration trusted above 2 % put wrong removals in front of the user (4.7 %: bursts
# trained as albums, 4 of 51; 16.5 %: albums, 2 of 53; 20.8 %: photos, 2 of 60), every one
# trusted below it none (textures, documents: 0.0 %; docs/QUALITY.md)
MAX_HASH_DISTANCE = 22  # bits of 64, at most (two unrelated hashes come this close about 1 % of
# the time)
HASH_RULE = (f"at most {MAX_HASH_DISTANCE} of 64 bits apart (as unrelated images come within "
             "only 1 % of the time)")  # how the calibration's texts state it
HASH_CHUNK = 4096  # images hashed at once
PIXEL_FALSE = 0.001  # look-alike pairs passing scores and hashes that the pixel check lets
# through, at most: on zoo seeds 1, 2 and 4 none of 37,224 hard pairs of six kinds did (each
# image's 4 nearest by raw pixels and by hash, every pair of a burst; docs/QUALITY.md)


SCORE = "cosine above the background"  # what thresholds are stated in (stored with the calibration)
# what a stored calibration was decided under: one made under other rules is stale (`find`)
RULES = {"score": SCORE, "max_crowding": MAX_CROWDING,
         "crowded": "pixels must agree (fext.agreement), hashes rule out unrelated images",
         "confirmed": "every suggested pair's aligned pixels agree; hashes rule out unrelated "
                      "images"}


def perceptual_hashes(batch: np.ndarray) -> np.ndarray:
    """64-bit perceptual hashes of uint8 images (N, s, s, 3), as uint64: pHash (the signs of
    the 8 x 8 lowest frequencies of a 32 x 32 grey image's DCT against their median), the
    layout of light and dark, which brightness, contrast, blur, JPEG and a resize leave alone.
    Computed on the model's input, so a query, a calibration copy and a stored image are hashed
    alike."""
    from PIL import Image

    grey = np.asarray(batch, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    n, side = grey.shape[:2]
    if side % 32 == 0:  # an area average, as PIL's box filter gives
        small = grey.reshape(n, 32, side // 32, 32, side // 32).mean(axis=(2, 4))
    else:
        small = np.stack([np.asarray(Image.fromarray(g, "F").resize((32, 32), Image.Resampling.BOX))
                          for g in grey]) if n else np.zeros((0, 32, 32), np.float32)
    k = np.arange(32)
    dct = np.cos(np.pi * (2 * k[None, :] + 1) * k[:8, None] / 64)  # the 8 lowest of 32 (DCT-II)
    low = np.einsum("un,inm,vm->iuv", dct, small, dct).reshape(n, 64)
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(np.uint64).reshape(n)


def hash_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits in which perceptual hashes `a` and `b` differ (0-64)."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))


def same_picture(first: np.ndarray, second: np.ndarray, sizes, fit: str, closer=None,
                 hashes=None) -> bool:
    """Whether two model inputs (uint8; `sizes`: each file's (width, height)) show one picture
    by the rule a suggested pair of copies passes, less the score: their perceptual hashes
    (`hashes`, where the caller has them) are within MAX_HASH_DISTANCE, then their aligned
    pixels agree (`fext.agreement.agrees`; `closer()`: the pair's `content` at CLOSER px for
    the second look, None where a file cannot be read). What search puts first and what the
    copy figure counts as found. Callers checking many pairs hold `agreement.one_thread()`."""
    from .agreement import agrees, content

    if hashes is None:
        hashes = perceptual_hashes(np.stack([first, second]))
    if hash_distance(*hashes) > MAX_HASH_DISTANCE:
        return False
    a, b = (content(x, int(w), int(h), fit) for x, (w, h) in zip((first, second), sizes))
    return agrees(a, b, closer)


def hashes_of(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The perceptual hashes of `images[rows]` (a collection's memory-mapped decoded images),
    a chunk at a time: memory does not grow with the collection."""
    rows = np.asarray(rows, np.int64)
    out = np.zeros(len(rows), np.uint64)
    for i in range(0, len(rows), HASH_CHUNK):
        out[i:i + HASH_CHUNK] = perceptual_hashes(images[rows[i:i + HASH_CHUNK]])
    return out


def backgrounds(ids: np.ndarray, sims: np.ndarray) -> np.ndarray:
    """Each image's similarity to its K-th nearest other image: what an unrelated image scores
    against it. Where a collection is too small to have K others, 0 (the score is the cosine)."""
    full = (ids[:, -1] >= 0) & np.isfinite(sims[:, -1])
    return np.where(full, sims[:, -1], 0.0).astype(np.float32)


def copy_scores(ids: np.ndarray, sims: np.ndarray, back: np.ndarray | None = None) -> np.ndarray:
    """The N x K neighbour similarities above their pair's background (see the module
    docstring); `back`: `backgrounds(ids, sims)` where the caller has it already."""
    ids, sims = np.asarray(ids), np.asarray(sims, np.float32)
    back = backgrounds(ids, sims) if back is None else back
    return sims - 0.5 * (back[:, None] + back[np.maximum(ids, 0)])


@dataclass(frozen=True)
class Calibration:
    """The threshold fitted to one collection, the rates it was chosen by, and whether they can
    be trusted: `trusted` False means copies and look-alikes overlap in this collection, so
    FEXT suggests no near-duplicate removals (`threshold` is then only where a user might
    start looking). A pair is a copy when its score passes `threshold` and its perceptual
    hashes differ in at most `hash_distance` bits, and where `pixels`, its aligned pixels agree
    too (every calibration that measured its copies' pixels)."""

    threshold: float
    copies_kept: float  # share of the edited copies whose similarity to their source passes
    false_grouping: float  # estimated share of images grouped with an image that is not a copy
    sample: int  # images whose edited copies were measured
    text: str
    trusted: bool = True
    hash_distance: int = MAX_HASH_DISTANCE  # most bits a copy's perceptual hash may differ in
    pixels: bool = False  # near-duplicates must also agree by their aligned pixels
    crowding: float = 0.0  # estimated share of images with a look-alike as close as most copies

    def to_dict(self) -> dict:
        return {**asdict(self), **RULES}


def choose_threshold(copy_sims: np.ndarray, nearest_other: np.ndarray,
                     copy_distance: np.ndarray | None = None,
                     copy_pixels=None) -> Calibration:
    """The threshold from edited copies' similarities to their sources (`copy_sims`) and the
    same images' similarity to their nearest other image of the collection that is not an
    identical file (`nearest_other`); the copies' hash distances to their sources
    (`copy_distance`, aligned with `copy_sims`) count in the share of copies kept.

    A sampled image's nearest other is a real copy already in the folder, or an image that
    merely looks alike. Counted as false groupings, a folder's real copies would push the
    threshold above every copy, so the look-alikes are estimated by reflection (an "empirical
    null"): their scores centre on the median m of the nearest others below the median edited
    copy, and as many pass m + d as fall below m - d. The threshold keeps KEEP_COPIES of the
    edited copies, raised until at most FALSE_GROUPING of images are estimated grouped with a
    look-alike.

    Real copies score as the edited copies do, so the share of images with a real copy can be
    read where look-alikes are rare: the share of nearest others at or above the median edited
    copy, over the half of the copies that pass it (a mixture). The nearest others passing t
    less the copies expected to pass it are then look-alikes too; that count is noisy (about
    ±1.4 points at 500 samples), so it counts only beyond two standard errors, and the larger
    of the two estimates is taken: the reflection alone stated 0.43 % falsely grouped on crops
    of flat wallpaper skies where 7 % were (docs/QUALITY.md). FEXT abstains (trusted=False: no near-duplicate
    suggestions; identical files are still listed) where the numbers say it cannot tell: more
    than MAX_COPY_SHARE of the images would have to be copies to explain how close their
    nearest others sit (handwritten digits: look-alikes score like copies), more than
    MAX_CROWDING of the images pass with a look-alike where KEEP_COPIES of the copies pass
    (crops of flat skies, frames of a burst), or the raised threshold keeps fewer than
    MIN_COPIES_KEPT of the edited copies. Measured on the
    collection zoo (bench/zoo.py, docs/QUALITY.md).

    `copy_pixels` (called unless FEXT abstains on the scores alone; it returns whether each
    edited copy's pixels agree with its source's, aligned with `copy_sims`) is the third check
    every suggested pair passes: the copies kept are those passing all three. Where look-alikes
    crowd the copies it is also what lets FEXT suggest at all: near-duplicates at the threshold
    that keeps KEEP_COPIES of the copies, hashes ruling out only unrelated images, if at least
    MIN_COPIES_KEPT of the copies pass. The pixel check lets at most PIXEL_FALSE of the
    look-alikes through."""
    order = np.argsort(np.asarray(copy_sims, np.float64), kind="stable")
    copy_sims = np.asarray(copy_sims, np.float64)[order]
    confirmed = (np.ones(len(copy_sims), bool) if copy_distance is None
                 else np.asarray(copy_distance)[order] <= MAX_HASH_DISTANCE)
    other = np.asarray(nearest_other, np.float64)
    other = np.sort(other[np.isfinite(other)])

    def share(values: np.ndarray, t: np.ndarray | float) -> np.ndarray:  # share of values >= t
        return 1.0 - np.searchsorted(values, t, side="left") / max(len(values), 1)

    if not len(copy_sims):
        return Calibration(1.0, 0.0, 0.0, 0, "no edited copy to calibrate on", trusted=False)
    high = float(np.median(copy_sims))
    copy_share = float(share(other, high) / max(float(share(copy_sims, high)), 1e-9))
    unrelated = other[other < high]
    m = float(np.median(unrelated)) if len(unrelated) else 0.0

    def false(t: np.ndarray | float) -> np.ndarray:  # look-alikes passing t, share of images
        mirror = np.searchsorted(other, 2 * m - np.asarray(t), side="right") / max(len(other), 1)
        passing, copies = share(other, t), share(copy_sims, t)
        mixture = passing - min(copy_share, 1.0) * copies
        noise = np.sqrt(passing * (1 - passing) / max(len(other), 1)
                        + min(copy_share, 1.0) ** 2 * copies * (1 - copies) / len(copy_sims))
        return np.maximum(mirror, mixture - 2 * noise)  # the mixture beyond its sampling noise

    t = float(np.floor(np.quantile(copy_sims, 1 - KEEP_COPIES) * 1e6) / 1e6)  # never above what was measured
    why = f"keeps {KEEP_COPIES:.0%} of {len(copy_sims)} edited copies"
    crowding = float(false(t))  # look-alikes as close as most copies, as a share of images
    start = t  # the threshold that keeps KEEP_COPIES: the pixel check's, where it is asked
    if crowding > FALSE_GROUPING:
        # the lowest threshold above t, just above a measured value, whose estimate is within it
        values = np.concatenate([other, copy_sims, 2 * m - other])  # where any count moves
        cand = np.unique(np.floor(values[values >= t] * 1e6) / 1e6 + 1e-6)
        within = false(cand) <= FALSE_GROUPING
        t = float(cand[np.argmax(within)]) if within.any() else float(copy_sims[-1] + 1e-6)
        why = (f"raised from {KEEP_COPIES:.0%} of the edited copies so that at most an estimated "
               f"{FALSE_GROUPING:.1%} of images are grouped with an image that is not a copy")
    if copy_share > MAX_COPY_SHARE:
        return Calibration(
            round(t, 6), float(np.mean((copy_sims >= t) & confirmed)), float(false(t)),
            int(len(copy_sims)),
            f"not trusted: {min(copy_share, 1):.0%} of the sampled images sit as close to another "
            "image as an edited copy sits to its source, more than real copies can explain: "
            "images here look alike as much as copies do",
            trusted=False, crowding=crowding)
    agree = (np.ones(len(copy_sims), bool) if copy_pixels is None
             else np.asarray(copy_pixels(), bool)[order])
    pixels = copy_pixels is not None
    if crowding > MAX_CROWDING and pixels:
        by_pixels = float(np.mean((copy_sims >= start) & confirmed & agree))
        if by_pixels >= MIN_COPIES_KEPT:
            return Calibration(
                round(start, 6), by_pixels, crowding * PIXEL_FALSE, int(len(copy_sims)),
                f"look-alikes crowd the copies here (an estimated {crowding:.0%} of images sit "
                f"as close to one as most copies to their source), so scores only shortlist: "
                f"a pair's aligned pixels must agree, and its perceptual hashes be {HASH_RULE}; "
                "on the collection zoo, no look-alike pair passed that check",
                pixels=True, crowding=crowding)
    kept, falsely = float(np.mean((copy_sims >= t) & confirmed & agree)), float(false(t))
    done = partial(Calibration, round(t, 6), kept, sample=int(len(copy_sims)), crowding=crowding)
    if crowding > MAX_CROWDING:
        return done(falsely, text=(
            f"not trusted: where {KEEP_COPIES:.0%} of edited copies are found, an estimated "
            f"{crowding:.0%} of images would be grouped with a look-alike; copies and images that "
            "look alike overlap too much here to tell apart"), trusted=False)
    if kept < MIN_COPIES_KEPT:
        return done(falsely, text=(
            f"not trusted: keeping look-alikes apart would find only {kept:.0%} of edited "
            "copies"), trusted=False)
    # only a suggestion's false groupings pass the pixel check too
    return done(falsely * (PIXEL_FALSE if pixels else 1.0), text=(
        f"calibrated on this collection: {why}; a pair's "
        + ("aligned pixels must agree too, and its perceptual hashes be " if pixels
           else "perceptual hashes must be ") + HASH_RULE), pixels=pixels)


def calibrate(encode, coll, items: pd.DataFrame, features: np.ndarray, ids: np.ndarray,
              sims: np.ndarray, hashes: np.ndarray, fit: str, seed: int = 0,
              sample: int = CALIBRATION_SAMPLE, progress=None) -> Calibration:
    """Edited copies (fext.edits) of a seeded sample of the collection's images, made into
    vectors by `encode` (uint8 images -> unit vectors, as queries are encoded), scored against
    their sources' stored vectors above the source's background (a copy's own background is
    its source's), and the sample's nearest others that are not identical files (`ids`,
    `sims`; identical files are exact duplicates, found by their content): `choose_threshold`,
    with the copies' hash distances to their sources (`hashes`: `perceptual_hashes` of the
    collection's images, rows as `items`), and, where it asks, whether each copy's pixels agree
    with its source's."""
    from .edits import copy_queries

    if len(items) < 2:
        return Calibration(1.0, 0.0, 0.0, 0, "one image: nothing to compare", trusted=False)
    positions, copies, sizes, seeds = copy_queries(coll, items, fit, seed, sample, progress)
    if not len(positions):
        return Calibration(1.0, 0.0, 0.0, 0, "no image could be read to calibrate", trusted=False)
    vectors = np.concatenate([encode(copies[i:i + CALIBRATION_BATCH])
                              for i in range(0, len(copies), CALIBRATION_BATCH)])
    sources = np.asarray(features[positions], np.float32)
    ids, sims = np.asarray(ids), np.asarray(sims)
    back = backgrounds(ids, sims)
    copy_sims = (vectors * sources).sum(axis=1) - back[positions]
    hashes = np.asarray(hashes, np.uint64)

    return choose_threshold(copy_sims, nearest_distinct(ids, copy_scores(ids, sims, back),
                                                        items["sha1"].to_numpy(), positions),
                            hash_distance(perceptual_hashes(copies), hashes[positions]),
                            partial(copies_agree, coll, items, positions, copies, sizes, seeds,
                                    fit, progress))


def copies_agree(coll, items: pd.DataFrame, positions: np.ndarray, copies: np.ndarray,
                 sizes: np.ndarray, seeds: np.ndarray, fit: str, progress=None) -> np.ndarray:
    """Whether each of `copy_queries`' edited copies agrees with its source by their pixels
    (`fext.agreement`), a copy too smooth to pin down at the model's side made again from its
    edit seed for the second look, its source read again from its file."""
    from .agreement import agreeing, closer_content, content
    from .edits import closer_copy

    def closer(i: int):
        source = _file(coll.root, items, int(positions[i]))
        return (closer_copy(source[0], coll.image_size, int(seeds[i]), fit),
                closer_content(*source, fit))

    source = _contents(coll.images, items, positions, fit)
    copy = [content(c, w, h, fit) for c, (w, h) in zip(copies, sizes)]  # CALIBRATION_SAMPLE
    return agreeing(copy, source, progress, "copies' pixels", closer)


class _contents:
    """`content` arrays of `items`' rows at `positions`, read from the memory-mapped images
    one at a time as they are asked for."""

    def __init__(self, images: np.ndarray, items: pd.DataFrame, positions: np.ndarray, fit: str):
        self.images, self.fit = images, fit
        self.rows = items["row"].to_numpy()[positions]
        self.sizes = items[["width", "height"]].to_numpy()[positions]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        from .agreement import content

        for row, (w, h) in zip(self.rows, self.sizes):
            yield content(self.images[row], int(w), int(h), self.fit)


def _file(root: Path, items: pd.DataFrame, position: int) -> tuple[Path, int, int]:
    """(path, width, height) of `items`' row at `position`: what `closer_content` reads."""
    return (root / items["path"].iat[position], int(items["width"].iat[position]),
            int(items["height"].iat[position]))


def pixel_edges(ids: np.ndarray, sims: np.ndarray, items: pd.DataFrame, images: np.ndarray,
                hashes: np.ndarray, calibration: Calibration, fit: str,
                progress=None, root: Path | None = None) -> np.ndarray:
    """Whether each stored neighbour pair (N x K, as `ids`) agrees by its aligned pixels,
    checked only for the pairs that pass the calibrated threshold and hash distance and hold
    different content (the others are False: they are not copies by the first two checks, or
    are identical files); each unordered pair is checked once. With the collection's `root`,
    a pair too smooth to pin down at the model's side gets a second look from its files."""
    from .agreement import agreeing, closer_content

    ids = np.asarray(ids)
    scores = copy_scores(ids, sims)
    sha1 = items["sha1"].to_numpy()
    hashes = np.asarray(hashes, np.uint64)
    src = np.repeat(np.arange(len(ids)), ids.shape[1]).reshape(ids.shape)
    dst = np.maximum(ids, 0)
    want = ((ids >= 0) & (scores >= calibration.threshold)
            & (hash_distance(hashes[src], hashes[dst]) <= calibration.hash_distance)
            & (sha1[src] != sha1[dst]))
    a, b = np.minimum(src, dst)[want], np.maximum(src, dst)[want]
    pairs, where = np.unique(np.stack([a, b], 1), axis=0, return_inverse=True)
    closer = None
    if root is not None:
        def closer(i: int):
            return tuple(closer_content(*_file(root, items, int(p)), fit) for p in pairs[i])

    agree = agreeing(_contents(images, items, pairs[:, 0], fit),
                     _contents(images, items, pairs[:, 1], fit), progress, closer=closer)
    out = np.zeros(ids.shape, bool)
    out[want] = agree[where.reshape(-1)]
    return out


def nearest_distinct(ids: np.ndarray, scores: np.ndarray, sha1: np.ndarray,
                     positions: np.ndarray) -> np.ndarray:
    """For each row of `positions`, the score of its nearest other image whose content differs
    (NaN where none of its neighbours does)."""
    nb = ids[positions]
    distinct = (nb >= 0) & (sha1[np.maximum(nb, 0)] != sha1[positions][:, None])
    first = np.argmax(distinct, axis=1)
    out = scores[positions, first].astype(np.float64)
    out[~distinct.any(axis=1)] = np.nan
    return out


@dataclass(frozen=True)
class Groups:
    """Duplicate groups as flat arrays, largest group first: memory linear in the files grouped
    and no Python object per file, so a million-image collection full of copies regroups in
    seconds and a page of groups is read without the rest. Member arrays run group by group
    (`start` has one offset per group and one past the end), each group's representative's files
    first."""

    start: np.ndarray  # int64, groups + 1
    member: np.ndarray  # int64 item rows
    similarity: np.ndarray  # float32: each member's score with the representative; the
    # representative's is its score with the keeper (NaN where it is the keeper itself)
    exact: np.ndarray  # bool: the member's content is in its group twice or more
    representative: np.ndarray  # int64 item row per group
    keeper: np.ndarray  # int64 item row per group

    def __len__(self) -> int:
        return len(self.start) - 1

    @property
    def removable(self) -> int:
        """Files that could be removed: every member but its group's keeper."""
        return len(self.member) - len(self)

    def group(self, i: int, items: pd.DataFrame) -> dict:
        """Group `i` as representative, keeper, members [{path, similarity, exact}]."""
        paths = items["path"]
        lo, hi = self.start[i], self.start[i + 1]
        return {"representative": paths.iat[self.representative[i]],
                "keeper": paths.iat[self.keeper[i]],
                "members": [{"path": paths.iat[f],
                             "similarity": None if np.isnan(s) else round(float(s), 4),
                             "exact": bool(e)}
                            for f, s, e in zip(self.member[lo:hi], self.similarity[lo:hi],
                                               self.exact[lo:hi])]}

    def dicts(self, items: pd.DataFrame, count: int | None = None) -> list[dict]:
        """The first `count` groups (all by default) as `group` gives them."""
        return [self.group(i, items) for i in range(min(len(self), count or len(self)))]


def _path_ranks(paths: pd.Series) -> np.ndarray:
    """Each row's place in path order (a sortable key for lexsort): the row itself where the
    rows are in path order already, as a collection's are."""
    if paths.is_monotonic_increasing:
        return np.arange(len(paths))
    rank = np.empty(len(paths), np.int64)
    rank[np.argsort(paths.to_numpy(), kind="stable")] = np.arange(len(paths))
    return rank


def groups(ids: np.ndarray, sims: np.ndarray, items: pd.DataFrame, threshold: float,
           hashes: np.ndarray | None = None, most_bits: int = MAX_HASH_DISTANCE,
           agree: np.ndarray | None = None) -> Groups:
    """Duplicate groups at `threshold` (the rule in the module docstring), largest first, ties
    by the representative's path. `items` has path, sha1, width, height, mtime_ns per row
    (rows = ids). With `hashes` (a perceptual hash per row), a pair passes only where its
    hashes also differ in at most `most_bits` bits; with `agree` (N x K, as `ids`), only where
    its aligned pixels agree too (`pixel_edges`)."""
    n = len(items)
    content = pd.factorize(items["sha1"].to_numpy())[0]
    _, first = np.unique(content, return_index=True)
    canon = first[content]  # each image's content stands for it: the first file with that SHA-1
    src = np.repeat(np.arange(n), ids.shape[1])
    dst, sim = ids.reshape(-1).astype(np.int64), sims.reshape(-1)
    ok = (dst >= 0) & (sim >= threshold)
    if agree is not None:  # the third check, where look-alikes crowd the copies
        ok &= np.asarray(agree, bool).reshape(-1)
    src, dst, sim = canon[src[ok]], canon[dst[ok]], sim[ok]
    ok = src != dst
    if hashes is not None:  # the second, independent signal
        ok &= hash_distance(hashes[src], hashes[dst]) <= most_bits
    src, dst, sim = src[ok], dst[ok], sim[ok]
    # both directions, strongest similarity per pair, in order of (a, b)
    pair = np.concatenate([src * n + dst, dst * n + src])
    order = np.argsort(pair)
    pair, s = pair[order], np.concatenate([sim, sim])[order]
    first_of_pair = np.flatnonzero(np.concatenate([[True], pair[1:] != pair[:-1]])) \
        if len(pair) else np.zeros(0, np.int64)
    s = np.maximum.reduceat(s, first_of_pair) if len(pair) else s
    a, b = np.divmod(pair[first_of_pair], n)
    degree = np.bincount(a, minlength=n)
    best = np.full(n, -np.inf, np.float32)
    np.maximum.at(best, a, s)
    starts = np.concatenate([[0], np.cumsum(degree)]).tolist()
    files_of = np.bincount(canon, minlength=n)  # files holding each content (at its canon row)
    candidates = np.union1d(np.flatnonzero(degree), np.flatnonzero(files_of > 1))
    best[files_of > 1] = np.inf  # identical files first: nothing is closer than those
    visit = candidates[np.lexsort((candidates, -degree[candidates], -best[candidates]))]
    taken = np.zeros(n, bool)
    several = (files_of > 1).tolist()
    reps, parts, part_sims = [], [], []
    for rep in visit.tolist():  # greedy and sequential: each group takes what is still free
        if taken[rep]:
            continue
        lo, hi = starts[rep], starts[rep + 1]
        nb, ns = b[lo:hi], s[lo:hi]
        free = ~taken[nb]
        nb = nb[free]
        taken[rep] = True
        taken[nb] = True
        if len(nb) or several[rep]:  # two files or more
            reps.append(rep)
            parts.append(nb)
            part_sims.append(ns[free])
    if not reps:
        empty = np.zeros(0, np.int64)
        return Groups(np.zeros(1, np.int64), empty, np.zeros(0, np.float32), np.zeros(0, bool),
                      empty, empty)
    # each group's items, its representative first (similarity 1 with itself)
    reps = np.array(reps, np.int64)
    width = np.array([len(p) for p in parts]) + 1
    head = np.zeros(width.sum(), bool)
    head[np.cumsum(width) - width] = True
    item, item_sim = np.empty(len(head), np.int64), np.ones(len(head), np.float32)
    item[head], item[~head] = reps, np.concatenate(parts)
    item_sim[~head] = np.concatenate(part_sims)
    item_group = np.repeat(np.arange(len(reps)), width)
    # every file of each item's content, in the order of its items
    by_content = np.argsort(canon, kind="stable")
    first_file = np.searchsorted(canon[by_content], item)
    count = files_of[item]
    offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    member = by_content[np.repeat(first_file, count) + offset]
    group_of = np.repeat(item_group, count)
    similarity, exact = np.repeat(item_sim, count), np.repeat(count > 1, count)
    # keeper: most pixels, then oldest, then shortest path, then path
    path_rank = _path_ranks(items["path"])
    pixels = items["width"].to_numpy(np.int64)[member] * items["height"].to_numpy(np.int64)[member]
    key = np.lexsort((path_rank[member], items["path"].str.len().to_numpy(np.int64)[member],
                      items["mtime_ns"].to_numpy(np.int64)[member], -pixels, group_of))
    sizes = np.bincount(group_of)
    keeper_at = key[np.concatenate([[0], np.cumsum(sizes)[:-1]])]
    keeper = member[keeper_at]
    # the representative's own score is the one with its keeper (none where it is the keeper)
    is_rep = member == reps[group_of]
    similarity[is_rep] = np.where(keeper[group_of[is_rep]] == member[is_rep], np.nan,
                                  similarity[keeper_at][group_of[is_rep]])
    # largest group first, ties by the representative's path; members keep their order
    rank = np.lexsort((path_rank[reps], -sizes))
    placed = np.argsort(rank)[group_of]  # each member's group's new position
    order = np.lexsort((np.arange(len(member)), placed))
    start = np.concatenate([[0], np.cumsum(sizes[rank])]).astype(np.int64)
    return Groups(start, member[order], similarity[order], exact[order], reps[rank], keeper[rank])


def removals(found: Groups, items: pd.DataFrame) -> pd.DataFrame:
    """The suggested removals: every member but its group's keeper (FEXT itself removes nothing)."""
    group = np.repeat(np.arange(len(found)), np.diff(found.start))
    keep = found.member != found.keeper[group]
    paths = items["path"].to_numpy()
    return pd.DataFrame({"path": paths[found.member[keep]],
                         "keeper": paths[found.keeper[group[keep]]],
                         "similarity": found.similarity[keep].astype(np.float64).round(4),
                         "exact": found.exact[keep], "group": group[keep] + 1})


def find(art, threshold: str | float = "auto") -> dict:
    """Duplicate groups of an extraction (`fext.artifacts.Artifacts`) at its calibrated
    threshold ("auto") or a given score (cosine above the background). Reads only.

    Where the calibration abstained, "auto" groups identical files only and `threshold` is
    None: FEXT suggests no near-duplicate removals it cannot stand behind; a threshold the
    user gives still groups at that score. Every pair is confirmed by its perceptual hashes;
    "auto" also asks its aligned pixels to agree (a threshold the user gives is a look at what
    scores and hashes group)."""
    from .errors import UsageError

    nearest, similarity = art.neighbours()
    calibration = art.meta.get("duplicates", {})
    if any(calibration.get(k) != v for k, v in RULES.items()) or "hash_distance" not in calibration:
        raise art.stale("under older duplicate rules (now: a pair of copies is confirmed by its "
                        "perceptual hashes and by its aligned pixels)")
    if threshold == "auto":
        value = float(calibration["threshold"]) if calibration["trusted"] else None
    else:
        try:
            value = float(threshold)
        except ValueError:
            raise UsageError(f"threshold must be auto or a number, got {threshold!r}") from None
        if not -1.0 <= value <= 1.0:
            raise UsageError(f"threshold is a similarity above the background, between -1 and 1; "
                             f"got {value}")
    pixels = threshold == "auto" and value is not None and calibration.get("pixels", False)
    found = groups(np.asarray(nearest), copy_scores(nearest, similarity), art.items,
                   np.inf if value is None else value, art.hashes(),
                   int(calibration["hash_distance"]), art.agreement() if pixels else None)
    return {"images": art.meta["images"], "count": int(len(art.items)), "threshold": value,
            "near_duplicates": value is not None, "pixels": bool(pixels),
            "calibration": calibration, "groups": found,
            "removable": found.removable}
