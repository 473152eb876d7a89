"""The app's extractions in memory: one `Served` per published version, shared by every page and
HTTP route of this server (fext/ui/server.py), each derived array computed once.

An extraction is addressed by model name and version, both resolved against the workspace's
own listings: nothing asked for is ever joined into a file path unchecked. What is not there
raises the product's NotFoundError; the routes answer it with 404, the pages with guidance.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from fext import projection
from fext.artifacts import Artifacts
from fext.errors import NotFoundError
from fext.workspace import NAME_RE, Workspace

VERSION_RE = re.compile(r"^v-[A-Za-z0-9_-]{1,80}$")


class Served:
    """One extraction as the server holds it: its artefacts and what pages and routes derive
    from them, each computed on first use and kept while the extraction stays in the cache."""

    def __init__(self, art: Artifacts):
        self.art = art
        self._memo: dict = {}

    def memo(self, key, make):
        """`make()`, computed once per extraction under `key`."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def coords(self) -> np.ndarray:
        """The map's coordinates; NotFoundError until the map is computed."""
        coords = self.memo("coords", lambda: projection.load_cached(self.art))
        if coords is None:
            raise NotFoundError(f"the extraction {self.art.dir.name} of {self.art.name!r} has no "
                                f"map yet; run: python -m fext project --name {self.art.name}")
        return coords

    def scores(self) -> np.ndarray:
        """The default anomaly score of every image."""
        return self.memo("scores", self.art.scores)

    def pixels(self) -> np.ndarray:
        """The decoded-image cache the extraction was made from (memory-mapped)."""
        return self.memo("pixels", lambda: self.art.collection(Workspace()).images)


@functools.lru_cache(maxsize=2)  # an extraction's table is ~0.3 GB at a million images
def _open(root: str, name: str, version: str, stamp: tuple) -> Served:
    return Served(Artifacts.at(name, Path(root) / "index" / name / version))


def extraction(name: str, version: str) -> Served:
    """The published extraction `version` of model `name` (a version folder never changes once
    published; a new extraction is a new version). NotFoundError unless both are names the
    workspace itself lists, and the version is a folder inside it."""
    ws = Workspace()
    if not (NAME_RE.match(name) and VERSION_RE.match(version)):
        raise NotFoundError(f"no extraction {version!r} of model {name!r}")
    found = next((p for p in ws.index_versions(name) if p.name == version), None)
    if found is None or found.is_symlink():
        raise NotFoundError(f"no extraction {version!r} of model {name!r}")
    return _open(str(ws.root), name, version, _stamp(found))


def clear() -> None:
    """Forget every extraction held (for a server, or a test, that switches workspaces)."""
    _open.cache_clear()


def _stamp(version: Path) -> tuple:
    """What changes when a published version gains or changes a file: its meta and its map
    (computed after publishing, or again on request)."""
    return tuple(p.stat().st_mtime_ns if p.is_file() else 0
                 for p in (version / "meta.json", version / projection.LAYOUT,
                           version / projection.PLACED))
