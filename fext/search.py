"""Query by image: encode it exactly as the collection was encoded, then search the index.

A `Searcher` holds the model and the index in memory; the app keeps one per (model, extraction)
so a warm query costs one forward pass and one index lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import images, registry
from .artifacts import Artifacts
from .encoding import encode_batch, query_encoder
from .index import VectorIndex
from .workspace import Workspace


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

    def encode(self, source: str | Path | bytes) -> np.ndarray:
        """Feature vector (normalised) of one image file or its bytes, computed as the
        extraction computed the collection's. No decoder pass: a query needs none."""
        meta = self.artifacts.meta
        x = images.to_model_input(images.load(source, meta["image_size"], meta["fit"])[None])
        return encode_batch(self.encoder, x)[0][0]

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
        return self.search_vector(self.encode(source), k)
