"""Seeded edits a photo goes through in everyday use: re-saved as JPEG, resized, cropped a little,
shifted by a few pixels, blurred, brightness and contrast changed.

One home for them: the copy-detection benchmark queries with them, the label-free copy figure
of `fext evaluate` measures with them, and the duplicate threshold is calibrated with them.
Every edit is a pure function of (image, seed): the same seed gives the same edited bytes.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing.context
import os
import sys
import threading
import types
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from .images import fit_square

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


# Training augmentation: the same edits, at the model's input size, where a few pixels weigh
# more than at a photo's own size (a 3 px shift of a 200 px photo is 1 px at 64 px).
TRAINING = EditRanges(brightness=0.25, contrast=0.25, shift=(0, 2), blur=0.6, jpeg=(50, 95),
                      resize=(0.5, 1.0), crop=0.08)
TRAINING_ODDS = 0.6  # each kind of edit is applied to a training view with this probability


def augment(batch: np.ndarray, seed, fit: str = "pad", pool=None) -> np.ndarray:
    """An edited view of each uint8 image of `batch` (N, s, s, 3), back at s x s pixels.

    Each image gets a random subset of the edits (each with TRAINING_ODDS), so views range
    from untouched to heavily edited; a resize is a round trip through a smaller size (lost
    detail). A view cut to another shape is brought back to a square as a query is (`fit`:
    padded with white, or centre-cropped), not stretched: a model trained on stretched views
    met a cropped query's white bands only at search time (docs/QUALITY.md).
    A pure function of (batch, seed): training stays exactly resumable. `pool` (`edit_pool`)
    edits the images in other processes, with the same result: what keeps an accelerator fed.
    """
    rng = np.random.default_rng(seed)
    plan = []  # each image's edits and their seed, drawn in order whoever edits it
    for _ in batch:
        kinds = tuple(k for k in KINDS if rng.random() < TRAINING_ODDS)
        plan.append((kinds, int(rng.integers(2 ** 31))))
    return _views(batch, plan, fit) if pool is None else pool.views(batch, plan, fit)


def _views(batch: np.ndarray, plan: list, fit: str) -> np.ndarray:
    """`augment`'s work on some images: each edited as planned, brought back to a square."""
    out = np.empty_like(batch)
    side = batch.shape[1]
    for i, (a, (kinds, seed)) in enumerate(zip(batch, plan)):
        img = edit(Image.fromarray(a), seed, kinds, TRAINING)
        if img.size != (side, side):
            img = fit_square(img, side, fit)
        out[i] = np.asarray(img)
    return out


def edit_workers(accelerator: bool) -> int:
    """Processes that edit training views beside the training loop: none where the CPU trains
    (its cores compute the model; editing a batch takes a few per cent of a step there), all
    but two cores where an accelerator trains: one thread edited the views of a vgg16 step at
    128 px in 430-540 ms, while an H200 trained on them in 65 ms (docs/BENCHMARKS.md §5)."""
    if not accelerator:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(16, (cores or 1) - 2))


class EditPool:
    """Processes that run `augment`'s edits, a share of a batch each.

    Started fresh ("spawn"): a process forked from one running TensorFlow or JAX can hang on
    their locks. And started without the main script (`_BareProcess`): spawn would run it again
    in every worker (a script without a `__main__` guard, or a Streamlit page, which runs as
    `__main__`), while the workers need fext.edits alone. A worker that dies (killed, out of
    memory) breaks the pool with an error rather than leaving training waiting."""

    def __init__(self, workers: int):
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        self.executor = ProcessPoolExecutor(workers, mp_context=_BareSpawn())

    def views(self, batch: np.ndarray, plan: list, fit: str) -> np.ndarray:
        if len(batch) < 2:
            return _views(batch, plan, fit)
        chunks = np.array_split(np.arange(len(batch)), min(self.workers, len(batch)))
        return np.concatenate(list(self.executor.map(
            _views, [batch[c] for c in chunks], [[plan[i] for i in c] for c in chunks],
            [fit] * len(chunks))))

    def close(self) -> None:
        self.executor.shutdown(cancel_futures=True)


class _BareProcess(multiprocessing.context.SpawnProcess):
    """A spawned process not told to import the main script: its start shows it a bare
    `__main__` (what multiprocessing reads to prepare a child), under a lock, then puts the
    real one back."""

    _main = threading.Lock()

    def start(self) -> None:
        with self._main:
            main = sys.modules["__main__"]
            sys.modules["__main__"] = types.ModuleType("__main__")
            try:
                super().start()
            finally:
                sys.modules["__main__"] = main


class _BareSpawn(multiprocessing.context.SpawnContext):
    Process = _BareProcess


@contextlib.contextmanager
def edit_pool(workers: int):
    """An `EditPool` of `workers` processes while the block runs; None for fewer than two."""
    if workers < 2:
        yield None
        return
    pool = EditPool(workers)
    try:
        yield pool
    finally:
        pool.close()


def working_copy(path, side: int) -> Image.Image:
    """The photo decoded at no more than `side` pixels (JPEG draft decoding): large enough
    for the edits to act as they do at full size, small enough to edit 500 in seconds."""
    from .images import preview

    img = preview(path, side)
    img.thumbnail((side, side), Image.Resampling.BILINEAR)
    return img


def edited_copy(file, image_size: int, seed: int) -> Image.Image:
    """The edited copy `copy_queries` makes of `file` with `seed` for a model of `image_size`
    px: the same pixels each time, so a copy can be made again at another size (`encoded`)."""
    return edit(working_copy(file, 4 * image_size), seed)


def closer_copy(file, image_size: int, seed: int, fit: str) -> np.ndarray | None:
    """The edited copy `copy_queries` made of `file` with `seed`, made again and read as the
    pixel check's second look reads a file (`fext.agreement.closer_content`, at CLOSER px);
    None where the file cannot be read any more (the pair is then not confirmed)."""
    from .agreement import CLOSER, content
    from .errors import ImageError

    try:
        edited = edited_copy(file, image_size, seed)
    except (ImageError, OSError):
        return None
    return content(encoded(edited, CLOSER, fit), *edited.size, fit, CLOSER)


def encoded(img: Image.Image, size: int, fit: str) -> np.ndarray:
    """`img` loaded as a query is (fext.images.load of its encoded bytes) at `size`."""
    from .images import load

    buf = io.BytesIO()
    img.save(buf, "BMP")  # lossless like PNG, but written uncompressed: 14x faster
    return load(buf.getvalue(), size, fit)


def copy_queries(coll, items, fit: str, seed: int = 0, limit: int = 500, progress=None,
                 repeat: bool = False):
    """(positions into `items`, uint8 model inputs, (width, height) of each edited copy before
    it was fitted to the input, each copy's edit seed): edited copies of a seeded sample of up
    to `limit` of a collection's images, loaded as a query is. Each is edited on a working
    copy of up to 4x the model's input size (`edited_copy`). Files that cannot be read any
    more are passed over (others stand in). With `repeat`, a collection smaller than `limit` is
    walked again, each pass editing every image anew, so a small split still gives `limit`
    copies.
    What the duplicate threshold and the copy figure (fext.quality.copy_test) search for."""
    from .errors import ImageError

    rng = np.random.default_rng(seed)
    size = coll.image_size
    want = limit if repeat and len(items) else min(limit, len(items))
    positions, copies, sizes, seeds, unreadable = [], [], [], [], set()
    while len(copies) < want and len(unreadable) < len(items):
        for pos in rng.permutation(len(items)):
            if len(copies) >= want:
                break
            if pos in unreadable:
                continue
            try:
                img = working_copy(coll.root / items["path"].iat[pos], 4 * size)
            except (ImageError, OSError):
                unreadable.add(pos)
                continue
            seeds.append(int(rng.integers(2 ** 31)))
            edited = edit(img, seeds[-1])  # what edited_copy makes again
            copies.append(encoded(edited, size, fit))
            positions.append(int(pos))
            sizes.append(edited.size)
            if progress:
                progress("copies", len(copies), want)
        if not repeat:
            break
    empty = np.zeros((0, size, size, 3), np.uint8)
    return (np.array(positions, np.int64), (np.stack(copies) if copies else empty),
            np.array(sizes, np.int64).reshape(-1, 2), np.array(seeds, np.int64))
