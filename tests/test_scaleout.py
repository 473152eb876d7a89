"""Scale-out: the Ray engine, IVF-PQ and the Qdrant store give what the single-process path gives."""

import shutil

import numpy as np
import pytest

from fext.artifacts import Artifacts
from fext.features import extract
from fext.index import PQ_MIN, VectorIndex, exact_knn, l2_normalize, recall_at_k
from fext.workspace import Workspace
from tests.helpers import run_cli
from tests.test_index import clustered


@pytest.fixture(scope="module")
def ray_local():
    """Ray in local mode for this module: two CPUs, no dashboard."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def fresh_copy(trained, tmp_path) -> Workspace:
    """The trained workspace without its extraction, so nothing can be reused."""
    ws, _ = trained
    shutil.copytree(ws.root, tmp_path / "ws")
    shutil.rmtree(tmp_path / "ws" / "index" / "shapes")
    return Workspace(tmp_path / "ws")


def test_ray_engine_writes_the_same_artefacts(trained, tmp_path, ray_local):
    from fext.scaleout import RayEncoder

    ws, name = trained
    single = Artifacts.open(ws, name)
    copy = fresh_copy(trained, tmp_path)
    meta = extract(copy, name, encoder=RayEncoder(workers=2), batch_size=8)
    art = Artifacts.open(copy, name)
    assert meta["encoded"] == len(single.items) and meta["reused"] == 0
    assert art.items.equals(single.items)
    np.testing.assert_allclose(art.features(), single.features(), atol=1e-4)
    for kind in ("reconstruction", "isolation"):
        np.testing.assert_allclose(art.scores(kind), single.scores(kind), rtol=1e-3, atol=1e-5)
    # combined is a rank in the folder: two scores equal to float rounding may swap, by 1/n each
    np.testing.assert_allclose(art.scores("combined"), single.scores("combined"),
                               atol=2 / len(single.items))
    assert len(art.index()) == len(single.items)


def test_ivfpq_reranks_to_the_recall_target_and_reloads(tmp_path):
    x = clustered(4000, d=32, seed=1)
    ix = VectorIndex.build(x, kind="ivfpq")
    assert ix.kind == "ivfpq" and ix.recall >= 0.95
    q = clustered(200, d=32, seed=2)
    _, found = ix.search(q, 10)
    assert recall_at_k(found, exact_knn(x, q, 10)) >= 0.95
    ix.save(tmp_path / "pq.faiss")
    again = VectorIndex.load(tmp_path / "pq.faiss", "ivfpq", ix.nprobe, ix.recall, vectors=x)
    np.testing.assert_array_equal(again.search(q, 10)[1], found)
    with pytest.raises(ValueError, match=f"at least {PQ_MIN}"):
        VectorIndex.build(x[:100], kind="ivfpq")
    with pytest.raises(ValueError, match="unknown index kind"):
        VectorIndex.build(x, kind="hnsw")


def test_qdrant_store_matches_faiss_exact_search():
    from fext import stores

    x = clustered(600, d=16, seed=3)
    stores.upload(":memory:", "t_v1", x, np.arange(len(x)))
    stores.switch_alias(":memory:", "t", "t_v1")
    store = stores.QdrantStore.open(":memory:", "t")
    assert len(store) == 600 and store.dim == 16
    q = clustered(20, d=16, seed=4)
    scores, ids = store.search(q, 10)
    exact_scores, exact_ids = VectorIndex.build(x, kind="flat").search(q, 10)
    assert recall_at_k(ids, exact_ids) >= 0.99
    np.testing.assert_allclose(scores, exact_scores, atol=1e-4)
    # a new version replaces the old collection behind the alias in one step
    stores.upload(":memory:", "t_v2", l2_normalize(x[:50]), np.arange(50))
    stores.switch_alias(":memory:", "t", "t_v2")
    assert len(stores.QdrantStore.open(":memory:", "t")) == 50
    assert not stores.client(":memory:").collection_exists("t_v1")
    with pytest.raises(FileNotFoundError, match="extract"):
        stores.QdrantStore.open(":memory:", "never")


def test_a_local_store_is_closed_at_exit_without_a_word(tmp_path):
    """A process that used a local store exits quietly: its client is closed while the
    interpreter can still close it, not by a finaliser at shutdown (which printed an
    ImportError after every test run)."""
    import subprocess
    import sys

    script = ("import numpy as np; from fext import stores; "
              f"stores.upload({str(tmp_path / 'q')!r}, 'v1', np.eye(4, dtype=np.float32), "
              "np.arange(4))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" not in done.stderr and "ImportError" not in done.stderr


def test_qdrant_url_carries_the_cluster_layout():
    from fext.stores import split_url

    assert split_url("http://q:6333?shards=6&replicas=2") == ("http://q:6333",
                                                             {"shards": 6, "replicas": 2})
    assert split_url("/data/qdrant") == ("/data/qdrant", {})
    with pytest.raises(ValueError, match="shards=N"):
        split_url("http://q:6333?shard=2")
    with pytest.raises(ValueError, match="--url"):
        split_url("")


def test_cli_extract_to_qdrant_then_search_it(trained, tmp_path, shapes_dir):
    copy = fresh_copy(trained, tmp_path)
    url = str(tmp_path / "qdrant")
    out = run_cli("extract", "--name", "shapes", "--store", "qdrant", "--url", url, "--json",
                  workspace=copy.root)
    assert '"kind": "qdrant"' in out.stdout
    query = str(shapes_dir / "green" / "green_005.png")
    via_qdrant = run_cli("search", "--name", "shapes", query, "-k", "5", "--store", "qdrant",
                         "--url", url, workspace=copy.root).stdout.splitlines()
    via_faiss = run_cli("search", "--name", "shapes", query, "-k", "5",
                        workspace=copy.root).stdout.splitlines()
    assert [line.split()[-1] for line in via_qdrant] == [line.split()[-1] for line in via_faiss]
    assert via_qdrant[0].split()[-1] == "green/green_005.png"
    bad = run_cli("extract", "--name", "shapes", "--store", "qdrant", workspace=copy.root,
                  check=False)
    assert bad.returncode == 1 and "--url" in bad.stderr
