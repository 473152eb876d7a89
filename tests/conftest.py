"""Shared fixtures: a small labelled collection with broken files, and a model trained on it once."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from corpus import make_shapes  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY = dict(preset="small", image_size=16, latent_dim=8, epochs=3, batch_size=16)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """3 labels x 14 coloured shapes, plus a text file and an empty file that must be skipped."""
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, per_label=14)
    (root / "red" / "notes.jpg").write_text("not an image")
    (root / "empty.png").write_bytes(b"")
    return root


def tiny_config(images: Path, **overrides):
    from fext.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    c = {**TINY, **overrides}
    return RunConfig(DataConfig(str(images), c["image_size"]),
                     ModelConfig(c["preset"], c["latent_dim"]),
                     TrainConfig(c["epochs"], c["batch_size"], patience=c.get("patience", 5),
                                 seed=c.get("seed", 42), noise=c.get("noise", 0.0)))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, shapes_dir):
    """(workspace, name): a tiny model trained on shapes_dir, with features extracted."""
    from fext.features import extract
    from fext.train import train
    from fext.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("ws"))
    train(ws, "shapes", tiny_config(shapes_dir))
    extract(ws, "shapes")
    return ws, "shapes"


def run_cli(*args: str, workspace: Path | None = None, check: bool = True):
    """Run `python -m fext ...` as a user would; returns the CompletedProcess."""
    import subprocess

    cmd = [sys.executable, "-m", "fext", *args]
    if workspace is not None:
        cmd += ["--workspace", str(workspace)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc

