"""FAISS index over L2-normalised feature vectors (cosine similarity by inner product).

Exact search (`IDMap2,Flat`) while a collection is small enough to answer fast; beyond
`EXACT_LIMIT` vectors an IVF index whose `nprobe` is tuned at build time until measured
recall@10 against exact search reaches the target. Numpy in, numpy out.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from .workspace import atomic_path

EXACT_LIMIT = 50_000
TARGET_RECALL = 0.95
RECALL_MARGIN = 0.01  # tune to a bit above the target so unseen queries stay above it


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean fraction of the true k nearest neighbours that were found."""
    hits = [len(set(f[:k]) & set(t[:k])) for f, t in zip(found, truth)]
    return float(np.mean(hits) / k)


@dataclass
class VectorIndex:
    index: faiss.Index
    kind: str
    nprobe: int = 0
    recall: float = 1.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def dim(self) -> int:
        return self.index.d

    def __len__(self) -> int:
        return self.index.ntotal

    # -- building -------------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray | None = None, kind: str = "auto",
              target_recall: float = TARGET_RECALL, seed: int = 0,
              chunk: int = 100_000) -> "VectorIndex":
        """Index `vectors` (already L2-normalised; a memory map is fine: added in chunks)."""
        n, d = vectors.shape
        ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
        if kind == "auto":
            kind = "flat" if n <= EXACT_LIMIT else "ivf"
        if kind == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        elif kind == "ivf":
            nlist = int(min(max(1, 4 * math.sqrt(n)), max(1, n // 39)))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            sample = np.sort(rng.choice(n, size=min(n, nlist * 64), replace=False))
            index.train(np.ascontiguousarray(vectors[sample], np.float32))
        else:
            raise ValueError(f"unknown index kind {kind!r}; use auto, flat or ivf")
        for start in range(0, n, chunk):
            index.add_with_ids(np.ascontiguousarray(vectors[start:start + chunk], np.float32),
                               ids[start:start + chunk])
        out = cls(index, kind)
        if kind == "ivf":
            out.tune(vectors, ids, target_recall + RECALL_MARGIN, seed)
        return out

    def tune(self, vectors: np.ndarray, ids: np.ndarray, target: float, seed: int = 0,
             queries: int = 300) -> None:
        """Smallest nprobe whose recall@10 against exact search meets `target`.

        Queries are sampled database vectors searched leave-one-out (their own entry dropped
        from both result lists), which stands for new images drawn from the same collection.
        """
        rng = np.random.default_rng(seed + 1)
        q_rows = np.sort(rng.choice(len(vectors), size=min(queries, len(vectors)), replace=False))
        q = np.ascontiguousarray(vectors[q_rows], np.float32)
        q_ids = ids[q_rows]
        truth = _drop_self(ids[exact_knn(vectors, q, 11)], q_ids)
        ivf = faiss.extract_index_ivf(self.index)
        nprobe = 1
        while True:
            ivf.nprobe = nprobe
            _, found = self.index.search(q, 11)
            self.recall = recall_at_k(_drop_self(found, q_ids), truth)
            if self.recall >= target or nprobe >= ivf.nlist:
                break
            nprobe = min(nprobe * 2, ivf.nlist)
        self.nprobe = nprobe

    # -- using ----------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), best first; scores are cosine similarities, ids -1 where fewer than k."""
        if k < 1:
            raise ValueError("k must be at least 1")
        q = l2_normalize(np.atleast_2d(queries))
        if q.shape[1] != self.dim:
            raise ValueError(f"query has {q.shape[1]} dimensions, the index {self.dim}")
        return self.index.search(q, min(k, max(1, len(self))))

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        with self.lock:
            self.index.add_with_ids(l2_normalize(vectors), np.asarray(ids, np.int64))

    def remove(self, ids: np.ndarray) -> int:
        with self.lock:
            return int(self.index.remove_ids(np.asarray(ids, np.int64)))

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            faiss.write_index(self.index, str(tmp))

    @classmethod
    def load(cls, path: str | Path, kind: str, nprobe: int = 0, recall: float = 1.0) -> "VectorIndex":
        index = faiss.read_index(str(path))
        if nprobe:
            faiss.extract_index_ivf(index).nprobe = nprobe
        return cls(index, kind, nprobe, recall)


def _drop_self(ids: np.ndarray, self_ids: np.ndarray, k: int = 10) -> np.ndarray:
    return np.array([[i for i in row if i != s][:k] for row, s in zip(ids, self_ids)])


def exact_knn(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 200_000) -> np.ndarray:
    """Ids of the exact k nearest (inner product) of each query, streaming over `vectors`."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for start in range(0, len(vectors), chunk):
        block = np.ascontiguousarray(vectors[start:start + chunk], np.float32)
        s, i = faiss.knn(queries, block, min(k, len(block)), metric=faiss.METRIC_INNER_PRODUCT)
        s = np.concatenate([best_s, s], axis=1)
        i = np.concatenate([best_i, i + start], axis=1)
        order = np.argsort(-s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
    return best_i
