"""The training recipe for photos: edited views, the invariance term, steps per epoch, the
whitened read-out stored with the model, and the label-free copy-detection figure."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fext import model as model_lib
from fext import readout
from fext.config import RunConfig, TrainConfig
from fext.edits import augment
from fext.feed import epoch_order, neighbour_groups
from fext.registry import load as load_model
from fext.registry import open_record
from tests.helpers import run_cli


def test_training_views_are_seeded_edits_of_the_same_images():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    a, b = augment(batch, [1, 0, 0]), augment(batch, [1, 0, 0])
    assert a.shape == batch.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)  # a pure function of the seed: resume stays exact
    assert not np.array_equal(a, augment(batch, [1, 0, 1]))
    changed = np.abs(a.astype(int) - batch).reshape(16, -1).mean(axis=1) > 0.5
    assert 0 < changed.sum() < 16 or changed.all()  # most views are edited


def test_views_edited_in_other_processes_are_the_views_edited_here(tmp_path, monkeypatch):
    """What keeps an accelerator fed changes nothing: each image's edits are drawn in order
    here, then made wherever, so resumed and parallel runs see the same bytes. The workers
    never run the main script (here one that would leave a mark: a Streamlit page or a
    script without a `__main__` guard runs as `__main__`)."""
    import sys
    import types

    from fext.edits import edit_pool

    script, mark = tmp_path / "page.py", tmp_path / "ran"
    script.write_text(f"open({str(mark)!r}, 'a').write('x')\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    batch = np.random.default_rng(2).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    with edit_pool(2) as pool:
        for fit in ("pad", "crop"):
            np.testing.assert_array_equal(augment(batch, [3, 1, 4], fit, pool),
                                          augment(batch, [3, 1, 4], fit))
        np.testing.assert_array_equal(augment(batch[:1], [5], "pad", pool),
                                      augment(batch[:1], [5], "pad"))
    assert not mark.exists()
    assert sys.modules["__main__"] is main  # put back


def test_a_worker_that_dies_breaks_the_pool_with_an_error_instead_of_a_wait():
    """A killed edit process (out of memory, say) must end training with an error, not leave
    it waiting for views that never come (as a plain multiprocessing.Pool would)."""
    import multiprocessing
    import threading
    from concurrent.futures.process import BrokenProcessPool

    from fext.edits import edit_pool

    batch = np.random.default_rng(2).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    outcome = []

    def kill_a_worker_then_edit():  # in a thread: a pool that waits must fail the test, not hang it
        with edit_pool(2) as pool:
            augment(batch, [1], "pad", pool)  # both workers up
            for child in multiprocessing.active_children():
                child.kill()
                child.join()
            try:
                augment(batch, [2], "pad", pool)
                outcome.append("edited")
            except BrokenProcessPool:
                outcome.append("broken")

    worker = threading.Thread(target=kill_a_worker_then_edit, daemon=True)
    worker.start()
    worker.join(timeout=90)
    assert outcome == ["broken"]


def test_views_are_edited_in_other_processes_only_where_an_accelerator_trains(monkeypatch):
    import os

    from fext.edits import edit_pool, edit_workers

    assert edit_workers(False) == 0  # the CPU's cores compute the model
    for cores, workers in ((2, 0), (16, 14), (96, 16)):  # two cores left to the training loop
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert edit_workers(True) == workers
    with edit_pool(0) as none, edit_pool(1) as one:
        assert none is None and one is None


def test_training_on_an_accelerator_edits_its_views_in_other_processes(tmp_path, shapes_dir,
                                                                      monkeypatch):
    import fext.train as train_lib
    from fext.edits import EditPool
    from fext.workspace import Workspace
    from tests.helpers import tiny_config

    pools, real = [], train_lib.views

    def spy(x, labels, tcfg, epoch, step, fit, pool=None):
        inputs, targets = real(x, labels, tcfg, epoch, step, fit, pool)
        pools.append(pool)
        np.testing.assert_array_equal(inputs, real(x, labels, tcfg, epoch, step, fit)[0])
        return inputs, targets

    monkeypatch.setattr(train_lib.model_lib, "accelerator", lambda: True)
    monkeypatch.setattr(train_lib, "edit_workers", lambda accelerator: 2 if accelerator else 0)
    monkeypatch.setattr(train_lib, "views", spy)
    train_lib.train(Workspace(tmp_path), "m", tiny_config(shapes_dir, epochs=1))
    assert pools and all(isinstance(pool, EditPool) for pool in pools)  # validation's views too


def test_a_cropped_view_is_padded_as_a_query_is_not_stretched():
    """A view cut to another shape comes back to a square the way `fext.images.load` fits a
    query: padded with white (fit pad) or centre-cropped (fit crop), never stretched."""
    batch = np.zeros((32, 32, 32, 3), np.uint8)  # black squares: padding shows as white bands
    border = lambda v: np.concatenate([v[:, :1], v[:, -1:], v[:, :, :1].transpose(0, 2, 1, 3),  # noqa: E731
                                       v[:, :, -1:].transpose(0, 2, 1, 3)], axis=1)
    white = lambda v: (border(v).min(axis=-1) > 200).all(axis=-1).any(axis=1)  # noqa: E731
    padded, cropped = augment(batch, [5, 0, 0], "pad"), augment(batch, [5, 0, 0], "crop")
    assert 0 < white(padded).sum() < 32  # the views that were cut or resized to another shape
    assert not white(cropped).any()


def test_held_out_copies_measure_how_well_copies_find_their_source():
    """Recall@1 of the copy test's copies among its database: near 1 for features that keep
    the image (its pixels), chance for features that keep nothing."""
    import keras

    from fext.copies import CopyTest
    from fext.train import RowFeatures, held_out_copies

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)
    images = np.repeat(np.repeat(images[:, ::4, ::4], 4, axis=1), 4, axis=2)  # 4x4 blocks
    inp = keras.Input((16, 16, 3))
    pixels = keras.Model(inp, keras.layers.Flatten()(inp))
    nothing = keras.Model(inp, keras.layers.Dense(4, kernel_initializer="zeros",
                                                  bias_initializer="ones")(
                                                      keras.layers.Flatten()(inp)))
    db_rows = np.r_[40:60, 0:40]  # the sources first, as copy_test lays them out
    truth = np.tile(np.arange(20), 3)  # each source copied three times
    noise = rng.integers(-20, 21, (60, 16, 16, 3))
    copies = np.clip(images[db_rows[truth]] + noise, 0, 255).astype(np.uint8)
    test = CopyTest(db_rows, truth, copies, "val split", np.arange(60).astype(str),
                    np.full((60, 2), 16), "pad")
    assert held_out_copies(RowFeatures(pixels, images, 16), test) >= 0.9
    assert held_out_copies(RowFeatures(nothing, images, 16), test) <= 0.1


def test_row_features_encode_each_row_once_between_two_steps(monkeypatch):
    """Validation's database and the next epoch's look-alike groups share their rows' features
    while the weights stand still; a step (a new moment) encodes afresh, and only the latest
    call's rows are kept (memory of one call at any folder size)."""
    import keras

    import fext.train as train_lib

    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    inp = keras.Input((8, 8, 3))
    flat = keras.Model(inp, keras.layers.Flatten()(inp))
    encoded, real = [], train_lib.encode_all

    def counted(parts, imgs, rows, batch_size, reconstruct=True):
        encoded.append(np.asarray(rows).tolist())
        return real(parts, imgs, rows, batch_size, reconstruct)

    monkeypatch.setattr(train_lib, "encode_all", counted)
    step = [0]
    features = train_lib.RowFeatures(flat, images, 16, moment=lambda: step[0])
    fresh = train_lib.RowFeatures(flat, images, 16)  # no moment: never reuses
    expect = lambda rows: real((flat, None), images, np.asarray(rows), 16, False)[0]  # noqa: E731

    db, epoch = np.r_[0:20], np.array([25, 3, 3, 18, 30, 7])
    np.testing.assert_array_equal(features(db), expect(db))
    np.testing.assert_array_equal(features(epoch), expect(epoch))  # in order, repeats kept
    assert encoded == [list(range(20)), [25, 30]]  # only the rows not encoded at this moment
    step[0] += 1
    np.testing.assert_array_equal(features(epoch), expect(epoch))
    assert encoded[-1] == [3, 7, 18, 25, 30]  # the weights moved: everything again
    assert len(features._rows) == 5  # the latest call's rows only
    encoded.clear()
    fresh(db), fresh(db)
    assert encoded == [list(range(20))] * 2


def test_the_copy_test_edits_held_out_images_and_searches_them_among_the_collection(tmp_path,
                                                                                  monkeypatch):
    """The one copy figure's material: a small split is copied several times over (each copy
    edited anew), every copy's truth is its own source, and the database holds the sources
    and others up to its size, the same for the same seed."""
    import pandas as pd

    import fext.copies
    from fext.copies import copy_test

    for i in range(12):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (48, 40, 3), np.uint8)).save(
            tmp_path / f"{i}.png")
    coll = type("Coll", (), {"root": tmp_path, "image_size": 16})()
    items = pd.DataFrame({"path": [f"{i}.png" for i in range(12)], "row": np.arange(12) + 100,
                          "sha1": [f"{i}" for i in range(12)], "width": 48, "height": 40})
    sources = items.iloc[[2, 5, 7]]
    test = copy_test(coll, sources, items, "pad", seed=3, count=10)
    assert len(test.copies) == 10 and test.copies.shape[1:] == (16, 16, 3)
    assert sorted(test.db_rows[:3]) == [102, 105, 107] and sorted(test.db_rows) == list(items["row"])
    assert set(test.truth) == {0, 1, 2}  # every source copied, each several times
    assert len({c.tobytes() for c in test.copies}) == 10  # each copy edited anew
    again = copy_test(coll, sources, items, "pad", seed=3, count=10)
    assert np.array_equal(test.db_rows, again.db_rows) and np.array_equal(test.copies, again.copies)
    monkeypatch.setattr(fext.copies, "COPY_DATABASE", 5)  # sources, then others up to 5
    assert len(copy_test(coll, sources, items, "pad", seed=3, count=4).db_rows) == 5


def test_a_copy_that_finds_another_copy_of_its_source_has_found_it(tmp_path):
    """A collection may already hold copies of a copied image: an identical file, or an edited
    copy. Finding one of them first answers "where else is this picture?" as well as the source
    does; finding another crop of the same photograph does not."""
    import hashlib

    from sklearn.datasets import load_sample_image

    from fext.copies import CopyTest
    from fext.edits import edit
    from fext.images import load

    photo = Image.fromarray(load_sample_image("china.jpg"))
    source = photo.crop((0, 0, 240, 200))
    files = [source, source, edit(source, 7), photo.crop((200, 180, 440, 380))]
    for i, img in enumerate(files):
        img.save(tmp_path / f"{i}.png")
    blobs = [(tmp_path / f"{i}.png").read_bytes() for i in range(4)]
    images = np.stack([load(b, 64) for b in blobs])
    test = CopyTest(np.arange(4), np.zeros(4, np.int64), images, "test split",
                    np.array([hashlib.sha1(b).hexdigest() for b in blobs]),
                    np.array([img.size for img in files]), "pad")
    assert test.hits(images, np.array([0, 1, 2, 3])).tolist() == [True, True, True, False]
    assert test.known == {(0, 1): True, (0, 2): True, (0, 3): False}  # each pair checked once


def test_a_copys_first_result_is_the_one_search_shows_first(tmp_path):
    """The copy figure measures the search users run: of a copy's nearest by features, the
    first whose pixels show the copy's picture comes first (`CopyTest.verified`), so a source
    ranked behind another crop of the same photograph is found; each pair is checked once."""
    import hashlib

    from sklearn.datasets import load_sample_image

    from fext.copies import CopyTest, copy_recall
    from fext.edits import edit, encoded

    photo = Image.fromarray(load_sample_image("china.jpg"))
    files = [photo.crop((0, 0, 240, 200)), photo.crop((40, 30, 280, 230)),
             photo.crop((200, 180, 440, 380))]
    for i, img in enumerate(files):
        img.save(tmp_path / f"{i}.png")
    images = np.stack([encoded(img, 64, "pad") for img in files])
    seeds = np.array([7, 8])
    copies = [edit(files[0], int(seed)) for seed in seeds]  # both copies of image 0
    test = CopyTest(np.arange(3), np.zeros(2, np.int64), np.stack([encoded(c, 64, "pad")
                                                                   for c in copies]),
                    "test split", np.array([hashlib.sha1(img.tobytes()).hexdigest()
                                            for img in files]),
                    np.array([img.size for img in files]), "pad",
                    [tmp_path / f"{i}.png" for i in range(3)],
                    np.array([c.size for c in copies]), seeds)
    top = np.array([[1, 0, 2], [2, 1, 0]])  # the look-alike crops ranked first by features
    assert test.verified(images, top).tolist() == [[0, 1, 2], [0, 2, 1]]
    assert test.confirmed == {(0, 1): False, (0, 0): True, (1, 2): False, (1, 1): False,
                              (1, 0): True}
    assert test.verified(images, np.array([[2, 1, 0]]))[0].tolist() == [0, 2, 1]
    test.confirmed.clear()  # results none of which could count as found are not checked
    assert test.countable(np.array([[2], [0]])).tolist() == [[False], [True]]
    assert test.verified(images, np.array([[2], [2]])).tolist() == [[2], [2]]
    assert test.confirmed == {}
    features = np.eye(3)[[1, 2, 0]]  # the database's features rank image 1 first for copy 0
    assert copy_recall(test, images, np.eye(3), features[:2]) == 1.0


def test_the_copy_interval_resamples_images_not_copies():
    """Copies of one image succeed or fail together: ten images copied ten times each say
    less than a hundred images copied once, and the interval shows it."""
    from fext.copies import recall_interval

    assert recall_interval(np.ones(40, bool), np.arange(40) % 8) == (1.0, 1.0)
    clustered = recall_interval(np.repeat(np.arange(10) < 7, 10), np.repeat(np.arange(10), 10))
    spread = recall_interval(np.arange(100) < 70, np.arange(100))
    assert clustered[0] < 0.7 < clustered[1] and spread[0] < 0.7 < spread[1]
    assert clustered[1] - clustered[0] > 1.5 * (spread[1] - spread[0])


def test_epochs_of_steps_walk_an_endless_stream_of_passes():
    rows = np.arange(10, 17)  # 7 rows, epochs of 5: every row once per pass, no row dropped
    stream = np.concatenate([epoch_order(rows, 3, e, length=5) for e in range(7)])
    passes = stream.reshape(5, 7)
    assert all(sorted(p) == list(rows) for p in passes)
    assert np.array_equal(passes[1], epoch_order(rows, 3, 1))  # pass k is the k-th permutation
    assert np.array_equal(epoch_order(rows, 3, 4, length=5), stream[20:25])


def test_look_alikes_are_grouped_into_the_same_batch():
    """Eight tight clusters of four, shuffled: each group of four is one cluster."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 16))
    cluster = rng.permutation(np.repeat(np.arange(8), 4))
    features = (centres[cluster] + 0.01 * rng.normal(size=(32, 16))).astype(np.float32)
    rows = np.arange(100, 132)
    perm = neighbour_groups(features, rows, 4)
    assert sorted(perm) == list(range(32))  # every row once: a permutation of the epoch
    assert all(len(set(g)) == 1 for g in cluster[perm].reshape(8, 4))
    assert perm[0] == 0  # anchors follow the seeded order
    assert np.array_equal(neighbour_groups(features, rows, 1), np.arange(32))


def test_an_image_is_never_its_own_look_alike():
    """An epoch longer than a pass holds an image twice: the two stay in different groups."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(6, 8)).astype(np.float32)
    rows = np.array([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5])
    perm = neighbour_groups(base[rows], rows, 2)
    assert sorted(perm) == list(range(12))
    assert all(len(set(g)) == 2 for g in rows[perm].reshape(6, 2))


def test_training_draws_batches_of_look_alikes(tmp_path, shapes_dir, monkeypatch):
    """Each epoch's images are grouped by their features at the epoch's start, window by
    window, and the batches follow that grouping; random batches where `neighbours` is 1."""
    import fext.train as train_lib
    from fext.workspace import Workspace
    from tests.helpers import tiny_config

    calls, batches, real_groups, real_views = [], [], train_lib.neighbour_groups, train_lib.views

    def groups(features, rows, group):
        perm = real_groups(features, rows, group)
        calls.append((features.shape, group, rows[perm]))
        return perm

    def views(x, labels, tcfg, epoch, step, fit, pool=None):
        if epoch < train_lib.VALIDATION_EPOCH:  # training steps, not the validation's views
            batches.append(x)
        return real_views(x, labels, tcfg, epoch, step, fit, pool)

    monkeypatch.setattr(train_lib, "neighbour_groups", groups)
    monkeypatch.setattr(train_lib, "views", views)
    monkeypatch.setattr(train_lib, "LOOK_ALIKE_WINDOW", 16)  # an epoch of 32 rows: two windows
    ws = Workspace(tmp_path)
    train_lib.train(ws, "m", tiny_config(shapes_dir, epochs=2, neighbours=4))
    assert [(shape, group) for shape, group, _ in calls] == [((16, 8), 4)] * 4  # 4 steps x 8 images
    coll_images = train_lib.Collection.for_data(ws, tiny_config(shapes_dir).data).images
    expected = np.concatenate([rows for _, _, rows in calls])
    seen = np.concatenate(batches)
    np.testing.assert_array_equal(seen, train_lib.to_model_input(coll_images[expected]))
    calls.clear()
    train_lib.train(ws, "r", tiny_config(shapes_dir, epochs=1, neighbours=1))
    assert calls == []
    train_lib.train(ws, "s", tiny_config(shapes_dir, epochs=1, batch_size=4))  # 2 images a step
    assert {group for _, group, _ in calls} == {2}  # groups no larger than a step's images


def test_invariance_loss_rewards_views_that_find_each_other():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(8, 16)).astype(np.float32)
    matched = np.concatenate([z, z + 0.01 * rng.normal(size=z.shape).astype(np.float32)])
    shuffled = np.concatenate([z, rng.normal(size=z.shape).astype(np.float32)])
    loss = lambda pairs: float(np.mean(model_lib.invariance_loss(None, pairs)))  # noqa: E731
    assert loss(matched) < 0.05 < np.log(15) / 2 < loss(shuffled)


def test_a_label_share_pulls_images_filed_under_one_label_together():
    """Images 0 and 1 share a label; their views point different ways, partners match."""
    e = np.eye(4, dtype=np.float32)
    pairs = np.concatenate([e, e])  # view 1 of images 0-3, then view 2
    apart, together = pairs.copy(), pairs.copy()
    together[[1, 5]] = e[0] + 0.01 * e[1]  # image 1's views now beside image 0's
    labels = np.array([0, 0, 1, 2] * 2, np.float32)[:, None]
    loss = lambda p, y, share: float(np.mean(model_lib.invariance_loss(y, p, share)))  # noqa: E731
    assert loss(apart, labels, 0.5) > loss(together, labels, 0.5)  # the label asks for closeness
    assert loss(apart, labels, 0.0) < loss(together, labels, 0.0)  # instance term alone: apart
    unlabelled = np.full_like(labels, -1)
    assert loss(apart, unlabelled, 0.5) == pytest.approx(loss(apart, unlabelled, 0.0))


def test_labels_reach_training_only_from_two_labels_on():
    import pandas as pd

    from fext.train import label_indices

    two = pd.DataFrame({"label": ["cat", "", "dog", "cat"]})
    assert label_indices(two).tolist() == [0, -1, 1, 0]
    one = pd.DataFrame({"label": ["3", "3", ""]})  # a one-class folder: nothing to pull apart
    assert label_indices(one).tolist() == [-1, -1, -1]


def test_sub_folders_are_classes_where_nearest_images_share_them_and_albums_otherwise():
    """Auto: pictures of one kind filed together are classes; the same pictures filed at random
    (albums) are not; a given --folders wins; fewer than two sub-folders are neither."""
    import pandas as pd

    from fext.train import label_indices, sub_folders

    rng = np.random.default_rng(0)
    kinds, per = 4, 30
    base = rng.integers(0, 256, (kinds, 32, 32, 3))  # four kinds of picture, each its own look
    images = np.clip(np.repeat(base, per, axis=0) + rng.normal(0, 40, (kinds * per, 32, 32, 3)),
                     0, 255).astype(np.uint8)
    filed = np.repeat([f"k{i}" for i in range(kinds)], per)
    classes = pd.DataFrame({"row": np.arange(len(images)), "label": filed})
    found = sub_folders(images, classes)
    assert found.classes and found.count == kinds and found.same_folder > 0.9
    assert 0.2 < found.chance < 0.25 and "taken as classes" in found.text
    albums = classes.assign(label=rng.permutation(filed))  # the same pictures, filed at random
    found = sub_folders(images, albums)
    assert not found.classes and "albums" in found.text and found.same_folder < 0.5
    assert (label_indices(albums, found.classes) == -1).all()
    assert sub_folders(images, albums, "classes").classes
    assert not sub_folders(images, classes, "albums").classes
    flat = classes.assign(label="")
    assert not sub_folders(images, flat).classes and sub_folders(images, flat).count == 0


def label_targets(monkeypatch) -> tuple[list, list]:
    """(training steps', validation's) label targets of every view training makes, as lists
    filled while it runs (fext.train.views spied on)."""
    import fext.train as train_lib

    seen, held_out, real = [], [], train_lib.views

    def spy(x, labels, tcfg, epoch, step, fit, pool=None):
        inputs, targets = real(x, labels, tcfg, epoch, step, fit, pool)
        (seen if epoch < train_lib.VALIDATION_EPOCH else held_out).append(targets[1][:, 0])
        return inputs, targets

    monkeypatch.setattr(train_lib, "views", spy)
    return seen, held_out


def test_training_on_a_labelled_folder_hands_each_view_its_label(tmp_path, shapes_dir,
                                                                  monkeypatch):
    import fext.train as train_lib
    from fext.workspace import Workspace
    from tests.helpers import tiny_config

    seen, held_out = label_targets(monkeypatch)
    train_lib.train(Workspace(tmp_path), "m", tiny_config(shapes_dir, epochs=1))
    assert len(seen) == 4 and held_out  # four training steps, and the validation's views
    for labels in seen + held_out:  # both views of an image carry its label index
        np.testing.assert_array_equal(labels[:len(labels) // 2], labels[len(labels) // 2:])
    assert set(np.concatenate(seen).tolist()) == {0.0, 1.0, 2.0}  # three sub-folders
    # shapes filed by colour are classes to the detector, and the model says so
    metrics = json.loads((Workspace(tmp_path).model_dir("m") / "metrics.json").read_text())
    assert metrics["folders"]["classes"] and metrics["folders"]["count"] == 3


def test_sub_folders_taken_as_albums_give_training_no_labels(tmp_path, shapes_dir, monkeypatch):
    import fext.train as train_lib
    from fext.workspace import Workspace
    from tests.helpers import tiny_config

    seen, held_out = label_targets(monkeypatch)
    metrics = train_lib.train(Workspace(tmp_path), "m",
                              tiny_config(shapes_dir, epochs=1, folders="albums"))
    assert seen and held_out  # every view unlabelled, as in a flat folder
    assert (np.concatenate(seen + held_out) == -1).all()
    assert not metrics["folders"]["classes"]
    assert "taken as albums" in metrics["folders"]["text"]


def test_readout_whitens_features_and_keeps_the_reconstruction(trained):
    ws, name = trained
    model, record = load_model(ws, name)
    assert readout.has_readout(model) and record.extras["readout"]["kind"] == "whitened"
    coll_x = np.random.default_rng(1).random((6, 16, 16, 3)).astype(np.float32)
    encoder, decoder = model_lib.inference_parts(model)
    plain = readout.with_readout(model, np.zeros(8, np.float32), np.eye(8, dtype=np.float32))
    np.testing.assert_allclose(decoder.predict_on_batch(encoder.predict_on_batch(coll_x)),
                               model.predict_on_batch(coll_x), atol=1e-4)
    np.testing.assert_allclose(model.predict_on_batch(coll_x), plain.predict_on_batch(coll_x),
                               atol=1e-4)  # read-out and its inverse cancel out
    meta = json.loads(next((ws.root / "index" / name).glob("*/meta.json")).read_text())
    assert meta["readout"] == "whitened"


def test_whitening_equalises_the_training_features():
    from fext.readout import whitening

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(500, 4)) * np.array([100.0, 10.0, 1.0, 0.1])
    mean, transform = whitening(feats, shrinkage=0.0)
    np.testing.assert_allclose(np.cov((feats - mean) @ transform, rowvar=False), np.eye(4),
                               atol=0.05)
    _, shrunk = whitening(feats)  # shrinkage keeps the weakest direction from being blown up
    assert np.var(feats @ shrunk, axis=0).min() < 0.01


def test_whitening_of_a_large_folder_is_fitted_on_a_seeded_sample(trained, monkeypatch):
    model, _ = load_model(*trained)
    fitted, fit = [], readout.whitening
    monkeypatch.setattr(readout, "WHITEN_SAMPLE", 5)
    monkeypatch.setattr(readout, "whitening", lambda raw: fitted.append(raw) or fit(raw))
    images = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    readout.readout_of(model, images, np.arange(12))
    readout.readout_of(model, images, np.arange(12))
    assert [len(f) for f in fitted] == [5, 5]
    np.testing.assert_array_equal(fitted[0], fitted[1])  # the same sample every time


def test_models_from_before_the_recipe_are_described_as_trained():
    cfg = RunConfig.from_dict({"train": {"epochs": 5}})
    assert (cfg.train.augment, cfg.train.invariance, cfg.train.epoch_steps,
            cfg.train.readout) == ("none", 0.0, 0, "raw")
    assert TrainConfig().augment == "edits" and TrainConfig().readout == "whiten"


def test_copy_detection_lines_up_copies_with_their_sources(trained, monkeypatch):
    """With an edit that changes nothing, every method must find every source first: the
    figure's bookkeeping (sample, working copies, truth) is right."""
    import fext.edits
    from fext.collection import Collection
    from fext.quality import copy_detection

    ws, name = trained
    model, record = load_model(ws, name)
    coll = Collection.for_data(ws, record.config.data)
    monkeypatch.setattr(fext.edits, "edit", lambda img, seed, *a, **k: img)
    same = copy_detection(model, record, coll, queries=20)
    monkeypatch.undo()
    assert same["queries"] == 20 and same["database"] == len(coll.items())
    # the shapes collection holds near-identical shapes, so a perfect score is not guaranteed
    # for pixels; an unedited copy must still come first for nearly every query
    assert all(r["recall@5"] == 1.0 and r["recall@1"] >= 0.8 for r in same["methods"].values())
    edited = copy_detection(model, record, coll, queries=20)
    assert set(edited["methods"]) == {"autoencoder", "raw pixels", "PCA-8", "pHash 64-bit"}
    assert all(0 <= r["recall@1"] <= r["recall@5"] <= 1 for r in edited["methods"].values())
    assert all(lo <= r["recall@1"] <= hi for r in edited["methods"].values()
               for lo, hi in [r["interval"]])
    assert edited["sources"] == "test split" and edited["images copied"] <= len(coll.items("test"))
    # the test that chose the published epoch, repeated on the published features
    val = edited["validation"]
    assert val["images copied"] == len(coll.items("val"))
    assert val["queries"] == record.config.train.held_out_copies
    # ... and it is the figure the model was published with: the same copies searched with the
    # published features (read-out included), not the chosen epoch's features before it
    metrics = json.loads((ws.model_dir(name) / "metrics.json").read_text())
    assert metrics["val_copies"] == pytest.approx(val["recall@1"])
    chosen = pd.read_csv(ws.model_dir(name) / "history.csv").set_index("epoch")
    assert metrics["val_copies_training"] == pytest.approx(chosen.loc[metrics["best_epoch"], "val_copies"])


def test_evaluate_reports_copy_detection_without_labels(trained):
    ws, name = trained
    out = run_cli("evaluate", "--name", name, workspace=ws.root).stdout
    assert "copy detection:" in out and "pHash 64-bit" in out
    assert open_record(ws, name).extras["readout"]["kind"] == "whitened"


@pytest.mark.parametrize("bad", [{"epoch_steps": -1}, {"augment": "rotate"},
                                 {"invariance": -0.1}, {"invariance": 0.1, "batch_size": 2},
                                 {"neighbours": 0}])
def test_bad_recipe_settings_are_refused(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad).validate()
