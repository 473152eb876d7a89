"""Whether two images show the same pixels: the third check every suggested pair of copies
passes, and the one that decides where a collection's look-alikes crowd its copies (frames of a
burst, crops of one photograph).

An edited copy is its source cropped a little (at most 5 % a side), shifted a few pixels,
resized, blurred, re-saved and recoloured (`fext.edits`). So one image, scaled and moved along
each axis, with its brightness and contrast fitted, redraws the other: what is left is
compression and blur. A look-alike leaves more: a frame of a burst shows what came into view as
the camera moved and the light that changed across the frame; another crop of a photograph
shows other parts of it; another page of a form, other words. Scores and hashes compare
summaries of the two images; this compares their pixels.

`check` aligns the pair on the model's input (the cached, square, padded images; the padding is
cut off using each file's size): a coarse search over scale and shift at 24 px, both ways round
(which image is the crop is not known), refined by Gauss-Newton at 64 px, then the residual of
a per-channel brightness and contrast fit, averaged to 32 px, as a share of the image's own
spread. `agree` accepts a pair whose alignment is what everyday edits do and whose residual is
small both outright and against the same pair misaligned by 3 % (so an image too flat to pin
the alignment down, such as a patch of sky, is never confirmed by it), and where no block, small
or larger, inside a thin edge ring is off (something moved). Tuned on the collection zoo's
first seed (bench/zoo.py, docs/QUALITY.md); the edge ring, the larger block and the residual
limit (0.25 -> 0.4) on seeds 1 and 2, when the check came to every kind of collection
(textured copies, whose blur and JPEG leave more than 0.25 and whose edited edges failed the
block).

A pair refused only because it is too smooth at SIDE to pin the alignment down (`unpinned`)
gets a second look at CLOSER px, read again from the files (`agrees`' `closer`): crops of a
photograph's sky, water or fog are smooth at 64 px and grained at 128 (14 of the 21 edited
copy pairs zoo seed 6's wallpapers missed were refused so). The same rule at the larger side:
on the zoo's seeds 1-6 it kept 56 more of 1,841 edited copy pairs and none of the 33
look-alike pairs (of 79,350) the first look sent to it (docs/QUALITY.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

SIDE = 64  # the pixels compared: content stretched to this square
CLOSER = 128  # the second look's side, for a pair too smooth at SIDE to pin the alignment down
COARSE = 24  # the coarse search's side
LENGTHS = np.round(np.arange(0.84, 1.0001, 0.02), 3)  # share of one image the other shows, per axis
STEP, SLACK = 0.02, 0.04  # the coarse search's shift step; shift beyond the edges (a shift edit)
MISALIGN = 0.03  # the misalignment the residual is compared against, share of the side
# the rule (zoo seed 1): alignment as everyday edits leave it, and the pixels agree
MIN_COVER = 0.88  # each axis shows at least this share of the other image (or at most 1/this)
MAX_OFFSET = 0.10  # no edge moves by more than this share of the side
MIN_CORRELATION = 0.90  # aligned pixels' correlation
MAX_RESIDUAL = 0.4  # residual RMS at 32 px, as a share of the image's standard deviation ...
MAX_RESIDUAL_RATIO = 0.6  # ... and at most this share of the pair's residual misaligned by 3 %,
FLAT_RESIDUAL, FLAT_RATIO = 0.10, 0.85  # or below 0.10 and 0.85 of it (a flat image a copy
# redraws almost exactly; two crops of one smooth sky stay at 1.0 of it)
MIN_MISALIGNED = 0.03  # the pair misaligned by 3 % must leave at least this: an image with less
# structure (a smooth gradient) cannot pin the alignment down, so its pixels confirm nothing
MAX_LOCAL = 0.8  # the residual of the worst 4 x 4 block (of 64 x 64), share of the spread: no
# part of a copy differs (something that moved in a burst, a word changed on a form) ...
BORDER = 1  # ... inside this many blocks of the edge, where a copy's own edits leave their marks
# (a shift replicates the edge pixels; a crop's edge is resampled from pixels beyond it) ...
MAX_PATCH = 0.5  # ... and of the worst 8 x 8 window (stride 4) inside it: a small thing that
# moved across a high-contrast frame stays under the 4 x 4 limit (zoo seed 2's bursts: a disc,
# 0.65 of 0.8 by blocks, 0.59 of 0.5 by windows)
MIN_COARSE = 0.5  # below this coarse correlation a pair is refused unrefined: every pair that
# agreed on zoo seeds 1 and 4 had at least 0.77 (636 of 32,176 pairs: copies, the hard
# look-alikes), and about half of the hard look-alikes less than 0.5
GREY = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class Check:
    """What aligning one image of a pair onto the other leaves."""

    cover: float  # the smaller per-axis share of the source the other image shows
    offset: float  # the largest move of an edge, share of the side
    correlation: float  # of the aligned pixels
    residual: float  # RMS after the colour fit, at 32 px, share of the image's spread
    misaligned: float  # the same, with the alignment moved by MISALIGN (the least of four)
    local: float  # the worst 4 x 4 block's residual inside the border, share of the spread
    patch: float  # the worst 8 x 8 window's inside the border

    @property
    def agree(self) -> bool:
        """The pair is a copy by its pixels (the module docstring's rule)."""
        return (placed(self.cover, self.offset, self.correlation) and self.residual <= MAX_RESIDUAL
                and (self.residual <= MAX_RESIDUAL_RATIO * self.misaligned
                     or (self.residual <= FLAT_RESIDUAL
                         and self.residual <= FLAT_RATIO * self.misaligned))
                and self.misaligned >= MIN_MISALIGNED and self.local <= MAX_LOCAL
                and self.patch <= MAX_PATCH)


def placed(cover: float, offset: float, correlation: float) -> bool:
    """The alignment's part of the rule: one image shows most of the other, no edge moves far,
    and the aligned pixels correlate."""
    return (MIN_COVER <= cover <= 1 / MIN_COVER and offset <= MAX_OFFSET
            and correlation >= MIN_CORRELATION)


def content(image: np.ndarray, width: int, height: int, fit: str = "pad",
            side: int = SIDE) -> np.ndarray:
    """A model input (uint8, square, `fit_square`'s output) without its padding, stretched to
    `side` x `side`, as float32 in [0, 1]; `width`, `height`: the file's size."""
    n = image.shape[0]
    box = (0, 0, n, n)
    if fit == "pad" and width > 0 and height > 0:
        if width >= height:
            h = max(1, round(n * height / width))
            box = (0, (n - h) // 2, n, (n - h) // 2 + h)
        else:
            w = max(1, round(n * width / height))
            box = ((n - w) // 2, 0, (n - w) // 2 + w, n)
    img = Image.fromarray(np.asarray(image, np.uint8)).crop(box)
    return np.asarray(img.resize((side, side), Image.Resampling.BILINEAR), np.float32) / 255.0


def closer_content(source, width: int, height: int, fit: str = "pad") -> np.ndarray | None:
    """A file's (or encoded image's) `content` at CLOSER px for the second look; None where it
    cannot be read any more (the pair is then not confirmed)."""
    from .errors import ImageError
    from .images import load

    try:
        return content(load(source, CLOSER, fit), width, height, fit, CLOSER)
    except (ImageError, OSError):
        return None


@cache
def _search() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The coarse search's (length, offset) per axis, their interpolation matrices at COARSE px,
    and what the correlation's denominator needs of them."""
    params = np.array([(length, o) for length in LENGTHS
                       for o in np.arange(-SLACK, 1 - length + SLACK + 1e-9, STEP)])
    u = (np.arange(COARSE) + 0.5) / COARSE
    samplers = np.zeros((len(params), COARSE, COARSE))
    for k, (length, o) in enumerate(params):
        x = np.clip((o + u * length) * COARSE - 0.5, 0, COARSE - 1)
        i0 = np.floor(x).astype(int)
        i1, f = np.minimum(i0 + 1, COARSE - 1), x - i0
        samplers[k, np.arange(COARSE), i0] += 1 - f
        samplers[k, np.arange(COARSE), i1] += f
    gram = (samplers.transpose(0, 2, 1) @ samplers).reshape(len(params), -1)
    return params, samplers, gram, samplers.sum(1)


def _grey(x: np.ndarray, side: int) -> np.ndarray:
    g = x @ GREY
    return np.asarray(Image.fromarray(g, "F").resize((side, side), Image.Resampling.BOX), np.float64)


def _coarse(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray]:
    """(correlation, (Ly, oy, Lx, ox)): the grid point at which sampling `src` best redraws
    `dst`, every point's correlation computed at once (separable sampling)."""
    params, s, gram, ones = _search()
    a, b = _grey(src, COARSE), _grey(dst, COARSE)
    n, m = len(params), COARSE
    bc = b - b.mean()
    u = (s.transpose(0, 2, 1) @ bc).reshape(n, m * m)  # each y-sampling's transpose on b
    t = a @ s.transpose(0, 2, 1)  # a with each x-sampling applied: (p, row, col)
    num = u @ t.reshape(n, m * m).T
    sumsq = gram @ (t @ t.transpose(0, 2, 1)).reshape(n, m * m).T
    sums = ones @ (a @ ones.T)
    var = np.maximum(sumsq - sums ** 2 / (m * m), 1e-12)
    corr = num / np.sqrt(var * (bc ** 2).sum() + 1e-12)
    q, p = np.unravel_index(int(np.argmax(corr)), corr.shape)
    return float(corr[q, p]), np.array([*params[q], *params[p]])


def _sampler(length: float, offset: float, m: int) -> np.ndarray:
    """The m x m matrix that samples an axis of m pixels at offset + u * length (unit
    coordinates, linear interpolation, edges replicated)."""
    u = (np.arange(m) + 0.5) / m
    x = np.clip((offset + u * length) * m - 0.5, 0, m - 1)
    i0 = np.floor(x).astype(np.int64)
    i1, f = np.minimum(i0 + 1, m - 1), x - i0
    out = np.zeros((m, m))
    out[np.arange(m), i0] = 1 - f
    out[np.arange(m), i1] += f  # i1 == i0 only where f is 0 (clipped at the last pixel)
    return out


def _warp(src: np.ndarray, th: np.ndarray) -> np.ndarray:
    """`src` sampled at y = oy + v Ly, x = ox + u Lx (unit coordinates, edges replicated)."""
    length_y, oy, length_x, ox = th
    m = src.shape[0]
    sy, sx = _sampler(length_y, oy, m), _sampler(length_x, ox, m)
    if src.ndim == 2:
        return sy @ src @ sx.T
    rows = (sy @ src.reshape(m, -1)).reshape(m, m, -1)  # (y, x, channel)
    return (rows.transpose(0, 2, 1) @ sx.T).transpose(0, 2, 1)


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares gain and offset of y on x."""
    xm, ym = x.mean(), y.mean()
    var = ((x - xm) ** 2).sum()
    gain = float(((x - xm) * (y - ym)).sum() / var) if var > 1e-12 else 0.0
    return gain, float(ym - gain * xm)


def _refine(src: np.ndarray, dst: np.ndarray, th: np.ndarray, steps: int = 15) -> np.ndarray:
    """Gauss-Newton on the alignment and a grey gain and offset, at the pair's side."""
    gs, gd = (src @ GREY).astype(np.float64), (dst @ GREY).astype(np.float64)
    layers = np.stack([gs, *np.gradient(gs)], -1)  # the image and its gradients, warped together
    side = len(src)
    u = (np.arange(side) + 0.5) / side
    v, u = np.meshgrid(u, u, indexing="ij")
    th = np.array(th, np.float64)
    for _ in range(steps):
        w, wy, wx = np.moveaxis(_warp(layers, th), -1, 0)
        wy, wx = wy * side, wx * side
        gain, bias = _fit(w, gd)
        r = (gd - gain * w - bias).ravel()
        jac = np.stack([gain * wy * v, gain * wy, gain * wx * u, gain * wx, w, np.ones_like(w)],
                       -1).reshape(-1, 6)
        step = np.linalg.lstsq(jac.T @ jac, jac.T @ r, rcond=None)[0]
        th += step[:4]
        if np.abs(step[:4]).max() < 1e-4:
            break
    return th


def _residual(warped: np.ndarray, dst: np.ndarray) -> tuple[float, float, float]:
    """What a per-channel gain and offset fit of `warped` to `dst` leaves, as shares of `dst`'s
    spread: its RMS at half the side (32 px at SIDE), the RMS of its worst 4 x 4 block inside
    the BORDER, and of its worst 8 x 8 window (stride 4) inside it."""
    res = np.empty(dst.shape)
    for c in range(3):
        gain, bias = _fit(warped[..., c], dst[..., c])
        res[..., c] = dst[..., c] - gain * warped[..., c] - bias
    spread = dst.std() + 1e-3
    half, quarter = len(dst) // 2, len(dst) // 4
    small = res.reshape(half, 2, half, 2, 3).mean((1, 3))
    means = res.reshape(quarter, 4, quarter, 4, 3).mean((1, 3))  # each 4 x 4 block's, per channel
    blocks = np.sqrt((means ** 2).mean(-1))
    inner = blocks[BORDER:quarter - BORDER, BORDER:quarter - BORDER]
    pairs = (means[:-1, :-1] + means[1:, :-1] + means[:-1, 1:] + means[1:, 1:]) / 4  # 8 x 8, stride 4
    patches = np.sqrt((pairs ** 2).mean(-1))[BORDER:quarter - 1 - BORDER, BORDER:quarter - 1 - BORDER]
    return (float(np.sqrt((small ** 2).mean()) / spread), float(inner.max() / spread),
            float(patches.max() / spread))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    norm = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b) / norm if norm > 1e-12 else 0.0


def _aligned(a: np.ndarray, b: np.ndarray, min_coarse: float = -1.0):
    """(alignment, source, destination, the source warped onto it, cover, offset, correlation):
    `a` and `b` aligned whichever way round correlates better; None where the coarse search's
    best correlation is below `min_coarse` (not refined)."""
    (corr, th), src, dst = max(((_coarse(a, b), a, b), (_coarse(b, a), b, a)),
                               key=lambda t: t[0][0])
    if corr < min_coarse:
        return None
    th = _refine(src, dst, th)
    warped = _warp(src, th)
    length_y, oy, length_x, ox = th
    offset = max(abs(oy), abs(ox), abs(1 - length_y - oy), abs(1 - length_x - ox))
    return (th, src, dst, warped, float(min(length_y, length_x)), float(offset),
            _correlation(warped, dst))


def _measured(th, src, dst, warped, cover, offset, correlation) -> Check:
    residual, local, patch = _residual(warped, dst)
    misaligned = min(_residual(_warp(src, th + MISALIGN * np.array(d)), dst)[0]
                     for d in ((0, 1, 0, 0), (0, -1, 0, 0), (0, 0, 0, 1), (0, 0, 0, -1)))
    return Check(cover=cover, offset=offset, correlation=correlation, residual=residual,
                 misaligned=misaligned, local=local, patch=patch)


def check(a: np.ndarray, b: np.ndarray) -> Check:
    """Align `a` and `b` (`content` arrays) either way round and measure what is left."""
    return _measured(*_aligned(a, b))


def unpinned(c: Check) -> bool:
    """Refused only because the pair is too smooth at this side to pin the alignment down (the
    residual is low but barely rises when misaligned): everything else a copy shows is there.
    Such a pair gets a second look at CLOSER px (`agrees`)."""
    return (not c.agree and placed(c.cover, c.offset, c.correlation)
            and c.residual <= MAX_RESIDUAL and c.local <= MAX_LOCAL and c.patch <= MAX_PATCH)


def agrees(a: np.ndarray, b: np.ndarray, closer=None) -> bool:
    """`check(a, b).agree`, sooner for most look-alikes: a pair whose coarse alignment
    correlates below MIN_COARSE is not refined, and one whose refined alignment already fails
    is not measured further. `closer()`: the same pair's `content` at CLOSER px (None where a
    file cannot be read), asked only for an `unpinned` pair, which then agrees if it agrees
    there: the texture a smooth picture shows at twice the side pins a copy's alignment, and
    another crop of the same surface still does not fit."""
    aligned = _aligned(a, b, MIN_COARSE)
    if aligned is None or not placed(*aligned[4:]):
        return False
    measured = _measured(*aligned)
    if measured.agree or closer is None or not unpinned(measured):
        return measured.agree
    pair = closer()
    return pair is not None and all(x is not None for x in pair) and agrees(*pair)


def one_thread():
    """The context the checks run in: one BLAS thread (these are small products: threads only
    wait on each other). Entering it costs about 4 ms (threadpoolctl looks the libraries up),
    so callers enter it once around many pairs, not once a pair."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def agreeing(first, second, progress=None, stage: str = "pixel check", closer=None) -> np.ndarray:
    """Whether each pair (first[i], second[i]) agrees: iterables of `content` arrays, checked
    one pair at a time (memory does not grow with the pairs) on one BLAS thread (`one_thread`).
    `closer(i)`: pair i at CLOSER px (`agrees`)."""
    out = np.zeros(len(first), bool)
    with one_thread():
        for i, (a, b) in enumerate(zip(first, second)):
            out[i] = agrees(a, b, (lambda i=i: closer(i)) if closer else None)
            if progress and (i % 64 == 63 or i == len(first) - 1):
                progress(stage, i + 1, len(first))
    return out
