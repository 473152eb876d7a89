"""Training: saved artefacts, reproducibility, resume after an interruption, previous model kept."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from fext import registry
from fext.errors import LockedError
from fext.loop import EarlyStopping, run_epochs
from fext.progress import Reporter, duration, time_left
from fext.registry import load as load_model
from fext.registry import open_record as model_info
from fext.train import train
from fext.workspace import Workspace
from tests.helpers import TINY, run_cli, tiny_config


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
    assert record.to_dict()["model"] == {"preset": "small", "latent_dim": 8, "decoder": "lean"}
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


def test_without_held_out_copies_the_validation_loss_chooses_the_epoch(tmp_path, shapes_dir):
    ws = Workspace(tmp_path)
    train(ws, "m", tiny_config(shapes_dir, epochs=2, held_out_copies=0))
    metrics = json.loads((ws.model_dir("m") / "metrics.json").read_text())
    h = history(ws, "m")
    assert metrics["monitor"] == "val_loss" and "val_copies" not in h
    assert metrics["best_epoch"] == int(h.loc[h["val_loss"].idxmin(), "epoch"])


def test_training_is_reproducible(tmp_path, shapes_dir):
    ws = Workspace(tmp_path)
    train(ws, "a", tiny_config(shapes_dir, epochs=2))
    train(ws, "b", tiny_config(shapes_dir, epochs=2))
    np.testing.assert_allclose(history(ws, "a")["loss"], history(ws, "b")["loss"], rtol=1e-6)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_interrupted_run_resumes_to_the_same_result(tmp_path, shapes_dir, precision):
    ws = Workspace(tmp_path)
    # denoising: noise seeded per step
    cfg = tiny_config(shapes_dir, epochs=4, noise=0.05, precision=precision)
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
    np.testing.assert_array_equal(history(ws, "cut")["val_copies"],
                                  history(ws, "whole")["val_copies"])
    for name in ("whole", "cut"):
        metrics = json.loads((ws.model_dir(name) / "metrics.json").read_text())
        assert metrics["train_precision"] == precision


def test_the_learning_rate_drops_after_each_stalled_epoch_and_resumes_where_it_was(
        tmp_path, shapes_dir, monkeypatch, capsys):
    """--lr-drop: an epoch that gains no point of held-out copies lowers the next epochs'
    rate; the rate is a function of the saved patience state, so a run killed and resumed
    trains on as the whole one did."""
    import fext.train as train_lib

    curve = {1: 0.5, 2: 0.5, 3: 0.7, 4: 0.7, 5: 0.7}  # epochs 2, 4 and 5 stall
    steps = TINY["epoch_steps"]
    monkeypatch.setattr(train_lib, "held_out_copies",
                        lambda features, test: curve[features.moment() // steps])
    ws = Workspace(tmp_path)
    cfg = tiny_config(shapes_dir, epochs=5, lr_drop=0.5, patience=3, learning_rate=0.002)
    capsys.readouterr()
    train(ws, "whole", cfg, progress=Reporter(bar=False))  # the epoch lines say the rate
    whole = history(ws, "whole")
    assert whole["learning_rate"].tolist() == pytest.approx([0.002, 0.002, 0.001, 0.001, 0.0005])
    line = next(x for x in capsys.readouterr().err.splitlines() if "epoch 3 of 5:" in x)
    assert "learning rate 0.001," in line
    with pytest.raises(KeyboardInterrupt):
        train(ws, "cut", cfg, progress=StopAfter(3))
    train(ws, "cut", cfg)
    cut = history(ws, "cut")
    assert cut["learning_rate"].tolist() == whole["learning_rate"].tolist()
    np.testing.assert_allclose(cut["loss"], whole["loss"], rtol=1e-5)
    train(ws, "steady", tiny_config(shapes_dir, epochs=3, lr_drop=1.0))  # a constant rate
    assert history(ws, "steady")["learning_rate"].tolist() == pytest.approx([0.001] * 3)


def test_a_bfloat16_run_publishes_a_float32_model(tmp_path, shapes_dir):
    import keras

    from fext.features import extract
    from fext.model import inference_parts

    ws = Workspace(tmp_path)
    train(ws, "bf", tiny_config(shapes_dir, epochs=1, precision="bfloat16"))
    assert keras.config.dtype_policy().name == "float32"  # no global policy left behind
    model, record = load_model(ws, "bf")
    assert record.config.train.precision == "bfloat16"
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}
    encoder, decoder = inference_parts(model)  # batch-norm folded, as for any model
    x = np.random.default_rng(0).random((4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(decoder.predict_on_batch(encoder.predict_on_batch(x)),
                               model.predict_on_batch(x), atol=1e-5)
    assert extract(ws, "bf", precision="float32")["count"] > 0


def test_old_models_read_as_trained_in_float32():
    from fext.config import RunConfig

    old = RunConfig.from_dict({"train": {"epochs": 3}}).train
    assert old.precision == "float32" and old.lr_drop == 1.0  # and at a constant rate


def test_time_left_is_the_mean_epoch_times_the_epochs_left():
    assert time_left([10.0, 20.0], epoch=2, epochs=6) == 60.0
    assert time_left([30.0], epoch=1, epochs=3) == 60.0
    assert time_left([10.0, 20.0], epoch=6, epochs=6) == 0.0  # the last epoch: nothing left
    assert time_left([], epoch=0, epochs=6) == 0.0  # nothing timed yet: no estimate
    assert time_left([5.0], epoch=7, epochs=6) == 0.0
    assert [duration(s) for s in (42.4, 185, 3720)] == ["42 s", "3 min 05 s", "1 h 02 min"]


class NoModel:
    """Just enough of a Keras model for fext.loop: a loss that never improves."""

    def train_on_batch(self, x, y, return_dict=True):
        return {"loss": 1.0}


def test_gains_below_the_minimum_do_not_hold_off_the_stop_but_the_best_is_still_published():
    """Held-out copies creeping up by a copy or two an epoch: a plateau. With min_gain the run
    stops two epochs after the last real gain; the best epoch is the highest, however slim its
    lead; the state resumes to the same decisions."""
    curve = [0.887, 0.934, 0.938, 0.945, 0.949, 0.941, 0.950, 0.952]
    def run(min_gain, state=None, start=0):
        stopper = EarlyStopping(lambda row: (row["val_copies"],), 2, state, min_gain=min_gain)
        for epoch, value in enumerate(curve[start:], start + 1):
            stopper.offer({"epoch": epoch, "val_copies": value})
            if stopper.stop:
                return epoch, stopper
        return len(curve), stopper
    assert run(0.0)[0] == 8  # every small rise resets the patience: the run goes on
    stopped, stopper = run(0.01)
    assert stopped == 6 and stopper.best_epoch == 5  # 0.945 was the last real gain (epoch 4)
    # resumed after epoch 5 from its saved state: the same stop, the same best
    partial = EarlyStopping(lambda row: (row["val_copies"],), 2, min_gain=0.01)
    for epoch, value in enumerate(curve[:5], 1):
        partial.offer({"epoch": epoch, "val_copies": value})
    resumed, again = run(0.01, json.loads(json.dumps(partial.state())), start=5)
    assert (resumed, again.best_epoch) == (6, 5)


def test_epoch_lines_say_the_best_the_time_left_and_why_a_run_stops(capsys):
    """The loop and the Reporter, without Keras: one line per epoch with its figures, the best
    epoch marked, the estimate after each but the last, and the reason of an early stop."""
    stopper = EarlyStopping(lambda row: (row["val_copies"],), patience=2,
                            why="held-out copies have not improved for {epochs}")
    reporter = Reporter(bar=False)

    def on_epoch(row: dict) -> bool:
        stopper.offer(row)
        return stopper.stop

    run_epochs(NoModel(), np.zeros((8, 2, 2, 3), np.uint8), np.arange(8), epochs=6,
               batch_size=4, seed=0, on_epoch=on_epoch, progress=reporter,
               validate=lambda m: {"val_loss": 0.5, "val_copies": 0.75}, epoch_steps=2,
               stopper=stopper)
    lines = [x for x in capsys.readouterr().err.splitlines() if " epoch " in x]
    assert len(lines) == 4 and lines[3].startswith("[train] stopping early after epoch 3 of 6: "
                                                   "held-out copies have not improved for 2 epochs")
    for k, line in enumerate(lines[:3], 1):
        assert line.startswith(f"[train] epoch {k} of 6: 2 steps, loss 1.00000, val_loss "
                               "0.50000, val_copies 0.750, ")
        assert ("best so far" in line) == (k == 1)
    assert "at most" in lines[0] and "(5 more epochs)" in lines[0]
    assert "at most" not in lines[2]  # the run stops there: nothing is left
    history = reporter.state["history"]
    assert [r["best"] for r in history] == [True, False, False]
    assert reporter.state["estimate"]["stopping"].startswith("held-out copies")


def test_train_prints_one_line_per_epoch_on_stderr(tmp_path, shapes_dir):
    opts = {**TINY, "epochs": 3}
    proc = run_cli("train", "--images", str(shapes_dir), "--name", "lines", "--json",
                   *[f for k, v in opts.items() for f in (f"--{k.replace('_', '-')}", str(v))],
                   workspace=tmp_path)
    json.loads(proc.stdout)  # stdout holds the one JSON object, and nothing else
    lines = [x for x in proc.stderr.splitlines() if x.startswith("[train] epoch ")]
    assert len(lines) == 3
    h = history(Workspace(tmp_path), "lines")
    for k, line in enumerate(lines, 1):
        assert re.match(rf"\[train\] epoch {k} of 3: 4 steps, loss \d\.\d{{5}}, val_loss "
                        rf"\d\.\d{{5}}, val_copies {h['val_copies'][k - 1]:.3f}, learning rate "
                        rf"{h['learning_rate'][k - 1]:.3g}, \d+\.\d s", line)
        assert ("at most" in line and f"left ({3 - k} more epoch" in line) == (k < 3)
    chosen = json.loads((Workspace(tmp_path).model_dir("lines") / "metrics.json").read_text())
    # the published epoch was, when it ended, the best so far (a later one can only tie it)
    assert "best so far" in lines[0] and "best so far" in lines[chosen["best_epoch"] - 1]


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
