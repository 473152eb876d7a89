"""A folder of images as a manifest plus a decoded-image cache, updated incrementally.

Each file is decoded once, at the model's size, into a memory-mapped uint8 array (rows never
move; new files are appended). Training, evaluation and extraction then read pixels at memory
speed with constant RAM. The manifest (one CSV) is the single source of truth: a row of the cache
is valid only once the manifest that names it has been written, so a crash mid-scan loses at most
the work since the last checkpoint and never corrupts anything.

Splits come from each file's content hash, so they are identical on every machine and in every
folder order, and a duplicated image can never sit in two splits.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import images
from .errors import ImageError, NotFoundError
from .progress import ProgressFn, report
from .workspace import Workspace, atomic_path

COLUMNS = ["row", "path", "label", "bytes", "mtime_ns", "sha1", "split", "status", "reason",
           "width", "height"]
CHUNK = 256  # files decoded between two appends to the cache
CHECKPOINT_S = 60.0  # seconds of decoding between two manifest writes in a long scan: a crash
# loses at most this much work, and rewriting a million-row manifest (seconds) stays a few per cent
WALK_BLOCK = 50_000  # files listed as Python objects before they are packed into a table
BAD_NAME = "file name is not valid UTF-8: rename the file to include it"


def store_dir(ws: Workspace, root: Path, image_size: int, fit: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", root.name)[:40] or "root"
    key = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    return ws.collections_dir() / f"{slug}-{key}" / f"{image_size}px-{fit}"


def split_of(sha1: str, val_fraction: float, test_fraction: float) -> str:
    u = int(sha1[:12], 16) / float(1 << 48)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def walk(root: Path) -> pd.DataFrame:
    """Every regular file under root (hidden files and folders skipped), in walk order:
    columns path (relative, posix), bytes, mtime_ns, bad_name.

    A name that is not valid UTF-8 (old archives, other systems' encodings) is listed with
    its undecodable bytes written as escapes (`caf\\xe9.jpg`) and `bad_name` set: it cannot be
    stored or shown as it is, so it is skipped with that reason rather than failing the scan.
    Packed into a table every WALK_BLOCK files: a million files then cost tens of megabytes
    of string buffers, not a million Python tuples.
    """
    blocks: list[pd.DataFrame] = []
    paths: list[str] = []
    sizes: list[int] = []
    mtimes: list[int] = []
    bad: list[bool] = []

    def pack() -> None:
        blocks.append(_files_frame(paths, sizes, mtimes, bad))
        paths.clear(), sizes.clear(), mtimes.clear(), bad.clear()

    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            p = Path(dirpath) / fn
            try:
                st = p.stat()
            except OSError:
                continue
            if p.is_file():
                rel = p.relative_to(root).as_posix()
                try:
                    rel.encode("utf-8")
                    bad.append(False)
                except UnicodeEncodeError:
                    rel = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                    bad.append(True)
                paths.append(rel)
                sizes.append(st.st_size)
                mtimes.append(st.st_mtime_ns)
                if len(paths) >= WALK_BLOCK:
                    pack()
    if paths or not blocks:
        pack()
    return pd.concat(blocks, ignore_index=True) if len(blocks) > 1 else blocks[0]


def _files_frame(paths: list[str], sizes: list[int], mtimes: list[int],
                 bad: list[bool]) -> pd.DataFrame:
    return pd.DataFrame({"path": pd.Series(paths, dtype=str),
                         "bytes": np.array(sizes, np.int64),
                         "mtime_ns": np.array(mtimes, np.int64),
                         "bad_name": np.array(bad, bool)})


def unchanged(files: pd.DataFrame, old: pd.DataFrame) -> np.ndarray:
    """For each row of `files`, its position in `old` if the file is unchanged (same path,
    size and mtime), else -1. Compared as int64 arrays: mtimes in nanoseconds must never pass
    through float."""
    out = np.full(len(files), -1, np.int64)
    if not len(old) or not len(files):
        return out
    known = pd.Index(old["path"])
    first = np.flatnonzero(~known.duplicated())  # escaped bad names could, in theory, collide
    hit = known[first].get_indexer(files["path"])
    seen = np.flatnonzero(hit >= 0)
    pos = first[hit[seen]]
    same = ((old["bytes"].to_numpy(np.int64)[pos] == files["bytes"].to_numpy()[seen])
            & (old["mtime_ns"].to_numpy(np.int64)[pos] == files["mtime_ns"].to_numpy()[seen]))
    out[seen[same]] = pos[same]
    taken = np.flatnonzero(out >= 0)  # one old row serves one file at most
    out[taken[pd.Series(out[taken]).duplicated().to_numpy()]] = -1
    return out


def _ingest(root: Path, rel: str, size: int, fit: str):
    """Hash and decode one file; returns (sha1, array | None, reason, width, height)."""
    path = root / rel
    try:
        header = images.open_image(path)
        w, h = images.upright_size(header)
        header.close()
        data = path.read_bytes()
        sha1 = hashlib.sha1(data).hexdigest()
        return sha1, images.load(data, size, fit), "", w, h
    except ImageError as e:
        return "", None, str(e), 0, 0
    except OSError as e:
        return "", None, f"cannot read file: {e.strerror or e}", 0, 0


@dataclass
class Collection:
    root: Path
    store: Path
    image_size: int
    fit: str
    manifest: pd.DataFrame

    # -- opening and syncing ----------------------------------------------------------------
    @classmethod
    def open(cls, ws: Workspace, root: str | Path, image_size: int, fit: str = "pad") -> Collection:
        """The collection as last scanned, without touching the folder."""
        root = Path(root).resolve()
        store = store_dir(ws, root, image_size, fit)
        mf = store / "manifest.csv"
        if not mf.is_file():
            raise NotFoundError(f"{root} has not been scanned at {image_size}px yet")
        manifest = pd.read_csv(mf, dtype={"path": str, "label": str, "sha1": str, "reason": str},
                               keep_default_na=False)
        return cls(root, store, image_size, fit, manifest)

    @classmethod
    def for_data(cls, ws: Workspace, data, images: str | Path | None = None,
                 progress: ProgressFn | None = None) -> Collection:
        """Sync a folder (default: the one in `data`) decoded with a model's DataConfig settings."""
        return cls.sync(ws, images or data.images, data.image_size, data.fit, data.val_fraction,
                        data.test_fraction, progress)

    @classmethod
    def sync(cls, ws: Workspace, root: str | Path, image_size: int, fit: str = "pad",
             val_fraction: float = 0.1, test_fraction: float = 0.1,
             progress: ProgressFn | None = None, workers: int | None = None) -> Collection:
        """Scan `root` and bring manifest and cache up to date, decoding only new or changed files."""
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise NotFoundError(f"image folder not found: {root}")
        progress = report(progress)
        store = store_dir(ws, root, image_size, fit)
        store.mkdir(parents=True, exist_ok=True)
        try:
            old = cls.open(ws, root, image_size, fit).manifest
        except FileNotFoundError:
            old = pd.DataFrame(columns=COLUMNS)
        files = walk(root)
        pos = unchanged(files, old)
        kept = old.iloc[pos[pos >= 0]]  # rows of `old` still valid
        todo = files[pos < 0].reset_index(drop=True)  # files to (re)decode
        del files, pos
        # Rows of removed or changed files stay in the cache as dead space: rows never move.
        n_rows = int(old["row"].max()) + 1 if len(old) and (old["row"] >= 0).any() else 0
        cache_path = store / "images.u8"
        row_bytes = image_size * image_size * 3
        with open(cache_path, "ab") as f:
            f.truncate(n_rows * row_bytes)  # drop rows appended after the last manifest write

        new: list[pd.DataFrame] = []  # one small table per chunk: memory stays small
        skipped = 0
        total = len(todo)
        progress("scan", 0, total)
        written = time.monotonic()
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool, open(cache_path, "ab") as cache:
            for start in range(0, total, CHUNK):
                chunk = todo.iloc[start:start + CHUNK]
                rels = chunk["path"].tolist()
                results = list(pool.map(
                    lambda job: ("", None, BAD_NAME, 0, 0) if job[1]
                    else _ingest(root, job[0], image_size, fit),
                    zip(rels, chunk["bad_name"].tolist())))
                ok = np.array([arr is not None for _, arr, _, _, _ in results])
                for _, arr, _, _, _ in results:
                    if arr is not None:
                        cache.write(arr.tobytes())
                new.append(_scanned_frame(chunk, rels, results, ok, n_rows))
                n_rows += int(ok.sum())
                skipped += int((~ok).sum())
                cache.flush()
                os.fsync(cache.fileno())
                done = min(start + CHUNK, total)
                progress("scan", done, total, skipped=skipped)
                if done < total and time.monotonic() - written >= CHECKPOINT_S:
                    new = [pd.concat(new, ignore_index=True)]
                    cls._write_manifest(store, kept, new, val_fraction, test_fraction)
                    written = time.monotonic()
        manifest = cls._write_manifest(store, kept, new, val_fraction, test_fraction)
        return cls(root, store, image_size, fit, manifest)

    @staticmethod
    def _write_manifest(store: Path, kept: pd.DataFrame, new: list[pd.DataFrame],
                        val_fraction: float, test_fraction: float) -> pd.DataFrame:
        # Never concatenate an empty frame: pandas would turn the integer columns to float,
        # and mtime_ns (nanoseconds) would lose the precision rescans compare on.
        parts = [f for f in [kept[COLUMNS], *new] if len(f)]
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
        ok = df["status"] == "ok"
        df.loc[ok, "split"] = [split_of(s, val_fraction, test_fraction) for s in df.loc[ok, "sha1"]]
        df.loc[~ok, "split"] = ""
        df = df.sort_values(["status", "path"], kind="stable").reset_index(drop=True)
        with atomic_path(store / "manifest.csv") as tmp:
            df.to_csv(tmp, index=False)
        return df

    # -- reading ----------------------------------------------------------------------------
    @property
    def images(self) -> np.ndarray:
        """All decoded rows, memory-mapped read-only: shape (rows, size, size, 3), uint8."""
        path = self.store / "images.u8"
        n = path.stat().st_size // (self.image_size * self.image_size * 3)
        if n == 0:
            return np.zeros((0, self.image_size, self.image_size, 3), np.uint8)
        return np.memmap(path, np.uint8, "r", shape=(n, self.image_size, self.image_size, 3))

    def items(self, split: str | None = None) -> pd.DataFrame:
        """Readable images (optionally of one split), in a stable order, with their cache rows."""
        df = self.manifest[self.manifest["status"] == "ok"]
        if split:
            df = df[df["split"] == split]
        return df.reset_index(drop=True)

    def skipped(self) -> pd.DataFrame:
        return self.manifest[self.manifest["status"] == "skipped"][["path", "reason"]].reset_index(drop=True)

    def labels(self) -> list[str]:
        return sorted(x for x in self.items()["label"].unique() if x)

    @property
    def fingerprint(self) -> str:
        """Identifies the collection state: which images, with which content, in which split."""
        items = self.items()
        h = hashlib.sha256()
        for p, s, sp in zip(items["path"], items["sha1"], items["split"]):
            h.update(f"{p}\0{s}\0{sp}\n".encode())
        return h.hexdigest()[:16]


def _scanned_frame(chunk: pd.DataFrame, rels: list[str], results: list, ok: np.ndarray,
                   first_row: int) -> pd.DataFrame:
    """Manifest rows of one decoded chunk; readable files take cache rows from `first_row`."""
    sha1, _, reason, width, height = zip(*results)
    return pd.DataFrame({
        "row": np.where(ok, first_row + np.cumsum(ok) - 1, -1).astype(np.int64),
        "path": pd.Series(rels, dtype=str),
        "label": pd.Series([_label(r) for r in rels], dtype=str),
        "bytes": chunk["bytes"].to_numpy(np.int64),
        "mtime_ns": chunk["mtime_ns"].to_numpy(np.int64),
        "sha1": pd.Series(sha1, dtype=str),
        "split": pd.Series([""] * len(rels), dtype=str),
        "status": pd.Series(np.where(ok, "ok", "skipped").tolist(), dtype=str),
        "reason": pd.Series(reason, dtype=str),
        "width": np.array(width, np.int64),
        "height": np.array(height, np.int64),
    }, columns=COLUMNS)


def _label(rel: str) -> str:
    """The immediate sub-folder of the collection root is the label; files at the root have none."""
    parts = rel.split("/")
    return parts[0] if len(parts) > 1 else ""
