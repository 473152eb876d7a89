"""Where every artefact lives, how it is written (atomically) and who may write it (a lock).

Layout under the workspace root (the repository root by default, or ``FEXT_WORKSPACE``)::

    models/<name>/          model-<id>.keras, config.json (the model's record, fext.registry: names
                            the model file; written last), history.csv, metrics.json,
                            manifest.csv, reference-<id>.faiss (its training vectors)
    models/<name>/run/      checkpoints of an unfinished training run (resume)
    index/<name>/CURRENT    names the most recent version folder below
    index/<name>/v-*/       one per extracted folder: features.npy, items.csv, faiss.index,
                            scores.npy (and reference.npy, ...), meta.json, umap.npy
    index/_collections/     per-folder manifests and decoded-image caches
    jobs/<id>/              background jobs started by the app
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from .errors import LockedError, UsageError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_root() -> Path:
    return Path(os.environ.get("FEXT_WORKSPACE") or REPO_ROOT).resolve()


def check_name(name: str) -> str:
    """Model names become folder names: refuse anything that could leave the workspace."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
        raise UsageError(
            f"invalid name {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit")
    return name


class Workspace:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).resolve() if root else default_root()

    # -- places ---------------------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        return self.root / "models" / check_name(name)

    def index_root(self, name: str) -> Path:
        return self.root / "index" / check_name(name)

    def collections_dir(self) -> Path:
        return self.root / "index" / "_collections"

    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    def uploads_dir(self) -> Path:
        return self.root / "data" / "uploads"

    # -- versions of the index folder -------------------------------------------------------
    def current_index(self, name: str) -> Path | None:
        pointer = self.index_root(name) / "CURRENT"
        if not pointer.is_file():
            return None
        version = self.index_root(name) / pointer.read_text().strip()
        return version if version.is_dir() else None

    def new_index_version(self, name: str) -> Path:
        root = self.index_root(name)
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=time.strftime("v-%Y%m%d-%H%M%S-"), dir=root))

    def index_versions(self, name: str) -> list[Path]:
        """Every published version of `name`'s index (one per extracted folder), newest first."""
        root = self.index_root(name)
        found = [p for p in root.glob("v-*") if (p / "meta.json").is_file()] if root.is_dir() else []
        return sorted(found, key=lambda p: (p / "meta.json").stat().st_mtime_ns, reverse=True)

    def publish_index(self, name: str, version: Path, replaces=lambda old: True) -> None:
        """Make `version` the live index in one atomic step, then drop the older versions it
        replaces (`replaces(old)`: those of the same image folder) and any unfinished one."""
        root = self.index_root(name)
        write_text(root / "CURRENT", version.name)
        for old in root.glob("v-*"):
            if old.is_dir() and old.name != version.name and (
                    not (old / "meta.json").is_file() or replaces(old)):
                shutil.rmtree(old, ignore_errors=True)

    # -- locking --------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str):
        """Exclusive, non-blocking lock on a model name; the OS releases it if the holder dies."""
        path = self.model_dir(name).parent / f".{check_name(name)}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise LockedError(
                    f"another job (pid {holder}) is already writing model {name!r}; "
                    "wait for it to finish or cancel it") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)

    def is_locked(self, name: str) -> bool:
        try:
            with self.lock(name):
                return False
        except LockedError:
            return True


# -- atomic writes --------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(dest: str | Path, suffix: str = ""):
    """Yield a temporary path beside `dest`; on success rename it over `dest` (atomic on POSIX)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or ".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(dest: str | Path, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)


def write_json(dest: str | Path, obj) -> None:
    write_text(dest, json.dumps(obj, indent=2, default=str))


def read_json(path: str | Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
