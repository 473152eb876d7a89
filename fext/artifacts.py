"""The reader of a published extraction: what every page, route and read-only command opens.

An extraction is a version folder ``index/<name>/v-*/`` (fext.workspace) written once by
`fext.features.extract` and never changed after publishing but for its map: features.npy,
items.csv, faiss.index, the anomaly scores, each image's nearest others and meta.json (what it
was built from). Reading one never imports Keras, so the commands that only read start fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import anomaly
from .collection import Collection
from .errors import NotFoundError, StaleError, UsageError
from .index import VectorIndex
from .registry import open_record
from .workspace import Workspace, read_json

SCORE_FILES = {"reference": "reference.npy", "combined": "scores.npy", "isolation": "isolation.npy",
               "reconstruction": "recon.npy", "appearance": "appearance.npy"}  # recon.npy:
# errors relative to contrast (read as the folder's reconstruction part with VARIANCE_FILE:
# `Artifacts.scores`)
NEIGHBOUR_FILES = ("neighbours.npy", "neighbour_sims.npy")  # each image's nearest others
HASH_FILE = "hashes.npy"  # each image's perceptual hash (fext.duplicates.perceptual_hashes)
VARIANCE_FILE = "variance.npy"  # each image's pixel variance (fext.anomaly.pixel_statistics)
AGREE_FILE = "agree.npy"  # whether each neighbour pair's pixels agree (fext.duplicates.pixel_edges)


@dataclass
class Artifacts:
    """One published extraction: what it was built from and the arrays it holds."""

    name: str
    dir: Path
    meta: dict
    items: pd.DataFrame

    @classmethod
    def open(cls, ws: Workspace, name: str, check: bool = True,
             images: str | Path | None = None) -> Artifacts:
        """The most recent extraction of model `name`, or the one of folder `images`."""
        art = cls.at(name, cls.locate(ws, name, images))
        if check:
            art.check(ws)
        return art

    @staticmethod
    def locate(ws: Workspace, name: str, images: str | Path | None = None) -> Path:
        """The folder of the most recent extraction of `name`, or of the one of `images`."""
        if images is None:
            version = ws.current_index(name)
        else:
            root = str(Path(images).expanduser().resolve())
            version = next((v for v in ws.index_versions(name)
                            if read_json(v / "meta.json", {}).get("images") == root), None)
        if version is None or not (version / "meta.json").is_file():
            open_record(ws, name)  # an unknown model is told so, with the models there are
            where = "" if images is None else f" --images {images}"
            raise NotFoundError(f"model {name!r} has no features{' of ' + str(images) if images else ''}"
                                f" yet; run: python -m fext extract --name {name}{where}")
        return version

    def check(self, ws: Workspace) -> None:
        """Raise StaleError if the model was retrained after this extraction."""
        if self.meta.get("model") != open_record(ws, self.name).fingerprint:
            raise StaleError(
                f"the index of {self.name!r} was built by an earlier version of the model; "
                f"rebuild it with: python -m fext extract --name {self.name}")

    @classmethod
    def at(cls, name: str, version: Path) -> Artifacts:
        """The extraction in folder `version`, as it is (no staleness check)."""
        items = pd.read_csv(version / "items.csv", dtype={"path": str, "label": str, "sha1": str},
                            keep_default_na=False)
        return cls(name, version, read_json(version / "meta.json"), items)

    @property
    def root(self) -> Path:
        return Path(self.meta["images"])

    def features(self) -> np.ndarray:
        return np.load(self.dir / "features.npy", mmap_mode="r")

    @property
    def precision(self) -> str:
        """Of the forward passes that made these features; queries must be encoded alike."""
        return self.meta.get("precision", "float32")

    @property
    def score_kinds(self) -> tuple[str, ...]:
        """The anomaly scores this extraction has, the default first. Extractions made with
        `scores="isolation"` skipped the decoder pass and have no reconstruction errors."""
        return tuple(self.meta.get("scores", anomaly.SCORES))

    def scores(self, kind: str | None = None) -> np.ndarray:
        """Anomaly scores, one per item: "reference" (against the training collection, where
        the extraction has it), "combined", "isolation" or "reconstruction": the folder's
        reconstruction part, as `combined` ranked it (`anomaly.folder_reconstruction`;
        extractions made before it ranked the relative errors themselves)."""
        kind = self._scored(kind or self.score_kinds[0])
        if kind == "reconstruction":
            errors = self.reconstruction_errors()
            if not self.ranks_folder_reconstruction:
                return errors
            return anomaly.folder_reconstruction(errors, np.load(self.dir / VARIANCE_FILE))
        return np.load(self.dir / SCORE_FILES[kind])

    def reconstruction_errors(self) -> np.ndarray:
        """Reconstruction errors relative to each image's contrast (`anomaly.RECONSTRUCTION`),
        as extraction stores them and the reference score adds them."""
        return np.load(self.dir / SCORE_FILES[self._scored("reconstruction")])

    @property
    def ranks_folder_reconstruction(self) -> bool:
        """Whether this extraction's ranking reads reconstruction errors over the root of the
        contrast (`anomaly.FOLDER_RECONSTRUCTION`); older ones read them relative to it."""
        return self.meta.get("folder_reconstruction") == anomaly.FOLDER_RECONSTRUCTION

    def outdated_ranking(self, kind: str, name: str) -> str | None:
        """What to say where ranking `kind` of model `name`'s extraction is made as extractions
        before the current rule made it (before `anomaly.FOLDER_RECONSTRUCTION`, or before the
        appearance part joined the folder's ranking); the page and the CLI say the same; None
        where it is current."""
        if kind == "reference" or "reconstruction" not in self.score_kinds:
            return None
        again = (f"extract again for the current ranking: `python -m fext extract --name {name} "
                 f"--images {self.root}`")
        if not self.ranks_folder_reconstruction:
            return ("this ranking was made before reconstruction errors were read over the root "
                    "of each image's contrast (blank frames and flat crops told apart); " + again)
        if kind == "combined" and "appearance" not in self.score_kinds:
            return ("this ranking was made before each image's appearance (colour, contrast and "
                    "edges) joined it, which finds pages, digits or blank frames among photos; "
                    + again)
        return None

    def _scored(self, kind: str) -> str:
        """`kind`, where this extraction has that score; a clear error otherwise."""
        if kind not in anomaly.REFERENCE_SCORES:
            raise UsageError(f"unknown score {kind!r}; use one of "
                             f"{', '.join(anomaly.REFERENCE_SCORES)}")
        if kind == "reference" and kind not in self.score_kinds:
            raise UsageError(f"this extraction of {self.name!r} was not scored against the "
                             f"training collection: {self.reference['text']}")
        if kind == "appearance" and kind not in self.score_kinds:
            raise self.stale("before the appearance part of the folder's ranking existed")
        if kind not in self.score_kinds:
            raise UsageError(
                f"the features of {self.name!r} were extracted without reconstruction errors "
                f"(--scores isolation), so only {', '.join(self.score_kinds)} can be ranked; "
                f"for the others run: python -m fext extract --name {self.name}")
        return kind

    @property
    def reference(self) -> dict:
        """What the scores were measured against (meta's "reference"; extractions made before
        it existed ranked the folder against itself)."""
        return self.meta.get("reference") or {"kind": "folder", "text": "odd ones out of this folder",
                                              "share": anomaly.FOLDER_SHARE}

    def threshold(self, kind: str | None = None) -> dict:
        """Where flagging starts for score `kind`: calibrated on the model's validation images
        for the reference score, a stated share of the folder for the others."""
        kind = kind or self.score_kinds[0]
        if kind == "reference":
            return {"value": float(self.reference["threshold"]),
                    "false_alarm_rate": self.reference["false_alarm_rate"],
                    "text": f"expected false-alarm rate on normal images: "
                            f"{self.reference['false_alarm_rate']:.0%} (calibrated on "
                            f"{self.reference['calibration']})"}
        share = anomaly.FOLDER_SHARE
        return {"value": float(np.quantile(self.scores(kind), 1 - share)), "share": share,
                "text": f"the top {share:.0%} of this folder"}

    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, similarities) of each image's nearest other images, memory-mapped; extractions
        made before duplicate detection existed have none."""
        if not (self.dir / NEIGHBOUR_FILES[0]).is_file():
            raise self.stale("before duplicate detection existed")
        return tuple(np.load(self.dir / f, mmap_mode="r") for f in NEIGHBOUR_FILES)

    def hashes(self) -> np.ndarray:
        """Each image's 64-bit perceptual hash (uint64), memory-mapped: the second signal a
        pair of copies is confirmed by."""
        if not (self.dir / HASH_FILE).is_file():
            raise self.stale("before a pair of copies had to be confirmed by its perceptual "
                             "hashes")
        return np.load(self.dir / HASH_FILE, mmap_mode="r")

    def agreement(self) -> np.ndarray:
        """Whether each neighbour pair's aligned pixels agree (N x K bool, memory-mapped),
        written where the duplicate calibration asked for the pixel check."""
        if not (self.dir / AGREE_FILE).is_file():
            raise self.stale("before pairs of copies were checked by their pixels")
        return np.load(self.dir / AGREE_FILE, mmap_mode="r")

    def stale(self, when: str) -> StaleError:
        """The error for an extraction made `when`, with the command that refreshes it."""
        return StaleError(f"this extraction of {self.name!r} was made {when}; refresh it with: "
                          f"python -m fext extract --name {self.name}"
                          + (f" --images {self.root}" if self.meta.get("images") else ""))

    def index(self) -> VectorIndex:
        """The FAISS index; an IVF-PQ one re-ranks its candidates from the memory-mapped features."""
        ix = self.meta["index"]
        vectors = self.features() if ix["kind"] == "ivfpq" else None
        return VectorIndex.load(self.dir / "faiss.index", ix["kind"], ix.get("nprobe", 0),
                                ix.get("recall", 1.0), vectors)

    def collection(self, ws: Workspace) -> Collection:
        return Collection.open(ws, self.root, self.meta["image_size"], self.meta["fit"])


def extractions(ws: Workspace, name: str) -> list[dict]:
    """The kept extractions of model `name` (one per folder), newest first: folder, count, when."""
    return [{"images": m["images"], "count": m["count"], "created": m["created"],
             "version": v.name} for v in ws.index_versions(name)
            if (m := read_json(v / "meta.json", {})).get("images")]
