"""Duplicate groups: quality on photos against perceptual hashing, and grouping at scale.

quality: a collection of distinct photo crops (bench/photos.py) with planted groups: a seeded
sample of its images gets 1-3 edited copies each (fext.edits, at the image's own resolution).
FEXT runs as a user runs it (`fext train`, `fext extract`, `fext duplicates --json`, defaults,
threshold calibrated on the collection); imagehash's pHash (64 bits) is grouped by the same
rule (fext.duplicates.groups over each image's nearest others by Hamming distance) at
imagededup's default threshold (distance <= 10) and at the best threshold in hindsight.
Pairwise precision, recall and F1 of the groups against the planted ones. The rates the
calibration reported (copies found, images falsely grouped) beside the true ones.

scale: synthetic unit vectors of the default size on a clustered background, with planted
near-copies whose cosine similarities are drawn from those measured between real edited copies
(the quality run's, or 0.90-0.99): the index (FAISS, chosen by size as extraction does), each
vector's nearest others (fext.index.nearest_others), their scores above the background
(fext.duplicates.copy_scores) and the groups at the 5th percentile of the planted pairs'
scores; time, peak memory (RSS) and recall of the planted pairs.

    .venv/bin/python bench/duplicates.py                          # quality (500 photos) + 100k, 1M
    .venv/bin/python bench/duplicates.py --task quality --photos 500
    .venv/bin/python bench/duplicates.py --task scale --sizes 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from common import fext, machine, table
from photos import crops
from PIL import Image

SCALE_COLUMNS = ["vectors", "index", "build s", "neighbours s", "grouping s", "total s",
                 "peak RSS MiB (process)", "recall (planted pairs above threshold)",
                 "recall (all planted)", "groups"]
IMAGEDEDUP_DEFAULT = 10  # imagededup's default max Hamming distance for perceptual hashes


def pairs_of(groups: list[set]) -> set:
    return {tuple(sorted(p)) for g in groups for p in combinations(g, 2)}


def scores(found: list[set], truth: list[set]) -> dict:
    f, t = pairs_of(found), pairs_of(truth)
    tp = len(f & t)
    p, r = tp / max(len(f), 1), tp / max(len(t), 1)
    return {"precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-12), "groups": len(found)}


def write_planted(folder: Path, count: int, planted: int, seed: int) -> list[set]:
    """`count` distinct crops plus 1-3 edited copies of `planted` of them; the true groups."""
    from fext.edits import edit

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    images = crops(count, seed)
    sources = set(rng.choice(count, planted, replace=False).tolist())
    truth = []
    for i, (_, img) in enumerate(images):
        name = f"photo_{i:05d}.jpg"
        img.save(folder / name, quality=92)
        if i in sources:
            group = {name}
            for c in range(int(rng.integers(1, 4))):
                copy = f"photo_{i:05d}_copy{c}.jpg"
                edit(img, int(rng.integers(2 ** 31))).save(folder / copy, quality=95)
                group.add(copy)
            truth.append(group)
    return truth


def planted_of(folder: Path) -> list[set]:
    """The true groups of a folder `write_planted` made, from its file names."""
    out: dict[str, set] = {}
    for name in sorted(p.name for p in folder.iterdir()):
        if "_copy" in name:
            source = name.split("_copy")[0] + ".jpg"
            out.setdefault(source, {source}).add(name)
    return list(out.values())


def hash_neighbours(bits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each hash's k nearest others by Hamming distance, as similarities 1 - distance / bits."""
    dist = (bits[:, None, :] != bits[None, :, :]).sum(axis=2).astype(np.float32)
    np.fill_diagonal(dist, np.inf)
    ids = np.argsort(dist, axis=1, kind="stable")[:, :k].astype(np.int32)
    sims = 1.0 - np.take_along_axis(dist, ids, axis=1) / bits.shape[1]
    return ids, sims.astype(np.float32)


def quality(a, tmp: Path) -> list:
    import imagehash

    from fext.duplicates import K, copy_scores, groups

    folder = tmp / "photos"
    ws = str(tmp / "ws")
    if (tmp / "ws").is_dir():  # --keep of an earlier run: its photos and model, extracted again
        truth = planted_of(folder)
        trained = float("nan")
    else:
        truth = write_planted(folder, a.photos, a.planted, a.seed)
        t0 = time.time()
        fext("train", "--images", str(folder), "--name", "dups", "--workspace", ws, *a.train_args)
        trained = time.time() - t0
    fext("extract", "--name", "dups", "--workspace", ws)
    result = json.loads(fext("duplicates", "--name", "dups", "--workspace", ws, "--json"))
    ours = [{m["path"] for m in g["members"]} for g in result["groups"]]
    rows = [["FEXT, calibrated threshold", f"{result['threshold']:.4f}", *_fmt(scores(ours, truth))]]

    paths = sorted(p.name for p in folder.iterdir())
    bits = np.stack([imagehash.phash(Image.open(folder / p)).hash.reshape(-1) for p in paths])
    ids, sims = hash_neighbours(bits, K)
    items = pd.DataFrame({"path": paths, "sha1": paths, "width": 1, "height": 1, "mtime_ns": 0})
    by_distance = {d: scores([{m["path"] for m in g["members"]}
                              for g in groups(ids, sims, items, 1 - d / 64 - 1e-9).dicts(items)],
                              truth)
                   for d in range(0, 33)}
    best = max(by_distance, key=lambda d: by_distance[d]["f1"])
    rows.append([f"pHash, imagededup default (distance <= {IMAGEDEDUP_DEFAULT})",
                 f"{IMAGEDEDUP_DEFAULT}", *_fmt(by_distance[IMAGEDEDUP_DEFAULT])])
    rows.append(["pHash, best distance in hindsight", f"{best}", *_fmt(by_distance[best])])

    # the calibration's reported rates against the true ones at the same threshold
    cal = result["calibration"]
    copy_of = {c: next(iter(sorted(g))) for g in truth for c in g}
    art_ids, art_sims, art_paths = _neighbour_arrays(Path(ws), "dups")
    art_scores = copy_scores(art_ids, art_sims)
    t = result["threshold"]
    pair_sims, pair_scores = [], []
    for i, p in enumerate(art_paths):
        if p in copy_of and copy_of[p] != p:  # a planted copy: its similarity to its source
            src = art_paths.index(copy_of[p])
            hit = art_ids[i] == src
            pair_sims.append(float(art_sims[i][hit][0]) if hit.any() else -1.0)
            pair_scores.append(float(art_scores[i][hit][0]) if hit.any() else -9.0)
    grouped = {m: g for g in ours for m in g}
    truth_of = {m: g for g in truth for m in g}
    false = [p for p in art_paths if p in grouped and not grouped[p] <= truth_of.get(p, {p})]
    print(f"\n{len(paths)} photos ({a.photos} distinct, {a.planted} with 1-3 edited copies, "
          f"{sum(len(g) for g in truth)} files in {len(truth)} planted groups); FEXT trained in "
          f"{trained:.0f} s")
    print(table(["method", "threshold", "precision", "recall", "F1", "groups"], rows))
    ratio = scores(ours, truth)["f1"] / max(by_distance[best]["f1"], 1e-12)
    print(f"FEXT F1 / pHash best-in-hindsight F1: {ratio:.3f}")
    print(table(["rate at the calibrated threshold", "reported (calibration)", "true"], [
        ["edited copies found (similarity to source passes)", f"{cal['copies_kept']:.3f}",
         f"{np.mean(np.array(pair_scores) >= t):.3f}"],
        ["images falsely grouped", f"{cal['false_grouping']:.4f}",
         f"{len(false) / len(art_paths):.4f}"]]))
    return [float(s) for s in pair_sims if s >= 0]


def _neighbour_arrays(ws: Path, name: str):
    from fext.artifacts import Artifacts
    from fext.workspace import Workspace

    art = Artifacts.open(Workspace(ws), name)
    ids, sims = art.neighbours()
    return np.asarray(ids), np.asarray(sims), art.items["path"].tolist()


def _fmt(s: dict) -> list:
    return [f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", s["groups"]]


def synthetic(n: int, dim: int, copy_sims: np.ndarray, seed: int = 0):
    """(vectors, planted pairs, their similarities): a clustered background, 1 % of it copied."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(10, n // 1000), dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    planted = rng.choice(n, n // 100, replace=False)
    target = rng.choice(copy_sims, len(planted))
    noise = rng.normal(size=(len(planted), dim)).astype(np.float32)
    noise -= (noise * x[planted]).sum(axis=1, keepdims=True) * x[planted]  # orthogonal to the source
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    copies = x[planted] * target[:, None] + noise * np.sqrt(1 - target ** 2)[:, None]
    vectors = np.concatenate([x, copies.astype(np.float32)])
    pairs = np.stack([planted, np.arange(n, n + len(planted))], axis=1)
    return vectors, pairs, target


def scale(a, copy_sims: np.ndarray) -> None:
    from fext.duplicates import K, backgrounds, copy_scores, groups
    from fext.index import VectorIndex, nearest_others

    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        vectors, pairs, target = synthetic(n, a.dim, copy_sims, a.seed)
        t0 = time.time()
        index = VectorIndex.build(vectors)
        t1 = time.time()
        ids, sims = nearest_others(index, vectors, K)
        t2 = time.time()
        back = backgrounds(ids, sims)
        scores = copy_scores(ids, sims, back)  # what the product groups by
        planted_scores = target - 0.5 * (back[pairs[:, 0]] + back[pairs[:, 1]])
        threshold = float(np.quantile(planted_scores, 0.05))
        items = pd.DataFrame({"path": np.arange(len(vectors)).astype(str), "sha1": np.arange(len(vectors)),
                              "width": 1, "height": 1, "mtime_ns": 0})
        found = groups(ids, scores, items, threshold)
        t3 = time.time()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        group_of = dict(zip(found.member.tolist(),
                            np.repeat(np.arange(len(found)), np.diff(found.start)).tolist()))
        above = planted_scores >= threshold
        same = np.array([group_of.get(int(s), -1) == group_of.get(int(c), -2) for s, c in pairs])
        rows.append([f"{len(vectors):,}", index.kind, f"{t1 - t0:.1f}", f"{t2 - t1:.1f}",
                     f"{t3 - t2:.1f}", f"{t3 - t0:.1f}", f"{rss:,.0f}",
                     f"{same[above].mean():.3f}", f"{same.mean():.3f}", len(found)])
        del vectors, ids, sims, scores, index, items, found
        print(table(SCALE_COLUMNS, rows[-1:]), flush=True)
    print(table(SCALE_COLUMNS, rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=["both", "quality", "scale"], default="both")
    p.add_argument("--photos", type=int, default=500, help="distinct photos of the quality run")
    p.add_argument("--planted", type=int, default=100, help="of them, how many get edited copies")
    p.add_argument("--sizes", default="100000,1000000", help="vector counts of the scale run")
    p.add_argument("--dim", type=int, default=128, help="vector size (the default feature size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", default=None, help="folder for the quality run's photos and workspace, "
                   "kept afterwards; given again, its model is reused (default: a temporary folder)")
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="more `fext train` options after --")
    a = p.parse_args()
    a.train_args = [x for x in a.train_args if x != "--"]
    print(machine())
    copy_sims = np.linspace(0.90, 0.99, 100)
    if a.task in ("both", "quality"):
        if a.keep:
            measured = quality(a, Path(a.keep))
        else:
            with tempfile.TemporaryDirectory(prefix="fext-dups-") as tmp:
                measured = quality(a, Path(tmp))
        if measured:
            copy_sims = np.array(measured)
            print(f"edited copies' similarity to their source: median {np.median(copy_sims):.3f}, "
                  f"5th percentile {np.quantile(copy_sims, 0.05):.3f}")
    if a.task in ("both", "scale"):
        scale(a, copy_sims)


if __name__ == "__main__":
    main()
