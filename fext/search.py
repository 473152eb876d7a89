"""Query by image: encode it exactly as the collection was encoded, then search the index.

A `Searcher` holds the model and the index in memory; the app keeps one per (model, extraction)
so a warm query costs one forward pass and one index lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import anomaly, images
from .features import Artifacts
from .index import VectorIndex, l2_normalize
from .model import inference_parts
from .train import load_model
from .workspace import Workspace


@dataclass
class Searcher:
    artifacts: Artifacts
    index: VectorIndex
    parts: tuple  # fext.model.inference_parts: (encoder, decoder) keras.Models

    @classmethod
    def open(cls, ws: Workspace, name: str) -> "Searcher":
        art = Artifacts.open(ws, name)
        ae, _ = load_model(ws, name)
        return cls(art, art.index(), inference_parts(ae, art.precision))

    @property
    def key(self) -> str:
        return f"{self.artifacts.meta['model']}:{self.artifacts.dir.name}"

    def encode(self, source: str | Path | bytes) -> tuple[np.ndarray, float]:
        """Feature vector (normalised) and anomaly score of one image file or its bytes."""
        meta = self.artifacts.meta
        x = images.to_model_input(images.load(source, meta["image_size"], meta["fit"])[None])
        encoder, decoder = self.parts
        z = np.asarray(encoder.predict_on_batch(x))
        r = np.asarray(decoder.predict_on_batch(z))
        return l2_normalize(z)[0], float(anomaly.reconstruction_error(x, r)[0])

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
        vector, _ = self.encode(source)
        return self.search_vector(vector, k)
