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
are visited in order of how many items pass the threshold with them (most first, then
manifest order); an item not yet grouped becomes a group's *representative*, and every
not-yet-grouped item among its neighbours that passes the threshold *with the representative*
joins it. So every member is directly similar to its representative, a long string of
slightly-different images never merges into one group, and each file is in at most one group.
The suggested keeper of a group is the file with the most pixels, then the oldest
modification time, then the shortest path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

K = 8  # nearest other images kept per image: a group is at most K + 1 distinct images
CALIBRATION_SAMPLE = 500  # images whose edited copies calibrate the threshold, at most
KEEP_COPIES = 0.95  # the threshold keeps at least this share of the edited copies ...
FALSE_GROUPING = 0.005  # ... while at most this share of images is estimated falsely grouped


SCORE = "cosine above the background"  # what thresholds are stated in (stored with the calibration)


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
    """The threshold fitted to one collection, and the rates it was chosen by."""

    threshold: float
    copies_kept: float  # share of the edited copies whose similarity to their source passes
    false_grouping: float  # estimated share of images grouped with an image that is not a copy
    sample: int  # images whose edited copies were measured
    text: str

    def to_dict(self) -> dict:
        return {**asdict(self), "score": SCORE}


def choose_threshold(copy_sims: np.ndarray, nearest_other: np.ndarray) -> Calibration:
    """The threshold from edited copies' similarities to their sources (`copy_sims`) and the
    same images' similarity to their nearest other image of the collection (`nearest_other`).

    The highest threshold that keeps KEEP_COPIES of the copies, raised if the estimated share
    of images falsely grouped passes FALSE_GROUPING. An image's nearest other is either a real
    copy already in the collection or not, and in a folder full of duplicates many are real
    copies: counted as false groupings they would push the threshold above every copy. So the
    false share is estimated from the unrelated images alone, by reflection (an "empirical
    null"): their scores centre on `m`, the median of the nearest others that score below the
    median edited copy, and as many pass m + d as fall below m - d. Measured on photos with
    planted copies: pairwise F1 0.89, where counting every nearest other gave 0.01 (docs/QUALITY.md)."""
    copy_sims = np.sort(np.asarray(copy_sims, np.float64))
    other = np.asarray(nearest_other, np.float64)
    other = np.sort(other[np.isfinite(other)])

    def share(values: np.ndarray, t: np.ndarray | float) -> np.ndarray:  # share of values >= t
        return 1.0 - np.searchsorted(values, t, side="left") / max(len(values), 1)

    if not len(copy_sims):
        return Calibration(1.0, 0.0, 0.0, 0, "no edited copy to calibrate on")
    unrelated = other[other < np.median(copy_sims)]
    m = float(np.median(unrelated)) if len(unrelated) else 0.0

    def false(t: np.ndarray | float) -> np.ndarray:  # share of images at or below m - (t - m)
        return np.searchsorted(other, 2 * m - np.asarray(t), side="right") / max(len(other), 1)

    t = float(np.floor(np.quantile(copy_sims, 1 - KEEP_COPIES) * 1e6) / 1e6)  # never above what was measured
    why = f"keeps {KEEP_COPIES:.0%} of {len(copy_sims)} edited copies"
    if float(false(t)) > FALSE_GROUPING:
        # the lowest threshold above t, just above a measured value, whose estimate is within it
        values = np.concatenate([other, copy_sims, 2 * m - other])  # where either count moves
        cand = np.unique(np.floor(values[values >= t] * 1e6) / 1e6 + 1e-6)
        t = float(cand[np.argmax(false(cand) <= FALSE_GROUPING)])
        why = (f"raised from {KEEP_COPIES:.0%} of the edited copies so that at most an estimated "
               f"{FALSE_GROUPING:.1%} of images are grouped with an image that is not a copy")
    return Calibration(round(t, 6), float(share(copy_sims, t)), float(false(t)),
                       int(len(copy_sims)), f"calibrated on this collection: {why}")


def calibrate(encode, coll, items: pd.DataFrame, features: np.ndarray, ids: np.ndarray,
              sims: np.ndarray, fit: str, seed: int = 0, sample: int = CALIBRATION_SAMPLE,
              progress=None) -> Calibration:
    """Edited copies (fext.edits) of a seeded sample of the collection's images, made into
    vectors by `encode` (uint8 images -> unit vectors, as queries are encoded), scored against
    their sources' stored vectors above the source's background (a copy's own background is
    its source's), and the sample's nearest others (`ids`, `sims`): `choose_threshold`."""
    from .edits import copy_queries

    if len(items) < 2:
        return Calibration(1.0, 0.0, 0.0, 0, "one image: nothing to compare")
    positions, copies = copy_queries(coll, items, fit, seed, sample, progress)
    if not len(positions):
        return Calibration(1.0, 0.0, 0.0, 0, "no image could be read to calibrate")
    vectors = np.concatenate([encode(copies[i:i + 256]) for i in range(0, len(copies), 256)])
    sources = np.asarray(features[positions], np.float32)
    ids, sims = np.asarray(ids), np.asarray(sims)
    back = backgrounds(ids, sims)
    copy_sims = (vectors * sources).sum(axis=1) - back[positions]
    return choose_threshold(copy_sims, copy_scores(ids, sims, back)[positions, 0])


def groups(ids: np.ndarray, sims: np.ndarray, items: pd.DataFrame, threshold: float) -> list[dict]:
    """Duplicate groups at `threshold` (the rule in the module docstring), largest first.

    `items` has path, sha1, width, height, mtime_ns per row (rows = ids). Each group:
    representative, keeper, members [{path, similarity, exact}] (the representative first)."""
    n = len(items)
    content = pd.factorize(items["sha1"].to_numpy())[0]
    _, first = np.unique(content, return_index=True)
    canon = first[content]  # each image's content stands for it: the first file with that SHA-1
    src = np.repeat(np.arange(n), ids.shape[1])
    dst, sim = ids.reshape(-1).astype(np.int64), sims.reshape(-1)
    ok = (dst >= 0) & (sim >= threshold)
    src, dst, sim = canon[src[ok]], canon[dst[ok]], sim[ok]
    ok = src != dst
    src, dst, sim = src[ok], dst[ok], sim[ok]
    # both directions, strongest similarity per pair
    a, b = np.concatenate([src, dst]), np.concatenate([dst, src])
    s = np.concatenate([sim, sim])
    order = np.lexsort((-s, b, a))
    a, b, s = a[order], b[order], s[order]
    first_of_pair = np.ones(len(a), bool)
    first_of_pair[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    a, b, s = a[first_of_pair], b[first_of_pair], s[first_of_pair]
    degree = np.bincount(a, minlength=n)
    starts = np.concatenate([[0], np.cumsum(degree)])
    twins = np.bincount(canon, minlength=n) > 1  # contents held by two or more files
    shared = np.flatnonzero(twins[canon])
    copies_of = pd.Series(shared).groupby(canon[shared]).agg(list).to_dict()
    candidates = np.union1d(np.flatnonzero(degree), np.flatnonzero(twins))
    visit = candidates[np.lexsort((candidates, -degree[candidates]))]
    taken = np.zeros(n, bool)
    out = []
    for rep in visit:
        if taken[rep]:
            continue
        nb, ns = b[starts[rep]:starts[rep + 1]], s[starts[rep]:starts[rep + 1]]
        free = ~taken[nb]
        members = [(int(rep), 1.0)] + [(int(j), float(v)) for j, v in zip(nb[free], ns[free])]
        taken[rep] = True
        taken[nb[free]] = True
        # every file of each member's content; "exact": its content is in the group twice or more
        files = [(int(f), sim_, c in copies_of) for c, sim_ in members
                 for f in copies_of.get(c, [c])]
        if len(files) < 2:
            continue
        out.append(_group(items, files, int(rep)))
    out.sort(key=lambda g: (-len(g["members"]), g["representative"]))
    return out


def _group(items: pd.DataFrame, files: list[tuple[int, float, bool]], rep: int) -> dict:
    rows = np.array([f for f, _, _ in files])
    sub = items.iloc[rows]
    pixels = (sub["width"].to_numpy(np.int64) * sub["height"].to_numpy(np.int64))
    paths = sub["path"].to_numpy()
    keeper = rows[np.lexsort((paths, [len(p) for p in paths], sub["mtime_ns"].to_numpy(np.int64),
                              -pixels))[0]]
    return {"representative": items["path"].iat[rep], "keeper": items["path"].iat[keeper],
            "members": [{"path": items["path"].iat[f], "similarity": round(float(s), 4),
                         "exact": bool(e)} for f, s, e in files]}


def removals(found: list[dict]) -> pd.DataFrame:
    """The suggested removals: every member but its group's keeper (FEXT itself removes nothing)."""
    rows = [{"path": m["path"], "keeper": g["keeper"], "similarity": m["similarity"],
             "exact": m["exact"], "group": i + 1}
            for i, g in enumerate(found) for m in g["members"] if m["path"] != g["keeper"]]
    return pd.DataFrame(rows, columns=["path", "keeper", "similarity", "exact", "group"])


def find(art, threshold: str | float = "auto") -> dict:
    """Duplicate groups of an extraction (`fext.features.Artifacts`) at its calibrated
    threshold ("auto") or a given score (cosine above the background). Reads only."""
    from .errors import UsageError

    nearest, similarity = art.neighbours()
    calibration = art.meta.get("duplicates", {})
    if calibration.get("score") != SCORE:
        raise art.stale("before duplicate scores were measured above the background")
    if threshold == "auto":
        value = float(calibration["threshold"])
    else:
        try:
            value = float(threshold)
        except ValueError:
            raise UsageError(f"threshold must be auto or a number, got {threshold!r}") from None
        if not -1.0 <= value <= 1.0:
            raise UsageError(f"threshold is a similarity above the background, between -1 and 1; "
                             f"got {value}")
    found = groups(np.asarray(nearest), copy_scores(nearest, similarity), art.items, value)
    return {"images": art.meta["images"], "count": int(len(art.items)), "threshold": value,
            "calibration": calibration, "groups": found,
            "removable": int(sum(len(g["members"]) - 1 for g in found))}
