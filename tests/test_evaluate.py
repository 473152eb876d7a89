"""Metrics: reconstruction, retrieval, anomaly scores, and the comparison against baselines."""

import numpy as np
import pytest

from fext.anomaly import distance_to_index, isolation_of, ranking
from fext.evaluate import psnr, ssim
from fext.index import VectorIndex, l2_normalize, nearest_others
from fext.quality import quality, retrieval, roc_auc
from fext.registry import load as load_model


def test_ssim_and_psnr_basics():
    rng = np.random.default_rng(0)
    a = rng.random((2, 16, 16, 3))
    np.testing.assert_allclose(ssim(a, a), 1.0, atol=1e-6)
    assert (ssim(a, 1 - a) < 0.2).all()
    # scikit-image's structural similarity (its defaults: 7 x 7 uniform window, sample covariance)
    from skimage.metrics import structural_similarity

    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    expected = [structural_similarity(x, y, channel_axis=-1, data_range=1.0) for x, y in zip(a, b)]
    np.testing.assert_allclose(ssim(a, b), expected, atol=1e-5)
    assert psnr(np.array([0.01]))[0] == pytest.approx(20.0)


def test_retrieval_is_perfect_on_separated_classes_and_chance_on_noise():
    rng = np.random.default_rng(0)
    centres = np.eye(4, 8) * 10
    labels = np.repeat(np.arange(4), 30)
    db = centres[labels] + rng.normal(size=(120, 8))
    r = retrieval(db, labels, centres[[0, 1, 2, 3]] + 0.1, [0, 1, 2, 3])
    assert r["precision@10"] == 1.0 and r["map"] == pytest.approx(1.0)
    noise = retrieval(rng.normal(size=(400, 8)), rng.integers(0, 4, 400),
                      rng.normal(size=(200, 8)), rng.integers(0, 4, 200))
    assert 0.15 < noise["precision@10"] < 0.35


def test_isolation_ranks_the_outliers_first():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16))
    normal = centres[rng.integers(0, 3, 200)] + 0.1 * rng.normal(size=(200, 16))
    outliers = rng.normal(size=(3, 16))
    x = l2_normalize(np.vstack([normal, outliers]))
    # as extraction scores a folder: each image's nearest others, then their mean distance
    scores = isolation_of(nearest_others(VectorIndex.build(x), x, 5)[1])
    assert set(np.argsort(-scores)[:3]) == {200, 201, 202}
    assert roc_auc(scores, np.arange(203) >= 200) == 1.0


def test_distance_to_the_training_vectors_and_ranking():
    ref = l2_normalize(np.array([[1.0, 0], [0.9, 0.1]]))
    # as the reference score measures new images against a model's training vectors
    d = distance_to_index(VectorIndex.build(ref), l2_normalize(np.array([[1.0, 0.0], [0.0, 1.0]])), 1)
    assert d[0] == pytest.approx(0.0, abs=1e-6) and d[1] > 0.8
    import pandas as pd
    df = ranking(pd.DataFrame({"path": ["a", "b", "c"]}), np.array([0.1, 0.9, 0.5]))
    assert list(df["path"]) == ["b", "c", "a"] and list(df["rank"]) == [1, 2, 3]


def test_quality_compares_against_baselines_in_one_run(trained, tmp_path):
    from fext.collection import Collection
    from fext.workspace import Workspace
    ws, name = trained
    model, record = load_model(ws, name)
    d = record.config.data
    # a larger test split than the default 10 %, so every label has test images
    coll = Collection.sync(Workspace(tmp_path), d.images, d.image_size, d.fit, 0.1, 0.4)
    q = quality(model, record, coll, one_class=True)
    assert set(q["retrieval"]) == {"autoencoder", "PCA-8", "raw pixels"}
    assert set(q["one_class_auc"]) == {"autoencoder", "PCA-8", "raw pixels"}
    for m, r in q["retrieval"].items():
        assert 0 <= r["precision@10"] <= 1 and 0 < r["map"] <= 1, m
    for m, r in q["one_class_auc"].items():
        # labels whose test split lacks normal or anomalous images are left out, not guessed
        assert r["per_label"] and set(r["per_label"]) <= {"red", "green", "blue"}, m
        assert 0 <= r["mean"] <= 1, m
    # every method is measured on the same rows: the labelled train and test splits
    assert q["database"] == len(coll.items("train")) and q["queries"] == len(coll.items("test"))


def test_a_large_split_is_summarised_on_a_seeded_sample(trained, monkeypatch):
    from fext import evaluate
    from fext.collection import Collection
    from fext.feed import sample_rows
    from fext.model import inference_parts
    from fext.registry import load as load_model

    ws, name = trained
    model, record = load_model(ws, name)
    parts = inference_parts(model)
    data = record.config.data
    coll = Collection.open(ws, data.images, data.image_size, data.fit)
    monkeypatch.setattr(evaluate, "SPLIT_SAMPLE", 3)
    first, again = (evaluate.reconstruction_metrics(parts, coll) for _ in range(2))
    train = coll.items("train")["row"].to_numpy()
    assert first["train"]["images"] == len(train) > 3 and first["train"]["measured"] == 3
    assert first == again  # the same sample every time
    rows = sample_rows(train, 3)
    assert len(set(rows)) == 3 and set(rows) <= set(train) and list(rows) == sorted(rows)
    assert np.isclose(first["train"]["loss"],
                      evaluate.per_image(parts, coll.images, rows)["mse"].mean())
