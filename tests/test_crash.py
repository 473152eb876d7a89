"""SIGKILL real jobs at several points: nothing is lost, and running again gives the same result."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from fext.artifacts import Artifacts
from fext.registry import load as load_model
from fext.registry import open_record as model_info
from fext.search import Searcher
from fext.workspace import Workspace
from tests.corpus import make_shapes
from tests.helpers import REPO, run_cli

STEPS = 5  # optimiser steps an epoch: four short epochs, so kills land in chosen epochs
TRAIN = ["--preset", "small", "--image-size", "16", "--latent-dim", "8", "--batch-size", "8",
         "--epoch-steps", str(STEPS), "--held-out-copies", "32", "--epochs", "4", "--patience", "10"]


def kill_when(args, workspace, until, timeout=120):
    """Start `python -m fext args`, SIGKILL it once `until(progress)` holds; the progress it
    was killed at, or None if it ended first."""
    pf = workspace / "progress.json"
    pf.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "fext", *args, "--workspace", str(workspace),
                             "--progress-file", str(pf)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while proc.poll() is None and time.time() < deadline:
            try:
                state = json.loads(pf.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                state = {}
            if state and until(state):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return state
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return None


def at_stage(stage, min_done=0):
    return lambda s: s.get("stage") == stage and s.get("done", 0) >= min_done


def after_epochs(n):
    return lambda s: len(s.get("history", [])) >= n


def inside_epoch(epoch):
    """Training steps into `epoch` (1-based), past its first step: a kill then loses part of
    an epoch whose start came from a checkpoint when epoch > 1."""
    return lambda s: (s.get("stage") == "train" and s.get("info", {}).get("epoch") == epoch
                      and s.get("done", 0) >= (epoch - 1) * STEPS + 2)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    make_shapes(root / "a", per_label=25, size=24)
    make_shapes(root / "b", per_label=120, size=24)
    return root


def test_killed_training_resumes_to_the_uninterrupted_result(folders, tmp_path):
    ref_ws, ws = tmp_path / "ref", tmp_path / "ws"
    run_cli("train", "--images", str(folders / "a"), "--name", "m", *TRAIN, workspace=ref_ws)
    # an earlier model under the same name must survive every kill (made in-process: only
    # the runs that are killed need a process)
    run_cli("train", "--images", str(folders / "a"), "--name", "m", *TRAIN[:-4], "--epochs", "1",
            workspace=ws)
    before = model_info(Workspace(ws), "m")
    args = ["train", "--images", str(folders / "a"), "--name", "m", *TRAIN, "--seed", "42"]
    killed = [kill_when(args, ws, inside_epoch(1)),    # inside the first epoch: nothing saved
              kill_when(args, ws, after_epochs(1)),    # right after the first checkpoint
              kill_when(args, ws, inside_epoch(3))]    # resumed at epoch 2, killed inside epoch 3
    assert all(killed)  # each kill landed before the run could finish
    # the third run resumed from a checkpoint and was killed after another one, mid-epoch
    assert killed[2]["info"]["epoch"] == 3 and killed[2]["done"] > 2 * STEPS
    assert model_info(Workspace(ws), "m") == before  # previous model intact and loadable
    load_model(Workspace(ws), "m")
    run_cli(*args, workspace=ws)
    got = pd.read_csv(Workspace(ws).model_dir("m") / "history.csv")
    want = pd.read_csv(Workspace(ref_ws).model_dir("m") / "history.csv")
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    np.testing.assert_allclose(got["val_loss"], want["val_loss"], rtol=1e-5)


def test_killed_extraction_keeps_the_previous_index_and_redoes_the_work(folders, tmp_path):
    ws = tmp_path / "ws"
    run_cli("train", "--images", str(folders / "a"), "--name", "m", *TRAIN[:-4], "--epochs", "1",
            workspace=ws)
    run_cli("extract", "--name", "m", workspace=ws)
    w = Workspace(ws)
    count_a = len(Artifacts.open(w, "m").items)
    args = ["extract", "--name", "m", "--images", str(folders / "b")]
    for i, point in enumerate((at_stage("scan", 1), at_stage("encode", 1), at_stage("index"))):
        if not kill_when(args, ws, point):
            # the index stage lasts milliseconds on this tiny collection: under load the job
            # may publish before the kill lands, which is a complete run, not a lost one
            assert i == 2, "the job finished before it could be killed while scanning/encoding"
            break
        art = Artifacts.open(w, "m")  # still the previous, complete index
        assert len(art.items) == count_a and len(art.index()) == count_a
        assert Searcher.open(w, "m").search(folders / "a" / "red" / "red_003.png", 1)[0]["path"] == \
            "red/red_003.png"
    run_cli(*args, workspace=ws)  # only the killed runs need a process of their own
    art = Artifacts.open(w, "m")
    assert len(art.items) == 360 and len(art.index()) == 360
    s = Searcher.open(w, "m")
    for i in (0, 123, 359):
        vec = s.encode(folders / "b" / art.items["path"].iat[i])
        np.testing.assert_allclose(vec, art.features()[i], atol=1e-4)
