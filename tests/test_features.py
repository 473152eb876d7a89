"""Extraction: artefacts, provenance, incremental reuse, stale detection, atomic publishing."""

import numpy as np
import pytest

from fext.artifacts import Artifacts
from fext.errors import StaleError
from fext.features import export_csv, extract, project
from fext.projection import load_cached, placed_of
from fext.registry import open_record
from fext.search import Searcher
from fext.train import train
from fext.workspace import Workspace
from tests.corpus import shape_image
from tests.helpers import tiny_config


def test_artefacts_are_complete_and_consistent(trained):
    ws, name = trained
    art = Artifacts.open(ws, name)
    feats = art.features()
    assert feats.shape == (len(art.items), 8) and len(art.items) == 42
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert art.scores().shape == (42,) and ((art.scores() >= 0) & (art.scores() < 1)).all()
    assert art.meta["model"] == open_record(ws, name).fingerprint
    assert art.meta["skipped"] == 2 and len(art.index()) == 42


def test_an_indexed_image_finds_itself_first(trained, shapes_dir):
    ws, name = trained
    s = Searcher.open(ws, name)
    results = s.search(shapes_dir / "green" / "green_005.png", 5)
    assert results[0]["path"] == "green/green_005.png"
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert results[0]["same_picture"]  # the same file
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    same = [r["same_picture"] for r in results]
    assert same == sorted(same, reverse=True)  # the query's own picture first, then the rest
    for part in (True, False):  # each in the features' order
        scores = [r["score"] for r in results if r["same_picture"] == part]
        assert scores == sorted(scores, reverse=True)


def test_features_row_points_at_its_own_image(trained, shapes_dir):
    ws, name = trained
    s = Searcher.open(ws, name)
    art = s.artifacts
    for i in (0, 17, 41):
        vec = s.encode(shapes_dir / art.items["path"].iat[i])
        np.testing.assert_allclose(vec, art.features()[i], atol=1e-4)


def test_csv_has_one_row_per_image_with_the_vector(trained, tmp_path):
    ws, name = trained
    n = export_csv(ws, name, tmp_path / "f.csv")
    lines = (tmp_path / "f.csv").read_text().splitlines()
    assert n == 42 and len(lines) == 43
    assert lines[0] == "path,label," + ",".join(f"f{i}" for i in range(8))
    first = lines[1].split(",")
    assert len(first) == 10 and first[1] in ("red", "green", "blue")
    np.testing.assert_allclose([float(v) for v in first[2:]], Artifacts.open(ws, name).features()[0],
                               rtol=1e-5)


def test_rescan_encodes_only_new_images_and_keeps_old_vectors(tmp_path, shapes_dir):
    import shutil
    images = tmp_path / "imgs"
    shutil.copytree(shapes_dir, images)
    ws = Workspace(tmp_path / "ws")
    train(ws, "m", tiny_config(images, epochs=1))
    first = extract(ws, "m")
    old = Artifacts.open(ws, "m")
    old_vec = dict(zip(old.items["path"], np.array(old.features())))
    old_err = dict(zip(old.items["path"], old.reconstruction_errors()))
    old_xy = dict(zip(old.items["path"], project(ws, "m")))
    shape_image("red", 500).save(images / "red" / "added.png")
    (images / "blue" / "blue_000.png").unlink()
    second = extract(ws, "m")
    assert second["encoded"] == 1 and second["reused"] == first["count"] - 1
    art = Artifacts.open(ws, "m")
    assert "red/added.png" in set(art.items["path"]) and "blue/blue_000.png" not in set(art.items["path"])
    for p, v, e in zip(art.items["path"], art.features(), art.reconstruction_errors()):
        if p in old_vec:  # the stored errors carried on as they were, not as a ranking reads them
            np.testing.assert_allclose(v, old_vec[p], atol=1e-6)
            assert e == pytest.approx(old_err[p], rel=1e-6)
    from fext.anomaly import combined

    np.testing.assert_allclose(art.scores("combined"), combined(
        art.scores("isolation"), art.scores("reconstruction"), art.scores("appearance")))
    # the map carries on without a new layout: old images keep their place, the deleted one
    # leaves, the new one is placed among its nearest neighbours and marked
    xy = load_cached(art)
    placed = placed_of(art)
    assert xy is not None and placed is not None and len(xy) == len(art.items)
    assert art.items["path"][placed].tolist() == ["red/added.png"]
    for p, point in zip(art.items["path"], xy):
        if p != "red/added.png":
            np.testing.assert_array_equal(point, old_xy[p])
    nearest = art.neighbours()[0][placed][0]
    span = xy.max(0) - xy.min(0)
    assert (np.abs(xy[placed][0] - xy[nearest].mean(0)) <= span / 2).all()
    fresh = project(ws, "m", fresh=True)
    assert placed_of(art) is None and len(fresh) == len(art.items)
    # retraining makes the index stale: refused with a message, rebuilt by extract
    train(ws, "m", tiny_config(images, epochs=1, seed=3))
    with pytest.raises(StaleError, match="extract"):
        Artifacts.open(ws, "m")
    assert extract(ws, "m")["encoded"] == second["count"]
    assert load_cached(Artifacts.open(ws, "m")) is None  # another model: another map


def test_isolation_only_extraction_skips_the_decoder(trained, tmp_path):
    import shutil

    ws, name = trained
    full = Artifacts.open(ws, name)
    shutil.copytree(ws.root, tmp_path / "ws")
    shutil.rmtree(tmp_path / "ws" / "index" / name)
    copy = Workspace(tmp_path / "ws")
    meta = extract(copy, name, scores="isolation")
    art = Artifacts.open(copy, name)
    assert meta["scores"] == ["isolation", "appearance"] == list(art.score_kinds)
    assert not (art.dir / "recon.npy").exists()
    np.testing.assert_allclose(art.features(), full.features(), atol=1e-5)
    np.testing.assert_allclose(art.scores(), full.scores("isolation"), atol=1e-5)
    np.testing.assert_allclose(art.scores("appearance"), full.scores("appearance"))  # no model
    with pytest.raises(ValueError, match="--scores isolation"):
        art.scores("reconstruction")
    # a later full extraction re-encodes: the reused vectors would lack reconstruction errors
    again = extract(copy, name)
    assert again["encoded"] == len(full.items)
    # combined ranks the folder: scores equal to float rounding may swap, by 1/n each
    np.testing.assert_allclose(Artifacts.open(copy, name).scores(), full.scores(),
                               atol=2 / len(full.items))
    with pytest.raises(ValueError, match="--scores must be one of all, isolation"):
        extract(copy, name, scores="none")


def test_precision_is_recorded_and_queries_are_encoded_alike(trained, tmp_path, shapes_dir):
    import shutil

    ws, name = trained
    shutil.copytree(ws.root, tmp_path / "ws")
    copy = Workspace(tmp_path / "ws")
    first = "float32" if Artifacts.open(copy, name).precision == "bfloat16" else "bfloat16"
    for precision in (first, "bfloat16" if first == "float32" else "float32"):
        meta = extract(copy, name, precision=precision)
        assert meta["precision"] == precision
        assert meta["encoded"] == meta["count"]  # vectors are never reused across precisions
        searcher = Searcher.open(copy, name)
        assert searcher.artifacts.precision == precision
        hit = searcher.search(shapes_dir / "green" / "green_005.png", 1)[0]
        assert hit["path"] == "green/green_005.png" and hit["score"] > 0.9999
    with pytest.raises(ValueError, match="precision"):
        extract(copy, name, precision="half")


def test_failed_extraction_keeps_the_previous_index(trained, monkeypatch):
    ws, name = trained
    before = ws.current_index(name)

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr("fext.features.VectorIndex.build", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        extract(ws, name)
    assert ws.current_index(name) == before
    assert len(Artifacts.open(ws, name).index()) == 42
    assert [p.name for p in before.parent.glob("v-*")] == [before.name]  # no half-written version


def test_umap_map_is_cached(trained):
    ws, name = trained
    coords = project(ws, name)
    assert coords.shape == (42, 2) and np.isfinite(coords).all()
    mtime = (Artifacts.open(ws, name).dir / "umap.npy").stat().st_mtime_ns
    np.testing.assert_array_equal(project(ws, name), coords)
    assert (Artifacts.open(ws, name).dir / "umap.npy").stat().st_mtime_ns == mtime


def test_the_maps_serial_compiled_code_is_cached_and_its_parallel_twin_is_not():
    """umap-learn compiles its numba functions in every process (about 20 s before a map); the
    ones it leaves uncached are cached by fext.projection, so a later process loads them. A
    parallel dispatcher of the same function as a serial one stays uncached: numba's cache
    keys an entry by the function, so the two would load each other's code."""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    from fext.projection import _umap

    umap = _umap()
    compiled = [v for m in (umap.umap_, umap.layouts) for v in vars(m).values()
                if isinstance(v, Dispatcher)]
    cached = [v for v in compiled if not isinstance(v._cache, NullCache)]
    assert len(cached) >= 10
    assert not isinstance(umap.layouts._nb_optimize_layout_euclidean_single_epoch._cache, NullCache)
    assert isinstance(umap.layouts._nb_optimize_layout_euclidean_single_epoch_parallel._cache,
                      NullCache)
    assert any(v.targetoptions.get("parallel") for v in cached)  # those without a twin
    by_function = [v.py_func for v in cached if not v.targetoptions.get("cache")]
    assert len(by_function) == len(set(by_function))  # no two of ours share a cache entry


def test_a_sampled_layout_places_the_rest_beside_their_own_kind():
    from fext.projection import layout

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (3, 16))
    kind = np.repeat(np.arange(3), 200)
    feats = (centres[kind] + rng.normal(0, 0.05, (600, 16))).astype(np.float32)
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -1)
    nearest = np.argsort(-sims, axis=1)[:, :8]
    coords, sample = layout(feats, nearest, np.take_along_axis(sims, nearest, 1), sample=150)
    assert sample == 150 and coords.shape == (600, 2) and np.isfinite(coords).all()
    # on the map, each image's nearest other image is of its own kind
    d = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (kind[d.argmin(1)] == kind).mean() > 0.95
    full, none = layout(feats, nearest, None, sample=1000)
    assert none is None and full.shape == (600, 2)
