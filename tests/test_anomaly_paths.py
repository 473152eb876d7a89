"""The two anomaly questions through the product's own paths: odd ones out of a folder, and new
images unlike what the model learned (scored against the training collection kept with the model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fext import registry
from fext.anomaly import (
    appearance,
    combined,
    folder_appearance,
    folder_reconstruction,
    pixel_statistics,
)
from fext.artifacts import Artifacts, extractions
from fext.collection import Collection
from fext.errors import StaleError
from fext.features import extract
from fext.quality import roc_auc
from fext.train import train
from fext.workspace import Workspace
from tests.corpus import make_shapes, shape_image
from tests.helpers import run_cli, tiny_config


@pytest.fixture(scope="module")
def one_class(tmp_path_factory):
    """A tiny model trained on red shapes only, and an inspection folder of new images:
    red shapes it never saw (normal) and green and blue ones (anomalies)."""
    root = tmp_path_factory.mktemp("one-class")
    make_shapes(root / "normal", per_label=24, labels=("red",))
    inspect = root / "inspect"
    for label in ("red", "green", "blue"):
        (inspect / label).mkdir(parents=True)
        for i in range(100, 110):  # indices the training folder does not have
            shape_image(label, i).save(inspect / label / f"{label}_{i:03d}.png")
    ws = Workspace(root / "ws")
    # without the invariance term, the validation loss chooses the epoch: one flat circle on a
    # plain ground is, by its pixels, a shifted crop of the next, so the copy figure (which
    # counts such finds as copies) cannot tell this folder's epochs apart
    train(ws, "red", tiny_config(root / "normal", epochs=6, invariance=0.0))
    extract(ws, "red")
    extract(ws, "red", str(inspect))
    return ws, "red", root / "normal", inspect


def test_the_reference_is_made_at_training_and_stored_with_the_model(one_class):
    ws, name, _, _ = one_class
    record = registry.open_record(ws, name)
    ref = record.extras["reference"]
    assert (record.dir / ref["file"]).is_file() and record.fingerprint in ref["file"]
    from fext.collection import Collection

    train_split = Collection.for_data(ws, record.config.data).items("train")
    assert ref["count"] == len(train_split) > 0  # the training split's vectors
    assert ref["median_distance"] > 0 and ref["median_reconstruction"] > 0
    assert ref["threshold"] > 0 and ref["calibration"]


def test_a_new_folder_is_ranked_against_the_training_collection(one_class):
    ws, name, _, inspect = one_class
    art = Artifacts.open(ws, name)  # the most recent extraction: the inspection folder
    assert art.root == inspect.resolve()
    assert art.score_kinds[0] == "reference" and art.reference["kind"] == "model"
    truth = (art.items["label"] != "red").to_numpy()
    assert roc_auc(art.scores(), truth) >= 0.9
    threshold = art.threshold()
    assert "false-alarm rate" in threshold["text"] and threshold["false_alarm_rate"] == 0.01
    # the reference adds the errors relative to contrast, as its medians were measured; the
    # folder's own ranking reads them over the root of the contrast
    from fext.anomaly import ReferenceStats, distance_to_index, reference_score, score_parts
    from fext.index import VectorIndex

    record = registry.open_record(ws, name)
    ref = record.extras["reference"]
    stats = ReferenceStats.from_dict(ref)
    errors = art.reconstruction_errors()
    parts = score_parts("reference", {"reference": float(art.scores()[0]),
                                      "reconstruction": float(errors[0])}, {}, stats)
    assert 0 < parts[0]["relative"] and 0 < parts[1]["relative"]  # both parts of the sum
    assert parts[1]["relative"] == pytest.approx(errors[0] / stats.median_reconstruction)
    index = VectorIndex.load(record.dir / ref["file"], ref["kind"])
    np.testing.assert_allclose(art.scores(), reference_score(
        distance_to_index(index, np.asarray(art.features())), errors, stats), rtol=1e-5)


def test_the_training_folder_keeps_its_own_extraction_and_ranks_itself(one_class):
    ws, name, normal, inspect = one_class
    kept = {e["images"] for e in extractions(ws, name)}
    assert kept == {str(normal.resolve()), str(inspect.resolve())}
    own = Artifacts.open(ws, name, images=normal)
    assert own.score_kinds[0] == "combined" and own.reference["kind"] == "folder"
    assert own.threshold()["share"] == 0.02
    with pytest.raises(ValueError, match="not scored against the training collection"):
        own.scores("reference")


def test_cli_says_which_reference_and_flags_above_the_threshold(one_class):
    ws, name, normal, inspect = one_class
    out = json.loads(run_cli("anomalies", "--name", name, "--top", "0", "--json",
                             workspace=ws.root).stdout)
    assert out["score"] == "reference" and out["reference"]["kind"] == "model"
    assert out["images"] == str(inspect.resolve()) and len(out["results"]) == 30
    value = out["threshold"]["value"]
    assert all(r["flagged"] == (r["score"] > value) for r in out["results"])
    assert out["flagged"] == sum(r["flagged"] for r in out["results"])
    # the most anomalous half is mostly the other colours
    top = [r["label"] for r in out["results"][:15]]
    assert sum(lab != "red" for lab in top) >= 12
    own = json.loads(run_cli("anomalies", "--name", name, "--images", str(normal), "--json",
                             workspace=ws.root).stdout)
    assert own["score"] == "combined" and own["reference"]["kind"] == "folder"
    text = run_cli("anomalies", "--name", name, workspace=ws.root).stdout
    assert "unlike the training collection" in text and "threshold" in text


def test_reference_none_ranks_a_new_folder_against_itself(one_class, tmp_path):
    import shutil

    ws, name, _, inspect = one_class
    copy = Workspace(tmp_path / "ws")
    shutil.copytree(ws.model_dir(name), copy.model_dir(name))
    meta = extract(copy, name, str(inspect), reference="none")
    assert meta["scores"][0] == "combined" and meta["reference"]["kind"] == "folder"
    assert np.isfinite(Artifacts.open(copy, name).scores()).all()


def test_a_reference_measured_with_the_earlier_error_is_measured_again(one_class, tmp_path):
    """A model trained before errors were read at the image's own colour keeps reference
    statistics of the earlier error: the next extraction of a new folder measures them again
    on the training collection (the same figures a training makes now) and keeps them; where
    that collection is not scanned, it scores nothing against the model and says why."""
    import shutil

    from fext.anomaly import EARLIER_RECONSTRUCTION, RECONSTRUCTION

    ws, name, _, inspect = one_class
    made = registry.open_record(ws, name).extras["reference"]
    earlier = {k: v for k, v in made.items() if k != "reconstruction"}
    earlier.update(threshold=1e9, median_reconstruction=1e-9)  # what another error read
    for copy, with_collection in ((tmp_path / "ws", True), (tmp_path / "bare", False)):
        if with_collection:
            shutil.copytree(ws.root, copy)
        else:
            shutil.copytree(ws.model_dir(name), Workspace(copy).model_dir(name))
        copy = Workspace(copy)
        registry.update_extras(registry.open_record(copy, name), reference=earlier)
        assert registry.open_record(copy, name).extras["reference"].get(
            "reconstruction", EARLIER_RECONSTRUCTION) != RECONSTRUCTION
        meta = extract(copy, name, str(inspect))
        again = registry.open_record(copy, name).extras["reference"]
        if with_collection:
            assert again["reconstruction"] == RECONSTRUCTION and meta["scores"][0] == "reference"
            for key in ("threshold", "median_distance", "median_reconstruction", "count"):
                assert again[key] == pytest.approx(made[key], rel=1e-3), key
            assert meta["reference"]["threshold"] == again["threshold"]
        else:
            assert again == earlier and meta["reference"]["kind"] == "folder"
            assert "measured as before" in meta["reference"]["text"]
            assert "reference" not in meta["scores"]


def test_the_error_reads_the_reconstruction_at_the_image_own_brightness():
    """The features ignore brightness and contrast edits, so the decoder cannot know them: a
    reconstruction with the right picture, darker and flatter (a flat sky drawn a shade too
    dark), has no error; one in the wrong colours, or of the wrong picture, keeps its error."""
    from fext.anomaly import own_brightness, reconstruction_error

    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, (2, 16, 16, 3)).astype(np.float32)
    x[1] = 0.6 + 0.05 * (x[1] - 0.5)  # a near-flat crop
    darker = 0.5 * (x - x.mean(axis=(1, 2, 3), keepdims=True)) + 0.3
    np.testing.assert_allclose(own_brightness(x, darker), x, atol=1e-5)
    assert (reconstruction_error(x, darker) < 1e-6).all()
    sky = np.full_like(x[1:], 0.5)  # drawn flat, a shade off: only the crop's own contrast left
    assert reconstruction_error(x[1:], sky)[0] < 0.1 < float(
        ((x[1:] - sky) ** 2).mean() / (x[1:].var() + 1e-3))
    swapped = x[:1, ..., ::-1]  # the right picture with red and blue swapped
    assert reconstruction_error(x[:1], swapped)[0] > 0.5
    wrong = rng.uniform(0.2, 0.8, x.shape).astype(np.float32)
    assert reconstruction_error(x[:1], wrong[:1])[0] > 1.0


def test_reconstruction_error_is_relative_to_the_image_contrast():
    """A reconstruction that explains nothing (the image's own mean) scores ~1 whether the image
    holds a thin stroke or a thick one; plain MSE would call the thin one 'normal'."""
    from fext.anomaly import reconstruction_error

    thin, thick = np.ones((1, 16, 16, 3), np.float32), np.ones((1, 16, 16, 3), np.float32)
    thin[0, 8, 2:14] = 0.0  # one dark line
    thick[0, 4:12, 2:14] = 0.0  # a dark block
    flat = lambda x: np.full_like(x, x.mean())  # noqa: E731
    errors = [float(reconstruction_error(x, flat(x))[0]) for x in (thin, thick)]
    assert all(0.9 < e <= 1.0 for e in errors), errors
    assert float(reconstruction_error(thin, thin)[0]) == 0.0


def test_training_images_calibrate_the_threshold_over_their_own_medians():
    """With few validation images the training images join the threshold's quantile; the model
    redraws them better than new images, so each part of their scores is read over their own
    medians: new images like the validation ones are then flagged about as often as stated,
    where pooling them as they were flagged several times as many."""
    from fext.anomaly import FALSE_ALARMS, distance_to_index, reference_of, reference_score

    rng = np.random.default_rng(0)

    def images(n, error_scale):  # features near a few centres, log-normal errors
        centres = np.repeat(np.eye(16)[:4], n // 4 + 1, axis=0)[:n]
        x = centres + 0.3 * rng.standard_normal((n, 16))
        return ((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32),
                (error_scale * np.exp(0.4 * rng.standard_normal(n))).astype(np.float32))

    train, val, new = images(400, 0.5), images(40, 1.0), images(20_000, 1.0)
    index, stats = reference_of(train, val)
    assert "40 validation images and 400 training images" in stats.calibration
    assert stats.median_reconstruction == pytest.approx(float(np.median(val[1])))
    flagged = float((reference_score(distance_to_index(index, new[0]), new[1], stats)
                     > stats.threshold).mean())
    assert flagged < 2 * FALSE_ALARMS, flagged
    pooled = (np.concatenate([val[0], train[0]]), np.concatenate([val[1], train[1]]))
    assert np.median(pooled[1]) < 0.7 * stats.median_reconstruction  # what pooling read


def test_odd_ones_out_weigh_every_part_by_its_ranks():
    """The folder's ranking counts each part by the share of the folder an image is odder than,
    however narrow that part's spread (a sum over medians let the wide reconstruction errors
    bury an isolated image), and weighs the parts together: an image odd on two parts comes
    before one as odd on a single part, and both before the normal images."""
    from fext.anomaly import relative_sum

    rng = np.random.default_rng(0)
    iso = 0.66 + 0.02 * rng.standard_normal(200)  # a few percent about the median
    rec = 0.02 * np.exp(rng.standard_normal(200))  # tens of percent, skewed
    look = rng.standard_normal(200)
    iso[0], rec[0], look[0] = 0.80, np.median(rec), 9.0  # isolated, and looks unlike the rest
    iso[1], rec[1], look[1] = np.median(iso), 2 * rec.max(), np.median(look)  # badly redrawn
    scores = combined(iso, rec, look)
    assert np.argmax(scores) == 0 and scores.max() < 1.0  # the share of the folder below it
    assert scores[1] > 0.9  # odd on one part alone: above nine tenths of the folder
    assert np.array_equal(np.argsort(combined(iso * 100, rec, look)), np.argsort(scores))
    summed = relative_sum(iso, rec, (np.median(iso), np.median(rec)))
    assert (summed > summed[0]).sum() >= 10  # what the sum made of the isolated image
    tied = combined(np.array([3.0, 1.0, 2.0, 0.0]), np.array([2.0, 3.0, 1.0, 0.0]))
    assert tied[0] > tied[1] > tied[2] > tied[3]


def test_pages_and_blank_frames_among_photos_stand_out_by_their_appearance(tmp_path):
    """Images of another kind whose features may lie among the folder's (pages of text, blank
    frames among photographs) lie far from it in colour, contrast and edge statistics, also as a
    series (each other's nearest images); the part reads a memory-mapped array a slice at a
    time, and a sample of the folder gives the same ranking."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    photos = []
    for _ in range(300):  # smooth colour fields with grain: landscapes, of a sort
        a, b, c = rng.uniform(0.2, 0.8, 3)
        field = np.stack([a + 0.3 * np.sin(6 * b * xx + c), b + 0.3 * yy * a,
                          c + 0.2 * np.cos(5 * a * yy)], axis=-1)
        photos.append(np.clip(field + 0.05 * rng.standard_normal(field.shape), 0, 1))
    pages = []
    for _ in range(8):  # black lines of text on white
        page = np.ones((64, 64, 3))
        for row in range(6, 58, 6):
            start = rng.integers(4, 12)
            page[row:row + 2, start:start + rng.integers(30, 50)] = 0.0
        pages.append(page)
    blanks = [np.full((64, 64, 3), v) for v in (0.0, 1.0)]
    images = (np.array(photos + pages + blanks) * 255).astype(np.uint8)
    odd = np.arange(300, len(images))
    stats = appearance(images)
    assert stats.shape == (len(images), 44) and np.isfinite(stats).all()
    planted = np.isin(np.arange(len(images)), odd)
    part = folder_appearance(stats)
    assert set(np.argsort(-part)[:8]) == set(odd[:8])  # the pages first
    assert roc_auc(part, planted) > 0.99 and roc_auc(folder_appearance(stats, sample=150), planted) > 0.99
    mapped = np.lib.format.open_memmap(tmp_path / "stats.npy", "w+", np.float32, stats.shape)
    mapped[:] = stats
    np.testing.assert_allclose(folder_appearance(mapped), part, rtol=1e-5)
    assert appearance(images[:, :16, :16]).shape == (len(images), 44)  # any side


def test_a_series_of_odd_ones_out_is_rare_though_they_are_each_others_neighbours():
    """Odd ones that come as a series (a few scanned pages among photos) are each other's
    nearest images: distance to the nearest 5 ranks them as the least isolated, distance to
    the nearest 5 % of the folder as the rarest; on a sample of the folder as well."""
    from fext.anomaly import folder_isolation, isolation_of

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 32))
    normal = np.repeat(centres, 100, axis=0) + 0.6 * rng.standard_normal((400, 32))
    series = rng.standard_normal(32) + 0.3 * rng.standard_normal((12, 32))
    x = np.vstack([normal, series]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    odd = np.arange(400, 412)
    sims = np.sort(x @ x.T - 2 * np.eye(len(x)), axis=1)[:, ::-1][:, :8]
    assert np.isin(np.argsort(-isolation_of(sims))[:12], odd).sum() == 0
    assert set(np.argsort(-folder_isolation(x))[:12]) == set(odd)
    assert set(np.argsort(-folder_isolation(x, sample=200))[:12]) == set(odd)
    k = int(np.ceil(0.05 * (len(x) - 1)))  # the k-th nearest other image, all of them counted
    brute = 1 - np.sort(x @ x.T - 3 * np.eye(len(x)), axis=1)[:, ::-1][:, k - 1]
    np.testing.assert_allclose(folder_isolation(x), brute, atol=1e-5)


def test_odd_ones_out_of_a_training_folder_come_first(tmp_path):
    """Through the product's path: a folder of red shapes with a blue shape and a noise frame
    planted, trained on and ranked by `fext anomalies`; both planted images lead the ranking.
    The model trains until it redraws the shapes (60 steps, PSNR about 19 dB): one that redraws
    nothing (errors past each image's variance) ranks reconstruction errors by chance."""
    folder = tmp_path / "folder"
    make_shapes(folder, per_label=40, labels=("red",))
    shape_image("blue", 0).save(folder / "red" / "planted_blue.png")
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "red" / "planted_noise.png")
    ws = Workspace(tmp_path / "ws")
    train(ws, "mixed", tiny_config(folder, epochs=15, patience=15))
    meta = extract(ws, "mixed")
    art = Artifacts.open(ws, "mixed")  # the folder reads errors over the root of the contrast
    coll = Collection.open(ws, meta["images"], meta["image_size"], meta["fit"])
    variance = np.load(art.dir / "variance.npy")
    rows = art.items["row"].to_numpy()
    statistics = np.zeros((len(rows), 44), np.float32)
    np.testing.assert_allclose(variance, pixel_statistics(coll.images, rows, out=statistics))
    np.testing.assert_allclose(statistics, appearance(coll.images[rows]))
    np.testing.assert_allclose(art.scores("appearance"), folder_appearance(statistics), rtol=1e-5)
    np.testing.assert_allclose(art.scores("reconstruction"),
                               folder_reconstruction(art.reconstruction_errors(), variance))
    np.testing.assert_allclose(art.scores("combined"), combined(
        art.scores("isolation"), art.scores("reconstruction"), art.scores("appearance")))
    assert art.outdated_ranking("combined", "mixed") is None
    before = Artifacts.at("mixed", art.dir)  # an extraction made before appearance joined
    before.meta["scores"] = [k for k in before.score_kinds if k != "appearance"]
    assert "extract again" in before.outdated_ranking("combined", "mixed")
    with pytest.raises(StaleError, match="appearance"):
        before.scores("appearance")
    older = Artifacts.at("mixed", art.dir)  # an extraction made before the root-contrast reading
    older.meta.pop("folder_reconstruction")
    np.testing.assert_array_equal(older.scores("reconstruction"), art.reconstruction_errors())
    noise = int(np.flatnonzero(art.items["path"] == "red/planted_noise.png")[0])
    assert 0.005 < variance[noise] < 0.02  # uniform noise, averaged by the resize to 16 px
    out = json.loads(run_cli("anomalies", "--name", "mixed", "--top", "4", "--json",
                             workspace=ws.root).stdout)
    assert out["score"] == "combined" and out["reference"]["kind"] == "folder"
    top = [r["path"] for r in out["results"]]
    assert {"red/planted_blue.png", "red/planted_noise.png"} <= set(top), top
