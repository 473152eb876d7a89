"""The pixel check (fext/agreement.py) on a zoo's pairs: does it keep edited copies and turn away
the look-alikes that crowd them, at the model's 64 px and with its second look at 128 px?
Beside it, on the same pairs, the second check a user would reach for instead: two perceptual
hashes (imagehash's pHash) within imagededup's default distance.

Pairs of each kind (bench/zoo.py writes the collections): every planted edited copy with its
source and with its sibling copies (identical files are left out: their content decides), and
the hard look-alikes: each image's 4 nearest others by raw pixels (16 x 16 grey, correlation)
and by pHash, and every pair of frames of one burst. The rule's parts are dropped one at a
time to show what each holds back.

    .venv/bin/python bench/zoo.py --out /tmp/zoo1 --seed 1            # write the collections
    .venv/bin/python bench/agreement.py --zoo /tmp/zoo1 --kinds photos,bursts,wallpapers
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import machine, table
from PIL import Image

NEAREST = 4  # look-alikes per image, by each of raw pixels and pHash
IMAGEDEDUP_DEFAULT = 10  # bits


def pairs(root: Path) -> tuple[list[str], list[tuple[int, int, int]], np.ndarray]:
    """(paths, [(i, j, is_copy)], pHash distances N x N) of one kind's collection."""
    import imagehash

    truth = json.loads((root / "truth.json").read_text())
    coll = root / "collection"
    paths = sorted(p.relative_to(coll).as_posix() for p in coll.rglob("*") if p.is_file())
    index = {p: i for i, p in enumerate(paths)}
    sha = [hashlib.sha1((coll / p).read_bytes()).hexdigest() for p in paths]
    group = {index[m]: g for g, members in enumerate(truth["copies"]) for m in members}
    same = lambda i, j: group.get(i, -1) == group.get(j, -2)  # noqa: E731
    grey = []
    for p in paths:
        with Image.open(coll / p) as img:
            grey.append(np.asarray(img.convert("L").resize((16, 16), Image.Resampling.BOX),
                                   np.float32).ravel())
    grey = np.stack(grey)
    grey -= grey.mean(1, keepdims=True)
    grey /= np.linalg.norm(grey, axis=1, keepdims=True) + 1e-9
    corr = grey @ grey.T
    np.fill_diagonal(corr, -np.inf)
    bits = np.stack([imagehash.phash(Image.open(coll / p)).hash.ravel() for p in paths])
    dist = (bits[:, None, :] != bits[None, :, :]).sum(-1).astype(float)
    np.fill_diagonal(dist, np.inf)
    found = set()
    for members in truth["copies"]:
        for a, b in itertools.combinations(sorted(index[m] for m in members), 2):
            if sha[a] != sha[b]:
                found.add((a, b))
    for i in range(len(paths)):
        for j in [*np.argsort(-corr[i])[:NEAREST], *np.argsort(dist[i], kind="stable")[:NEAREST]]:
            a, b = sorted((i, int(j)))
            if not same(a, b) and sha[a] != sha[b]:
                found.add((a, b))
    if truth["kind"] == "bursts":
        scene = [p.split("/")[0] if "/" in p else None for p in paths]
        for a, b in itertools.combinations(range(len(paths)), 2):
            if scene[a] and scene[a] == scene[b] and not same(a, b) and sha[a] != sha[b]:
                found.add((a, b))
    return paths, [(a, b, int(same(a, b))) for a, b in sorted(found)], dist


RELAXED = {"without geometry": dict(cover=1.0, offset=0.0),
           "without correlation": dict(correlation=1.0),
           "without misalignment": dict(misaligned=1e9),
           "without local": dict(local=0.0, patch=0.0)}


def measure(root: Path, size: int) -> list:
    """One kind's row: copies kept and look-alikes let through by the pixel check (with its
    second look at CLOSER px, read from the files, for a pair too smooth to pin down), by its
    first look alone, by the first look without each of its parts, and by a pHash distance
    instead."""
    from fext.agreement import check, closer_content, content, unpinned
    from fext.images import load

    t0 = time.time()
    paths, found, dist = pairs(root)
    coll = root / "collection"
    cached = {}

    def pixels(i: int) -> np.ndarray:
        if i not in cached:
            with Image.open(coll / paths[i]) as img:
                shape = img.size
            cached[i] = content(load(coll / paths[i], size), *shape)
        return cached[i]

    def closer(i: int) -> np.ndarray:
        with Image.open(coll / paths[i]) as img:
            return closer_content(coll / paths[i], *img.size)

    checks = [(check(pixels(i), pixels(j)), copy, dist[i, j]) for i, j, copy in found]
    second = [unpinned(c) and check(closer(i), closer(j)).agree
              for (c, _, _), (i, j, _) in zip(checks, found)]
    copies = [c for c in checks if c[1]]
    looks = [c for c in checks if not c[1]]
    shipped = [(c.agree or s, copy) for (c, copy, _), s in zip(checks, second)]
    kept = np.mean([a for a, copy in shipped if copy]) if copies else float("nan")
    passed = sum(a for a, copy in shipped if not copy)

    def rate(rule) -> str:
        kept = np.mean([rule(c, d) for c, _, d in copies]) if copies else float("nan")
        return f"{kept:.2f} / {sum(rule(c, d) for c, _, d in looks)}"

    cells = [f"{kept:.2f} / {passed}", rate(lambda c, d: c.agree)]
    cells += [rate(lambda c, d, r=r: replace(c, **r).agree) for r in RELAXED.values()]
    cells.append(rate(lambda c, d: d <= IMAGEDEDUP_DEFAULT))
    return [root.name, len(copies), len(looks), *cells, f"{time.time() - t0:.0f} s"]


def main() -> None:
    from fext import agreement

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", type=Path, required=True, help="a folder bench/zoo.py wrote")
    p.add_argument("--kinds", default="photos,bursts,wallpapers,albums,textures,documents")
    p.add_argument("--size", type=int, default=64, help="the model's input size")
    a = p.parse_args()
    rows = []
    for kind in a.kinds.split(","):
        rows.append(measure(a.zoo / kind, a.size))
        print(table(COLUMNS, rows[-1:]), flush=True)
    print(f"\n{machine()}; fext/agreement.py: second look at {agreement.CLOSER} px, "
          f"MAX_OFFSET {agreement.MAX_OFFSET}, MAX_RESIDUAL "
          f"{agreement.MAX_RESIDUAL}, MAX_LOCAL {agreement.MAX_LOCAL} (BORDER "
          f"{agreement.BORDER}), MAX_PATCH {agreement.MAX_PATCH}, MIN_MISALIGNED "
          f"{agreement.MIN_MISALIGNED}")
    print(table(COLUMNS, rows, "edited copy pairs kept / hard look-alike pairs let through"))


COLUMNS = ["kind", "edited copy pairs", "hard look-alike pairs", "pixel check",
           "first look only (64 px)", *RELAXED, "pHash d<=10 instead", "time"]

if __name__ == "__main__":
    main()
