"""Shared fixtures: a small labelled collection with broken files, and a model trained on it once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.corpus import make_shapes
from tests.helpers import copy_workspace, tiny_config

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """3 labels x 14 coloured shapes, plus a text file and an empty file that must be skipped."""
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, per_label=14)
    (root / "red" / "notes.jpg").write_text("not an image")
    (root / "empty.png").write_bytes(b"")
    return root


@pytest.fixture(scope="session")
def trained_once(tmp_path_factory, shapes_dir):
    """(workspace, name): a tiny model trained on shapes_dir, with features extracted; built
    once per session and never written to (tests get copies: `trained`)."""
    from fext.features import extract
    from fext.train import train
    from fext.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("ws"))
    train(ws, "shapes", tiny_config(shapes_dir))
    extract(ws, "shapes")
    return ws, "shapes"


@pytest.fixture
def trained(trained_once, tmp_path_factory):
    """(workspace, name): this test's own copy of the trained workspace, so what one test
    writes (a classifier, a map, an evaluation) is never seen by another, in any order."""
    ws, name = trained_once
    return copy_workspace(ws, tmp_path_factory.mktemp("trained") / "ws"), name


def pytest_terminal_summary(terminalreporter, config):
    """The order's seed, printed even under -q: a failure that depends on order is repeated
    with `pytest -p randomly --randomly-seed=N` (pytest-randomly shuffles every run)."""
    seed = config.getoption("randomly_seed", default=None)
    if seed is not None:
        terminalreporter.write_line(f"tests ran in a random order: --randomly-seed={seed} repeats it")
