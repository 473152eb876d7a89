"""A zoo of collections: every automatic decision measured on many kinds of folder, not one.

Each kind is a folder a user could point FEXT at, built offline and seeded, with what is true
about it written beside it (`truth.json`):

    digits      handwritten digits in one sub-folder per digit (many look-alikes, no copies)
    photos      crops of the photographs scikit-learn and scikit-image ship (bench/photos.py;
                their drawn colour wheel and scanned text left out)
    wallpapers  crops of the photographs in Debian's plasma-workspace-wallpapers (another
                source of real photographs; installed with apt when missing, as `make browser`
                installs Chromium; the kind is left out with a message where it cannot be)
    textures    crops of one texture photograph: every image looks like every other
    bursts      several frames of one scene: the camera moves, the light changes, something
                moves (distinct pictures a person calls "similar", not copies)
    documents   rendered pages of text and forms, mostly white
    albums      photo crops filed in sub-folders that are albums (dates, places), not classes

Into each collection go planted copies (exact files, and everyday edits from fext/edits.py at
the image's own size, sometimes filed in another sub-folder), and planted odd ones out (images
of another kind). Beside it, `heldout/` holds normal images of the same kind that are not in
the collection (for the reference threshold's false-alarm rate, and for the duplicates
suggested in a folder that holds no copies).

    .venv/bin/python bench/zoo.py --out /tmp/zoo --seed 1            # write every kind
    .venv/bin/python bench/zoo.py --out /tmp/zoo --kinds digits,bursts --task duplicates
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
from common import fext, machine, table
from photos import crops, photographs
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

KINDS = ("digits", "photos", "wallpapers", "textures", "bursts", "documents", "albums")
PHOTO_KINDS = ("photos", "wallpapers", "bursts", "albums")
WALLPAPERS = Path("/usr/share/wallpapers")
# the photographs among plasma-workspace-wallpapers' backgrounds (the others are drawings)
WALLPAPER_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
                    "FallenLeaf", "Grey", "Kite", "MilkyWay", "OneStandsOut", "Path",
                    "summer_1am", "Volna")
ALBUMS = ("2023-07 Lisbon", "2024-01 home", "2024-05 garden", "2025-02 skiing", "2025-08 coast")
COPY_SHARE = 0.1  # of a collection's images get planted copies (1 or 2 each)
EXACT_SHARE = 0.3  # of the planted copies are exact files; the rest edited
ODD_SHARE = 0.03  # of a collection are planted odd ones out (another kind)


# -- where each kind's images come from ----------------------------------------------------
def wallpaper_photos() -> dict[str, Image.Image]:
    """The wallpaper package's photographs at 1920 px, installing the package if it is missing."""
    if not WALLPAPERS.joinpath("Path").is_dir():
        print("installing Debian's plasma-workspace-wallpapers (about 95 MB) for the wallpapers "
              "kind ...", file=sys.stderr)
        sudo = [] if shutil.which("sudo") is None else ["sudo"]
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        "plasma-workspace-wallpapers"], check=False, capture_output=True)
    out = {}
    for name in WALLPAPER_PHOTOS:
        files = sorted((WALLPAPERS / name / "contents" / "images").glob("1920x1080.*"))
        files = files or sorted((WALLPAPERS / name / "contents" / "images").glob("*"))
        if files:
            with Image.open(files[0]) as img:
                img = img.convert("RGB")
                img.thumbnail((1920, 1920))
                out[name] = img
    return out


NOT_PHOTOGRAPHS = ("color.png", "text.png", "page.png")  # a drawn colour wheel, scanned text


def real_photographs() -> dict[str, Image.Image]:
    """bench/photos.py's photographs less the ones that are not photographs of a scene (crops
    of a smooth colour wheel look alike to any method; text is the documents kind)."""
    return {k: v for k, v in photographs().items() if k not in NOT_PHOTOGRAPHS}


def digits(count: int, rng) -> list[tuple[str, Image.Image]]:
    """(label, 32 px image) of scikit-learn's handwritten digits, drawn as the demo draws them."""
    from sklearn.datasets import load_digits

    d = load_digits()
    pick = rng.permutation(len(d.images))[:count]
    return [(str(d.target[i]), Image.fromarray((255 * (1 - d.images[i] / 16)).astype(np.uint8), "L")
             .resize((32, 32), Image.Resampling.BICUBIC).convert("RGB")) for i in pick]


def textures(count: int, rng) -> list[tuple[str, Image.Image]]:
    """Crops of scikit-image's grass photograph: every image looks like every other."""
    import skimage

    with Image.open(Path(skimage.__file__).parent / "data" / "grass.png") as img:
        grass = {"grass": img.convert("RGB")}
    return crops(count, int(rng.integers(2 ** 31)), sizes=(64, 128), photos=grass,
                 share=(0.05, 0.12))


def bursts(count: int, rng, frames: int = 5) -> list[tuple[str, Image.Image]]:
    """Scenes of `frames` frames: the window moves 6-15 % of its side and zooms up to 8 %
    between frames, the light changes (brightness and a gradient), a small object moves."""
    photos = real_photographs()
    names = sorted(photos)
    out = []
    for s in range(-(-count // frames)):
        img = photos[names[s % len(names)]]
        side = int(min(img.size) * rng.uniform(0.25, 0.5))
        x0, y0 = (int(rng.integers(0, img.width - side)), int(rng.integers(0, img.height - side)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        for f in range(frames):
            if len(out) == count:
                break
            step = side * rng.uniform(0.06, 0.15) * f
            angle = rng.uniform(0, 2 * np.pi)
            zoom = 1 + rng.uniform(-0.08, 0.08)
            w = int(side * zoom)
            x = int(np.clip(x0 + step * np.cos(angle), 0, img.width - w))
            y = int(np.clip(y0 + step * np.sin(angle), 0, img.height - w))
            frame = img.crop((x, y, x + w, y + w)).resize((160, 160), Image.Resampling.LANCZOS)
            frame = ImageEnhance.Brightness(frame).enhance(1 + rng.uniform(-0.25, 0.25))
            light = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.2), 160)[None, :, None]
            frame = Image.fromarray(np.clip(np.asarray(frame) * light, 0, 255).astype(np.uint8))
            ox, oy = (int(v) for v in rng.integers(10, 130, 2))
            ImageDraw.Draw(frame).ellipse((ox, oy, ox + 22, oy + 30), fill=colour)
            out.append((f"scene{s:03d}", frame))
    return out


WORDS = ("invoice total date amount payment account order customer address shipping report "
         "summary results method figure table page section notes review approved pending "
         "meeting agenda minutes project budget quarter revenue items quantity price").split()


def documents(count: int, rng) -> list[tuple[str, Image.Image]]:
    """Pages of text, tables and form fields on white: distinct content, alike at a glance."""
    font = ImageFont.load_default()
    out = []
    for _ in range(count):
        page = Image.new("RGB", (170, 220), "white")
        draw = ImageDraw.Draw(page)
        y = int(rng.integers(6, 20))
        draw.text((10, y), " ".join(rng.choice(WORDS, 3)).title(), fill=(20, 20, 20), font=font)
        y += 18
        while y < 200:
            kind = rng.random()
            if kind < 0.6:  # a line of text
                words = " ".join(rng.choice(WORDS, int(rng.integers(2, 5))))
                draw.text((10 + int(rng.integers(0, 12)), y), words, fill=(40, 40, 40), font=font)
                y += 12
            elif kind < 0.8:  # a form field
                draw.rectangle((10, y, int(rng.integers(60, 160)), y + 12), outline=(90, 90, 90))
                y += 18
            else:  # a table row
                for c in range(int(rng.integers(2, 5))):
                    draw.rectangle((10 + 38 * c, y, 46 + 38 * c, y + 12), outline=(120, 120, 120))
                    draw.text((12 + 38 * c, y + 1), str(int(rng.integers(1, 999))), fill=(0, 0, 0),
                              font=font)
                y += 14
        out.append(("", page))
    return out


def source(kind: str, count: int, rng) -> list[tuple[str, Image.Image]]:
    """`count` distinct normal images of `kind` as (sub-folder, image)."""
    seed = int(rng.integers(2 ** 31))
    if kind == "digits":
        return digits(count, rng)
    if kind == "photos":
        return [("", img) for _, img in crops(count, seed, sizes=(96, 200),
                                              photos=real_photographs())]
    if kind == "wallpapers":
        photos = wallpaper_photos()
        if not photos:
            raise RuntimeError("Debian's plasma-workspace-wallpapers is not installed and could "
                               "not be installed (apt-get install plasma-workspace-wallpapers)")
        return [("", img) for _, img in crops(count, seed, sizes=(96, 200), photos=photos)]
    if kind == "textures":
        return [("", img) for _, img in textures(count, rng)]
    if kind == "bursts":
        return bursts(count, rng)
    if kind == "documents":
        return documents(count, rng)
    if kind == "albums":
        pool = crops(count, seed, sizes=(96, 200),
                     photos={**real_photographs(), **wallpaper_photos()})
        return [(ALBUMS[int(rng.integers(len(ALBUMS)))], img) for _, img in pool]
    raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")


ODD_FROM = {"digits": "photos", "photos": "documents", "wallpapers": "digits",
            "textures": "photos", "bursts": "documents", "documents": "photos",
            "albums": "documents"}


# -- writing a kind ---------------------------------------------------------------------------
def write_kind(kind: str, dest: Path, count: int, heldout: int, seed: int) -> dict:
    """The collection (dest/collection), its held-out normal images (dest/heldout) and the
    truth (dest/truth.json: copy groups, odd ones out, image counts); returns the truth."""
    from fext.edits import edit

    rng = np.random.default_rng([seed, KINDS.index(kind)])
    coll, held = dest / "collection", dest / "heldout"
    if dest.exists():
        shutil.rmtree(dest)
    images = source(kind, count + heldout, rng)
    order = rng.permutation(len(images))
    normal, spare = [images[i] for i in order[:count]], [images[i] for i in order[count:]]
    names = []
    for i, (sub, img) in enumerate(normal):
        rel = f"{sub}/{kind}_{i:05d}.png" if sub else f"{kind}_{i:05d}.png"
        (coll / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(coll / rel)
        names.append(rel)
    held.mkdir(parents=True)
    for i, (_, img) in enumerate(spare):
        img.save(held / f"{kind}_held_{i:05d}.png")
    groups = []
    subs = sorted({s for s, _ in normal if s})
    for i in rng.choice(count, int(round(COPY_SHARE * count)), replace=False).tolist():
        group, src = [names[i]], coll / names[i]
        for c in range(int(rng.integers(1, 3))):
            sub = Path(names[i]).parent.as_posix()
            if subs and kind == "albums" and rng.random() < 0.5:  # a copy filed in another album
                sub = subs[int(rng.integers(len(subs)))]
            stem = f"{Path(names[i]).stem}_copy{c}"
            if rng.random() < EXACT_SHARE:
                rel = f"{sub}/{stem}.png" if sub != "." else f"{stem}.png"
                (coll / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, coll / rel)
            else:
                rel = f"{sub}/{stem}.jpg" if sub != "." else f"{stem}.jpg"
                with Image.open(src) as img:
                    edit(img.convert("RGB"), int(rng.integers(2 ** 31))).save(coll / rel, quality=92)
            group.append(rel)
        groups.append(group)
    odd = []
    for j, (_, img) in enumerate(source(ODD_FROM[kind], max(1, int(ODD_SHARE * count)), rng)):
        rel = f"odd_{j:03d}.png"
        img.save(coll / rel)
        odd.append(rel)
    truth = {"kind": kind, "seed": seed, "normal": count, "heldout": len(spare),
             "copies": groups, "odd": odd, "labels": sorted(subs),
             "files": sum(1 for p in coll.rglob("*") if p.is_file())}
    (dest / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


# -- measuring the product's decisions on a kind --------------------------------------------
def trained(kind: str, root: Path, train_args: list[str]) -> Path:
    """The kind's workspace, trained and extracted with the shipped defaults (plus
    `train_args`) through the CLI; reused when it exists (delete it to retrain)."""
    ws = root / "ws"
    if not (ws / "index" / kind).is_dir():
        fext("train", "--images", str(root / "collection"), "--name", kind, "--workspace",
                 str(ws), *train_args)
        fext("extract", "--name", kind, "--workspace", str(ws))
    return ws


def duplicates_row(kind: str, root: Path, ws: Path) -> list:
    """Removal precision and recall and pairwise F1 of `fext duplicates` (defaults) against the
    planted truth; pHash (64 bits, grouped by the same rule) at imagededup's default distance
    and at the best distance in hindsight; the calibration's stated rates beside the measured."""
    import imagehash
    import pandas as pd
    from duplicates import IMAGEDEDUP_DEFAULT, hash_neighbours, scores

    from fext.duplicates import K, groups

    truth = json.loads((root / "truth.json").read_text())
    planted = [set(g) for g in truth["copies"]]
    group_of = {p: i for i, g in enumerate(planted) for p in g}
    result = json.loads(fext("duplicates", "--name", kind, "--images", str(root / "collection"),
                             "--workspace", str(ws), "--json"))
    found = [{m["path"] for m in g["members"]} for g in result["groups"]]

    def removal_rates(found_groups: list[dict]) -> tuple[float, float, int]:
        removed = [(m["path"], g["keeper"]) for g in found_groups for m in g["members"]
                   if m["path"] != g["keeper"]]
        right = sum(1 for p, k in removed if p in group_of and group_of.get(k) == group_of[p])
        return (right / len(removed) if removed else 1.0,
                right / sum(len(g) - 1 for g in planted), len(removed))

    precision, recall, suggested = removal_rates(result["groups"])
    # what abstaining would give: identical files only
    exact = json.loads(fext("duplicates", "--name", kind, "--images", str(root / "collection"),
                            "--workspace", str(ws), "--json", "--threshold", "1"))["groups"]
    before = removal_rates(exact)
    ours = scores(found, planted)
    coll = root / "collection"
    paths = sorted(p.relative_to(coll).as_posix() for p in coll.rglob("*") if p.is_file())
    bits = np.stack([imagehash.phash(Image.open(coll / p)).hash.reshape(-1) for p in paths])
    ids, sims = hash_neighbours(bits, K)
    items = pd.DataFrame({"path": paths, "sha1": paths, "width": 1, "height": 1, "mtime_ns": 0})
    by_distance = {d: groups(ids, sims, items, 1 - d / 64 - 1e-9).dicts(items) for d in range(33)}
    f1 = {d: scores([{m["path"] for m in g["members"]} for g in gs], planted)["f1"]
          for d, gs in by_distance.items()}
    best = max(f1, key=f1.get)
    phash_precision = removal_rates(by_distance[IMAGEDEDUP_DEFAULT])[0]
    cal = result["calibration"]
    grouped = {m: g for g in found for m in g}
    falsely = sum(1 for p, g in grouped.items()  # grouped with an image that is not its copy
                  if not g <= (planted[group_of[p]] if p in group_of else {p}))
    stated = (f"{cal['copies_kept']:.2f} / {cal['false_grouping']:.2%}"
              + (" (pixels)" if cal.get("pixels") else "" if cal["trusted"] else " (abstained)"))
    kept = edited_copies_passing(kind, root, ws, planted, cal)
    held = heldout_extracted(kind, root, ws)  # normal images only: every removal there is wrong
    wrong = json.loads(fext("duplicates", "--name", kind, "--images", str(held),
                            "--workspace", str(ws), "--json"))["removable"]
    return [kind, len(paths), suggested, f"{precision:.3f}", f"{recall:.3f}", f"{ours['f1']:.3f}",
            f"{f1[IMAGEDEDUP_DEFAULT]:.3f} (p {phash_precision:.3f})", f"{f1[best]:.3f} (d {best})",
            stated, f"{kept:.2f} / {falsely / len(paths):.2%}",
            f"{before[0]:.3f} / {before[1]:.3f} ({before[2]})",
            f"{wrong} of {truth['heldout']}"]


def edited_copies_passing(kind: str, root: Path, ws: Path, planted: list[set],
                          cal: dict) -> float:
    """The share of planted edited copies (not identical files) whose score with their source
    passes the calibrated threshold and whose perceptual hashes (and where the calibration asks,
    pixels) confirm the pair: the measured side of the calibration's "copies kept"."""
    from fext.artifacts import Artifacts
    from fext.duplicates import copy_scores, hash_distance
    from fext.workspace import Workspace

    art = Artifacts.open(Workspace(ws), kind, images=root / "collection")
    hashes = art.hashes()
    ids, sims = (np.asarray(a) for a in art.neighbours())
    scores = copy_scores(ids, sims)
    agree = np.asarray(art.agreement()) if cal.get("pixels") else np.ones(ids.shape, bool)
    row = {p: i for i, p in enumerate(art.items["path"])}
    sha = art.items["sha1"].to_numpy()
    passing = []
    for group in planted:
        source, *copies = sorted(group, key=lambda p: "_copy" in p)
        for copy in copies:
            i, j = row[source], row[copy]
            if sha[i] != sha[j]:
                hit = ids[i] == j
                passing.append(bool(hit.any() and scores[i][hit][0] >= cal["threshold"]
                                    and hash_distance(hashes[i], hashes[j]) <= cal["hash_distance"]
                                    and agree[i][hit][0]))
    return float(np.mean(passing)) if passing else float("nan")


def copies_row(kind: str, ws: Path) -> list:
    """The one copy figure on this kind: the published model's held-out copies (`val_copies`:
    the validation images' copies that chose the epoch, searched with the published features;
    with the chosen epoch's own features beside it, `val_copies_training`, where the model
    records it) beside `fext evaluate`'s copy detection (test images) and its baselines, raw
    pixels, PCA and pHash, on the same copies; the autoencoder's first result is the one search
    shows first (the first five checked by their pixels), its recall@1 by features alone beside
    it."""
    metrics = json.loads((ws / "models" / kind / "metrics.json").read_text())
    copies = json.loads(fext("evaluate", "--name", kind, "--workspace", str(ws), "--json"))["copies"]
    r1 = {m: r["recall@1"] for m, r in copies["methods"].items()}
    alone = copies["methods"]["autoencoder"].get("features alone", float("nan"))
    ours, held = r1.pop("autoencoder"), metrics.get("val_copies", float("nan"))
    best_base = max(r1, key=r1.get)
    trained = metrics.get("val_copies_training")
    held_cell = f"{held:.3f}" + (f" ({trained:.3f})" if trained is not None else "")
    return [kind, held_cell, f"{ours:.3f}", f"{alone:.3f}", f"{ours - held:+.3f}",
            *(f"{v:.3f}" for v in r1.values()), "yes" if ours > r1[best_base] else f"no ({best_base})"]


@cache
def heldout_extracted(kind: str, root: Path, ws: Path) -> Path:
    """The kind's held-out folder, extracted through `fext extract --images heldout/` as a user
    checks a new folder: once a run, for the duplicates and the anomaly threshold alike."""
    held = root / "heldout"
    fext("extract", "--name", kind, "--images", str(held), "--workspace", str(ws))
    return held


def anomalies_row(kind: str, root: Path, ws: Path) -> list:
    """The reference threshold's stated false-alarm rate against the share of the kind's
    held-out normal images (never trained on, not in the collection) it flags, through
    `fext extract --images heldout/` and `fext anomalies` as a user checks a new folder."""
    held = heldout_extracted(kind, root, ws)
    result = json.loads(fext("anomalies", "--name", kind, "--images", str(held), "--top", "0",
                             "--workspace", str(ws), "--json"))
    flagged, count = result["flagged"], max(len(result["results"]), 1)
    return [kind, f"{result['score']}: {result['threshold']['text']}", f"{flagged} of {count}",
            f"{flagged / count:.1%}"]


def odd_row(kind: str, root: Path, ws: Path) -> list:
    """The planted odd ones out (images of another kind) against the collection's own ranking:
    `fext anomalies` (the default score of a folder ranking itself) as ROC AUC and the share of
    them in the top N; the rule before appearance joined the ranking (the larger of the isolation
    and reconstruction parts' shares) and the appearance part alone, on the same extraction's
    parts; PCA reconstruction error (16 components, and the feature size) and raw-pixel
    isolation (mean distance to the 5 nearest) on the same files."""
    from anomaly import auc_top_n, knn_distance, pca_error, pixels, ranks_before

    def ranked(*score: str) -> dict[str, float]:
        """path -> score of `fext anomalies` (the default score, or `--score` one)."""
        out = json.loads(fext("anomalies", "--name", kind, "--images", str(root / "collection"),
                              "--top", "0", "--json", "--workspace", str(ws), *score))
        return {r["path"]: r["score"] for r in out["results"]}

    default = ranked()
    paths = list(default)
    appearance = ranked("--score", "appearance")
    odd = np.isin(paths, json.loads((root / "truth.json").read_text())["odd"])
    x = pixels([root / "collection" / p for p in paths], 32)
    methods = {"fext": np.array([default[p] for p in paths]),
               "before": ranks_before(str(ws), kind, root / "collection", paths),
               "appearance": np.array([appearance[p] for p in paths]),
               "PCA-16": pca_error(x, x, 16), "PCA-128": pca_error(x, x, 128),
               "raw pixels kNN": knn_distance(x, None, 5)}
    cells = {}
    for method, scores in methods.items():
        area, top = auc_top_n(scores, odd)
        cells[method] = (area, odd[top].mean())
    baselines = [cells[m][0] for m in ("PCA-16", "PCA-128", "raw pixels kNN")]
    return [kind, int(odd.sum()), *(f"{a:.3f} / {t:.2f}" for a, t in cells.values()),
            "yes" if cells["fext"][0] > max(baselines) else "no"]


ODD_COLUMNS = ["kind", "odd ones out", "FEXT (AUC / share in top N)", "before appearance",
               "appearance part",
               "PCA-16", "PCA-128", "raw pixels kNN", "above every baseline"]
COPY_COLUMNS = ["kind", "held-out copies, published features (the epoch's own)", "evaluate: autoencoder",
                "features alone (no pixel check)", "difference", "raw pixels", "PCA",
                "pHash 64-bit", "above every baseline"]
ANOMALY_COLUMNS = ["kind", "threshold as stated", "held-out normal images flagged", "measured rate"]
DUPLICATE_COLUMNS = ["kind", "files", "suggested removals", "removal precision", "removal recall",
                     "pair F1", "pHash d<=10 F1 (removal precision)", "pHash best F1",
                     "stated copies kept / falsely grouped", "measured",
                     "identical files only: precision / recall (removals)",
                     "held-out folder (no copies): removals suggested"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder to write the zoo into")
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--count", type=int, default=400, help="normal images per collection")
    p.add_argument("--heldout", type=int, default=100, help="held-out normal images per kind")
    p.add_argument("--seed", type=int, default=1, help="zoo seed (tune on one, report another)")
    p.add_argument("--task", default="write", choices=["write", "duplicates", "decisions"],
                   help="write the collections only, or also measure `fext duplicates` on them, "
                        "or every decision: duplicates, the copy figure, the anomaly threshold, "
                        "the odd ones out")
    p.add_argument("--train-args", default="",
                   help="extra `fext train` options (default none: the shipped defaults)")
    a = p.parse_args()
    rows, copy_rows, anomaly_rows, odd_rows = [], [], [], []
    for kind in a.kinds.split(","):
        root = a.out / kind
        if not (root / "truth.json").is_file() or a.task == "write":
            try:
                t = write_kind(kind, root, a.count, a.heldout, a.seed)
            except RuntimeError as e:
                print(f"{kind}: left out: {e}", file=sys.stderr)
                continue
            print(f"{kind}: {t['files']} files ({len(t['copies'])} planted copy groups, "
                  f"{len(t['odd'])} odd ones out), {t['heldout']} held out -> {root}")
        if a.task in ("duplicates", "decisions"):
            ws = trained(kind, root, a.train_args.split())
            rows.append(duplicates_row(kind, root, ws))
            print(table(DUPLICATE_COLUMNS, rows[-1:]), flush=True)  # survives an interruption
        if a.task == "decisions":
            copy_rows.append(copies_row(kind, ws))
            anomaly_rows.append(anomalies_row(kind, root, ws))
            odd_rows.append(odd_row(kind, root, ws))
            print(table(COPY_COLUMNS, copy_rows[-1:]), table(ANOMALY_COLUMNS, anomaly_rows[-1:]),
                  table(ODD_COLUMNS, odd_rows[-1:]), sep="\n", flush=True)
    if rows:
        print(f"\nzoo seed {a.seed}, {machine()}; fext train {a.train_args or '(shipped defaults)'}")
        print(table(DUPLICATE_COLUMNS, rows, "duplicates: suggested removals against the "
                                             "planted copies"))
    if copy_rows:
        print(table(COPY_COLUMNS, copy_rows, "copy recall@1: the published epoch's held-out "
                                             "copies and fext evaluate's, baselines on the same "
                                             "copies"))
        print(table(ANOMALY_COLUMNS, anomaly_rows, "the anomaly threshold on held-out normal "
                                                   "images"))
        print(table(ODD_COLUMNS, odd_rows, "odd ones out of each collection, ranked by itself"))


if __name__ == "__main__":
    main()
