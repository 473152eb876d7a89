"""Anomaly rankings through the commands a user runs, against PCA and raw pixels in the same run.

Two questions, two benchmarks (both on the demo digits by default, or any labelled folder):

one-class ("unlike what the model learned"): for each label, `fext train --images` a folder of
that label's training-split images (defaults otherwise), `fext extract --images` a folder of
every label's test-split images (never an image the model was trained on), `fext anomalies
--json`: ROC AUC of the ranking (other labels = anomalies). Baselines fitted on the same
normal images: PCA reconstruction error (at the model's feature size) and raw-pixel distance to
the nearest normal image.

odd ones out ("this folder, no reference"): a folder of one label's images with a few percent
of planted odd images of three kinds (another label, photo crops, noise frames); `fext train`
+ `fext extract` on that folder and `fext anomalies`: ROC AUC and the share of planted images
in the top N (N = the number planted), overall and per kind; also each of the score's three
parts (`--score isolation`, `--score reconstruction`, `--score appearance`), the sum of the
first two over medians (the combination shipped before 2026-11-25) and the ranking shipped
before appearance joined it (the larger of the isolation and reconstruction parts' shares), on
the same extraction. Baselines on the same folder: PCA reconstruction error and raw-pixel
isolation (mean distance to the 5 nearest other images, leave-one-out through FAISS: nothing
N x N).

mixed ("a folder with an unwanted series in it"): a flat folder of every label but one, with 40
images of that one and 10 junk files (photo crops, noise frames) planted: odd ones out that are
a small class of their own, each other's nearest neighbours, not single strays. Measured as the
odd-ones-out folders are.

    .venv/bin/python bench/anomaly.py                       # both, every demo digit
    .venv/bin/python bench/anomaly.py --task mixed --mixed-labels 0,3,7
    .venv/bin/python bench/anomaly.py --task one-class --labels 0,1,2
    .venv/bin/python bench/anomaly.py --images DIR --image-size 32
    .venv/bin/python bench/anomaly.py --photos 600 --task one-class   # scenes of photographs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, fext, machine, table
from PIL import Image

PLANTED = {"another label": 0.02, "photo crop": 0.01, "noise frame": 0.01}  # shares of the folder
MIXED_PLANTED, MIXED_JUNK = 40, 10  # images of the held-out label, junk files (mixed folders)


def link(files: list[Path], dest: Path, names: list[str] | None = None) -> Path:
    """A folder holding `files` (hard links: the originals are only read)."""
    for i, f in enumerate(files):
        target = dest / (names[i] if names else f.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(f, target)
    return dest


def pixels(files: list[Path], size: int) -> np.ndarray:
    """Images as the model sees them (the product's decoder), flattened to [0, 1] rows."""
    from fext.images import load

    return np.stack([load(f, size).reshape(-1) for f in files]).astype(np.float32) / 255.0


def pca_error(normal: np.ndarray, queries: np.ndarray, dim: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(dim, len(normal), normal.shape[1]), random_state=0).fit(normal)
    return ((queries - pca.inverse_transform(pca.transform(queries))) ** 2).mean(axis=1)


def knn_distance(db: np.ndarray, queries: np.ndarray | None, k: int) -> np.ndarray:
    """Mean cosine distance to the k nearest rows of `db` (leave-one-out when queries is None)."""
    from fext.anomaly import distance_to_index
    from fext.index import VectorIndex, l2_normalize

    unit = l2_normalize(db)
    index = VectorIndex.build(unit, kind="flat")
    if queries is None:
        return distance_to_index(index, unit, k, skip_self=True)
    return distance_to_index(index, l2_normalize(queries), k)


def auc(scores, truth) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(truth, bool), np.asarray(scores, np.float64)))


def splits(folder: Path, size: int) -> dict[str, list[tuple[Path, str]]]:
    """(file, label) per split, as the product assigns them (from each file's content)."""
    from fext.collection import Collection
    from fext.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        items = Collection.sync(Workspace(tmp), folder, size).items()
    items = items[items["label"] != ""]
    items = items[~items["path"].str.contains("photo_")]  # the demo's planted photos
    return {s: [(folder / p, lab) for p, lab in zip(g["path"], g["label"])]
            for s, g in items.groupby("split")}


def one_class(a, parts, tmp: Path) -> dict:
    test = parts["test"]
    inspect = link([f for f, _ in test], tmp / "inspect", [f"{lab}/{f.name}" for f, lab in test])
    test_x = pixels([f for f, _ in test], a.image_size)
    rows = {}
    for label in a.labels:
        normal = [f for f, lab in parts["train"] + parts["val"] if lab == label]
        folder = link(normal, tmp / f"normal-{label}" / label)
        ws, name = str(tmp / "ws"), f"one-class-{label}"
        t0 = time.time()
        fext("train", "--images", str(folder.parent), "--name", name, "--workspace", ws,
             "--image-size", str(a.image_size), *a.train_args)
        fext("extract", "--name", name, "--images", str(inspect), "--workspace", ws)
        out = json.loads(fext("anomalies", "--name", name, "--top", "0", "--json",
                              "--workspace", ws))
        seconds = time.time() - t0
        truth = [lab != label for _, lab in test]

        def ranked(result):
            score = {r["path"]: r["score"] for r in result["results"]}
            return [score[f"{lab}/{f.name}"] for f, lab in test]

        normal_x = pixels(normal, a.image_size)
        rows[label] = {"fext": auc(ranked(out), truth),
                       "fext reconstruction part": auc(stored(  # as the reference score adds it
                           ws, name, inspect, [f"{lab}/{f.name}" for f, lab in test],
                           lambda art: art.reconstruction_errors()), truth),
                       f"PCA-{a.dim}": auc(pca_error(normal_x, test_x, a.dim), truth),
                       "raw pixels kNN": auc(knn_distance(normal_x, test_x, 1), truth),
                       "score": out["score"], "seconds": seconds}
        print(f"  label {label}: " + "  ".join(f"{k} {v:.3f}" for k, v in rows[label].items()
                                               if isinstance(v, float) and k != "seconds")
              + f"  ({out['score']} score, {seconds:.0f} s)", flush=True)
    return rows


def junk(kind: str, which: int, rng) -> Image.Image:
    """A planted image that is no digit: a 160 px crop of scikit-learn's china or flower
    photograph (`which` picks), or a 64 px frame of noise."""
    from sklearn.datasets import load_sample_image

    if kind == "photo crop":
        photo = load_sample_image(("china.jpg", "flower.jpg")[which % 2])
        y, x = rng.integers(0, photo.shape[0] - 160), rng.integers(0, photo.shape[1] - 160)
        return Image.fromarray(photo[y:y + 160, x:x + 160])
    return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


def planted_folder(a, parts, label: str, tmp: Path, seed: int = 0) -> tuple[Path, dict[str, str]]:
    """One label's images plus planted odd ones; returns the folder and path -> kind."""
    rng = np.random.default_rng(seed)
    normal = [f for s in parts.values() for f, lab in s if lab == label]
    folder = link(normal, tmp / f"odd-{label}")
    kinds = {f.name: "normal" for f in normal}
    n = len(normal)
    others = [f for s in parts.values() for f, lab in s if lab != label]
    for kind, share in PLANTED.items():
        count = max(1, round(share * n))
        for i in range(count):
            name = f"planted_{kind.replace(' ', '_')}_{i}.png"
            img = (Image.open(others[int(rng.integers(len(others)))])
                   if kind == "another label" else junk(kind, i, rng))
            img.convert("RGB").save(folder / name)
            kinds[name] = kind
    return folder, kinds


def odd_ones_out(a, parts, tmp: Path) -> dict:
    """Per label: a folder of that label's images with planted odd ones (PLANTED)."""
    return {label: ranked_folder(a, *planted_folder(a, parts, label, tmp), f"odd-{label}", tmp)
            for label in a.odd_labels}


def mixed_folder(a, parts, label: str, tmp: Path, seed: int = 0) -> tuple[Path, dict[str, str]]:
    """A flat folder of every other label's images, MIXED_PLANTED images of `label` and
    MIXED_JUNK junk files (photo crops and noise frames): odd ones out that are a small class
    of their own, not single strays, as a user's folder with one unwanted series has them."""
    rng = np.random.default_rng(seed)
    every = [f for s in parts.values() for f in s]
    normal = [(f, lab) for f, lab in every if lab != label]
    odd = [(f, lab) for f, lab in every if lab == label]
    odd = [odd[i] for i in rng.permutation(len(odd))[:MIXED_PLANTED]]
    names = [f"{lab}_{f.name}" for f, lab in normal + odd]
    folder = link([f for f, _ in normal + odd], tmp / f"mixed-{label}", names)
    kinds = {n: "normal" for n in names[:len(normal)]}
    kinds.update({n: "another label" for n in names[len(normal):]})
    for i in range(MIXED_JUNK):
        name, kind = f"junk_{i}.png", ("noise frame", "photo crop")[i % 2]
        junk(kind, i // 2, rng).save(folder / name)
        kinds[name] = kind
    return folder, kinds


def mixed(a, parts, tmp: Path) -> dict:
    """Per held-out label: a flat folder of the other labels with that label planted."""
    return {label: ranked_folder(a, *mixed_folder(a, parts, label, tmp), f"mixed-{label}", tmp)
            for label in a.mixed_labels}


def stored(ws: str, name: str, folder: Path, paths: list[str], read) -> np.ndarray:
    """`read(artifacts)` (one value per image) of the extraction of `folder`, in `paths`' order."""
    import pandas as pd

    from fext.artifacts import Artifacts
    from fext.workspace import Workspace

    art = Artifacts.open(Workspace(ws), name, images=folder)
    row = pd.Series(np.arange(len(art.items)), index=art.items["path"])[paths].to_numpy()
    return np.asarray(read(art))[row]


def ranks_before(ws: str, name: str, folder: Path, paths: list[str]) -> np.ndarray:
    """The folder ranking shipped before the appearance part joined it (2026-12-05 to
    2026-12-05), on the same extraction's parts: the share of the folder an image is odder
    than by isolation or by reconstruction error, whichever is higher, the other breaking
    ties. The rules before it are in docs/QUALITY.md with their figures."""
    from fext.anomaly import share_below

    def larger_share(art):
        below = [share_below(art.scores(part)) for part in ("isolation", "reconstruction")]
        return np.maximum(*below) + np.minimum(*below) / max(len(below[0]), 1)

    return stored(ws, name, folder, paths, larger_share)


def auc_top_n(scores: np.ndarray, planted: np.ndarray) -> tuple[float, np.ndarray]:
    """ROC AUC of `scores` for the planted images, and the N highest (N = the number planted)."""
    return auc(scores, planted), np.argsort(-scores, kind="stable")[:planted.sum()]


def ranked_folder(a, folder: Path, kinds: dict[str, str], name: str, tmp: Path) -> dict:
    """Train on `folder` through the CLI and rank it by itself: FEXT's ranking, its parts and
    the baselines, each as ROC AUC and the share of planted images in the top N (overall and
    per planted kind)."""
    from fext.anomaly import relative_sum

    ws = str(a.work / "ws" if a.work else tmp / "ws")
    fext("train", "--images", str(folder), "--name", name, "--workspace", ws,
         "--image-size", str(a.image_size), *a.train_args)
    fext("extract", "--name", name, "--workspace", ws)
    out = json.loads(fext("anomalies", "--name", name, "--top", "0", "--json", "--workspace", ws))
    paths = [r["path"] for r in out["results"]]
    ours = np.array([r["score"] for r in out["results"]])
    part = {}
    for score in ("isolation", "reconstruction", "appearance"):
        res = json.loads(fext("anomalies", "--name", name, "--top", "0", "--json", "--score",
                              score, "--workspace", ws))["results"]
        by_path = {r["path"]: r["score"] for r in res}
        part[score] = np.array([by_path[p] for p in paths])
    relative = stored(ws, name, folder, paths, lambda art: art.reconstruction_errors())
    x = pixels([folder / p for p in paths], a.image_size)
    # PCA at the feature size nearly memorises a folder of a few hundred images, planted ones
    # included (their error is then the lowest); a small PCA is the fair baseline here
    methods = {"fext": ours, "fext before appearance": ranks_before(ws, name, folder, paths),
               "fext isolation part": part["isolation"],
               "fext reconstruction part": part["reconstruction"],
               "fext appearance part": part["appearance"],
               "fext parts summed over medians (before 2026-11-25)": relative_sum(
                   part["isolation"], relative, (np.median(part["isolation"]), np.median(relative))),
               f"PCA-{a.dim}": pca_error(x, x, a.dim),
               "PCA-16": pca_error(x, x, 16), "raw pixels isolation": knn_distance(x, None, 5)}
    kind = np.array([kinds[p] for p in paths])
    planted = kind != "normal"
    rows = {}
    for method, scores in methods.items():
        area, top = auc_top_n(scores, planted)
        r = {"AUC": area, "top-N": float(planted[top].mean())}
        for k in PLANTED:
            keep = (kind == k) | ~planted
            r[f"AUC {k}"] = auc(scores[keep], planted[keep])
            r[f"top-N {k}"] = float(np.isin(np.flatnonzero(kind == k), top).mean())
        rows[method] = r
    print(f"  {name} ({out['score']} score): " + "  ".join(
        f"{m} AUC {r['AUC']:.3f} top-N {r['top-N']:.2f}" for m, r in rows.items()), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=str(REPO / "data" / "demo"), help="labelled folder")
    p.add_argument("--photos", type=int, default=0,
                   help="instead, a labelled photo collection of this many crops (bench/photos.py: "
                        "one label per source photograph, six photographs)")
    p.add_argument("--task", choices=["both", "one-class", "odd-ones-out", "mixed"], default="both",
                   help="mixed: a flat folder of every label but one, with 40 of that one and 10 "
                        "junk files planted (not part of both)")
    p.add_argument("--labels", default=None, help="one-class labels (default: every label)")
    p.add_argument("--odd-labels", default="0,3,7", help="labels of the odd-ones-out folders")
    p.add_argument("--mixed-labels", default="0,3,7", help="held-out labels of the mixed folders")
    p.add_argument("--work", type=Path, default=None,
                   help="keep the folders' workspace here (default: a temporary one)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--dim", type=int, default=128, help="PCA size (the default feature size)")
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="more `fext train` options after --")
    a = p.parse_args()
    a.train_args = [x for x in a.train_args if x != "--"]
    print(machine())
    if a.photos:
        from photos import write_labelled

        a.images = str(write_labelled(Path(tempfile.mkdtemp(prefix="fext-photos-")), a.photos))
        print(f"labelled photo collection: {a.photos} crops of six photographs in {a.images}")
    parts = splits(Path(a.images).resolve(), a.image_size)
    a.labels = a.labels.split(",") if a.labels else sorted({lab for _, lab in parts["train"]})
    a.odd_labels = a.labels[:3] if a.photos else a.odd_labels.split(",")
    a.mixed_labels = a.mixed_labels.split(",")
    with tempfile.TemporaryDirectory(prefix="fext-anomaly-") as tmp:
        tmp = Path(tmp)
        if a.task in ("both", "one-class"):
            print("\none-class: train on one label, rank every label's test images")
            rows = one_class(a, parts, tmp)
            methods = ["fext", "fext reconstruction part", f"PCA-{a.dim}", "raw pixels kNN"]
            body = [[lab] + [r[m] for m in methods] for lab, r in rows.items()]
            means = [float(np.mean([r[m] for r in rows.values()])) for m in methods]
            body.append(["mean"] + means)
            body.append(["min"] + [float(np.min([r[m] for r in rows.values()])) for m in methods])
            print(table(["label"] + [f"{m} AUC" for m in methods], body))
            print(f"fext / best baseline (mean AUC): {means[0] / max(means[2:]):.3f}")
            shutil.rmtree(tmp / "ws", ignore_errors=True)
        if a.task in ("both", "odd-ones-out", "mixed"):
            if a.task == "mixed":
                print(f"\nodd ones out of mixed folders: every label but one, {MIXED_PLANTED} of "
                      f"that one and {MIXED_JUNK} junk files planted, one flat folder")
                rows = mixed(a, parts, tmp)
            else:
                print("\nodd ones out: planted images in one label's folder "
                      + ", ".join(f"{k} {v:.0%}" for k, v in PLANTED.items()))
                rows = odd_ones_out(a, parts, tmp)
            methods = list(next(iter(rows.values())))
            cols = ["AUC", "top-N"] + [f"{m} {k}" for k in PLANTED for m in ("AUC", "top-N")]
            body = [[m] + [float(np.mean([rows[lab][m][c] for lab in rows])) for c in cols]
                    for m in methods]
            print(table(["method (mean over folders)"] + cols, body))


if __name__ == "__main__":
    main()
