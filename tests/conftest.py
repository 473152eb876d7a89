"""Shared fixtures: a small labelled collection with broken files, and a model trained on it once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.corpus import make_shapes
from tests.helpers import tiny_config

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
def trained(tmp_path_factory, shapes_dir):
    """(workspace, name): a tiny model trained on shapes_dir, with features extracted."""
    from fext.features import extract
    from fext.train import train
    from fext.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("ws"))
    train(ws, "shapes", tiny_config(shapes_dir))
    extract(ws, "shapes")
    return ws, "shapes"
