"""Helpers the tests share: the tiny training settings and running the CLI as a user does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY = dict(preset="small", image_size=16, latent_dim=8, epochs=3, batch_size=16, epoch_steps=4)


def tiny_config(images: Path, **overrides):
    """A RunConfig for a tiny, fast model on `images`: the shipped training recipe (edited
    views, invariance term, whitened read-out), a few steps of it. Any TINY key or train
    setting can be overridden."""
    import dataclasses

    from fext.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    c = {**TINY, **overrides}
    train = {f.name: c[f.name] for f in dataclasses.fields(TrainConfig) if f.name in c}
    return RunConfig(data=DataConfig(images=str(images), image_size=c["image_size"]),
                     model=ModelConfig(preset=c["preset"], latent_dim=c["latent_dim"]),
                     train=TrainConfig(**train))


def run_cli(*args: str, workspace: Path | None = None, check: bool = True):
    """Run `python -m fext ...` as a user would; returns the CompletedProcess."""
    cmd = [sys.executable, "-m", "fext", *args]
    if workspace is not None:
        cmd += ["--workspace", str(workspace)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc
