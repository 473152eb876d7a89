"""Helpers the tests share: the tiny training settings and running the CLI as a user does."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# 32 held-out copies instead of 256: the pixel checks of 256 took half of a tiny training
TINY = dict(preset="small", image_size=16, latent_dim=8, epochs=3, batch_size=16, epoch_steps=4,
            held_out_copies=32)


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


def run_cli(*args: str, workspace: Path | None = None, check: bool = True,
            subprocess_: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m fext ...` as a user would; returns the CompletedProcess.

    In this process by default (`fext.cli.main` with stdout and stderr captured, the exit
    status as the interpreter would give it: a bug's traceback on stderr and status 1), which
    saves each call the seconds of a TensorFlow import; `subprocess_=True` starts a real
    `python -m fext` where the process itself is under test (imports, kills, the console)."""
    argv = [*args, *(["--workspace", str(workspace)] if workspace is not None else [])]
    cmd = [sys.executable, "-m", "fext", *argv]
    if subprocess_:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    else:
        from fext.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse: --help (0) and usage errors
                code = e.code if isinstance(e.code, int) else 1
            except Exception:  # a bug: the interpreter would print its traceback and exit 1
                traceback.print_exc()
                code = 1
        proc = subprocess.CompletedProcess(cmd, code, out.getvalue(), err.getvalue())
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def copy_workspace(ws, dest: Path):
    """A private copy of a workspace (its models, extractions and image caches)."""
    import shutil

    from fext.workspace import Workspace

    shutil.copytree(ws.root, dest, symlinks=True)
    return Workspace(dest)


def until(condition, timeout: float = 300, what: str = "the condition"):
    """Poll `condition` until it returns something true; its value (fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)  # between polls of the condition waited on
    pytest.fail(f"timed out waiting for {what}")
