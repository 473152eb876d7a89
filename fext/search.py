"""Query by image: encode it exactly as the collection was encoded, search the index, then put
first the results whose pixels show the query's own picture.

A `Searcher` holds the model and the index in memory; the app keeps one per (model, extraction)
so a warm query costs one forward pass, one index lookup and a pixel check of the first
VERIFY results (`confirmed_first`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import images, registry
from .agreement import one_thread
from .artifacts import Artifacts
from .encoding import encode_batch, query_encoder
from .errors import ImageError, StaleError
from .index import VectorIndex
from .workspace import Workspace

VERIFY = 5  # a search's first results whose pixels are checked against the query's


def confirmed_first(count: int, same, every: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(order, confirmed): a search's `count` results reordered so those among its first
    VERIFY that show the query's own picture (`same(i)`: `fext.duplicates.same_picture`, the
    rule duplicate groups confirm a pair by) come first, each part in the features' order; and
    whether each result, in the new order, was confirmed. With `every=False` the check stops at
    the first confirmed result (all recall@1 needs).

    Why: features often rank an edited copy's source among the first few but not first (a
    crop of sky finds another crop of the same sky), and pixels tell the two apart where
    scores cannot (1 of 79,350 look-alike pairs of the collection zoo passes them). The same
    step serves the copy figure (`fext.copies`), so it measures the search users run."""
    confirmed = np.zeros(count, bool)
    for i in range(min(count, VERIFY)):
        confirmed[i] = same(i)
        if confirmed[i] and not every:
            break
    order = np.concatenate([np.flatnonzero(confirmed), np.flatnonzero(~confirmed)])
    return order, confirmed[order]


def read_query(path: str | Path) -> bytes:
    """A query file's bytes, or ImageError with the reason (as `fext.images.load` gives)."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ImageError(f"cannot read file: {e.strerror or e}") from None


@dataclass
class Searcher:
    artifacts: Artifacts
    index: VectorIndex
    encoder: object  # keras.Model, image -> features: fext.encoding.query_encoder(...)

    @classmethod
    def open(cls, ws: Workspace, name: str, images: str | Path | None = None) -> Searcher:
        """Model and index of `name`'s most recent extraction, or of folder `images`'."""
        art = Artifacts.open(ws, name, images=images)
        ae, _ = registry.load(ws, name)
        return cls(art, art.index(), query_encoder(ae, art.precision))

    @property
    def key(self) -> str:
        return f"{self.artifacts.meta['model']}:{self.artifacts.dir.name}"

    def query(self, source: str | Path | bytes) -> tuple[np.ndarray, tuple[int, int]]:
        """(model input, upright (width, height)) of one image file or its bytes, decoded as
        the extraction decoded the collection's."""
        meta = self.artifacts.meta
        return images.decode(source, meta["image_size"], meta["fit"])

    def encode(self, source: str | Path | bytes) -> np.ndarray:
        """Feature vector (normalised) of one image file or its bytes (`vector`)."""
        return self.vector(self.query(source)[0])

    def vector(self, pixels: np.ndarray) -> np.ndarray:
        """Feature vector (normalised) of one model input, computed as the extraction
        computed the collection's. No decoder pass: a query needs none."""
        return encode_batch(self.encoder, images.to_model_input(pixels[None]))[0][0]

    def search_vector(self, vector: np.ndarray, k: int = 10) -> list[dict]:
        scores, ids = self.index.search(vector[None], k)
        items = self.artifacts.items
        out = []
        for rank, (s, i) in enumerate(zip(scores[0], ids[0]), 1):
            if i < 0:
                continue
            row = items.iloc[int(i)]
            out.append({"rank": rank, "path": row["path"], "label": row["label"],
                        "score": round(float(s), 6), "id": int(i)})
        return out

    def search(self, source: str | Path | bytes, k: int = 10) -> list[dict]:
        """The `k` images nearest to the query; among the first VERIFY (asked for even where
        `k` is smaller) those whose pixels show the query's picture come first, `same_picture`
        True (`confirmed_first`), then the rest in the features' order."""
        data = source if isinstance(source, (bytes, bytearray)) else read_query(source)
        pixels, size = self.query(data)
        results = self.search_vector(self.vector(pixels), max(k, VERIFY))
        sha1 = hashlib.sha1(data).hexdigest()
        near = self._near_hashes(pixels, [r["id"] for r in results])
        with one_thread():
            order, same = confirmed_first(len(results), lambda i: near[i] and self._same(
                data, sha1, pixels, size, results[i]))
        return [{**results[i], "rank": n, "same_picture": bool(s)}
                for n, (i, s) in enumerate(zip(order[:k], same[:k]), 1)]

    def _near_hashes(self, pixels: np.ndarray, ids: list[int]) -> np.ndarray:
        """Whether each result's stored perceptual hash is within MAX_HASH_DISTANCE of the
        query's, which `same_picture` needs first: most results are turned away here without
        their files being read (all are read where the extraction kept no hashes)."""
        from .duplicates import MAX_HASH_DISTANCE, hash_distance, perceptual_hashes

        try:
            stored = self.artifacts.hashes()[np.asarray(ids, np.int64)]
        except StaleError:
            return np.ones(len(ids), bool)
        return hash_distance(perceptual_hashes(pixels[None])[0], stored) <= MAX_HASH_DISTANCE

    def _same(self, data: bytes, sha1: str, pixels: np.ndarray, size: tuple[int, int],
              result: dict) -> bool:
        """Whether a result's file shows the query's picture: the same file content as
        extracted, or the pixel check of the file as it is now (a file gone since the
        extraction confirms nothing)."""
        from .agreement import closer_content
        from .duplicates import same_picture

        meta, row = self.artifacts.meta, self.artifacts.items.iloc[result["id"]]
        if row["sha1"] == sha1:
            return True
        path, found = self.artifacts.root / row["path"], (int(row["width"]), int(row["height"]))
        try:
            stored = images.load(path, meta["image_size"], meta["fit"])
        except (ImageError, OSError):
            return False
        closer = lambda: (closer_content(data, *size, meta["fit"]),  # noqa: E731
                          closer_content(path, *found, meta["fit"]))
        return same_picture(pixels, stored, [size, found], meta["fit"], closer)
