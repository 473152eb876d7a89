"""Photo collections built offline from the photographs installed packages ship: scikit-learn's
two sample images and scikit-image's data photographs (a benchmark dependency in
requirements.txt). Crops at random positions and scales, 96-256 px, where no two crops of the
same photograph overlap by more than 30 % (IoU), so every image of a collection is distinct.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# scikit-image's data photographs (colour or grey scenes; not the synthetic or tiny ones)
SKIMAGE = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg",
           "motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "grass.png",
           "gravel.png", "brick.png", "coins.png", "moon.png", "page.png", "text.png",
           "clock_motion.png", "color.png")
MAX_IOU = 0.3
SHARE = (0.12, 0.6)  # a crop's side, as a share of its photograph's shorter side
ROOMY = 3000  # the photographs hold about 4,000 crops of 12 % or more; larger collections
# draw sides from 6 % on (crops of 18-80 px upscaled: the small, soft images of a big folder)


def photographs() -> dict[str, Image.Image]:
    """name -> RGB photograph, every one available without a download."""
    from sklearn.datasets import load_sample_image

    out = {name: Image.fromarray(load_sample_image(name)) for name in ("china.jpg", "flower.jpg")}
    try:
        import skimage
    except ImportError:  # the two scikit-learn photographs still make a (smaller-scale) benchmark
        return out
    data = Path(skimage.__file__).parent / "data"
    for name in SKIMAGE:
        if (data / name).is_file():
            with Image.open(data / name) as img:
                out[name] = img.convert("RGB")
    return out


def iou(a: tuple, b: tuple) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def crops(count: int, seed: int = 0, sizes: tuple[int, int] = (96, 256),
          photos: dict[str, Image.Image] | None = None,
          share: tuple[float, float] | None = None) -> list[tuple[str, Image.Image]]:
    """`count` distinct crops (source name, image), spread over the photographs (`photos`:
    name -> image, default `photographs()`; `share`: the crop's side range, default SHARE).

    Each crop is a random square of 12-60 % of the photograph's shorter side (6-60 % past ROOMY
    crops), resized to a random 96-256 px; a candidate overlapping an earlier crop of the same
    photograph by more than MAX_IOU is redrawn. Raises if the photographs cannot hold that many."""
    rng = np.random.default_rng(seed)
    low, high = share or (SHARE[0] if count <= ROOMY else SHARE[0] / 2, SHARE[1])
    photos = photos or photographs()
    names = sorted(photos)
    boxes: dict[str, list[tuple]] = {n: [] for n in names}
    out = []
    tries = 0
    while len(out) < count:
        tries += 1
        if tries > count * 400:
            raise RuntimeError(f"only {len(out)} distinct crops fit in {len(names)} photographs")
        name = names[len(out) % len(names)] if tries % 4 else names[int(rng.integers(len(names)))]
        img = photos[name]
        side = int(min(img.size) * rng.uniform(low, high))
        x, y = int(rng.integers(0, img.width - side + 1)), int(rng.integers(0, img.height - side + 1))
        box = (x, y, x + side, y + side)
        if any(iou(box, b) > MAX_IOU for b in boxes[name]):
            continue
        boxes[name].append(box)
        size = int(rng.integers(sizes[0], sizes[1] + 1))
        out.append((name, img.crop(box).resize((size, size), Image.Resampling.LANCZOS)))
    return out


def write_labelled(folder: Path, count: int, sources: int = 6, seed: int = 0,
                   quality: int = 92) -> Path:
    """`count` crops of the first `sources` photographs, one sub-folder (label) per photograph:
    a labelled photo collection where "another label" means another scene."""
    names = sorted(photographs())[:sources]
    for i, (name, img) in enumerate(c for c in crops(count * len(photographs()) // sources, seed)
                                    if c[0] in names):
        if i >= count:
            break
        sub = folder / Path(name).stem
        sub.mkdir(parents=True, exist_ok=True)
        img.save(sub / f"crop_{i:05d}.jpg", quality=quality)
    return folder


def write_collection(folder: Path, count: int, seed: int = 0, quality: int = 92) -> list[Path]:
    """The crops as JPEG files (photo_00000.jpg, ...) in `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (_, img) in enumerate(crops(count, seed)):
        p = folder / f"photo_{i:05d}.jpg"
        img.save(p, quality=quality)
        paths.append(p)
    return paths
