"""Feature vectors served from a Qdrant store instead of the in-process FAISS index.

For search served beyond one machine: `python -m fext extract --store qdrant --url URL` uploads
the vectors of an extraction into a Qdrant collection, and `search --store qdrant` queries it.
`QdrantStore` has the index interface the searcher uses (`search(queries, k) -> (scores, ids)`,
`len`, `dim`, `kind`), so nothing above it changes. The anomaly scores and the local FAISS index
are still computed during extraction: they are artefacts of the extraction, not of serving.

Publishing mirrors the local index's atomic switch: each extraction uploads into its own
collection (``fext_<name>_<version>``) and then moves the alias ``fext_<name>`` to it in one
call, so searches never see a half-uploaded collection; the collection it replaced is dropped.

URL forms: ``http(s)://host:6333`` (a Qdrant server or cluster; ``?shards=6&replicas=2`` sets
how a new collection is spread over the cluster's nodes), ``:memory:`` (in-process, for tests),
or a folder path (Qdrant's embedded local mode, one process at a time). qdrant-client
is imported only when a store is used.
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from .errors import NotFoundError, UsageError
from .index import checked_queries

UPLOAD_CHUNK = 4096  # vectors per upsert: bounded memory and request size
SEARCH_EF = 128  # HNSW candidate list at query time (server default is lower): recall >= 0.95
_clients: dict[str, object] = {}


def split_url(url: str) -> tuple[str, dict[str, int]]:
    """(address, layout): ``http://h:6333?shards=6&replicas=2`` -> the address and the counts."""
    if not url:
        raise UsageError("a Qdrant store needs --url: http(s)://host:6333, :memory: or a folder")
    parts = urlsplit(url)
    if not parts.query or not url.startswith(("http://", "https://")):
        return url, {}
    layout = {}
    for key, values in parse_qs(parts.query).items():
        if key not in ("shards", "replicas") or not values[-1].isdigit() or int(values[-1]) < 1:
            raise UsageError(f"unknown or invalid Qdrant URL option {key}={values[-1]!r}; "
                             "use shards=N and/or replicas=N (positive integers)")
        layout[key] = int(values[-1])
    return parts._replace(query="").geturl(), layout


def client(url: str):
    """One client per URL per process (embedded local mode allows a single one per folder),
    closed when the process exits, while the interpreter can still close it (a local store
    left to its finaliser at shutdown fails there with an ImportError)."""
    url, _ = split_url(url)
    if url not in _clients:
        from qdrant_client import QdrantClient

        if url.startswith(("http://", "https://")):
            _clients[url] = QdrantClient(url=url, timeout=60)
        elif url == ":memory:":
            _clients[url] = QdrantClient(":memory:")
        else:
            _clients[url] = QdrantClient(path=str(Path(url).expanduser()))
    return _clients[url]


@atexit.register
def close_clients() -> None:
    """Close every client this process opened."""
    while _clients:
        _clients.popitem()[1].close()


def alias_of(name: str) -> str:
    return f"fext_{name}"


@dataclass
class QdrantStore:
    """A Qdrant collection (or alias) behind the same search interface as `VectorIndex`."""

    client: object
    collection: str
    remote: bool = True  # a server does HNSW search; local mode is brute force, exact
    kind: str = "qdrant"

    @classmethod
    def open(cls, url: str, name: str) -> QdrantStore:
        """The live collection of model `name`; a clear error when it was never published."""
        c = client(url)
        if not c.collection_exists(alias_of(name)):
            raise NotFoundError(
                f"no Qdrant collection for {name!r} at {url}; run: python -m fext extract "
                f"--name {name} --store qdrant --url {url}")
        return cls(c, alias_of(name), remote=url.startswith(("http://", "https://")))

    @property
    def dim(self) -> int:
        vectors = self.client.get_collection(self.collection).config.params.vectors
        return int(vectors.size)

    def __len__(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), best first; cosine similarities, ids -1 where fewer than k."""
        from qdrant_client import models

        q = checked_queries(queries, self.dim, k)
        params = models.SearchParams(hnsw_ef=max(SEARCH_EF, k)) if self.remote else None
        answers = self.client.query_batch_points(self.collection, requests=[
            models.QueryRequest(query=v.tolist(), limit=k, params=params) for v in q])
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        for i, answer in enumerate(answers):
            for j, point in enumerate(answer.points):
                scores[i, j], ids[i, j] = point.score, int(point.id)
        return scores, ids


def upload(url: str, collection: str, vectors: np.ndarray, ids: np.ndarray) -> None:
    """Create `collection` (cosine; vectors on disk, HNSW graph in RAM) and upsert `vectors`
    under `ids`, chunk by chunk."""
    from qdrant_client import models

    c, layout = client(url), split_url(url)[1]
    if c.collection_exists(collection):
        c.delete_collection(collection)
    c.create_collection(collection, vectors_config=models.VectorParams(
        size=int(vectors.shape[1]), distance=models.Distance.COSINE, on_disk=True),
        shard_number=layout.get("shards"), replication_factor=layout.get("replicas"))
    for start in range(0, len(vectors), UPLOAD_CHUNK):
        block = np.ascontiguousarray(vectors[start:start + UPLOAD_CHUNK], np.float32)
        c.upsert(collection, points=models.Batch(
            ids=[int(i) for i in ids[start:start + len(block)]], vectors=block.tolist()),
            wait=True)


def switch_alias(url: str, name: str, collection: str) -> None:
    """Point the alias of `name` at `collection` in one operation; drop what it pointed at."""
    from qdrant_client import models

    c, alias = client(url), alias_of(name)
    old = [a.collection_name for a in c.get_aliases().aliases if a.alias_name == alias]
    c.update_collection_aliases(change_aliases_operations=[
        *[models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
          for _ in old[:1]],
        models.CreateAliasOperation(create_alias=models.CreateAlias(
            collection_name=collection, alias_name=alias))])
    for name_ in old:
        if name_ != collection:
            c.delete_collection(name_)


def publish_to_store(url: str, name: str, version: Path) -> dict:
    """Upload the features of an extraction folder and make them the live collection."""
    feats = np.load(version / "features.npy", mmap_mode="r")
    collection = f"{alias_of(name)}_{version.name}".replace(".", "_")
    upload(url, collection, feats, np.arange(len(feats), dtype=np.int64))
    switch_alias(url, name, collection)
    return {"kind": "qdrant", "url": url, "collection": alias_of(name)}
