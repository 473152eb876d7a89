"""The tiny trained workspace the app tests open on, built once per test session.

tests/test_app.py (AppTest) and tests/test_browser.py (a real browser) both use it; the model is
trained once, however many modules ask for it. Its model is named "demo", so the app opens on
it and never starts the real demo preparation. Its images are tests/corpus.py's make_collection.
`streamlit_run` starts the app on it as a user does (the browser and security tests).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fext.ui import access
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_run(ws, log: Path, *flags: str, key: str | None = None):
    """`streamlit run app.py` on a free port with the repository's config and `flags`; yields
    (base URL over 127.0.0.1, port) once its health check answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in (access.ENV_KEY, access.ENV_ROOTS)}
    env.update({"FEXT_WORKSPACE": str(ws.root), **({access.ENV_KEY: key} if key else {})})
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py",
                                 "--server.port", str(port), *flags], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).text == "ok":
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)  # between polls of the health check (the condition waited on)
        yield url, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def routes_client(tmp_path_factory):
    """(a TestClient of FEXT's routes serving the app's tiny workspace, its demo extraction):
    the routes read the workspace from FEXT_WORKSPACE, as the app's server does."""
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from fext.artifacts import Artifacts
    from fext.ui import served, server

    ws = app_workspace(tmp_path_factory)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FEXT_WORKSPACE", str(ws.root))
        served.clear()
        try:
            yield TestClient(Starlette(routes=server.ROUTES)), Artifacts.open(ws, "demo")
        finally:
            served.clear()
