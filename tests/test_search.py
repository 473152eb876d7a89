"""Search puts first the results whose pixels show the query's own picture."""

import hashlib
from types import SimpleNamespace

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_sample_image

from fext import images
from fext.artifacts import HASH_FILE
from fext.duplicates import perceptual_hashes
from fext.edits import edit
from fext.errors import StaleError
from fext.search import VERIFY, Searcher, confirmed_first
from tests.corpus import png


def test_confirmed_results_come_first_in_the_features_order():
    same = {1: True, 3: True}
    asked = []

    def check(i):
        asked.append(i)
        return same.get(i, False)

    order, confirmed = confirmed_first(8, check)
    assert order.tolist() == [1, 3, 0, 2, 4, 5, 6, 7]
    assert confirmed.tolist() == [True, True] + [False] * 6
    assert asked == list(range(VERIFY))  # only the first VERIFY are checked
    asked.clear()
    order, confirmed = confirmed_first(8, check, every=False)  # recall@1 needs the first only
    assert order.tolist() == [1, 0, 2, 3, 4, 5, 6, 7] and asked == [0, 1]
    assert confirmed_first(3, lambda i: False)[0].tolist() == [0, 1, 2]


def searcher_over(root, files: dict, ranking: list[str], monkeypatch) -> Searcher:
    """A Searcher over `files` (name -> image, written to `root`) whose features rank them as
    `ranking` says for any query: what the pixel check then does with that order."""
    for rel, img in files.items():
        img.save(root / rel)
    items = pd.DataFrame({"path": list(files), "label": "",
                          "width": [img.width for img in files.values()],
                          "height": [img.height for img in files.values()],
                          "sha1": [hashlib.sha1((root / rel).read_bytes()).hexdigest()
                                   for rel in files]})
    def hashes():  # as Artifacts.hashes: an extraction without them is stale
        if not (root / HASH_FILE).is_file():
            raise StaleError("made before perceptual hashes were kept")
        return np.load(root / HASH_FILE)

    art = SimpleNamespace(meta={"image_size": 64, "fit": "pad"}, items=items, root=root,
                          hashes=hashes)
    engine = Searcher(art, index=None, encoder=None)
    monkeypatch.setattr(engine, "vector", lambda pixels: np.zeros(8, np.float32))
    ids = [list(files).index(rel) for rel in ranking]
    monkeypatch.setattr(engine, "search_vector", lambda vector, k: [
        {"rank": n, "path": ranking[n - 1], "label": "", "score": 0.9 - 0.1 * n, "id": i}
        for n, i in enumerate(ids[:k], 1)])
    return engine


def test_an_edited_copys_source_comes_first_though_a_look_alike_scored_higher(tmp_path,
                                                                             monkeypatch):
    """The features put another crop of the same photograph first; the pixels show that the
    source, second by score, is the query's own picture, so it comes first, marked."""
    photo = Image.fromarray(load_sample_image("china.jpg"))
    source = photo.crop((0, 0, 240, 200))
    files = {"other_crop.png": photo.crop((40, 30, 280, 230)), "source.png": source,
             "flower.png": Image.fromarray(load_sample_image("flower.jpg")).crop((0, 0, 240, 200))}
    engine = searcher_over(tmp_path, files, ["other_crop.png", "source.png", "flower.png"],
                           monkeypatch)
    results = engine.search(png(edit(source, 7)), 3)
    assert [(r["path"], r["same_picture"]) for r in results] == [
        ("source.png", True), ("other_crop.png", False), ("flower.png", False)]
    assert [r["rank"] for r in results] == [1, 2, 3]
    one = engine.search(png(edit(source, 7)), 1)  # fewer asked for than are checked
    assert [r["path"] for r in one] == ["source.png"]

    unrelated = engine.search(png(Image.fromarray(load_sample_image("flower.jpg")).crop(
        (200, 150, 440, 350))), 3)  # no copy in the collection: the features' order, unmarked
    assert [(r["path"], r["same_picture"]) for r in unrelated] == [
        ("other_crop.png", False), ("source.png", False), ("flower.png", False)]

    (tmp_path / "source.png").unlink()  # a file gone since the extraction confirms nothing
    assert not any(r["same_picture"] for r in engine.search(png(edit(source, 7)), 3))


def test_the_same_file_is_the_same_picture_whatever_its_pixels(tmp_path, monkeypatch):
    """A flat image cannot be confirmed by its pixels; the same file content still is."""
    files = {"white.png": Image.new("RGB", (80, 60), "white"),
             "grey.png": Image.new("RGB", (80, 60), (200, 200, 200))}
    engine = searcher_over(tmp_path, files, ["grey.png", "white.png"], monkeypatch)
    results = engine.search(tmp_path / "white.png", 2)
    assert [(r["path"], r["same_picture"]) for r in results] == [
        ("white.png", True), ("grey.png", False)]


def test_results_whose_stored_hashes_are_far_are_not_read(tmp_path, monkeypatch):
    """With the extraction's perceptual hashes at hand, only the results whose hash is near the
    query's are read from disk for the pixel check; the order is what reading all of them gave."""
    photo = Image.fromarray(load_sample_image("china.jpg"))
    source = photo.crop((0, 0, 240, 200))
    files = {"other_crop.png": photo.crop((40, 30, 280, 230)), "source.png": source,
             "flower.png": Image.fromarray(load_sample_image("flower.jpg")).crop((0, 0, 240, 200))}
    ranking = ["flower.png", "other_crop.png", "source.png"]
    engine = searcher_over(tmp_path, files, ranking, monkeypatch)
    query = png(edit(source, 7))
    read_all = engine.search(query, 3)  # no hashes kept: every result is read
    np.save(tmp_path / HASH_FILE, perceptual_hashes(np.stack(
        [images.load(tmp_path / rel, 64, "pad") for rel in files])))
    read, load = [], images.load
    monkeypatch.setattr(images, "load", lambda path, *a: read.append(path.name) or load(path, *a))
    assert engine.search(query, 3) == read_all
    assert read_all[0]["path"] == "source.png" and read_all[0]["same_picture"]
    assert "source.png" in read and "flower.png" not in read
