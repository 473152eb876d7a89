"""Seeded edits a photo goes through in everyday use: re-saved as JPEG, resized, cropped a little,
shifted by a few pixels, blurred, brightness and contrast changed.

One home for them: the copy-detection benchmark queries with them, the label-free copy figure
of `fext evaluate` measures with them, and the duplicate threshold is calibrated with them.
Every edit is a pure function of (image, seed): the same seed gives the same edited bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

KINDS = ("brightness/contrast", "shift", "blur", "jpeg", "resize", "crop")


@dataclass(frozen=True)
class EditRanges:
    """How strong the edits are (the photo benchmark's ranges by default)."""

    brightness: float = 0.2  # factor in 1 ± this
    contrast: float = 0.2
    shift: tuple[int, int] = (2, 4)  # pixels, each axis, either direction
    blur: float = 0.8  # Gaussian sigma, up to
    jpeg: tuple[int, int] = (60, 90)  # quality
    resize: tuple[float, float] = (0.5, 1.5)  # scale of the longer side
    crop: float = 0.05  # share cut from each side, up to


def edit(img: Image.Image, seed: int, kinds: tuple[str, ...] = KINDS,
         ranges: EditRanges = EditRanges()) -> Image.Image:
    """`img` (RGB) with each edit of `kinds` applied at a random strength drawn from `seed`."""
    rng = np.random.default_rng(seed)
    img = img.convert("RGB")
    w, h = img.size
    if "crop" in kinds:
        cut = rng.uniform(0, ranges.crop, 4) * np.array([w, h, w, h])
        box = (int(cut[0]), int(cut[1]), w - int(cut[2]), h - int(cut[3]))
        img = img.crop(box)
    if "shift" in kinds:
        dx, dy = (int(rng.integers(*ranges.shift, endpoint=True)) * int(rng.choice([-1, 1]))
                  for _ in range(2))
        img = shift(img, dx, dy)
    if "brightness/contrast" in kinds:
        img = ImageEnhance.Brightness(img).enhance(1 + rng.uniform(-ranges.brightness,
                                                                   ranges.brightness))
        img = ImageEnhance.Contrast(img).enhance(1 + rng.uniform(-ranges.contrast, ranges.contrast))
    if "blur" in kinds:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, ranges.blur))))
    if "resize" in kinds:
        scale = rng.uniform(*ranges.resize)
        img = img.resize((max(8, round(img.width * scale)), max(8, round(img.height * scale))),
                         Image.Resampling.BICUBIC)
    if "jpeg" in kinds:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(*ranges.jpeg, endpoint=True)))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return img


def shift(img: Image.Image, dx: int, dy: int) -> Image.Image:
    """Content moved by (dx, dy) pixels, the uncovered border filled by edge replication."""
    a = np.asarray(img)
    a = np.pad(a, ((abs(dy), abs(dy)), (abs(dx), abs(dx)), (0, 0)), mode="edge")
    y0, x0 = abs(dy) - dy, abs(dx) - dx
    return Image.fromarray(a[y0:y0 + img.height, x0:x0 + img.width])


def edited_copies(images: list[Image.Image], seed: int = 0, kinds: tuple[str, ...] = KINDS,
                  ranges: EditRanges = EditRanges()) -> list[Image.Image]:
    """One edited copy of each image, seeded by (seed, position)."""
    return [edit(img, int(np.random.default_rng([seed, i]).integers(2 ** 31)), kinds, ranges)
            for i, img in enumerate(images)]
