"""The tiny trained workspace the app tests open on, built once per test session.

tests/test_app.py (AppTest) and tests/test_browser.py (a real browser) both use it; the model is
trained once, however many modules ask for it. Its model is named "demo", so the app opens on
it and never starts the real demo preparation. Its images are tests/corpus.py's make_collection.
"""

from __future__ import annotations

from pathlib import Path

from tests.corpus import make_collection
from tests.helpers import tiny_config

REPO = Path(__file__).resolve().parent.parent
DIM = 8

_built: dict[str, object] = {}


def app_workspace(tmp_path_factory):
    """Workspace with a tiny model "demo" trained, extracted and mapped (built once)."""
    if "ws" not in _built:
        from fext.features import extract, project
        from fext.train import train
        from fext.workspace import Workspace

        images = make_collection(tmp_path_factory.mktemp("app-images"))
        ws = Workspace(tmp_path_factory.mktemp("app-ws"))
        train(ws, "demo", tiny_config(images, latent_dim=DIM, epochs=2))
        extract(ws, "demo")
        project(ws, "demo")
        _built["ws"] = ws
    return _built["ws"]
