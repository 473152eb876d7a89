"""Copy detection on photos: find an edited photo's source, FEXT against what a user would pick
instead, on the same files in the same run.

A collection of distinct photo crops (bench/photos.py) is trained and extracted with one
command each, the way a user does it (`fext train --images DIR`, `fext extract`, defaults);
a seeded sample of its images is edited at the image's own resolution (fext.edits: brightness
and contrast ±20 %, a 2-4 px shift, blur up to σ 0.8, JPEG quality 60-90, a resize, a crop of
up to 5 % per side) and each edit is a query through the product's own search path (the
`Searcher` that `fext search` and the app use). Recall@1 and recall@5 of the source image.
Baselines on the same files: raw pixels at the model's input size (cosine), PCA of them at the
feature size, and imagehash's pHash, dHash and wHash (64 bits, Hamming distance).

    .venv/bin/python bench/copies.py                        # 500 and 2,000 photos
    .venv/bin/python bench/copies.py --sizes 500 --queries 200
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import fext, machine, table
from photos import write_collection
from PIL import Image


def recall(ranked: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of queries whose source is among their first k results."""
    return float((ranked[:, :k] == truth[:, None]).any(axis=1).mean())


def cosine_ranking(db: np.ndarray, queries: np.ndarray, k: int = 5) -> np.ndarray:
    from fext.index import l2_normalize

    sims = l2_normalize(queries) @ l2_normalize(db).T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def hash_ranking(db_imgs, query_imgs, fn, k: int = 5) -> np.ndarray:
    bits = lambda imgs: np.stack([fn(im).hash.reshape(-1) for im in imgs])  # noqa: E731
    db, q = bits(db_imgs), bits(query_imgs)
    dist = (q[:, None, :] != db[None, :, :]).sum(axis=2)
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


def run(size: int, a, tmp: Path) -> list[list]:
    import imagehash

    from fext.edits import edit
    from fext.images import load
    from fext.search import Searcher
    from fext.workspace import Workspace

    folder = tmp / f"photos-{size}"
    paths = write_collection(folder, size, seed=a.seed)
    ws, name = tmp / f"ws-{size}", f"copies-{size}"
    t0 = time.time()
    fext("train", "--images", str(folder), "--name", name, "--workspace", str(ws), *a.train_args)
    trained = time.time() - t0
    fext("extract", "--name", name, "--workspace", str(ws))
    info = json.loads((ws / "models" / name / "metrics.json").read_text())
    rng = np.random.default_rng(a.seed)
    picks = np.sort(rng.choice(len(paths), size=min(a.queries, len(paths)), replace=False))
    qdir = tmp / f"queries-{size}"
    qdir.mkdir()
    originals = [Image.open(p).convert("RGB") for p in paths]
    query_files = []
    for j, i in enumerate(picks):
        q = edit(originals[i], seed=int(rng.integers(2 ** 31)))
        query_files.append(qdir / f"q{j:04d}.jpg")
        q.save(query_files[-1], quality=95)
    truth = picks

    searcher = Searcher.open(Workspace(ws), name)
    row_of = {p: i for i, p in enumerate(searcher.artifacts.items["path"])}
    order = np.array([row_of[p.name] for p in paths])  # collection file i -> index row
    inverse = np.argsort(order)
    ours = []
    for f in query_files:
        hits = searcher.search(str(f), 5)
        ours.append([inverse[row_of[h["path"]]] for h in hits] + [-1] * (5 - len(hits)))
    results = {"FEXT (defaults)": np.array(ours)}

    px = searcher.artifacts.meta["image_size"]
    db_px = np.stack([load(p, px).reshape(-1) for p in paths]).astype(np.float32) / 255
    q_px = np.stack([load(f, px).reshape(-1) for f in query_files]).astype(np.float32) / 255
    results[f"raw pixels ({px} px)"] = cosine_ranking(db_px, q_px)
    from sklearn.decomposition import PCA

    dim = searcher.artifacts.meta["dim"]
    pca = PCA(n_components=min(dim, len(db_px)), random_state=0).fit(db_px)
    results[f"PCA-{dim}"] = cosine_ranking(pca.transform(db_px), pca.transform(q_px))
    queries = [Image.open(f).convert("RGB") for f in query_files]
    for label, fn in (("pHash 64-bit", imagehash.phash), ("dHash 64-bit", imagehash.dhash),
                      ("wHash 64-bit", imagehash.whash)):
        results[label] = hash_ranking(originals, queries, fn)
    best_base = max(recall(r, truth, 1) for m, r in results.items() if not m.startswith("FEXT"))
    rows = []
    for method, ranked in results.items():
        r1, r5 = recall(ranked, truth, 1), recall(ranked, truth, 5)
        rows.append([size, method, r1, r5, f"{r1 / best_base:.3f}" if method.startswith("FEXT")
                     else ""])
    print(f"\n{size} photos: trained in {trained:.0f} s ({info.get('steps_run', '?')} steps; best "
          f"epoch {info['best_epoch']} of {info['epochs_run']}; features "
          f"{searcher.artifacts.meta.get('readout', 'raw')}; test SSIM "
          f"{info['splits']['test'].get('ssim', float('nan')):.3f}); {len(picks)} edited queries")
    print(table(["photos", "method", "recall@1", "recall@5", "FEXT / best baseline"], rows))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="500,2000", help="collection sizes")
    p.add_argument("--queries", type=int, default=200, help="edited queries per collection")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="more `fext train` options after --")
    a = p.parse_args()
    a.train_args = [x for x in a.train_args if x != "--"]
    print(machine())
    with tempfile.TemporaryDirectory(prefix="fext-copies-") as tmp:
        for size in (int(s) for s in a.sizes.split(",")):
            run(size, a, Path(tmp))


if __name__ == "__main__":
    main()
