"""Training: saved artefacts, reproducibility, resume after an interruption, previous model kept."""

import json

import numpy as np
import pandas as pd
import pytest

from fext import registry
from fext.errors import LockedError
from fext.registry import load as load_model
from fext.registry import open_record as model_info
from fext.train import train
from fext.workspace import Workspace
from tests.helpers import tiny_config


class StopAfter:
    """A progress hook that interrupts training after `epochs` completed epochs."""

    def __init__(self, epochs):
        self.epochs = epochs

    def __call__(self, stage, done, total, **info):
        if "epoch_logs" in info and info["epoch_logs"]["epoch"] >= self.epochs:
            raise KeyboardInterrupt


def history(ws, name):
    return pd.read_csv(ws.model_dir(name) / "history.csv")


def test_model_folder_has_everything(trained):
    ws, name = trained
    record = model_info(ws, name)
    d = ws.model_dir(name)
    assert (d / record.model_file).is_file() and record.path == d / record.model_file
    assert record.to_dict()["model"] == {"preset": "small", "latent_dim": 8}
    assert record.config.data.image_size == 16 and record.config.train.seed == 42
    assert len(history(ws, name)) == 3
    metrics = json.loads((d / "metrics.json").read_text())
    # chosen on validation, never on test: the epoch whose held-out views found their source
    # best, the lower held-out loss breaking ties
    assert metrics["monitor"] == "val_copies"
    h = history(ws, name)
    assert h["val_copies"].between(0, 1).all() and h["val_loss"].gt(0).all()
    best = max(h.itertuples(), key=lambda r: (r.val_copies, -r.val_loss))
    assert metrics["best_epoch"] == best.epoch
    model, _ = load_model(ws, name)
    assert model.output.shape[1:] == (16, 16, 3)


def test_training_is_reproducible(tmp_path, shapes_dir):
    ws = Workspace(tmp_path)
    train(ws, "a", tiny_config(shapes_dir, epochs=2))
    train(ws, "b", tiny_config(shapes_dir, epochs=2))
    np.testing.assert_allclose(history(ws, "a")["loss"], history(ws, "b")["loss"], rtol=1e-6)


def test_interrupted_run_resumes_to_the_same_result(tmp_path, shapes_dir):
    ws = Workspace(tmp_path)
    cfg = tiny_config(shapes_dir, epochs=4, noise=0.05)  # denoising: noise seeded per step
    train(ws, "whole", cfg)
    with pytest.raises(KeyboardInterrupt):
        train(ws, "cut", cfg, progress=StopAfter(2))
    assert not (ws.model_dir("cut") / "config.json").exists()
    seen = []
    train(ws, "cut", cfg,
          progress=lambda s, d, t, **i: seen.append(i.get("epoch_logs", {}).get("epoch")))
    assert {1, 2}.isdisjoint(seen) and 3 in seen  # epochs 1-2 were not run again
    np.testing.assert_allclose(history(ws, "cut")["loss"], history(ws, "whole")["loss"], rtol=1e-5)
    np.testing.assert_allclose(history(ws, "cut")["val_loss"], history(ws, "whole")["val_loss"],
                               rtol=1e-5)


def test_failed_retraining_keeps_the_previous_model(tmp_path, shapes_dir):
    ws = Workspace(tmp_path)
    train(ws, "m", tiny_config(shapes_dir, epochs=1))
    before = model_info(ws, "m")
    with pytest.raises(KeyboardInterrupt):
        train(ws, "m", tiny_config(shapes_dir, epochs=3, seed=7), progress=StopAfter(1))
    assert model_info(ws, "m") == before
    load_model(ws, "m")


def test_second_writer_is_refused(tmp_path, shapes_dir):
    ws = Workspace(tmp_path)
    with ws.lock("busy"):
        with pytest.raises(LockedError, match="already writing"):
            train(ws, "busy", tiny_config(shapes_dir, epochs=1))


def test_bad_settings_are_refused_before_any_work(tmp_path, shapes_dir):
    with pytest.raises(ValueError, match="multiple of 4"):
        train(Workspace(tmp_path), "x", tiny_config(shapes_dir, image_size=18))
    with pytest.raises(ValueError, match="invalid name"):
        train(Workspace(tmp_path), "../escape", tiny_config(shapes_dir))


def test_files_beside_model_folders_are_not_models(trained):
    ws, name = trained
    (ws.root / "models" / "README.md").write_text("what this folder holds")  # as in the repo
    names = registry.names(ws)  # other tests may have added models to this shared workspace
    assert name in names and "README.md" not in names
