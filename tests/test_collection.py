"""Scanning folders: labels, content-based splits, skipped files with reasons, incremental rescans."""

import shutil

import numpy as np
import pytest

from fext.collection import Collection
from fext.workspace import Workspace
from tests.corpus import make_awkward, make_shapes, shape_image


def test_scan_reads_every_image_and_lists_the_rest(tmp_path):
    root = tmp_path / "photos"
    good, bad = make_awkward(root)
    coll = Collection.sync(Workspace(tmp_path / "ws"), root, 16)
    assert sorted(coll.items()["path"]) == sorted(good)
    skipped = coll.skipped()
    assert sorted(skipped["path"]) == sorted(bad)
    assert all(skipped["reason"].str.len() > 0)
    assert coll.images.shape[1:] == (16, 16, 3)


def test_labels_come_from_the_first_sub_folder(tmp_path):
    make_shapes(tmp_path / "c", per_label=3)
    shape_image("red", 99).save(tmp_path / "c" / "loose.png")
    items = Collection.sync(Workspace(tmp_path / "ws"), tmp_path / "c", 16).items()
    assert set(items["label"]) == {"red", "green", "blue", ""}
    assert items.set_index("path").loc["loose.png", "label"] == ""


def test_splits_depend_on_content_not_on_names_or_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_shapes(a, per_label=30)
    # the same files under other names and in another folder layout
    b.mkdir()
    for i, p in enumerate(sorted(a.rglob("*.png"), reverse=True)):
        shutil.copy(p, b / f"{i:04d}_{p.name}")
    ws = Workspace(tmp_path / "ws")
    splits = []
    for folder in (a, b):
        sha1 = Collection.sync(ws, folder, 16).items()["sha1"]
        splits.append(dict(zip(sha1, Collection.open(ws, folder, 16).items()["split"])))
    split_a, split_b = splits
    assert split_a == split_b
    counts = {s: list(split_a.values()).count(s) for s in ("train", "val", "test")}
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0


def test_rescan_decodes_only_new_files_and_drops_removed_ones(tmp_path):
    root = tmp_path / "c"
    make_shapes(root, per_label=4)
    ws = Workspace(tmp_path / "ws")
    first = Collection.sync(ws, root, 16)
    before = {p: first.images[r].copy() for p, r in zip(first.items()["path"], first.items()["row"])}
    (root / "red" / "red_000.png").unlink()
    shape_image("green", 50).save(root / "green" / "new.png")
    seen = []
    again = Collection.sync(ws, root, 16, progress=lambda stage, done, total, **_: seen.append(total))
    assert seen and max(seen) == 1  # only the new file was decoded
    paths = set(again.items()["path"])
    assert "red/red_000.png" not in paths and "green/new.png" in paths
    for p, r in zip(again.items()["path"], again.items()["row"]):
        if p in before:
            assert np.array_equal(again.images[r], before[p])  # rows never move


def test_changed_file_is_decoded_again(tmp_path):
    root = tmp_path / "c"
    make_shapes(root, per_label=2)
    ws = Workspace(tmp_path / "ws")
    Collection.sync(ws, root, 16)
    target = root / "blue" / "blue_000.png"
    shape_image("red", 7).save(target)
    import os
    os.utime(target, ns=(1, 1))
    coll = Collection.sync(ws, root, 16)
    row = coll.items().set_index("path").loc["blue/blue_000.png", "row"]
    assert coll.images[row][..., 0].max() > 200  # now red


def test_fingerprint_changes_with_content(tmp_path):
    root = tmp_path / "c"
    make_shapes(root, per_label=2)
    ws = Workspace(tmp_path / "ws")
    f1 = Collection.sync(ws, root, 16).fingerprint
    assert Collection.sync(ws, root, 16).fingerprint == f1
    shape_image("red", 77).save(root / "red" / "extra.png")
    assert Collection.sync(ws, root, 16).fingerprint != f1


def test_unchanged_folder_is_never_decoded_again(tmp_path):
    root = tmp_path / "c"
    make_shapes(root, per_label=3)
    ws = Workspace(tmp_path / "ws")
    first = Collection.sync(ws, root, 16)
    cache_bytes = (first.store / "images.u8").stat().st_size
    for _ in range(3):  # each rescan reads the manifest the previous one wrote
        seen = []
        again = Collection.sync(ws, root, 16,
                                progress=lambda stage, done, total, seen=seen, **_: seen.append(total))
        assert max(seen) == 0  # nothing decoded
        assert again.manifest["row"].dtype.kind == "i"
        assert again.manifest["mtime_ns"].tolist() == first.manifest["mtime_ns"].tolist()
        assert (first.store / "images.u8").stat().st_size == cache_bytes
        assert again.items()[["path", "row"]].equals(first.items()[["path", "row"]])


def test_file_name_that_is_not_utf8_is_skipped_with_its_reason(tmp_path):
    import os

    root = tmp_path / "c"
    make_shapes(root, per_label=2)
    odd = os.fsencode(root / "red") + b"/caf\xe9.png"  # Latin-1 name, as old archives have
    try:
        shape_image("red", 7).save(odd, format="PNG")
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    ws = Workspace(tmp_path / "ws")
    coll = Collection.sync(ws, root, 16)
    assert len(coll.items()) == 6  # the others are all read
    skipped = coll.skipped()
    assert skipped["path"].tolist() == ["red/caf\\xe9.png"]
    assert "not valid UTF-8" in skipped["reason"].iat[0]
    seen = []
    again = Collection.sync(ws, root, 16, progress=lambda stage, done, total, **_: seen.append(total))
    assert max(seen) == 0 and again.skipped()["path"].tolist() == ["red/caf\\xe9.png"]


def test_cache_rows_hold_each_file_when_unreadable_files_sit_between(tmp_path, monkeypatch):
    """Small chunks and file-list blocks, so checkpoints and packing run as on a big folder."""
    import fext.collection as collection
    from fext import images

    monkeypatch.setattr(collection, "CHUNK", 1)
    monkeypatch.setattr(collection, "WALK_BLOCK", 3)
    monkeypatch.setattr(collection, "CHECKPOINT_S", 0.0)  # a manifest write after every chunk
    root = tmp_path / "photos"
    good, bad = make_awkward(root)  # unreadable files interleave with readable ones
    ws = Workspace(tmp_path / "ws")
    writes, write = [], Collection._write_manifest
    monkeypatch.setattr(Collection, "_write_manifest",
                        staticmethod(lambda *a: writes.append(1) or write(*a)))
    coll = Collection.sync(ws, root, 16)
    assert len(writes) == len(good) + len(bad)  # one per chunk of one file
    assert sorted(coll.items()["path"]) == sorted(good)
    assert sorted(coll.skipped()["path"]) == sorted(bad)
    for rel, row in zip(coll.items()["path"], coll.items()["row"]):
        np.testing.assert_array_equal(coll.images[row], images.load((root / rel).read_bytes(), 16, "pad"))
    assert sorted(coll.items()["row"]) == list(range(len(good)))
