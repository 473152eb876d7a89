"""HTTP routes served beside the app: map points, thumbnails, the map's picture atlases, anomaly
maps and CSV downloads.

Everything is addressed by model name, extraction version and image id, resolved against the
workspace's own listings (fext/ui/served.py, the extractions this server holds); nothing in a
request is ever joined into a file path, so the routes can serve only the workspace's
artefacts and answer 404 (`answering`) for anything else. CSVs are written
once per extraction to a file and streamed from it, never held in memory; map points travel
as typed arrays (little-endian float32 / uint32), not as a JSON object per point.
"""

from __future__ import annotations

import functools
import io
import threading
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from fext import anomaly, atlas, duplicates, maps, projection
from fext.artifacts import Artifacts
from fext.errors import NotFoundError
from fext.features import write_csv
from fext.registry import open_record
from fext.ui.served import Served, extraction
from fext.workspace import Workspace, atomic_path

PREFIX = "/fext"
MAX_DRAWN = 200_000  # points drawn on the map; above it the densest places are thinned
IMMUTABLE = {"Cache-Control": "private, max-age=31536000, immutable"}  # a version never changes
PLOTLY_JS = Path(__import__("plotly").__file__).parent / "package_data" / "plotly.min.js"


def base(name: str, version: str) -> str:
    """URL prefix of one extraction's routes, for the pages."""
    return f"{PREFIX}/{name}/{version}"


# -- resolving an address -----------------------------------------------------------------
def answering(endpoint):
    """`endpoint` with the product's NotFoundError (an address that names nothing the workspace
    lists, or that is refused) answered as 404: the one place an error becomes a status."""
    @functools.wraps(endpoint)
    def route(request: Request) -> Response:
        try:
            return endpoint(request)
        except NotFoundError:
            return PlainTextResponse("Not Found", status_code=404)
    return route


def _served(request: Request) -> Served:
    return extraction(request.path_params["name"], request.path_params["version"])


def _image_id(served: Served, request: Request) -> int:
    i = request.path_params["id"]
    if not 0 <= i < len(served.art.items):
        raise NotFoundError(f"no image {i} in this extraction")
    return i


# -- map ------------------------------------------------------------------------------------
def drawn(coords: np.ndarray, limit: int = MAX_DRAWN, cells: int = 256) -> np.ndarray:
    """Ids of the points drawn: all of them up to `limit`; above it, the same number of points
    kept from every cell of a cells x cells grid until `limit` is reached, so dense places are
    thinned and sparse ones (outliers, small clusters) stay whole. Seeded: the same map always
    draws the same points."""
    n = len(coords)
    if n <= limit:
        return np.arange(n, dtype=np.uint32)
    lo, hi = coords.min(0), coords.max(0)
    cell = np.floor((coords - lo) / np.maximum(hi - lo, 1e-9) * (cells - 1)).astype(np.int64)
    key = cell[:, 0] * cells + cell[:, 1]
    order = np.lexsort((np.random.default_rng(0).random(n), key))
    sorted_keys = key[order]
    rank = np.arange(n) - np.searchsorted(sorted_keys, sorted_keys, side="left")
    counts = np.bincount(key, minlength=cells * cells)
    per_cell = _cap(np.sort(counts[counts > 0]), limit)
    return np.sort(order[rank < per_cell]).astype(np.uint32)


def _cap(counts: np.ndarray, limit: int) -> int:
    """Largest c with sum(min(count, c)) <= limit, for sorted cell counts."""
    lo, hi = 1, int(counts[-1])
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if np.minimum(counts, mid).sum() <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def drawn_of(served: Served) -> np.ndarray:
    """The ids of an extraction's drawn points (`drawn`), thinned once."""
    return served.memo("drawn", lambda: drawn(served.coords()))


def points(request: Request) -> Response:
    """The drawn points: uint32 ids, then float32 x, then float32 y (n each)."""
    served = _served(request)

    def pack() -> bytes:
        ids = drawn_of(served)
        xy = served.coords()[ids].astype("<f4")
        return (ids.astype("<u4").tobytes() + np.ascontiguousarray(xy[:, 0]).tobytes()
                + np.ascontiguousarray(xy[:, 1]).tobytes())
    return Response(served.memo("points", pack), media_type="application/octet-stream",
                    headers=IMMUTABLE)


def colours(art: Artifacts, by: str) -> tuple[np.ndarray, dict]:
    """Per-image colour values for the map and how to read them: category codes with their
    names (label, folder, placed since the layout), or a score with the range its colour scale
    spans."""
    if by == "placed":
        placed = projection.placed_of(art)
        codes = np.zeros(len(art.items)) if placed is None else placed.astype(int)
        return codes.astype("<f4"), {"categories": ["laid out", "placed by neighbours"]}
    if by in ("label", "folder"):
        paths = art.items["path"]
        values = (art.items["label"].replace("", "(none)") if by == "label"
                  else paths.str.rsplit("/", n=1).str[0].where(paths.str.contains("/"), "."))
        codes, names = pd.factorize(values, sort=True)
        return codes.astype("<f4"), {"categories": [str(n) for n in names]}
    if by not in art.score_kinds:
        raise NotFoundError(f"no colouring {by!r}")
    scores = art.scores(by).astype("<f4")
    return scores, {"range": [float(np.quantile(scores, 0.01)), float(np.quantile(scores, 0.99))]}


def colours_of(served: Served, by: str) -> tuple[np.ndarray, dict]:
    """`colours` of an extraction, computed once per colouring."""
    return served.memo(("colours", by), lambda: colours(served.art, by))


def colour(request: Request) -> Response:
    """float32 colour values of the drawn points, in the order of `points`."""
    served = _served(request)
    by = request.path_params["by"]
    values = colours_of(served, by)[0]
    body = served.memo(("colour", by), lambda: values[drawn_of(served)].astype("<f4").tobytes())
    return Response(body, media_type="application/octet-stream", headers=IMMUTABLE)


def thumbnail(request: Request) -> Response:
    """The image as the model sees it (its decoded-cache copy, already made at ingest), as
    PNG: nothing is decoded from the original file, so it answers in milliseconds at any size."""
    served = _served(request)
    i = _image_id(served, request)
    pixels = served.pixels()[int(served.art.items["row"].iat[i])]
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels)).save(buf, "PNG", compress_level=1)
    return Response(buf.getvalue(), media_type="image/png", headers=IMMUTABLE)


def item(request: Request) -> JSONResponse:
    """One image's path, label and default anomaly score (the map's hover caption)."""
    served = _served(request)
    i = _image_id(served, request)
    row = served.art.items.iloc[i]
    return JSONResponse({"id": i, "path": row["path"], "label": row["label"],
                         "score": float(served.scores()[i])}, headers=IMMUTABLE)


# -- the map's pictures ------------------------------------------------------------------------
ATLASES = atlas.Cache()  # encoded atlases, bounded in bytes (fext/atlas.py)


def atlas_order(served: Served) -> tuple[str, np.ndarray]:
    """(the map's key, the drawn points in atlas order: positions into `drawn_of`), computed once
    per extraction; atlas b holds the pictures of positions b*BLOCK ... of that order."""
    def make():
        coords = served.coords()
        return atlas.map_key(coords), atlas.arrange(coords[drawn_of(served)])
    return served.memo("atlas", make)


def map_key(served: Served) -> str:
    """Names the extraction's current map in the atlases' addresses (`atlas/{map}/...`): a
    recomputed layout gets new addresses, so no browser shows pictures of the old one."""
    return atlas_order(served)[0]


def _atlas_order(served: Served, request: Request) -> np.ndarray:
    key, order = atlas_order(served)
    if request.path_params["map"] != key:
        raise NotFoundError("no atlases of that map (the layout was computed again)")
    return order


def atlas_slots(request: Request) -> Response:
    """Each drawn point's place in the atlases, uint32 in the order of `points`: its atlas is
    the value // BLOCK, its cell the value % BLOCK (SIDE cells to a row)."""
    served = _served(request)
    order = _atlas_order(served, request)
    body = served.memo("atlas slots", lambda: atlas.slots(order).astype("<u4").tobytes())
    return Response(body, media_type="application/octet-stream", headers=IMMUTABLE)


def atlas_sheet(request: Request) -> Response:
    """Atlas `block` as JPEG: the pictures of up to BLOCK drawn points that lie together on the
    map, THUMB pixels each, made from the decoded-image cache on first request."""
    served = _served(request)
    order = _atlas_order(served, request)
    b = request.path_params["block"]
    if not 0 <= b * atlas.BLOCK < len(order):
        raise NotFoundError(f"no atlas {b} of this map")

    def make() -> bytes:
        ids = drawn_of(served)[order[b * atlas.BLOCK:(b + 1) * atlas.BLOCK]]
        return atlas.jpeg(atlas.sheet(served.pixels(), served.art.items["row"].to_numpy()[ids]))
    body = ATLASES.get((str(served.art.dir), request.path_params["map"], b), make)
    return Response(body, media_type="image/jpeg", headers=IMMUTABLE)


# -- anomaly maps ----------------------------------------------------------------------------
MAP_BYTES = 32 * 2 ** 20  # encoded maps and reconstructions kept, at most: flat at any size
MAPS = atlas.Cache(MAP_BYTES)
_mapper_lock = threading.Lock()


@functools.lru_cache(maxsize=2)
def _mapper(root: str, name: str, fingerprint: str) -> maps.Mapper:
    ws = Workspace(root)
    return maps.Mapper.open(ws, open_record(ws, name))


def mapper_of(served: Served) -> maps.Mapper:
    """The map maker of the model that made this extraction (its Keras model and map
    statistics: loaded on the first map asked for, two models at most); 404 once the model
    was retrained, since the extraction's scores are the old model's."""
    ws = Workspace()
    record = open_record(ws, served.art.name)
    if served.art.meta.get("model") != record.fingerprint:
        raise NotFoundError("the model was retrained since this extraction")
    with _mapper_lock:  # one load, however many requests arrive together
        return _mapper(str(ws.root), record.name, record.fingerprint)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def map_pictures(served: Served, i: int, which: str) -> bytes:
    """The map ("map": RGBA colours over transparent, at the image's own aspect ratio) or the
    reconstruction ("reconstruction", the model's input unpadded) of image `i`, as PNG. Both
    come from one forward pass, computed on the first request for either and kept in MAPS."""
    key = (str(served.art.dir), i)
    made: dict[str, bytes] = {}

    def make(part: str) -> bytes:
        if not made:
            mapper, art = mapper_of(served), served.art
            row = art.items.iloc[i]
            x = served.pixels()[int(row["row"])][None].astype(np.float32) / 255
            values, recon = mapper.maps(x, batch_size=1)
            width, height = maps.display_size(art.root / row["path"], row["width"], row["height"])
            fit = art.meta["fit"]
            made["map"] = _png(maps.heat(values[0], mapper.scale(values[0]), width, height, fit))
            made["reconstruction"] = _png(maps.unpadded(recon[0], width, height, fit))
        return made[part]

    body = MAPS.get(key + (which,), lambda: make(which))
    for other, picture in made.items():  # its pair, made by the same pass
        MAPS.get(key + (other,), lambda picture=picture: picture)
    return body


def anomaly_map(request: Request) -> Response:
    """Where image `id` is unusual (fext.maps): colours over transparent pixels, at the image's
    own aspect ratio, to lay over it; computed on demand, never for the whole collection."""
    served = _served(request)
    return Response(map_pictures(served, _image_id(served, request), "map"),
                    media_type="image/png", headers=IMMUTABLE)


def reconstruction(request: Request) -> Response:
    """The autoencoder's reconstruction of image `id`, at the image's own aspect ratio."""
    served = _served(request)
    return Response(map_pictures(served, _image_id(served, request), "reconstruction"),
                    media_type="image/png", headers=IMMUTABLE)


# -- CSV downloads -----------------------------------------------------------------------------
def _written(path: Path, write) -> Path:
    """`path`, written once (atomically) by `write(text_stream)` if it is not there yet."""
    if path.is_symlink():
        raise NotFoundError(f"{path.name} is not a file of the extraction")
    if not path.is_file():
        with atomic_path(path, ".csv") as tmp, open(tmp, "w", newline="") as f:
            write(f)
    return path


def _attachment(path: Path, filename: str) -> FileResponse:
    return FileResponse(path, media_type="text/csv", filename=filename)


def features_csv(request: Request) -> FileResponse:
    """`path,label,f0,...`: the features, written once per extraction."""
    art = _served(request).art
    path = _written(art.dir / "features.csv", lambda f: write_csv(art, f))
    return _attachment(path, f"{art.name}-features.csv")


def ranking_csv(request: Request) -> FileResponse:
    """`rank,path,label,score`, most unusual first, for one score kind."""
    art = _served(request).art
    kind = request.path_params["kind"]
    if kind not in art.score_kinds:
        raise NotFoundError(f"no score {kind!r}")

    def write(f):
        ranked = anomaly.ranking(art.items, art.scores(kind))
        f.writelines(_csv_chunks(ranked[["rank", "path", "label", "score"]]))
    path = _written(art.dir / f"ranking-{kind}.csv", write)
    return _attachment(path, f"{art.name}-anomalies-{kind}.csv")


def duplicates_csv(request: Request) -> Response:
    """Suggested removals at a threshold (`?threshold=auto` or a number): computed from the
    stored neighbour lists, streamed row by row."""
    art = _served(request).art
    raw = request.query_params.get("threshold", "auto")
    try:
        threshold = raw if raw == "auto" else float(raw)
    except ValueError:
        raise NotFoundError(f"no threshold {raw!r}") from None
    table = duplicates.removals(duplicates.find(art, threshold)["groups"], art.items)
    return _stream(table, f"{art.name}-duplicates.csv")


def selection_csv(request: Request) -> Response:
    """The images inside a polygon of the map (`?poly=x1,y1,x2,y2,...`) or listed by id
    (`?ids=3,17`): path, label, map position, default anomaly score."""
    served = _served(request)
    art, coords = served.art, served.coords()
    try:
        ids = selected(coords, request.query_params.get("poly"), request.query_params.get("ids"))
    except ValueError as e:
        raise NotFoundError(f"no selection: {e}") from None
    table = art.items.iloc[ids][["path", "label"]].assign(
        x=coords[ids, 0], y=coords[ids, 1], anomaly=served.scores()[ids])
    return _stream(table, f"{art.name}-selection.csv")


def _csv_chunks(table: pd.DataFrame, float_format: str | None = None, rows: int = 50_000):
    """`table` as CSV text a block of rows at a time, the header first (even with no rows)."""
    for start in range(0, max(len(table), 1), rows):
        yield table.iloc[start:start + rows].to_csv(index=False, header=start == 0,
                                                    float_format=float_format)


def _stream(table: pd.DataFrame, filename: str) -> StreamingResponse:
    return StreamingResponse(_csv_chunks(table, "%.6g"), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def selected(coords: np.ndarray, poly: str | None, ids: str | None) -> np.ndarray:
    """Ids inside the polygon "x1,y1,x2,y2,..." (even-odd rule), or the ids "3,17" that exist."""
    if poly:
        xy = np.array([float(v) for v in poly.split(",")], np.float64)
        if len(xy) < 6 or len(xy) % 2 or not np.isfinite(xy).all():
            raise ValueError("a polygon needs three or more x,y pairs")
        return inside(coords, xy.reshape(-1, 2))
    picked = np.array([int(v) for v in (ids or "").split(",") if v], np.int64)
    return np.unique(picked[(picked >= 0) & (picked < len(coords))])


def inside(coords: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Ids of the points inside `polygon` (k x 2), by ray casting: one vectorised pass per edge,
    so a lasso over a million points takes well under a second and memory stays O(n)."""
    x, y = coords[:, 0].astype(np.float64), coords[:, 1].astype(np.float64)
    box = ((x >= polygon[:, 0].min()) & (x <= polygon[:, 0].max())
           & (y >= polygon[:, 1].min()) & (y <= polygon[:, 1].max()))
    cand = np.flatnonzero(box)
    x, y = x[cand], y[cand]
    odd = np.zeros(len(cand), bool)
    for (x1, y1), (x2, y2) in zip(polygon, np.roll(polygon, -1, axis=0)):
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        odd ^= crosses & (x < at)
    return cand[odd]


def plotly_js(_: Request) -> FileResponse:
    """plotly.min.js from the installed plotly package: the map never loads a script from a CDN."""
    return FileResponse(PLOTLY_JS, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


EXTRACTION = PREFIX + "/{name}/{version}"
ROUTES = [Route(path, answering(endpoint)) for path, endpoint in (
    (PREFIX + "/static/plotly.min.js", plotly_js),
    (EXTRACTION + "/points", points),
    (EXTRACTION + "/colour/{by}", colour),
    (EXTRACTION + "/thumb/{id:int}", thumbnail),
    (EXTRACTION + "/item/{id:int}", item),
    (EXTRACTION + "/anomaly-map/{id:int}", anomaly_map),
    (EXTRACTION + "/reconstruction/{id:int}", reconstruction),
    (EXTRACTION + "/atlas/{map}/slots", atlas_slots),
    (EXTRACTION + "/atlas/{map}/{block:int}", atlas_sheet),
    (EXTRACTION + "/features.csv", features_csv),
    (EXTRACTION + "/ranking/{kind}.csv", ranking_csv),
    (EXTRACTION + "/duplicates.csv", duplicates_csv),
    (EXTRACTION + "/selection.csv", selection_csv),
)]
