"""FAISS index over L2-normalised feature vectors (cosine similarity by inner product).

Exact search (`IDMap2,Flat`) while a collection is small enough to answer fast; beyond
`EXACT_LIMIT` vectors an IVF index whose `nprobe` is tuned at build time until measured
recall@10 against exact search reaches the target; beyond `PQ_LIMIT` (or on request) IVF-PQ,
whose compressed codes keep the index a fraction of the vectors' size, with the best candidates
re-scored exactly from the (memory-mapped) vectors when they are at hand. Numpy in, numpy out.

The IVF settings are sized for a build in well under a minute at a million vectors on two
cores (bench/search.py): about 2*sqrt(n) lists, k-means on 40 vectors per list for 10
iterations. More lists or iterations buy little recall here, since `nprobe` is tuned anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from .config import INDEXES
from .errors import UsageError
from .workspace import atomic_path

EXACT_LIMIT = 50_000
PQ_LIMIT = 5_000_000  # above this, flat IVF lists (4 bytes per dimension) outgrow memory
PQ_MIN = 1_000  # product quantisers need a few hundred vectors per codebook to train
LISTS_PER_SQRT_N = 2.0
TRAIN_PER_LIST = 40
KMEANS_ITERATIONS = 10
RERANK = 16  # IVF-PQ: candidates re-scored exactly per result (PQ alone ranks coarsely)
TARGET_RECALL = 0.95
RECALL_MARGIN = 0.01  # tune to a bit above the target so unseen queries stay above it


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def checked_queries(queries: np.ndarray, dim: int, k: int) -> np.ndarray:
    """Queries as unit rows, after the checks every vector store makes (k at least 1, the
    store's dimension): one message for a bad search, whichever store answers it."""
    if k < 1:
        raise UsageError("k must be at least 1")
    q = l2_normalize(np.atleast_2d(queries))
    if q.shape[1] != dim:
        raise UsageError(f"query has {q.shape[1]} dimensions, the index {dim}")
    return q


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
    vectors: np.ndarray | None = field(default=None, repr=False)  # rows = ids, for re-ranking
    recall_by_nprobe: dict[int, float] = field(default_factory=dict, repr=False)  # from tune()

    @property
    def dim(self) -> int:
        return self.index.d

    def __len__(self) -> int:
        return self.index.ntotal

    # -- building -------------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray | None = None, kind: str = "auto",
              target_recall: float = TARGET_RECALL, seed: int = 0,
              chunk: int = 100_000) -> VectorIndex:
        """Index `vectors` (already L2-normalised; a memory map is fine: added in chunks).

        For "ivfpq" the vectors are kept by reference (not copied) to re-rank candidates
        exactly, when `ids` are their row numbers (the default).
        """
        n, d = vectors.shape
        ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
        kind = choose_kind(n, kind)
        if kind == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        else:
            index = _ivf(n, d, kind)
            _train(index, vectors, seed)
        for start in range(0, n, chunk):
            index.add_with_ids(np.ascontiguousarray(vectors[start:start + chunk], np.float32),
                               ids[start:start + chunk])
        rows_are_ids = kind == "ivfpq" and np.array_equal(ids, np.arange(n))
        out = cls(index, kind, vectors=vectors if rows_are_ids else None)
        if kind != "flat":
            out.tune(vectors, ids, target_recall + RECALL_MARGIN, seed)
        return out

    def tune(self, vectors: np.ndarray, ids: np.ndarray, target: float, seed: int = 0,
             queries: int = 300) -> None:
        """Smallest nprobe whose recall@10 against exact search meets `target`.

        Queries are sampled database vectors searched leave-one-out (their own entry dropped
        from both result lists), which stands for new images drawn from the same collection.
        Doubling finds a bracket, bisection the smallest nprobe in it: query time grows with
        nprobe, so every list probed beyond the target is time lost on every query.
        """
        rng = np.random.default_rng(seed + 1)
        q_rows = np.sort(rng.choice(len(vectors), size=min(queries, len(vectors)), replace=False))
        q = np.ascontiguousarray(vectors[q_rows], np.float32)
        q_ids = ids[q_rows]
        truth = _drop_self(ids[exact_knn(vectors, q, 11)], q_ids)
        ivf = faiss.extract_index_ivf(self.index)
        recalls = self.recall_by_nprobe = {}

        def recall(nprobe: int) -> float:
            if nprobe not in recalls:
                ivf.nprobe = nprobe
                _, found = self.search(q, 11)
                recalls[nprobe] = recall_at_k(_drop_self(found, q_ids), truth)
            return recalls[nprobe]

        lo, hi = 0, 1  # lo: the largest nprobe measured to miss the target (0: none yet)
        while recall(hi) < target and hi < ivf.nlist:
            lo, hi = hi, min(hi * 2, ivf.nlist)
        while hi - lo > 1 and recall(hi) >= target:  # (no bisection if nothing meets it)
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if recall(mid) >= target else (mid, hi)
        self.nprobe, self.recall = hi, recall(hi)
        ivf.nprobe = hi

    # -- using ----------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), best first; scores are cosine similarities, ids -1 where fewer than k."""
        q = checked_queries(queries, self.dim, k)
        k = min(k, max(1, len(self)))
        if self.vectors is None:
            return self.index.search(q, k)
        _, candidates = self.index.search(q, min(k * RERANK, len(self)))
        return rerank(self.vectors, q, candidates, k)

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            faiss.write_index(self.index, str(tmp))

    @classmethod
    def load(cls, path: str | Path, kind: str, nprobe: int = 0, recall: float = 1.0,
             vectors: np.ndarray | None = None) -> VectorIndex:
        """Read a saved index; `vectors` (rows = ids) restores IVF-PQ re-ranking."""
        index = faiss.read_index(str(path))
        if nprobe:
            faiss.extract_index_ivf(index).nprobe = nprobe
        return cls(index, kind, nprobe, recall, vectors if kind == "ivfpq" else None)


def choose_kind(n: int, kind: str = "auto") -> str:
    """The index kind for `n` vectors: exact while small, IVF, then IVF-PQ past memory."""
    if kind not in INDEXES:
        raise UsageError(f"unknown index kind {kind!r}; use one of {', '.join(INDEXES)}")
    if kind == "auto":
        return "flat" if n <= EXACT_LIMIT else "ivf" if n <= PQ_LIMIT else "ivfpq"
    if kind == "ivfpq" and n < PQ_MIN:
        raise UsageError(f"an ivfpq index needs at least {PQ_MIN} vectors to train its "
                         f"quantisers, got {n}; use --index flat or ivf")
    return kind


def _ivf(n: int, d: int, kind: str) -> faiss.Index:
    """An untrained IVF (flat or PQ lists) with about 2*sqrt(n) lists of >= 39 vectors each."""
    nlist = int(min(max(1, LISTS_PER_SQRT_N * math.sqrt(n)), max(1, n // 39)))
    quantizer = faiss.IndexFlatIP(d)
    if kind == "ivf":
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        m = max(x for x in range(1, d + 1) if d % x == 0 and x <= max(1, d // 4))
        nbits = int(min(8, max(4, math.log2(n / 39))))  # codebooks of <= n/39 centroids
        index = faiss.IndexIVFPQ(quantizer, d, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = KMEANS_ITERATIONS
    if kind == "ivfpq":
        index.pq.cp.niter = KMEANS_ITERATIONS
    return index


def _train(index: faiss.Index, vectors: np.ndarray, seed: int) -> None:
    """k-means on a sorted random sample (sorted: near-sequential reads of a memory map)."""
    n = len(vectors)
    want = index.nlist * TRAIN_PER_LIST
    if isinstance(index, faiss.IndexIVFPQ):
        want = max(want, 64 * (1 << index.pq.nbits))
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, want), replace=False))
    index.cp.seed = seed
    index.train(np.ascontiguousarray(vectors[sample], np.float32))


def rerank(vectors: np.ndarray, q: np.ndarray, candidates: np.ndarray, k: int,
           chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner products of each query with its candidate rows; the best k, best first.

    Rows are read sorted and de-duplicated, so a memory map is read in one forward pass per
    chunk of queries; memory stays bounded by the chunk, whatever the number of queries.
    """
    scores = np.empty((len(q), k), np.float32)
    ids = np.empty((len(q), k), np.int64)
    for s in range(0, len(q), chunk):
        cand = candidates[s:s + chunk]
        wanted, pos = np.unique(np.maximum(cand, 0), return_inverse=True)
        rows = np.ascontiguousarray(vectors[wanted], np.float32)
        sims = np.einsum("qd,qcd->qc", q[s:s + chunk], rows[pos.reshape(cand.shape)])
        sims[cand < 0] = -np.inf
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        scores[s:s + chunk] = np.take_along_axis(sims, order, 1)
        ids[s:s + chunk] = np.take_along_axis(cand, order, 1)
    ids[~np.isfinite(scores)] = -1
    return scores, ids


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


NEIGHBOUR_CHUNK = 8192  # queries per search when every vector looks for its neighbours


def nearest_others(index, features: np.ndarray, k: int, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, similarities), each (n, k): every indexed vector's k nearest *other* vectors,
    best first (-1 / nan where the collection has fewer). `index` holds `features` under
    ids 0..n-1; for exact duplicates the image itself may come after its twin, so "other"
    is decided by id, not by rank."""
    n = len(features)
    k_eff = max(0, min(k, n - 1))
    ids = np.full((n, k), -1, np.int32)
    sims = np.full((n, k), np.nan, np.float32)
    if k_eff == 0:
        return ids, sims
    for start in range(0, n, NEIGHBOUR_CHUNK):
        q = np.ascontiguousarray(features[start:start + NEIGHBOUR_CHUNK], np.float32)
        s, i = index.search(q, k_eff + 1)
        own = i == np.arange(start, start + len(q))[:, None]
        # drop the vector itself, or, where it is not among the results, the last result
        keep = np.where(own.any(axis=1, keepdims=True), ~own, np.arange(k_eff + 1) < k_eff)
        keep &= i >= 0
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k_eff]  # kept first, in rank order
        got_i = np.take_along_axis(i, order, axis=1)
        got_s = np.take_along_axis(s, order, axis=1)
        valid = np.take_along_axis(keep, order, axis=1)
        ids[start:start + len(q), :k_eff] = np.where(valid, got_i, -1)
        sims[start:start + len(q), :k_eff] = np.where(valid, got_s, np.nan)
        if progress:
            progress("neighbours", min(start + NEIGHBOUR_CHUNK, n), n)
    return ids, sims
