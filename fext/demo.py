"""The bundled demo: handwritten digits (from scikit-learn's copy of the UCI set) in labelled
sub-folders, with a few photo crops mixed in as clear anomalies; and the one call that prepares
a ready model, index and map for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from . import registry
from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .progress import ProgressFn, report
from .workspace import REPO_ROOT, Workspace

DEMO_DIR = REPO_ROOT / "data" / "demo"
DEMO_NAME = "demo"
# a smaller model than the defaults (the small preset at 32 px), at most 8 epochs of the default
# 50 steps: the demo is ready minutes after `make app`. Against the medium preset, measured on
# two idle cores (docs/BENCHMARKS.md §10): 140 s of training instead of 197 s, the digits' five
# nearest images of the same digit 0.991 against 0.996, the planted photos ranked 1-8 of 1,805
DEMO_CONFIG = dict(image_size=32, preset="small", latent_dim=64, epochs=8, batch_size=64)


def build_demo_images(dest: Path = DEMO_DIR, per_class: int | None = None, seed: int = 0) -> int:
    """Write the demo collection; returns the number of files. Deterministic for a given seed."""
    from sklearn.datasets import load_digits, load_sample_image

    digits = load_digits()
    rng = np.random.default_rng(seed)
    count = 0
    for label in range(10):
        idx = np.flatnonzero(digits.target == label)[:per_class]
        folder = dest / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        for i in idx:
            ink = digits.images[i] / 16.0
            px = (255 * (1 - ink)).astype(np.uint8)  # dark ink on white paper
            Image.fromarray(px, "L").resize((32, 32), Image.Resampling.BICUBIC).save(
                folder / f"digit_{i:04d}.png", optimize=True)
            count += 1
    for photo in ("china.jpg", "flower.jpg"):
        pixels = load_sample_image(photo)
        for j in range(4):
            y = rng.integers(0, pixels.shape[0] - 200)
            x = rng.integers(0, pixels.shape[1] - 200)
            crop = Image.fromarray(pixels[y:y + 200, x:x + 200]).resize((64, 64))
            label = int(rng.integers(0, 10))
            crop.save(dest / str(label) / f"photo_{Path(photo).stem}_{j}.jpg", quality=90)
            count += 1
    return count


def demo_config(epochs: int | None = None) -> RunConfig:
    c = DEMO_CONFIG
    return RunConfig(data=DataConfig(images=str(DEMO_DIR), image_size=c["image_size"]),
                     model=ModelConfig(preset=c["preset"], latent_dim=c["latent_dim"]),
                     train=TrainConfig(epochs=epochs or c["epochs"], batch_size=c["batch_size"]))


def prepare(ws: Workspace, progress: ProgressFn | None = None, epochs: int | None = None) -> dict:
    """Train, extract and map the demo model, skipping the steps that are already done."""
    from .artifacts import Artifacts
    from .errors import StaleError
    from .features import extract, project
    from .train import train

    progress = report(progress)
    if not DEMO_DIR.is_dir() or not any(DEMO_DIR.iterdir()):
        progress("demo images", 0, 1)
        build_demo_images()
    if registry.find(ws, DEMO_NAME) is None:
        train(ws, DEMO_NAME, demo_config(epochs), progress)
    try:
        art = Artifacts.open(ws, DEMO_NAME)
    except (FileNotFoundError, StaleError):
        extract(ws, DEMO_NAME, progress=progress)
        art = Artifacts.open(ws, DEMO_NAME)
    project(ws, DEMO_NAME, progress=progress)
    return {"name": DEMO_NAME, "count": int(len(art.items))}


def start_preparing(ws: Workspace, retry: bool = False):
    """The background job (fext.jobs) preparing the demo in `ws`, started now if the workspace
    is a newcomer's (no model yet, no job running), the bundled images are there and no earlier
    preparation failed (unless `retry`: the app offers to try again); else the running one, or
    None. What `make app` does at start-up, so the demo is ready sooner than a first page view
    would start it. A workspace in use, with a model or a training of the user's own, is left
    as it is: two cores busy with a demo nobody asked for would slow their work for minutes
    (`fext demo` prepares it on request)."""
    from . import jobs

    running = jobs.active(ws, command="demo")
    if running is not None or registry.names(ws) or jobs.active(ws) is not None \
            or not DEMO_DIR.is_dir() or ws.is_locked(DEMO_NAME):
        return running
    last = jobs.latest(ws, command="demo")
    if last is not None and last.status == "failed" and not retry:
        return None
    return jobs.start(ws, "demo", None, [])

