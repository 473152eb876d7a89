"""Picture atlases for the map: the drawn points' images as JPEG sheets of small thumbnails, so
the browser can draw every point on screen as its own picture (WebGL sprites, as PixPlot does).

The drawn points are put in an order where every run of BLOCK consecutive points is a compact
patch of the map (`arrange`: a k-d split at multiples of BLOCK), and atlas b holds the pictures of
positions b*BLOCK ... (b+1)*BLOCK - 1 of that order. A zoomed-in view then needs only the few
atlases under it, never the whole collection. Atlases are made on demand from the decoded-image
cache (nothing is decoded from the original files) and kept, encoded, in a `Cache` bounded in
bytes; the browser keeps them for good, since their address names the map they were made for.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict

import numpy as np
from PIL import Image

THUMB = 32  # pixels a side of one picture in an atlas (a multiple of JPEG's 16-pixel blocks)
SIDE = 32  # pictures per atlas row
BLOCK = SIDE * SIDE  # pictures per atlas: 1,024 in a 1024 x 1024 JPEG
QUALITY = 85
CACHE_BYTES = 32 << 20  # encoded atlases the server keeps, all extractions together


def arrange(xy: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """A permutation of the points in which every `block` consecutive ones (one atlas) fill a
    compact rectangle of the map: split the points at a multiple of `block` along the longer
    side of their extent, recursively, until a part fits one atlas. Only the last atlas is
    partial. O(n log(n / block)) time, O(n) memory."""
    if block < 1:
        raise ValueError("an atlas holds at least one picture")
    xy = np.asarray(xy, np.float64)
    order = np.arange(len(xy), dtype=np.int64)
    parts = [(0, len(xy))]
    while parts:
        lo, hi = parts.pop()
        n = hi - lo
        if n <= block:
            continue
        part = order[lo:hi]
        pts = xy[part]
        axis = int(np.ptp(pts[:, 1]) > np.ptp(pts[:, 0]))
        k = block * (-(-n // block) // 2)  # half the atlases, whole ones, on the left
        order[lo:hi] = part[np.argpartition(pts[:, axis], k)]
        parts += [(lo, lo + k), (lo + k, hi)]
    return order


def slots(order: np.ndarray) -> np.ndarray:
    """Each point's position in `order` (atlas = position // BLOCK, cell = position % BLOCK)."""
    out = np.empty(len(order), np.uint32)
    out[order] = np.arange(len(order), dtype=np.uint32)
    return out


def map_key(coords: np.ndarray) -> str:
    """Names the map an atlas was made for: a digest of the coordinates and the atlas geometry,
    so an atlas of an earlier layout is never served (nor cached by a browser) as this one's."""
    h = hashlib.blake2s(f"{THUMB},{SIDE}".encode(), digest_size=8)
    h.update(np.ascontiguousarray(coords, np.float32).tobytes())
    return h.hexdigest()


def sheet(pixels: np.ndarray, rows: np.ndarray, thumb: int = THUMB, side: int = SIDE) -> np.ndarray:
    """The atlas of the cache rows `rows`, `side` pictures to a row, `thumb` pixels each:
    uint8 (ceil(len/side) * thumb, side * thumb, 3). Reads one cached image at a time, so its
    memory is the sheet's whatever the model's image size."""
    if not 0 < len(rows) <= side * side:
        raise ValueError(f"an atlas holds 1 to {side * side} pictures, not {len(rows)}")
    out = np.zeros((-(-len(rows) // side) * thumb, side * thumb, 3), np.uint8)
    for cell, row in enumerate(rows):
        img = Image.fromarray(np.asarray(pixels[int(row)]))
        if img.size != (thumb, thumb):
            img = img.resize((thumb, thumb), Image.BOX if img.width > thumb else Image.BILINEAR)
        y, x = divmod(cell, side)
        out[y * thumb:(y + 1) * thumb, x * thumb:(x + 1) * thumb] = np.asarray(img)
    return out


def jpeg(pixels: np.ndarray, quality: int = QUALITY) -> bytes:
    """`pixels` as a baseline JPEG (what every browser decodes fast)."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


class Cache:
    """Encoded atlases, least recently used dropped first, `limit` bytes in all. Shared by the
    server's threads: guarded by a lock, and an atlas is made outside it (two requests for the
    same missing atlas may both make it; the result is the same)."""

    def __init__(self, limit: int = CACHE_BYTES):
        self.limit = limit
        self.size = 0
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, make) -> bytes:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        body = make()
        with self._lock:
            if key not in self._items:
                self._items[key] = body
                self.size += len(body)
            while self.size > self.limit and len(self._items) > 1:
                self.size -= len(self._items.popitem(last=False)[1])
        return body
