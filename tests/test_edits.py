"""Seeded photo edits: the same seed gives the same bytes, each edit stays within its range."""

from __future__ import annotations

import numpy as np
from PIL import Image

from fext.edits import EditRanges, copy_queries, edit, edited_copy, encoded, shift


def photo() -> Image.Image:
    from sklearn.datasets import load_sample_image

    return Image.fromarray(load_sample_image("china.jpg")).resize((160, 120))


def test_an_edit_is_a_pure_function_of_the_seed():
    a, b, c = edit(photo(), 7), edit(photo(), 7), edit(photo(), 8)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not (a.size == c.size and np.array_equal(np.asarray(a), np.asarray(c)))


def test_crop_and_resize_stay_within_their_ranges():
    for seed in range(20):
        cropped = edit(photo(), seed, kinds=("crop",))
        assert 0.9 * 160 <= cropped.width <= 160 and 0.9 * 120 <= cropped.height <= 120
        resized = edit(photo(), seed, kinds=("resize",), ranges=EditRanges(resize=(0.5, 0.75)))
        assert 80 <= resized.width <= 120


def test_shift_moves_content_by_whole_pixels():
    img = Image.fromarray(np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3))
    moved = np.asarray(shift(img, 3, -2))
    assert np.array_equal(moved[0:18, 3:30], np.asarray(img)[2:20, 0:27])


def test_brightness_and_jpeg_edits_change_pixels_but_not_the_picture():
    src = np.asarray(photo(), np.float32)
    for kinds in (("brightness/contrast",), ("jpeg",)):
        out = np.asarray(edit(photo(), 3, kinds=kinds), np.float32)
        assert out.shape == src.shape and 0 < np.abs(out - src).mean() < 40, kinds


def test_copy_queries_are_seeded_and_each_copy_edited_anew(tmp_path):
    """The edited copies the duplicate threshold and the copy figure search for: the same seed
    gives the same copies, and two copies of the same picture are edited differently."""
    import pandas as pd

    for name in ("a.png", "b.png"):
        photo().save(tmp_path / name)
    coll = type("Coll", (), {"root": tmp_path, "image_size": 32})()
    items = pd.DataFrame({"path": ["a.png", "b.png"]})
    (pos, a, sizes, seeds), (again, b, _, _) = (copy_queries(coll, items, "pad", seed=1)
                                                for _ in range(2))
    assert sorted(pos) == [0, 1] and np.array_equal(pos, again) and np.array_equal(a, b)
    assert sizes.shape == (2, 2) and (sizes > 32).all()  # edited at up to 4x the input size
    assert a.shape == (2, 32, 32, 3) and a.dtype == np.uint8
    assert not np.array_equal(a[0], a[1])  # the same picture, edited anew for each copy
    for k in range(2):  # each copy made again from its seed (the pixel check's second look)
        again = edited_copy(coll.root / items["path"][pos[k]], coll.image_size, seeds[k])
        assert np.array_equal(encoded(again, 32, "pad"), a[k])
