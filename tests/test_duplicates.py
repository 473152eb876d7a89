"""Duplicate groups: the grouping rule, the keeper, the calibrated threshold, the command and
the page, and bad input (one image, all identical, an extraction from before the feature)."""

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fext.duplicates import (
    KEEP_COPIES,
    MAX_HASH_DISTANCE,
    PIXEL_FALSE,
    choose_threshold,
    groups,
    hash_distance,
    perceptual_hashes,
    pixel_edges,
    removals,
)
from fext.edits import edit
from tests.corpus import grained_sky, make_shapes
from tests.helpers import run_cli


def items_of(n, sha1=None, pixels=None, mtimes=None, paths=None):
    return pd.DataFrame({"path": paths or [f"img_{i}.png" for i in range(n)],
                         "sha1": sha1 or [f"h{i}" for i in range(n)],
                         "width": pixels or [10] * n, "height": [10] * n,
                         "mtime_ns": mtimes or [0] * n})


def graph(n, edges, k=4):
    """Neighbour arrays (ids, similarities) from {(i, j): similarity}, both directions."""
    ids, sims = np.full((n, k), -1, np.int32), np.full((n, k), np.nan, np.float32)
    lists = {i: [] for i in range(n)}
    for (i, j), s in edges.items():
        lists[i].append((s, j))
        lists[j].append((s, i))
    for i, found in lists.items():
        for c, (s, j) in enumerate(sorted(found, reverse=True)[:k]):
            ids[i, c], sims[i, c] = j, s
    return ids, sims


def test_a_string_of_similar_images_is_not_chained_into_one_group():
    # 0-1-2-3-4: each image like the next, the ends unlike each other
    ids, sims = graph(5, {(0, 1): 0.95, (1, 2): 0.95, (2, 3): 0.95, (3, 4): 0.95,
                          (0, 2): 0.5, (2, 4): 0.5})
    found = groups(ids, sims, items_of(5), 0.9).dicts(items_of(5))
    assert all(len(g["members"]) <= 3 for g in found)
    for g in found:  # every member passes the threshold with its representative
        assert all(m["similarity"] >= 0.9 for m in g["members"] if m["path"] != g["keeper"])
    paths = [{m["path"] for m in g["members"]} for g in found]
    assert not any({"img_0.png", "img_4.png"} <= p for p in paths)
    assert sum(len(p) for p in paths) == len(set().union(*paths))  # each image once


def test_exact_copies_join_the_group_of_their_content_and_the_keeper_is_chosen_by_rule():
    sha1 = ["a", "a", "b", "c", "d"]
    items = items_of(5, sha1=sha1, pixels=[10, 10, 20, 10, 10], mtimes=[5, 1, 9, 0, 0],
                     paths=["x/long_name.png", "x/b.png", "big.png", "c.png", "d.png"])
    ids, sims = graph(5, {(0, 2): 0.97, (3, 4): 0.2})
    found = groups(ids, sims, items, 0.9).dicts(items)
    assert len(found) == 1
    g = found[0]
    assert {m["path"] for m in g["members"]} == {"x/long_name.png", "x/b.png", "big.png"}
    assert g["keeper"] == "big.png"  # most pixels first
    exact = {m["path"]: m["exact"] for m in g["members"]}
    assert exact == {"x/long_name.png": True, "x/b.png": True, "big.png": False}
    # without the near copy, the two identical files are still a group; the older one is kept
    found = groups(ids, sims, items, 0.99)
    assert len(found) == 1 and found.group(0, items)["keeper"] == "x/b.png"
    assert removals(found, items)["path"].tolist() == ["x/long_name.png"]


def test_an_edited_copy_stays_with_its_source_when_a_look_alike_passes_with_the_source():
    """A (0), its edited copy A' (1), and a look-alike B (2) that passes with A and with two
    more images (3, 4), so B has the most partners: A and A' still end in one group."""
    ids, sims = graph(5, {(0, 1): 0.97, (0, 2): 0.91, (2, 3): 0.92, (2, 4): 0.93})
    items = items_of(5)
    found = [{m["path"] for m in g["members"]} for g in groups(ids, sims, items, 0.9).dicts(items)]
    assert any({"img_0.png", "img_1.png"} <= g for g in found), found


def test_the_representative_shows_its_own_score_with_the_keeper():
    """The keeper is the larger file, not the representative: the representative's row in the
    removals says how similar it is to the keeper, never a made-up 1.0."""
    items = items_of(3, pixels=[10, 40, 10])
    ids, sims = graph(3, {(0, 1): 0.93, (0, 2): 0.95, (1, 2): 0.5})
    found = groups(ids, sims, items, 0.9)
    g = found.group(0, items)
    assert g["representative"] == "img_0.png" and g["keeper"] == "img_1.png"
    rows = removals(found, items).set_index("path")
    assert rows.loc["img_0.png", "similarity"] == pytest.approx(0.93)
    assert rows.loc["img_2.png", "similarity"] == pytest.approx(0.95)
    scores = {m["path"]: m["similarity"] for m in g["members"]}
    assert scores["img_1.png"] == pytest.approx(0.93) and scores["img_0.png"] == pytest.approx(0.93)
    # where the representative is the keeper, it has no score of its own
    g = groups(ids, sims, items_of(3), 0.9).group(0, items_of(3))
    assert {m["path"]: m["similarity"] for m in g["members"]}[g["keeper"]] is None


def test_threshold_keeps_the_copies_unless_too_many_images_would_be_grouped():
    rng = np.random.default_rng(0)
    copies, others = rng.uniform(0.9, 1.0, 500), rng.uniform(0.3, 0.8, 500)
    cal = choose_threshold(copies, others)
    assert cal.copies_kept >= 0.95 and cal.false_grouping == 0.0 and 0.9 <= cal.threshold < 0.91
    # a few look-alikes (2 %) as close as the weaker copies: the threshold is raised above them
    few = np.random.default_rng(5)
    tail = np.where(few.random(500) < 0.02, few.uniform(0.9, 0.95, 500), others)
    cal = choose_threshold(copies, tail)
    assert cal.trusted and "raised" in cal.text
    assert cal.false_grouping <= 0.005 and 0.5 <= cal.copies_kept < 0.95
    # truly few: 1.6 % here against 0.5 % estimated (the estimate is optimistic; QUALITY.md)
    assert (tail >= cal.threshold).mean() <= 0.02
    # more of them (8 %, closer): more than MAX_CROWDING of the images would pass where most
    # copies do, too many for a raised threshold's estimate to hold: FEXT abstains
    more = np.random.default_rng(6)
    tail = np.where(more.random(500) < 0.08, more.uniform(0.88, 0.95, 500), others)
    cal = choose_threshold(copies, tail)
    assert not cal.trusted and "overlap" in cal.text
    # a collection of near-identical images: no threshold is offered at all
    crowded = rng.uniform(0.85, 0.95, 500)
    cal = choose_threshold(copies, crowded)
    assert not cal.trusted and "overlap" in cal.text


def test_where_look_alikes_crowd_the_copies_pixels_decide_instead_of_abstaining():
    """Frames of a burst: 30 % of images have a look-alike as close as most copies. The
    calibration asks the copies' pixels (as everywhere it does not abstain) and, where most
    copies agree by them, suggests near duplicates at the threshold that keeps the copies,
    confirmed by pixels."""
    rng = np.random.default_rng(6)
    copies, others = rng.uniform(0.9, 1.0, 500), rng.uniform(0.3, 0.8, 500)
    crowded = np.where(rng.random(500) < 0.3, rng.uniform(0.9, 0.97, 500), others)
    agree = rng.random(500) < 0.9
    bits = np.where(rng.random(500) < 0.2, 21, 8)  # copies' hash distances to their sources

    def never():
        raise AssertionError("the pixels were asked where FEXT abstains on scores alone")

    # not crowded: the scores choose the threshold, and the pixels still confirm every pair
    calm = choose_threshold(copies, others, copy_pixels=lambda: agree)
    assert calm.trusted and calm.pixels and "aligned pixels" in calm.text
    assert calm.copies_kept == pytest.approx(np.mean((copies >= calm.threshold) & agree))
    assert not choose_threshold(copies, others).pixels  # no pixels measured: none asked
    # digits: look-alikes everywhere, FEXT abstains before any pixel is read
    assert not choose_threshold(copies, rng.uniform(0.9, 1.0, 500), copy_pixels=never).trusted
    # the pixels keep look-alikes out, so the hashes rule out only unrelated images
    # (MAX_HASH_DISTANCE): copies 21 bits off still count, crowded or not
    cal = choose_threshold(copies, crowded, bits, copy_pixels=lambda: agree)
    assert cal.trusted and cal.pixels and "pixels must agree" in cal.text
    assert cal.hash_distance == MAX_HASH_DISTANCE > 21
    assert choose_threshold(copies, others, bits, lambda: agree).hash_distance == MAX_HASH_DISTANCE
    assert cal.threshold == pytest.approx(np.quantile(copies, 1 - KEEP_COPIES), abs=1e-5)
    assert cal.copies_kept == pytest.approx(np.mean((copies >= cal.threshold) & agree))
    assert cal.false_grouping == pytest.approx(cal.crowding * PIXEL_FALSE) and cal.crowding > 0.02
    # where the copies' own pixels rarely agree (edits the check cannot follow): abstain
    cal = choose_threshold(copies, crowded, copy_pixels=lambda: rng.random(500) < 0.3)
    assert not cal.trusted and not cal.pixels and "overlap" in cal.text


def test_pixel_edges_check_the_pairs_that_pass_scores_and_hashes_and_groups_obey_them():
    """A photo, its edited copy, the next frame of its burst, an unrelated photo (below the
    threshold) and an identical file: only the copy's pair agrees; the look-alike's pair, which
    scores and hashes let through, is kept out of the group by its pixels."""
    photo = Image.open(__import__("skimage").data_dir + "/coffee.png").convert("RGB")
    source = photo.crop((100, 50, 340, 290))
    frame = photo.crop((125, 50, 365, 290))
    other = photo.crop((300, 100, 540, 340))
    files = [source, edit(source, 3), frame, other, source]
    images = np.stack([np.asarray(f.resize((32, 32))) for f in files])
    items = items_of(5, sha1=["a", "b", "c", "d", "a"])
    items["row"] = np.arange(5)
    items["width"], items["height"] = 240, 240
    ids, sims = graph(5, {(0, 1): 0.95, (0, 2): 0.94, (0, 3): 0.2, (0, 4): 1.0, (1, 2): 0.93},
                      k=4)
    hashes = np.zeros(5, np.uint64)
    cal = choose_threshold(np.full(10, 0.5), np.zeros(10))
    cal = type(cal)(0.5, 1.0, 0.0, 10, "test", hash_distance=22, pixels=True)
    agree = pixel_edges(ids, sims, items, images, hashes, cal, "pad")
    pairs = {(i, int(j)) for i, j in zip(*np.nonzero(agree)) for j in [ids[i, j]]}
    assert pairs == {(0, 1), (1, 0)}
    found = groups(ids, sims, items, 0.5, hashes, 22, agree).dicts(items)
    assert [sorted(m["path"] for m in g["members"]) for g in found] == [
        ["img_0.png", "img_1.png", "img_4.png"]]
    loose = groups(ids, sims, items, 0.5, hashes, 22).dicts(items)  # scores and hashes alone
    assert "img_2.png" in {m["path"] for g in loose for m in g["members"]}


def test_pixel_edges_give_a_smooth_pair_a_second_look_from_its_files(tmp_path):
    """Crops of a grained sky (tests.corpus.grained_sky): at the cached 64 px the pixels cannot
    pin a copy's alignment down; with the collection's root, extraction reads the files again
    at 128 px and confirms the edited copies, never another crop of the same sky."""
    from fext.images import load

    sky = grained_sky()
    source = sky.crop((0, 0, 256, 256))
    unrelated = Image.fromarray(np.full((256, 256, 3), 90, np.uint8))
    files = [source, edit(source, 0), edit(source, 2), sky.crop((50, 40, 306, 296)), unrelated]
    for i, f in enumerate(files):
        f.save(tmp_path / f"img_{i}.png")
    images = np.stack([load(tmp_path / f"img_{i}.png", 64) for i in range(len(files))])
    items = items_of(len(files), sha1=[str(i) for i in range(len(files))])
    items["row"] = np.arange(len(files))
    items["width"] = [f.width for f in files]
    items["height"] = [f.height for f in files]
    ids, sims = graph(len(files), {(0, 1): 0.95, (0, 2): 0.94, (0, 3): 0.93, (0, 4): 0.2}, k=4)
    hashes = np.zeros(len(files), np.uint64)
    cal = type(choose_threshold(np.full(10, 0.5), np.zeros(10)))(
        0.5, 1.0, 0.0, 10, "test", hash_distance=22, pixels=True)

    def confirmed(root) -> set[int]:  # the files confirmed as the source's copies
        agree = pixel_edges(ids, sims, items, images, hashes, cal, "pad", root=root)
        return {int(ids[0, j]) for j in np.flatnonzero(agree[0])}

    alone, closer = confirmed(None), confirmed(tmp_path)
    assert alone == set() and closer == {1, 2}, (alone, closer)  # never the other crop, 3
    (tmp_path / "img_1.png").unlink()  # a file gone since the scan: not confirmed by its pixels
    assert confirmed(tmp_path) == {2}


def test_the_calibrations_smooth_copies_get_the_second_look_too(tmp_path):
    """The calibration's edited copies of a grained sky: those the cached 64 px cannot pin down
    are made again from their edit seeds at 128 px and confirmed there, as extraction confirms
    the collection's own pairs; a source whose file is gone confirms none."""
    from fext.agreement import agreeing, content
    from fext.duplicates import copies_agree
    from fext.edits import copy_queries
    from fext.images import load

    grained_sky().crop((0, 0, 256, 256)).save(tmp_path / "sky.png")
    items = items_of(1, paths=["sky.png"])
    items["row"], items["width"], items["height"] = 0, 256, 256
    coll = type("Coll", (), {"root": tmp_path, "image_size": 64,
                             "images": load(tmp_path / "sky.png", 64)[None]})()
    positions, copies, sizes, seeds = copy_queries(coll, items, "pad", 0, 12, repeat=True)
    source = content(coll.images[0], 256, 256)
    alone = agreeing([content(c, w, h) for c, (w, h) in zip(copies, sizes)], [source] * 12)
    closer = copies_agree(coll, items, positions, copies, sizes, seeds, "pad")
    assert (closer >= alone).all() and closer.sum() >= alone.sum() + 3, (alone, closer)
    (tmp_path / "sky.png").unlink()
    assert (copies_agree(coll, items, positions, copies, sizes, seeds, "pad") == alone).all()


def test_a_folder_full_of_real_copies_does_not_push_the_threshold_above_them():
    """40 % of the images already have a copy in the folder: their nearest other is as similar
    as an edited copy. Counted as false groupings, they would lift the threshold above every
    copy (the duplicates benchmark once found 2 of 100 planted groups that way)."""
    rng = np.random.default_rng(1)
    copies = np.clip(rng.normal(0.95, 0.02, 500), -1, 1)
    has_copy = rng.random(500) < 0.4
    real = np.clip(rng.normal(0.95, 0.02, 500), -1, 1)
    nearest = np.where(has_copy, real, rng.normal(0.5, 0.08, 500))  # unrelated images: a bell
    cal = choose_threshold(copies, nearest)
    assert cal.copies_kept >= 0.95 and cal.threshold < 0.92 and cal.false_grouping <= 0.005
    assert "keeps" in cal.text
    assert cal.trusted
    # the same folder where the unrelated images also come close: holding them off would find
    # no copy at all, so FEXT says it cannot tell rather than offer that threshold
    nearest = np.where(has_copy, real, rng.normal(0.8, 0.06, 500))
    cal = choose_threshold(copies, nearest)
    assert not cal.trusted and cal.text.startswith("not trusted") and cal.copies_kept < 0.5


def test_look_alikes_that_score_like_copies_make_the_calibration_abstain():
    """Handwritten digits: an image's nearest other (another writer's same digit) is as close
    as its own edited copy, for most images. No threshold separates them: FEXT abstains."""
    rng = np.random.default_rng(2)
    copies = rng.normal(0.05, 0.04, 500)  # edited copies barely above the background
    nearest = rng.normal(0.06, 0.03, 500)  # look-alikes just as close
    cal = choose_threshold(copies, nearest)
    assert not cal.trusted and "look alike" in cal.text
    # a folder of distinct photos with a few real copies is trusted
    has_copy = rng.random(500) < 0.1
    nearest = np.where(has_copy, rng.normal(0.5, 0.1, 500), rng.normal(0.0, 0.05, 500))
    cal = choose_threshold(rng.normal(0.5, 0.1, 500), nearest)
    assert cal.trusted and cal.copies_kept >= 0.95


def test_a_pair_whose_perceptual_hashes_disagree_is_not_grouped():
    """Crops of one texture score as close as copies in feature space; their hashes do not
    agree, so the look-alike B stays out while the edited copy A' joins A."""
    ids, sims = graph(3, {(0, 1): 0.95, (0, 2): 0.97})  # A-A' copies, A-B look-alikes
    hashes = np.array([0, 0b11, (1 << 30) - 1], np.uint64)  # A' 2 bits from A, B 30 bits
    assert [list(hash_distance(hashes[0], hashes))] == [[0, 2, 30]]
    items = items_of(3)
    without = groups(ids, sims, items, 0.9).dicts(items)
    assert "img_2.png" in {m["path"] for m in without[0]["members"]}  # B grouped by features
    found = groups(ids, sims, items, 0.9, hashes, 22).dicts(items)
    assert [{m["path"] for m in g["members"]} for g in found] == [{"img_0.png", "img_1.png"}]


def test_perceptual_hashes_agree_for_an_edited_copy_and_not_for_another_image():
    rng = np.random.default_rng(3)
    def scene(seed):  # a smooth random picture, 64 px
        small = np.random.default_rng(seed).uniform(0, 255, (6, 6, 3)).astype(np.uint8)
        return Image.fromarray(small).resize((256, 256), Image.Resampling.BICUBIC)
    inputs = [np.asarray(img.resize((64, 64))) for img in
              (scene(1), edit(scene(1), 2), scene(11))]
    h = perceptual_hashes(np.stack(inputs))
    assert h.dtype == np.uint64 and h.shape == (3,)
    assert hash_distance(h[0], h[1]) <= 12 < 24 <= hash_distance(h[0], h[2])
    # any image size hashes, the same picture alike
    small = perceptual_hashes(np.asarray(scene(1).resize((24, 24)))[None])
    assert hash_distance(small[0], h[0]) <= 8
    # unrelated images' hashes come within MAX_HASH_DISTANCE about 1 % of the time
    assert np.mean(rng.binomial(64, 0.5, 20000) <= MAX_HASH_DISTANCE) < 0.02


def test_copies_the_hashes_reject_count_against_the_copies_kept():
    rng = np.random.default_rng(4)
    copies, others = rng.uniform(0.9, 1.0, 500), rng.uniform(0.3, 0.8, 500)
    near = choose_threshold(copies, others, rng.integers(0, 10, 500))
    assert near.trusted and near.copies_kept >= 0.95 and near.hash_distance == MAX_HASH_DISTANCE
    assert "perceptual hashes" in near.text
    # edits that scramble the hashes (as on handwritten digits): too few copies confirmed
    far = choose_threshold(copies, others, rng.integers(23, 40, 500))
    assert not far.trusted and far.copies_kept < 0.5


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A workspace whose collection holds an exact copy and an edited copy of one image."""
    root = tmp_path_factory.mktemp("dups")
    folder = root / "images"
    make_shapes(folder, per_label=10)
    src = sorted((folder / "red").glob("*.png"))[0]
    shutil.copyfile(src, folder / "red" / "exact_copy.png")
    with Image.open(src) as img:
        img.convert("RGB").resize((img.width * 2, img.height * 2)).save(
            folder / "blue" / "bigger_copy.jpg", quality=90)
    ws = root / "ws"
    run_cli("build", "--images", str(folder), "--name", "d", "--preset", "small", "--image-size", "16",
            "--latent-dim", "8", "--epochs", "2", "--epoch-steps", "10", "--batch-size", "16",
            "--held-out-copies", "32", workspace=ws)
    return ws, folder, src.relative_to(folder).as_posix()


def test_duplicates_command_finds_the_planted_copies_and_changes_no_file(planted, tmp_path):
    ws, folder, source = planted
    before = digest(folder)
    out = run_cli("duplicates", "--name", "d", "--json", "--csv", str(tmp_path / "rm.csv"),
                  workspace=ws)
    result = json.loads(out.stdout)
    assert {"threshold", "groups", "calibration"} <= set(result)
    cal = result["calibration"]
    assert 0 < cal["sample"] <= 500 and 0 <= cal["false_grouping"] <= 1
    group = next(g for g in result["groups"] if source in {m["path"] for m in g["members"]})
    paths = {m["path"] for m in group["members"]}
    assert "red/exact_copy.png" in paths
    assert group["keeper"] == "blue/bigger_copy.jpg" or "blue/bigger_copy.jpg" not in paths
    csv = pd.read_csv(tmp_path / "rm.csv")
    assert list(csv.columns) == ["path", "keeper", "similarity", "exact", "group"]
    assert len(csv) == result["removable"] and group["keeper"] not in set(csv["path"])
    # a stricter threshold only ever finds fewer files in groups
    strict = json.loads(run_cli("duplicates", "--name", "d", "--threshold", "0.9999", "--json",
                                workspace=ws).stdout)
    assert strict["removable"] <= result["removable"] and strict["threshold"] == 0.9999
    assert digest(folder) == before  # FEXT never changes the user's files


def test_where_the_calibration_abstains_only_identical_files_are_suggested(planted, tmp_path):
    """An extraction whose calibration could not tell copies from look-alikes: `auto` groups
    identical files only and says why; a threshold the user gives still groups near copies."""
    ws, _, source = planted
    copy = tmp_path / "ws"
    shutil.copytree(ws, copy)
    meta_path = next((copy / "index" / "d").glob("*/meta.json"))
    meta = json.loads(meta_path.read_text())
    meta["duplicates"].update(trusted=False, text="not trusted: images here look alike")
    meta_path.write_text(json.dumps(meta))
    result = json.loads(run_cli("duplicates", "--name", "d", "--json", workspace=copy).stdout)
    assert result["threshold"] is None and result["near_duplicates"] is False
    assert all(m["exact"] for g in result["groups"] for m in g["members"])
    assert any(source in {m["path"] for m in g["members"]} for g in result["groups"])
    text = run_cli("duplicates", "--name", "d", workspace=copy).stdout
    assert "near duplicates not suggested" in text and "look alike" in text
    loose = json.loads(run_cli("duplicates", "--name", "d", "--threshold", "-1", "--json",
                               workspace=copy).stdout)
    assert loose["removable"] > result["removable"]


def test_bad_thresholds_and_old_extractions_get_a_clear_message(planted):
    ws, _, _ = planted
    bad = run_cli("duplicates", "--name", "d", "--threshold", "most", workspace=ws, check=False)
    assert bad.returncode == 1 and "auto or a number" in bad.stderr
    version = next((ws / "index" / "d").glob("*/neighbours.npy")).parent
    moved = version / "neighbours.npy.bak"
    (version / "neighbours.npy").rename(moved)
    try:
        old = run_cli("duplicates", "--name", "d", workspace=ws, check=False)
        assert old.returncode == 1 and "fext extract --name d" in old.stderr
    finally:
        moved.rename(version / "neighbours.npy")


@pytest.mark.parametrize("kind", ["one image", "all identical"])
def test_tiny_and_identical_collections_give_clear_results(tmp_path, kind):
    folder = tmp_path / "images"
    folder.mkdir()
    img = Image.new("RGB", (20, 20), (200, 30, 30))
    for i in range(1 if kind == "one image" else 6):
        img.save(folder / f"same_{i}.png")
    ws = tmp_path / "ws"
    run_cli("train", "--images", str(folder), "--name", "t", "--preset", "small", "--image-size", "16",
            "--latent-dim", "8", "--epochs", "1", "--epoch-steps", "2", "--batch-size", "4",
            "--val-fraction", "0", "--test-fraction", "0", workspace=ws)
    run_cli("extract", "--name", "t", workspace=ws)
    result = json.loads(run_cli("duplicates", "--name", "t", "--json", workspace=ws).stdout)
    if kind == "one image":
        assert result["groups"] == [] and result["removable"] == 0
    else:
        assert len(result["groups"]) == 1 and result["removable"] == 5
        assert all(m["exact"] for m in result["groups"][0]["members"])


def test_a_calibration_decided_under_older_rules_is_stale(planted, tmp_path):
    """An extraction whose calibration predates the trust rule it would be decided by now (a
    looser crowding limit) is refused with the command that refreshes it, not shown."""
    ws, _, _ = planted
    copy = tmp_path / "ws"
    shutil.copytree(ws, copy)
    meta_path = next((copy / "index" / "d").glob("*/meta.json"))
    meta = json.loads(meta_path.read_text())
    meta["duplicates"]["max_crowding"] = 0.2  # the limit before 2026-12-04
    meta_path.write_text(json.dumps(meta))
    done = run_cli("duplicates", "--name", "d", workspace=copy, check=False)
    assert done.returncode == 1 and "older duplicate rules" in done.stderr
    assert "fext extract --name d" in done.stderr


def test_where_the_calibration_asks_for_pixels_auto_groups_only_pairs_whose_pixels_agree(
        planted, tmp_path):
    """`auto` reads the extraction's pixel check where its calibration asks for one: a pair
    the check rejected is not suggested (exact copies still are), a threshold the user gives
    looks at scores and hashes alone, and an extraction without the check is stale."""
    ws, _, source = planted
    copy = tmp_path / "ws"
    shutil.copytree(ws, copy)
    version = next((copy / "index" / "d").glob("*/meta.json")).parent
    meta = json.loads((version / "meta.json").read_text())
    if not meta["duplicates"]["trusted"]:
        meta["duplicates"]["threshold"] = -1.0  # somewhere for the check to act
    meta["duplicates"].update(trusted=True, pixels=True)
    (version / "meta.json").write_text(json.dumps(meta))
    ids = np.load(version / "neighbours.npy")
    np.save(version / "agree.npy", np.zeros(ids.shape, bool))  # no pair agrees
    result = json.loads(run_cli("duplicates", "--name", "d", "--json", workspace=copy).stdout)
    assert result["pixels"] and result["groups"]
    assert all(m["exact"] for g in result["groups"] for m in g["members"])
    given = json.loads(run_cli("duplicates", "--name", "d", "--json", "--threshold",
                               str(meta["duplicates"]["threshold"]), workspace=copy).stdout)
    assert not given["pixels"] and given["removable"] > result["removable"]
    (version / "agree.npy").unlink()
    stale = run_cli("duplicates", "--name", "d", workspace=copy, check=False)
    assert stale.returncode == 1 and "checked by their pixels" in stale.stderr
