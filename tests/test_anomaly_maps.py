"""Anomaly maps (fext/maps.py): high where a planted defect is, kept with the model, written by
`fext anomalies --maps`, served by the app's routes from a bounded cache; the score's parts; the
PCA baseline beside the autoencoder's reconstructions."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fext import anomaly, maps, registry
from fext.collection import Collection
from fext.config import PRESETS
from fext.feed import gather
from fext.images import fit_square
from tests.helpers import REPO, TINY, run_cli


def test_a_planted_defect_is_where_the_map_is_high(trained):
    ws, name = trained
    record = registry.open_record(ws, name)
    mapper = maps.Mapper.open(ws, record)
    assert mapper.method == maps.METHOD and mapper.stats is not None and not mapper.note
    d = record.config.data
    coll = Collection.open(ws, d.images, d.image_size, d.fit)
    x = gather(coll.images, coll.items()["row"].to_numpy()[:12])
    square = np.zeros((d.image_size,) * 2, bool)
    square[4:9, 5:10] = True  # a 5x5 dark square, a tenth of a 16 px image
    planted = x.copy()
    planted[:, square] = 0.05
    clean, _ = mapper.maps(x)
    values, recon = mapper.maps(planted)
    assert values.shape == (12, d.image_size, d.image_size) and values.dtype == np.float32
    assert recon.shape == x.shape
    assert values[:, square].mean() > values[:, ~square].mean() + 1.0
    assert values[:, square].mean() > clean[:, square].mean() + 1.0
    # image by image, most of them
    assert (values[:, square].mean(axis=1) > values[:, ~square].mean(axis=1)).mean() >= 0.75


def test_the_statistics_are_kept_with_the_model(trained):
    ws, name = trained
    record = registry.open_record(ws, name)
    kept = record.extras["maps"]
    assert kept["file"] == maps.stats_file(record.fingerprint) and kept["method"] == maps.METHOD
    assert [p.name for p in record.dir.glob("maps-*.npz")] == [kept["file"]]
    stats = maps.stored_stats(record)
    size = record.config.data.image_size
    assert set(stats.mean) == set(stats.std) == {"residual", "features"}
    assert all(m.shape == (size, size) for m in (*stats.mean.values(), *stats.std.values()))
    assert all((s > 0).all() for s in stats.std.values())
    first_block = PRESETS[record.config.model.preset][0][0]  # the filters of block 1
    assert stats.bank.dtype == np.float16 and stats.bank.shape[1] == first_block
    lo, hi = stats.scale[maps.METHOD]
    assert lo < hi and stats.fitted == kept["fitted"]


def test_a_model_without_statistics_computes_them_on_first_use_and_says_so(trained):
    ws, name = trained
    record = registry.open_record(ws, name)
    (record.dir / maps.stats_file(record.fingerprint)).unlink()
    assert not maps.kept(record)
    first = maps.Mapper.open(ws, record)
    assert "trained before anomaly maps" in first.note and first.stats is not None
    assert maps.kept(record) and not maps.Mapper.open(ws, record).note  # kept: read next time
    # its training images gone too: the raw residual, said so, and no crash
    (record.dir / maps.stats_file(record.fingerprint)).unlink()
    import shutil

    shutil.rmtree(ws.collections_dir())
    raw = maps.Mapper.open(ws, record)
    assert raw.stats is None and raw.method == "residual" and "raw reconstruction residual" in raw.note
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    values, _ = raw.maps(x)
    assert values.shape == (2, 16, 16) and (values >= 0).all()
    assert raw.describe()["scale"] is None and "not normalised" in raw.describe()["text"]


def test_statistics_of_an_earlier_feature_layer_are_fitted_again_or_kept_as_they_are(
        trained, monkeypatch):
    """A model whose kept statistics read another encoder layer (fitted before the map's
    block changed) gets them fitted again on its training collection, said once; where that
    collection is gone, the earlier statistics still make its maps."""
    ws, name = trained
    record = registry.open_record(ws, name)
    path = record.dir / maps.stats_file(record.fingerprint)
    current = maps.stored_stats(record).layer

    def fitted_for_block(block: int) -> None:  # as a model of that time kept them
        with monkeypatch.context() as m:
            m.setattr(maps, "FEATURE_BLOCK", block)
            path.unlink()
            assert maps.Mapper.open(ws, record).stats.layer == "enc2_conv2"

    fitted_for_block(2)
    again = maps.Mapper.open(ws, record)
    assert "earlier kind of map" in again.note and again.stats.layer == current != "enc2_conv2"
    assert maps.stored_stats(record).layer == current  # kept: read as it is next time
    assert not maps.Mapper.open(ws, record).note

    fitted_for_block(2)
    import shutil

    shutil.rmtree(ws.collections_dir())
    kept = maps.Mapper.open(ws, record)
    assert kept.stats.layer == kept.net.layer == "enc2_conv2" and not kept.note
    values, _ = kept.maps(np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32))
    assert values.shape == (2, 16, 16) and np.isfinite(values).all()


def test_anomalies_maps_writes_a_png_and_npy_per_listed_image(trained, tmp_path):
    ws, name = trained
    out = json.loads(run_cli("anomalies", "--name", name, "--top", "3", "--maps",
                             str(tmp_path / "maps"), "--json", workspace=ws.root).stdout)
    assert len(out["results"]) == 3
    assert out["maps"]["method"] == maps.METHOD and out["maps"]["size"] == TINY["image_size"]
    for r in out["results"]:
        values = np.load(r["map"]["npy"])
        assert values.dtype == np.float32 and values.shape == (16, 16)
        png = Image.open(r["map"]["png"])
        assert png.mode == "RGB" and png.size == (256, 256)  # the shapes are square files
        assert r["map"]["png"].startswith(str(tmp_path / "maps" / f"{r['rank']:05d}-"))
    every = json.loads(run_cli("anomalies", "--name", name, "--all", "--maps",
                               str(tmp_path / "all"), "--json", workspace=ws.root).stdout)
    assert len(every["results"]) == len(list((tmp_path / "all").glob("*.npy"))) > 3
    text = run_cli("anomalies", "--name", name, "--top", "2", "--maps", str(tmp_path / "t"),
                   workspace=ws.root).stdout
    assert "anomaly maps of 2 images written to" in text


def test_importing_the_maps_and_the_routes_needs_no_keras():
    """`anomalies` without --maps, and the app's routes until a map is asked for, never load
    Keras (the read-only commands' test covers the command itself)."""
    probe = ("import sys, fext.maps, fext.cli, fext.ui.server; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow')))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr[-2000:]


def test_a_map_lies_over_the_image_at_its_own_aspect_ratio():
    """The map's padding is cut where the model input's was: a wide image's content box is
    exactly where fit_square put its pixels, and the overlay keeps the image's shape."""
    wide = Image.new("RGB", (100, 40), (200, 30, 30))
    square = np.asarray(fit_square(wide, 64, "pad"))
    box = maps.content_box(100, 40, 64, "pad")
    red = np.argwhere((square == (200, 30, 30)).all(axis=-1))
    assert (box[1], box[0]) == tuple(red.min(0)) and (box[3] - 1, box[2] - 1) == tuple(red.max(0))
    values = np.zeros((64, 64), np.float32)
    values[box[1]:box[3], 10:20] = 5.0
    layer = maps.heat(values, [0.0, 4.0], 100, 40, "pad")
    assert layer.size == (256, round(40 * 256 / 100)) and layer.mode == "RGBA"
    alpha = np.asarray(layer.getchannel("A"))
    assert alpha[:, 40:80].mean() > 200 and alpha[:, 150:].max() == 0  # the hot stripe only
    shown = maps.overlay(wide.resize((250, 100)), values, [0.0, 4.0], "pad")
    assert shown.size == (250, 100)
    tall = maps.heat(values, [0.0, 4.0], 30, 90, "crop")  # crop: colour only where the model saw
    assert np.asarray(tall.getchannel("A"))[:20].max() == 0


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from tests.app_fixtures import routes_client

    with routes_client(tmp_path_factory) as found:
        yield found


def test_the_map_route_answers_a_png_for_an_image_and_404_otherwise(client, monkeypatch):
    from fext import atlas
    from fext.ui import server

    http, art = client
    base = server.base("demo", art.dir.name)
    monkeypatch.setattr(server, "MAPS", atlas.Cache(6000))  # a few pictures' worth
    for i in range(len(art.items)):
        r = http.get(f"{base}/anomaly-map/{i}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        picture = Image.open(io.BytesIO(r.content))
        assert picture.mode == "RGBA"
        w, h = art.items["width"].iat[i], art.items["height"].iat[i]
        assert picture.width / picture.height == pytest.approx(w / h, rel=0.02)
        recon = Image.open(io.BytesIO(http.get(f"{base}/reconstruction/{i}").content))
        assert recon.mode == "RGB" and max(recon.size) == art.meta["image_size"]
        assert server.MAPS.size <= 6000  # bounded, however many images are asked for
    for path in (f"{base}/anomaly-map/{len(art.items)}", f"{base}/anomaly-map/-1",
                 f"{base}/anomaly-map/x", f"{base}/reconstruction/999999",
                 "/fext/demo/v-nonexistent/anomaly-map/0", f"/fext/nomodel/{art.dir.name}/anomaly-map/0",
                 f"{base}/anomaly-map/0/../../../models/demo/config.json"):
        assert http.get(path).status_code == 404, path


def test_the_score_parts_add_up_to_the_score():
    stats = anomaly.ReferenceStats(10, 0.2, 0.5, 3.0, "test")
    score = float(anomaly.reference_score(np.array([0.3]), np.array([1.0]), stats)[0])
    parts = anomaly.score_parts("reference", {"reference": score, "reconstruction": 1.0,
                                              "isolation": 0.1}, {}, stats)
    assert [p["part"] for p in parts] == ["distance to the nearest training images",
                                          "reconstruction error"]
    assert sum(p["relative"] for p in parts) == pytest.approx(score)
    assert parts[0]["value"] == pytest.approx(0.3) and parts[1]["relative"] == pytest.approx(2.0)
    assert sum(p["share"] for p in parts) == pytest.approx(1.0)
    iso, rec = np.array([0.1, 0.2, 0.3, 0.4]), np.array([4.0, 3.0, 2.0, 1.0])
    look = np.array([0.5, 0.6, 0.7, 0.8])
    folder = anomaly.score_parts("combined", {"isolation": 0.4, "reconstruction": 1.0,
                                              "appearance": 0.8},
                                 {"isolation": np.sort(iso), "reconstruction": np.sort(rec),
                                  "appearance": np.sort(look)})
    assert [p["share"] for p in folder] == [0.75, 0.0, 0.75]  # odder than 3 of 4, none, 3
    assert [p["part"] for p in folder][2].startswith("appearance")
    assert np.argmax(anomaly.combined(iso, rec, look)) == 3  # odder on two parts of three


def test_evaluate_reports_pca_beside_the_autoencoder(trained):
    ws, name = trained
    out = json.loads(run_cli("evaluate", "--name", name, "--json", workspace=ws.root).stdout)
    pca = out["reconstruction_baseline"]
    assert pca["method"] == f"PCA-{TINY['latent_dim']}" and pca["fitted_on"] > 0
    for split, s in out["reconstruction"].items():
        b = pca["splits"][split]
        assert b["images"] == s["images"] and b.get("measured") == s.get("measured")
        if s["images"]:
            assert b["psnr"] > 0 and 0 < b["ssim"] <= 1 and b["loss"] > 0
    text = run_cli("evaluate", "--name", name, workspace=ws.root).stdout
    assert f"PCA-{TINY['latent_dim']} (same images)" in text and "fitted on" in text


def test_pca_reconstructs_what_it_was_fitted_on():
    from fext.evaluate import PCAReconstruction, measure

    rng = np.random.default_rng(0)
    basis = rng.random((3, 8 * 8 * 3))
    images = (np.clip(rng.random((20, 3)) @ basis / 3, 0, 1) * 255).astype(np.uint8)
    images = images.reshape(20, 8, 8, 3)
    pca = PCAReconstruction(images, np.arange(20), 3)
    assert pca.name == "PCA-3" and pca.fitted == 20
    m = measure(pca, images, np.arange(20))
    assert m["psnr"].min() > 40  # rank 3 data, 3 components: exact up to uint8 rounding
    assert PCAReconstruction(images, np.arange(2), 8).name == "PCA-2"  # no more than images


def test_patches_are_the_3x3_mean_at_the_kept_places():
    """`patches` averages only the places it keeps; the same as filtering every place (edges
    repeated) and then keeping every step-th, on any grid size."""
    from scipy.ndimage import uniform_filter

    rng = np.random.default_rng(0)
    for shape in [(3, 2 * maps.MAX_GRID, 2 * maps.MAX_GRID, 5), (2, maps.MAX_GRID, maps.MAX_GRID, 4),
                  (2, 7, 7, 3)]:
        feats = rng.random(shape).astype(np.float32)
        step = -(-shape[1] // maps.MAX_GRID)
        expected = uniform_filter(feats, (1, 3, 3, 1), mode="nearest")[:, ::step, ::step]
        np.testing.assert_allclose(maps.patches(feats), expected, atol=1e-6)
