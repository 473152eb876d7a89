"""FAISS wrapper: exact search, approximate search tuned to recall, add/remove, save/load."""

import numpy as np
import pytest

from fext.index import VectorIndex, exact_knn, l2_normalize, recall_at_k


def clustered(n, d=32, clusters=50, seed=0):
    """Points around 50 fixed centres (the same for every seed: new queries, same collection)."""
    centres = np.random.default_rng(1234).normal(size=(clusters, d))
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, d))
    return l2_normalize(x)


def test_flat_search_is_exact_and_cosine():
    x = clustered(500)
    ix = VectorIndex.build(x)
    assert ix.kind == "flat"
    scores, ids = ix.search(x[:5], 3)
    assert list(ids[:, 0]) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_ivf_meets_the_recall_target_on_new_queries():
    x = clustered(20_000, seed=1)
    ix = VectorIndex.build(x, kind="ivf")
    assert ix.kind == "ivf" and ix.recall >= 0.95
    queries = clustered(300, seed=2)
    _, found = ix.search(queries, 10)
    assert recall_at_k(found, exact_knn(x, queries, 10)) >= 0.95


def test_tuning_picks_the_smallest_nprobe_that_meets_the_target():
    x = clustered(20_000, seed=1)
    ix = VectorIndex.build(x, kind="ivf", target_recall=0.97)
    tried = ix.recall_by_nprobe
    assert ix.nprobe > 1 and tried[ix.nprobe] == ix.recall >= 0.98  # target plus margin
    assert tried[ix.nprobe - 1] < 0.98  # one list fewer misses it: no list probed in vain
    assert faiss_nprobe(ix) == ix.nprobe


def faiss_nprobe(ix):
    import faiss

    return faiss.extract_index_ivf(ix.index).nprobe


def test_a_saved_index_answers_as_the_built_one(tmp_path):
    """What extraction writes (build, save) and every search reads (load): same ids, same
    scores. Images added to a folder are covered by extraction's reuse (tests/test_features.py)."""
    x = clustered(100)
    ix = VectorIndex.build(x, np.arange(100) + 1000)
    ix.save(tmp_path / "i.faiss")
    again = VectorIndex.load(tmp_path / "i.faiss", "flat")
    assert len(again) == 100
    for got, want in zip(again.search(x[:5], 3), ix.search(x[:5], 3)):
        np.testing.assert_array_equal(got, want)
    assert again.search(x[95], 1)[1][0, 0] == 1095


def test_bad_queries_raise_clear_errors():
    ix = VectorIndex.build(clustered(10))
    with pytest.raises(ValueError, match="dimensions"):
        ix.search(np.zeros((1, 3), np.float32), 1)
    with pytest.raises(ValueError, match="k must"):
        ix.search(clustered(1), 0)


def test_exact_knn_streams_in_chunks():
    x = clustered(1000)
    q = clustered(10, seed=5)
    np.testing.assert_array_equal(exact_knn(x, q, 5, chunk=128), exact_knn(x, q, 5))
