"""Where in the image: anomaly maps on planted defects with known masks, against baselines.

Offline and seeded. Two categories of normal images, each trained on separately, as anomaly
benchmarks do (MVTec AD has one model per category):

    textures  crops of scikit-image's grass photograph (bench/zoo.py's textures): every crop
              looks like every other
    objects   crops of the photographs the benchmarks use (bench/zoo.py's real photographs):
              no two look alike

Test images are other crops of the same kind, half of them left normal, the others with one
planted defect whose mask is known: a scratch or line, a spot or hole, a colour blotch, a
CutPaste patch (a rectangle cut from elsewhere in the same image, or another normal image,
pasted), a missing region (filled flat). Sizes: small (at most 1 % of the image) or large
(2-8 %); contrast: faint (mean change inside the mask at most 0.15 of the [0, 1] range) or
strong; bands are measured on the model input the defect ends up in.

FEXT runs as a user runs it, shipped defaults: `fext train` on the normal images only, `fext
extract --images` the test folder, `fext anomalies --all --maps DIR --json`; its maps are the
.npy files written there, its image ranking the `anomalies` scores. The other map methods of
fext.maps (fext.maps.METHODS: raw residual, each z-scored signal, their sum) are computed on
the same model and files in this process, and the feature signal of other encoder blocks,
bank sizes and grids (`--blocks`, `--banks`, `--grids`; each fitted as training fits the
shipped one). Baselines on the same files, same run, same
smoothing: PCA reconstruction residual (PCA fitted on the normal training images with
--latent-dim components), per-pixel z-score against the mean normal image, and the difference
to the nearest normal image in raw pixels.

Reported per category, per defect kind and per size and contrast band: pixel AUROC, PRO up to
30 % FPR (MVTec AD's per-region overlap, integrated to an FPR of 0.3 and divided by 0.3) and
image AUROC (the map's maximum; FEXT's ranking too).

    .venv/bin/python bench/anomaly_maps.py            # shipped defaults (about 11 min on 2 idle cores)
    .venv/bin/python bench/anomaly_maps.py --quick    # a smoke run: small, 32 px, few steps
    .venv/bin/python bench/anomaly_maps.py --keep /tmp/maps   # keep images, models and maps
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, fext, machine, table
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(REPO))

KINDS = ("scratch", "spot", "blotch", "cutpaste", "missing")
FAINT = 0.15  # contrast at most this: a faint defect
SMALL = 0.01  # share of the image at most this: a small defect
MAX_FPR = 0.3  # PRO is integrated up to this false-positive rate


# -- images ----------------------------------------------------------------------------------
def normal_images(category: str, count: int, seed: int) -> list[Image.Image]:
    """`count` distinct square crops of the category's photographs."""
    from photos import crops
    from zoo import real_photographs, textures

    rng = np.random.default_rng(seed)
    if category == "textures":
        return [img for _, img in textures(count, rng)]
    return [img for _, img in crops(count, seed, photos=real_photographs())]


def plant(img: Image.Image, kind: str, small: bool, faint: bool, donor: Image.Image,
          rng) -> tuple[Image.Image, np.ndarray]:
    """`img` with one defect of `kind` planted, and its mask (bool, at the image's size). The
    defect is blended in to a drawn contrast (mean change inside the mask, [0, 1] range):
    0.05-0.15 when faint, 0.25-0.6 (or what the defect has, if less) otherwise."""
    a = np.asarray(img.convert("RGB"), np.float32) / 255
    side = img.width
    area = side * side * (rng.uniform(0.003, 0.009) if small else rng.uniform(0.02, 0.08))
    line = max(2, round(side / 40 * rng.uniform(1.0, 2.0)))  # 1.5-3 px of a 64 px input
    mask = Image.new("L", img.size, 0)
    draw = ImageDraw.Draw(mask)
    colour = rng.choice([0.0, 1.0], 3) if rng.random() < 0.5 else rng.uniform(0, 1, 3)
    if kind == "scratch":
        length = min(area / line, side * 0.9)
        x, y = rng.uniform(0.1, 0.9, 2) * side
        angle = rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=255, width=line)
    elif kind in ("spot", "blotch"):
        r = np.sqrt(area / np.pi)
        aspect = rng.uniform(0.6, 1.6)
        x, y = rng.uniform(r * 1.6, side - r * 1.6, 2)
        draw.ellipse([x - r * aspect, y - r / aspect, x + r * aspect, y + r / aspect], fill=255)
    else:  # cutpaste, missing: a rectangle
        w = min(np.sqrt(area * rng.uniform(0.5, 2.0)), side - 2)
        h = min(area / w, side - 2)
        x, y = rng.uniform(0, side - w), rng.uniform(0, side - h)
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=255)
    m = np.asarray(mask, np.float32) / 255
    if kind == "blotch":  # soft edges, the colour of the region shifted
        m = np.asarray(mask.filter(ImageFilter.GaussianBlur(max(1, side / 50))), np.float32) / 255
        full = a + m[..., None] * (rng.uniform(0, 1, 3) - a)
    elif kind == "cutpaste":
        x0, y0, x1, y1 = mask.getbbox()
        source = donor if rng.random() < 0.5 else img
        src = np.asarray(source.convert("RGB").resize(img.size), np.float32) / 255
        sx = int(rng.integers(0, side - (x1 - x0) + 1))
        sy = int(rng.integers(0, side - (y1 - y0) + 1))
        patch = src[sy:sy + y1 - y0, sx:sx + x1 - x0]
        full = a.copy()
        full[y0:y1, x0:x1] = patch[::-1] if rng.random() < 0.5 else patch
    elif kind == "missing":
        fill = a.reshape(-1, 3).mean(axis=0) if rng.random() < 0.5 else colour
        full = a + m[..., None] * (fill - a)
    else:  # scratch, spot: a flat colour
        full = a + m[..., None] * (colour - a)
    inside = m >= 0.5
    change = float(np.abs(full - a).mean(axis=-1)[inside].mean()) if inside.any() else 0.0
    target = rng.uniform(0.05, FAINT) if faint else rng.uniform(0.25, 0.6)
    out = a + min(1.0, target / max(change, 1e-6)) * (full - a)
    pixels = np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels), inside


def at_model_size(mask: np.ndarray, size: int) -> np.ndarray:
    """A file-size mask as the model sees it (square files: a resize), a pixel in the mask
    when at least half of it was."""
    small = Image.fromarray(mask.astype(np.float32), "F").resize((size, size), Image.Resampling.BOX)
    return np.asarray(small) >= 0.5


def write_category(category: str, dest: Path, a) -> dict:
    """normal/ (the training folder) and test/ (normal and defective files) of a category;
    returns each test file's truth: kind, mask at the model's size, size share, contrast."""
    rng = np.random.default_rng([a.seed, len(category)])
    images = normal_images(category, a.train + a.normal + a.defects * len(KINDS), a.seed)
    (dest / "normal").mkdir(parents=True)
    (dest / "test").mkdir()
    for i, img in enumerate(images[:a.train]):
        img.save(dest / "normal" / f"normal_{i:04d}.png")
    test = images[a.train:]
    truth = {}
    for i, img in enumerate(test[:a.normal]):
        name = f"normal_{i:04d}.png"
        img.save(dest / "test" / name)
        truth[name] = {"kind": "normal"}
    jobs = [(k, j) for k in KINDS for j in range(a.defects)]
    for n, (kind, j) in enumerate(jobs):
        img = test[a.normal + n]
        small, faint = j % 2 == 1, (j // 2) % 2 == 1  # every size and contrast pairing
        for _ in range(20):  # a defect thinner than a model pixel would leave no mask
            planted, mask = plant(img, kind, small, faint, images[int(rng.integers(a.train))], rng)
            m = at_model_size(mask, a.image_size)
            if m.any() and not m.all():
                break
        x = np.asarray(img.resize((a.image_size,) * 2, Image.Resampling.BILINEAR), np.float32)
        y = np.asarray(planted.resize((a.image_size,) * 2, Image.Resampling.BILINEAR), np.float32)
        contrast = float(np.abs(y - x).mean(axis=-1)[m].mean() / 255)
        name = f"{kind}_{j:03d}.png"
        planted.save(dest / "test" / name)
        truth[name] = {"kind": kind, "mask": m, "share": float(m.mean()), "contrast": contrast}
    return truth


# -- metrics ---------------------------------------------------------------------------------
def auroc(scores, truth) -> float:
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(truth, bool)
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, np.asarray(scores, np.float64)))


def pro(maps: np.ndarray, masks: np.ndarray, max_fpr: float = MAX_FPR, steps: int = 100) -> float:
    """Per-region overlap (MVTec AD): at each threshold, the mean over every connected defect
    region of the share of its pixels above it, against the share of normal pixels above it;
    the area under that curve up to `max_fpr`, divided by `max_fpr`."""
    from scipy.ndimage import label

    normal = np.sort(maps[~masks])
    regions = []
    for m, v in zip(masks, maps):
        labelled, count = label(m)
        regions += [np.sort(v[labelled == k]) for k in range(1, count + 1)]
    if not regions:
        return float("nan")
    fprs = np.linspace(0, max_fpr, steps + 1)
    thresholds = np.quantile(normal, 1 - fprs)
    overlap = [np.mean([1 - np.searchsorted(r, t, side="right") / len(r) for r in regions])
               for t in thresholds]
    measured = [1 - np.searchsorted(normal, t, side="right") / len(normal) for t in thresholds]
    return float(np.trapezoid(overlap, measured) / max_fpr)


def figures(maps: np.ndarray, masks: np.ndarray, image_scores: np.ndarray | None = None) -> dict:
    """Pixel AUROC, PRO (30 % FPR) and image AUROC (the map's maximum, or `image_scores`)."""
    image = image_scores if image_scores is not None else maps.reshape(len(maps), -1).max(axis=1)
    return {"pixel AUROC": auroc(maps.reshape(-1), masks.reshape(-1)), "PRO": pro(maps, masks),
            "image AUROC": auroc(image, masks.reshape(len(masks), -1).any(axis=1))}


def subsets(truth: list[dict]) -> dict[str, np.ndarray]:
    """Which test images each row of the report reads: every one, each defect kind, each size
    and contrast band (each with the normal test images)."""
    normal = np.array([t["kind"] == "normal" for t in truth])
    out = {"overall": np.ones(len(truth), bool)}
    for kind in KINDS:
        out[kind] = normal | np.array([t["kind"] == kind for t in truth])
    defect = ~normal
    share = np.array([t.get("share", 0) for t in truth])
    contrast = np.array([t.get("contrast", 1) for t in truth])
    out["small (<= 1 %)"] = normal | (defect & (share <= SMALL))
    out["large"] = normal | (defect & (share > SMALL))
    out["faint (<= 0.15)"] = normal | (defect & (contrast <= FAINT))
    out["strong"] = normal | (defect & (contrast > FAINT))
    return out


# -- the methods -------------------------------------------------------------------------------
def baselines(normal: np.ndarray, test: np.ndarray, pca) -> dict[str, np.ndarray]:
    """Maps of the baselines (n, size, size), smoothed as FEXT's are; `pca` is
    fext.evaluate.PCAReconstruction fitted on the normal training images."""
    from fext.maps import residual, smooth

    flat, flat_test = normal.reshape(len(normal), -1), test.reshape(len(test), -1)
    mean, std = normal.mean(axis=0), normal.std(axis=0) + 0.02
    d2 = ((flat_test ** 2).sum(1)[:, None] + (flat ** 2).sum(1)[None, :] - 2 * flat_test @ flat.T)
    nearest = normal[np.argmin(d2, axis=1)]
    return {f"{pca.name} residual": smooth(residual(test, pca(test))),
            "z-score vs the mean normal image": smooth(np.abs((test - mean) / std).mean(axis=-1)),
            "nearest normal image, raw pixels": smooth(residual(test, nearest))}


def run_category(category: str, a, tmp: Path) -> dict:
    from fext import maps as fmaps
    from fext.collection import Collection
    from fext.encoding import extraction_parts
    from fext.evaluate import PCAReconstruction, psnr
    from fext.feed import gather
    from fext.model import load
    from fext.registry import open_record
    from fext.workspace import Workspace

    root = tmp / category
    truth = write_category(category, root, a)
    ws, name = tmp / "ws", f"maps-{category}"
    t0 = time.time()
    fext("train", "--images", str(root / "normal"), "--name", name, "--workspace", str(ws),
         "--image-size", str(a.image_size), *a.train_args)
    trained = time.time() - t0
    fext("extract", "--name", name, "--images", str(root / "test"), "--workspace", str(ws))
    out = json.loads(fext("anomalies", "--name", name, "--images", str(root / "test"), "--all",
                          "--json", "--maps", str(tmp / f"maps-{category}"), "--workspace",
                          str(ws)))
    seconds = time.time() - t0
    by_path = {r["path"]: r for r in out["results"]}
    names = sorted(truth)
    t = [truth[p] for p in names]
    masks = np.stack([x.get("mask", np.zeros((a.image_size,) * 2, bool)) for x in t])
    shipped = np.stack([np.load(by_path[p]["map"]["npy"]) for p in names])
    ranking = np.array([by_path[p]["score"] for p in names])

    # every method of fext.maps, in this process, on the same model and files
    w = Workspace(ws)
    record = open_record(w, name)
    mapper = fmaps.Mapper.open(w, record)
    test_coll = Collection.open(w, root / "test", a.image_size, record.config.data.fit)
    rows = test_coll.items().set_index("path").loc[names, "row"].to_numpy()
    x = gather(test_coll.images, rows)
    raw, recon = mapper.signals(x)
    methods = {f"FEXT {m}": fmaps.combine(raw, mapper.stats, m) for m in fmaps.METHODS}
    gap = float(np.abs(methods[f"FEXT {mapper.method}"] - shipped).max())
    assert gap < 1e-3 * max(1.0, float(np.abs(shipped).max())), f"CLI maps differ by {gap}"
    train_coll = Collection.open(w, root / "normal", a.image_size, record.config.data.fit)
    train_rows = train_coll.items("train")["row"].to_numpy()  # what the model trained on
    val_rows = train_coll.items("val")["row"].to_numpy()
    parts = extraction_parts(load(record.path))

    def variant(layer: str | None = None, bank: int | None = None, grid: int | None = None):
        """The feature signal of another layer, bank size or grid, fitted as training does."""
        saved = fmaps.BANK, fmaps.MAX_GRID
        fmaps.BANK, fmaps.MAX_GRID = bank or fmaps.BANK, grid or fmaps.MAX_GRID
        try:
            stats = fmaps.fit(parts, train_coll.images, train_rows, val_rows, layer=layer)
            raw_v, _ = fmaps.signals(fmaps.Net(parts, layer), fmaps.Bank(stats.bank), x)
            return fmaps.combine(raw_v, stats, "features-z")
        finally:
            fmaps.BANK, fmaps.MAX_GRID = saved

    seen = {mapper.net.layer}  # a block past a shallow model's last is its last block
    for block in a.blocks:
        layer = fmaps.feature_layer(parts[0], block)
        if layer not in seen:
            seen.add(layer)
            methods[f"FEXT features-z, block {block}"] = variant(layer=layer)
    for bank in a.banks:
        methods[f"FEXT features-z, bank {bank:,}"] = variant(bank=bank)
    for grid in a.grids:
        methods[f"FEXT features-z, grid {grid}"] = variant(grid=grid)
    pca = PCAReconstruction(train_coll.images, train_rows, record.config.model.latent_dim)
    methods.update(baselines(gather(train_coll.images, train_rows), x, pca))
    pca_recon = pca(x)

    report = {}
    groups = subsets(t)
    for method, m in methods.items():
        report[method] = {g: figures(m[keep], masks[keep]) for g, keep in groups.items()}
    report["FEXT ranking (anomalies)"] = {
        g: {"image AUROC": auroc(ranking[keep], masks[keep].reshape(keep.sum(), -1).any(1))}
        for g, keep in groups.items()}
    normal = np.array([x_["kind"] == "normal" for x_ in t])
    mse = lambda r: ((x[normal] - r[normal]) ** 2).reshape(normal.sum(), -1).mean(1)  # noqa: E731
    recon_psnr = {"autoencoder": float(psnr(mse(recon)).mean()),
                  pca.name: float(psnr(mse(pca_recon)).mean())}
    bands = {g: int((~normal & keep).sum()) for g, keep in groups.items()}
    return {"report": report, "shipped": mapper.method, "train_seconds": trained,
            "seconds": seconds, "psnr": recon_psnr, "defects": bands, "normal": int(normal.sum()),
            "maps": out["maps"]}


def show(category: str, r: dict) -> None:
    rep = r["report"]
    maps_ = [m for m in rep if "ranking" not in m]
    groups = list(next(iter(rep.values())))
    print(f"\n{category}: {r['normal']} normal and {r['defects']['overall']} defective test images "
          f"({', '.join(f'{g} {n}' for g, n in r['defects'].items() if g != 'overall')}); "
          f"shipped map: {r['shipped']}; trained in {r['train_seconds']:.0f} s, "
          f"{r['seconds']:.0f} s through the CLI")
    print(table(["method", "pixel AUROC", "PRO (30 % FPR)", "image AUROC"],
                [[m] + [rep[m]["overall"][k] for k in ("pixel AUROC", "PRO", "image AUROC")]
                 for m in maps_] + [["FEXT ranking (anomalies)", "", "",
                                      rep["FEXT ranking (anomalies)"]["overall"]["image AUROC"]]],
                f"{category}: overall"))
    for figure in ("pixel AUROC", "PRO", "image AUROC"):
        print()
        print(table(["method"] + groups[1:], [[m] + [rep[m][g][figure] for g in groups[1:]]
                                               for m in maps_], f"{category}: {figure} by kind and band"))
    print("reconstruction of the normal test images, PSNR (dB): "
          + ", ".join(f"{k} {v:.2f}" for k, v in r["psnr"].items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 32 px, small preset, few steps, few images")
    p.add_argument("--categories", default="textures,objects")
    p.add_argument("--train", type=int, default=400, help="normal training images per category")
    p.add_argument("--normal", type=int, default=60, help="normal test images per category")
    p.add_argument("--defects", type=int, default=24, help="test images per defect kind")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--blocks", default="2,3",
                   help="encoder blocks whose feature signal is compared with the shipped one's")
    p.add_argument("--banks", default="", help="bank sizes to compare with fext.maps.BANK "
                                              "(e.g. 16384,131072; the shipped block and grid)")
    p.add_argument("--grids", default="", help="grid sides to compare with fext.maps.MAX_GRID "
                                              "(e.g. 64; the shipped block and bank)")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    p.add_argument("--keep", default=None,
                   help="work in this new folder and keep it (images, models, the maps written)")
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="more `fext train` options after --")
    a = p.parse_args()
    a.train_args = [x for x in a.train_args if x != "--"]
    a.blocks, a.banks, a.grids = ([int(v) for v in arg.split(",") if v]
                                  for arg in (a.blocks, a.banks, a.grids))
    if a.quick:
        a.train, a.normal, a.defects, a.image_size = 120, 16, 4, 32
        a.train_args = ["--preset", "small", "--epochs", "2", "--epoch-steps", "10",
                        "--batch-size", "32"] + a.train_args
    print(machine())
    print(f"train images {a.train}, normal test {a.normal}, defects {a.defects} per kind, "
          f"{a.image_size} px, fext train {' '.join(a.train_args) or '(shipped defaults)'}"
          + ("  [QUICK: smoke figures]" if a.quick else ""))
    results = {}
    with tempfile.TemporaryDirectory(prefix="fext-maps-") as tmp:
        work = Path(a.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for category in a.categories.split(","):
            results[category] = run_category(category, a, work)
            show(category, results[category])
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
