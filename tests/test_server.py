"""The app's HTTP routes (fext/ui/server.py): what they serve, and that they serve nothing else.

Run against tests/app_fixtures.py's tiny trained workspace through Starlette's test client, the
same route table `streamlit run app.py` mounts."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fext import atlas
from fext.ui import server
from fext.workspace import Workspace
from tests.app_fixtures import DIM, routes_client
from tests.corpus import READABLE


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with routes_client(tmp_path_factory) as found:
        yield found


def test_points_and_colours_are_typed_arrays_of_every_image(client):
    http, art = client
    base = server.base("demo", art.dir.name)
    body = http.get(f"{base}/points").content
    n = len(art.items)
    assert len(body) == 12 * n
    ids = np.frombuffer(body, "<u4", n)
    xy = np.stack([np.frombuffer(body, "<f4", n, 4 * n), np.frombuffer(body, "<f4", n, 8 * n)], 1)
    coords = np.load(art.dir / "umap.npy")
    assert (ids == np.arange(n)).all() and np.allclose(xy, coords[ids])
    labels = np.frombuffer(http.get(f"{base}/colour/label").content, "<f4")
    names = sorted(set(art.items["label"]))
    assert [names[int(c)] for c in labels] == art.items["label"].tolist()
    scores = np.frombuffer(http.get(f"{base}/colour/{art.score_kinds[0]}").content, "<f4")
    assert np.allclose(scores, art.scores(), rtol=1e-6)


def test_thumbnail_and_item_of_an_image(client):
    http, art = client
    base = server.base("demo", art.dir.name)
    i = len(art.items) - 1
    r = http.get(f"{base}/thumb/{i}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    thumb = np.asarray(Image.open(io.BytesIO(r.content)))
    assert (thumb == art.collection(Workspace()).images[art.items["row"].iat[i]]).all()
    assert http.get(f"{base}/item/{i}").json()["path"] == art.items["path"].iat[i]


def test_csv_downloads_stream_whole_tables(client):
    http, art = client
    base = server.base("demo", art.dir.name)
    r = http.get(f"{base}/features.csv")
    assert "attachment" in r.headers["content-disposition"]
    table = pd.read_csv(io.StringIO(r.text), keep_default_na=False)
    assert list(table.columns) == ["path", "label"] + [f"f{i}" for i in range(DIM)]
    assert len(table) == READABLE
    ranking = pd.read_csv(io.StringIO(http.get(f"{base}/ranking/{art.score_kinds[0]}.csv").text))
    assert ranking["rank"].tolist() == list(range(1, READABLE + 1))
    assert ranking["score"].is_monotonic_decreasing
    dupes = http.get(f"{base}/duplicates.csv?threshold=auto")
    assert dupes.status_code == 200 and dupes.text.startswith("path,keeper")


def test_selection_csv_holds_the_points_inside_the_polygon(client):
    http, art = client
    coords = np.load(art.dir / "umap.npy")
    lo, hi = coords.min(0), coords.max(0)
    mid = (lo + hi) / 2  # the left half of the map, as a lasso would draw it
    poly = [lo[0] - 1, lo[1] - 1, mid[0], lo[1] - 1, mid[0], hi[1] + 1, lo[0] - 1, hi[1] + 1]
    r = http.get(f"{server.base('demo', art.dir.name)}/selection.csv",
                 params={"poly": ",".join(map(str, poly))})
    table = pd.read_csv(io.StringIO(r.text), keep_default_na=False)
    expected = art.items["path"][coords[:, 0] < mid[0]]
    assert 0 < len(table) < len(art.items)
    assert sorted(table["path"]) == sorted(expected)
    by_id = http.get(f"{server.base('demo', art.dir.name)}/selection.csv", params={"ids": "2,0,99999"})
    assert pd.read_csv(io.StringIO(by_id.text))["path"].tolist() == art.items["path"][[0, 2]].tolist()


def test_inside_a_polygon_matches_brute_force():
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (5000, 2)).astype(np.float32)
    star = np.array([[np.cos(a) * r, np.sin(a) * r] for a, r in
                     zip(np.linspace(0, 2 * np.pi, 10, endpoint=False), [0.9, 0.3] * 5)])
    got = set(server.inside(points, star).tolist())

    def contains(px, py):  # the crossing-number rule, one point at a time
        odd = False
        for (x1, y1), (x2, y2) in zip(star, np.roll(star, -1, axis=0)):
            if (y1 > py) != (y2 > py) and px < x1 + (py - y1) * (x2 - x1) / (y2 - y1):
                odd = not odd
        return odd
    expected = {i for i, (x, y) in enumerate(points.astype(np.float64)) if contains(x, y)}
    assert got == expected and 0 < len(got) < len(points)


def test_drawn_thins_dense_places_and_keeps_sparse_ones():
    rng = np.random.default_rng(1)
    dense = rng.normal(0, 0.01, (300_000, 2))
    sparse = rng.uniform(5, 10, (500, 2))
    coords = np.concatenate([dense, sparse]).astype(np.float32)
    ids = server.drawn(coords, limit=50_000)
    assert len(ids) <= 50_000 and (np.diff(ids.astype(np.int64)) > 0).all()
    assert set(range(300_000, 300_500)) <= set(ids.tolist())  # every outlier stays
    assert (server.drawn(coords[:1000], limit=50_000) == np.arange(1000)).all()


@pytest.mark.parametrize("path", [
    "/fext/demo/..%2F..%2Fetc/points",
    "/fext/..%2Fdemo/v-x/points",
    "/fext/demo/v-nonexistent/points",
    "/fext/nomodel/v-x/features.csv",
    "/fext/demo/{version}/thumb/-1",
    "/fext/demo/{version}/thumb/999999",
    "/fext/demo/{version}/item/999999",
    "/fext/demo/{version}/colour/not-a-score",
    "/fext/demo/{version}/ranking/..%2F..%2Fmeta.csv",
    "/fext/demo/{version}/../../models/demo/config.json",
    "/fext/demo/%2Fetc%2Fpasswd/points",
    "/fext/%2E%2E/{version}/points",
    "/fext/demo/{version}/duplicates.csv?threshold=nan-ish",
    "/fext/demo/{version}/selection.csv?poly=1,2,3",
])
def test_anything_else_is_404(client, path):
    http, art = client
    r = http.get(path.replace("{version}", art.dir.name))
    assert r.status_code == 404, (path, r.status_code, r.text[:200])


def test_a_version_symlinked_out_of_the_workspace_is_not_served(client, tmp_path):
    http, art = client
    outside = tmp_path / "outside"
    outside.mkdir()
    for f in art.dir.iterdir():  # a complete extraction, but outside the workspace
        if f.is_file():
            (outside / f.name).write_bytes(f.read_bytes())
    link = art.dir.parent / "v-linked-out"
    link.symlink_to(outside, target_is_directory=True)
    try:
        assert http.get(f"/fext/demo/{link.name}/features.csv").status_code == 404
        assert http.get(f"/fext/demo/{link.name}/points").status_code == 404
    finally:
        link.unlink()
    inside = art.dir / "features.csv"
    inside.unlink(missing_ok=True)
    inside.symlink_to("/etc/hostname")
    try:
        assert http.get(f"{server.base('demo', art.dir.name)}/features.csv").status_code == 404
    finally:
        inside.unlink()


# -- the map's pictures (fext/atlas.py) ---------------------------------------------------------
def _map_key(art) -> str:
    return atlas.map_key(np.load(art.dir / "umap.npy"))


def test_each_drawn_point_has_its_own_picture_in_an_atlas(client):
    http, art = client
    base = f"{server.base('demo', art.dir.name)}/atlas/{_map_key(art)}"
    r = http.get(f"{base}/slots")
    assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
    slots = np.frombuffer(r.content, "<u4")
    n = len(art.items)  # the fixture draws every point (n is far under MAX_DRAWN)
    assert sorted(slots.tolist()) == list(range(n))
    r = http.get(f"{base}/0")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert "immutable" in r.headers["cache-control"]
    sheet = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), np.float32)
    rows = -(-n // atlas.SIDE)
    assert sheet.shape == (rows * atlas.THUMB, atlas.SIDE * atlas.THUMB, 3)
    pixels = art.collection(Workspace()).images
    t = atlas.THUMB
    thumbs = np.stack([np.asarray(Image.fromarray(pixels[r]).resize((t, t), Image.BILINEAR), np.float32)
                       for r in art.items["row"]])
    for i, slot in enumerate(slots.tolist()):  # every picture is its own image (the corpus has
        y, x = divmod(slot, atlas.SIDE)       # two blue triangles alike at 16 px: ties count)
        cell = sheet[y * t:(y + 1) * t, x * t:(x + 1) * t]
        error = np.abs(thumbs - cell).mean(axis=(1, 2, 3))
        assert error[i] < 12 and error[i] <= error.min() + 1e-3, (i, error[i], error.min())
        assert np.sort(error)[2] > 2 * error[i] + 2  # and unlike any other


@pytest.mark.parametrize("path", [
    "/fext/demo/{version}/atlas/0123456789abcdef/0",  # another map (a layout computed again)
    "/fext/demo/{version}/atlas/0123456789abcdef/slots",
    "/fext/demo/{version}/atlas/{map}/1",  # past the last atlas
    "/fext/demo/{version}/atlas/{map}/-1",
    "/fext/demo/{version}/atlas/{map}/99999999999999999999999",
    "/fext/demo/{version}/atlas/{map}/0.jpg",
    "/fext/demo/{version}/atlas/{map}/..%2F..%2Fmeta.json",
    "/fext/demo/v-nonexistent/atlas/{map}/0",
    "/fext/nomodel/{version}/atlas/{map}/slots",
    "/fext/..%2Fdemo/{version}/atlas/{map}/0",
])
def test_atlases_of_anything_else_are_404(client, path):
    http, art = client
    r = http.get(path.replace("{version}", art.dir.name).replace("{map}", _map_key(art)))
    assert r.status_code == 404, (path, r.status_code, r.text[:200])


def test_atlases_are_compact_patches_of_the_map():
    """A zoomed-in view needs a few atlases, not one per point: the blocks are whole (the last
    one aside), disjoint rectangles, and a view of ~2,000 of 100,000 points touches a handful."""
    rng = np.random.default_rng(2)
    xy = np.concatenate([rng.normal(0, 1, (60_000, 2)), rng.uniform(-8, 8, (40_000, 2))])
    order = atlas.arrange(xy, 1024)
    assert sorted(order.tolist()) == list(range(len(xy)))
    slots = atlas.slots(order)
    assert (order[slots] == np.arange(len(xy))).all()
    blocks = [xy[order[s:s + 1024]] for s in range(0, len(xy), 1024)]
    assert {len(b) for b in blocks[:-1]} == {1024} and 0 < len(blocks[-1]) <= 1024
    lo = np.array([b.min(0) for b in blocks])
    hi = np.array([b.max(0) for b in blocks])
    overlap = (lo[:, None] < hi[None]).all(-1) & (lo[None] < hi[:, None]).all(-1)
    assert overlap.sum() == len(blocks)  # each block overlaps only itself
    for centre, half in (((0, 0), 0.12), ((3, -4), 1.4), ((-1, 1), 0.2)):
        on = np.flatnonzero((np.abs(xy - centre) <= half).all(1))
        touched = np.unique(slots[on] // 1024)
        assert 500 < len(on) < 2500 and len(touched) <= 12, (centre, len(on), len(touched))
        ids_touched = np.unique(on // 1024)  # the same view with atlases in id order
        assert len(ids_touched) > 5 * len(touched)


def test_a_sheet_shrinks_or_enlarges_each_picture_to_its_cell():
    rng = np.random.default_rng(3)
    big = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    out = atlas.sheet(big, np.array([4, 0]), thumb=32, side=4)
    assert out.shape == (32, 128, 3)
    box = big[4].reshape(32, 2, 32, 2, 3).mean((1, 3))  # BOX: the mean of each 2x2 square
    assert np.abs(out[:, :32].astype(float) - box).max() <= 1
    assert (out[:, 64:] == 0).all()  # cells past the last picture stay empty
    small = atlas.sheet(big[:, :16, :16], np.arange(5), thumb=32, side=4)
    assert small.shape == (64, 128, 3)
    with pytest.raises(ValueError):
        atlas.sheet(big, np.arange(17), thumb=32, side=4)


def test_the_atlas_cache_keeps_the_most_recent_within_its_bytes():
    cache = atlas.Cache(limit=250)
    made = []

    def make(k):
        made.append(k)
        return bytes(100)
    for k in ("a", "b", "a", "c"):  # "a" used again, so "b" is the least recent when "c" comes
        cache.get(k, lambda k=k: make(k))
    assert made == ["a", "b", "c"] and cache.size == 200
    cache.get("a", lambda: make("a"))
    cache.get("b", lambda: make("b"))
    assert made == ["a", "b", "c", "b"] and cache.size <= 250
