"""Decoding: every mode to RGB the same way, EXIF orientation, first frames, refusals with reasons."""

import resource

import numpy as np
import pytest
from PIL import Image

from fext import images
from fext.errors import ImageError
from tests.corpus import AWKWARD_BROKEN, bomb_png, make_awkward, shape_image


@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    root = tmp_path_factory.mktemp("awkward")
    good, bad = make_awkward(root)
    return root, good, bad


def test_corpus_is_large_and_varied(awkward):
    _, good, bad = awkward
    assert len(good) + len(bad) >= 30


def test_every_readable_file_decodes_to_rgb_uint8(awkward):
    root, good, _ = awkward
    for rel in good:
        a = images.load(root / rel, 16)
        assert a.shape == (16, 16, 3) and a.dtype == np.uint8, rel


def test_every_broken_file_is_refused_with_a_reason(awkward):
    root, _, bad = awkward
    assert sorted(bad) == sorted(AWKWARD_BROKEN)
    for rel in bad:
        with pytest.raises(ImageError) as e:
            images.load(root / rel, 16)
        assert AWKWARD_BROKEN[rel] in str(e.value), (rel, str(e.value))


def test_modes_map_to_the_same_pixels():
    """Grey, 16-bit and float versions of one picture decode to the same RGB pixels."""
    grey = shape_image("red", 4, 32).convert("L")
    g = np.asarray(grey)
    variants = [grey, Image.fromarray(g.astype(np.uint16) * 257),
                Image.fromarray(g.astype(np.float32) / 255.0), grey.convert("I")]
    ref = np.asarray(images.fit_square(images.to_rgb(grey), 32))
    for v in variants:
        out = np.asarray(images.fit_square(images.to_rgb(v), 32)).astype(int)
        assert np.abs(out - ref).max() <= 1, v.mode


def test_transparency_is_composited_on_white():
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert images.to_rgb(img).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), (0, 0, 255)).save(tmp_path / "r.jpg", exif=exif.tobytes())
    img = images.open_image(tmp_path / "r.jpg")
    from PIL import ImageOps
    assert ImageOps.exif_transpose(img).size == (20, 40)
    # padded to a square: the rotated image is tall, so white bars appear left and right
    a = images.load(tmp_path / "r.jpg", 40, "pad")
    assert a[20, 0].tolist() == [255, 255, 255] and a[20, 20, 2] > 200 and a[20, 20, 0] < 60
    # the size recorded for it is the one shown, the one the padding was cut for
    assert images.upright_size(img) == (20, 40)
    assert images.upright_size(images.open_image(tmp_path / "r.jpg")) == (20, 40)
    from fext.collection import _ingest
    assert _ingest(tmp_path, "r.jpg", 40, "pad")[3:] == (20, 40)


def test_animation_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    a = images.load(tmp_path / "a.gif", 16)
    assert a[8, 8, 0] > 200 and a[8, 8, 2] < 50


def test_aspect_ratio_is_kept_by_pad_and_crop():
    wide = Image.new("RGB", (64, 32), (0, 0, 0))
    padded = np.asarray(images.fit_square(wide, 32, "pad"))
    assert padded[0, 16].tolist() == [255, 255, 255] and padded[16, 16].tolist() == [0, 0, 0]
    cropped = np.asarray(images.fit_square(wide, 32, "crop"))
    assert (cropped == 0).all()


def test_bomb_is_refused_without_decoding():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageError, match="too large"):
        images.load(bomb_png(), 32)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 50_000  # decoding 10 gigapixels would need gigabytes


def test_bytes_and_paths_decode_identically(tmp_path):
    shape_image("blue", 3, 40).save(tmp_path / "b.png")
    assert np.array_equal(images.load(tmp_path / "b.png", 16),
                          images.load((tmp_path / "b.png").read_bytes(), 16))


@pytest.mark.parametrize("fit,size", [("pad", 64), ("crop", 64), ("pad", 32)])
def test_reduced_size_jpeg_decoding_is_exact_enough(tmp_path, fit, size):
    from sklearn.datasets import load_sample_image  # real photographs, shipped with the package

    for i, (w, h) in enumerate([(640, 480), (480, 640), (1024, 256)]):
        path = tmp_path / f"p{i}.jpg"
        pixels = load_sample_image(("china.jpg", "flower.jpg")[i % 2])
        Image.fromarray(pixels).resize((w, h), Image.Resampling.LANCZOS).save(path, quality=90)
        with Image.open(path) as img:
            img.draft("RGB", images.draft_request(img.size, size, fit))
            decoded = img.size
        assert max(decoded) < max(w, h)  # the fast path is taken: a smaller decode
        with Image.open(path) as full:
            reference = np.asarray(images.fit_square(full.convert("RGB"), size, fit), np.float32)
        fast = images.load(path, size, fit).astype(np.float32)
        assert np.abs(fast - reference).mean() < 1.0  # grey levels, out of 255
        assert np.percentile(np.abs(fast - reference), 99) <= 6
