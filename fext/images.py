"""Turn any image file into an RGB uint8 array of the model's size, the same way everywhere.

One function, `load`, serves training, extraction and uploaded queries, so pixels are never
normalised two different ways. Decoding is defensive: a file is an image by its content, the
pixel count is checked from the header before any decoding (decompression bombs), EXIF
orientation is applied, animations give their first frame and every mode maps to RGB.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

MAX_PIXELS = 80_000_000  # refuse larger images before decoding them
BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white

Image.MAX_IMAGE_PIXELS = None  # we apply our own limit, from the header, with a clear reason


def open_image(source: str | Path | bytes) -> Image.Image:
    """Open and validate the header only; raise ImageError with a readable reason."""
    if isinstance(source, (bytes, bytearray)):
        empty, fp = len(source) == 0, io.BytesIO(source)
    else:
        empty, fp = Path(source).is_file() and Path(source).stat().st_size == 0, source
    if empty:
        raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(fp)
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised content)") from None
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"unreadable image header: {e}") from None
    w, h = img.size
    if w < 1 or h < 1:
        raise ImageError(f"empty image ({w}x{h})")
    if w * h > MAX_PIXELS:
        raise ImageError(
            f"too large: {w}x{h} = {w * h / 1e6:.0f} megapixels (limit {MAX_PIXELS / 1e6:.0f}); "
            "refused without decoding (possible decompression bomb)")
    return img


def upright_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened image as it is shown: swapped where its EXIF orientation
    turns it a quarter (a phone's portrait photo is often stored landscape). The size `load`'s
    pixels have, which cutting the padding off a model input needs (`fext.agreement.content`)."""
    w, h = img.size
    try:
        turned = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:  # a broken EXIF block: `load` decodes the image as stored
        turned = False
    return (h, w) if turned else (w, h)


def to_rgb(img: Image.Image) -> Image.Image:
    """Every PIL mode to RGB, identically at training and at inference."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if mode == "F" and np.nanmax(a, initial=0.0) <= 1.0:
            a = a * 255.0  # float images in [0, 1]
        elif mode != "F" and np.nanmax(a, initial=0.0) > 255:
            a = a / 257.0  # 16-bit range to 8-bit
        a = np.nan_to_num(np.clip(a, 0, 255)).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")  # 1, L, CMYK, YCbCr, LAB, HSV


def fit_square(img: Image.Image, size: int, fit: str = "pad") -> Image.Image:
    """Resize keeping the aspect ratio: pad to a square with white, or centre-crop."""
    if fit == "crop":
        return ImageOps.fit(img, (size, size), Image.Resampling.BILINEAR)
    return ImageOps.pad(img, (size, size), Image.Resampling.BILINEAR, color=BACKGROUND)


def draft_request(image_size: tuple[int, int], size: int, fit: str) -> tuple[int, int]:
    """The smallest size a JPEG may be decoded at (DCT scaling by 1/2, 1/4 or 1/8): twice the
    output on the side that sets the scale (the long side when padding, the short one when
    cropping), so the final resize still averages at least 2x2 decoded pixels per output pixel.
    Decoding a 640x480 photo for 64 px then costs a quarter of a full decode (bench/ingest.py);
    pixels differ from a full decode by well under one grey level on average (tests)."""
    w, h = image_size
    if fit == "crop" or w == h:
        return size * 2, size * 2
    return (size * 2, 1) if w > h else (1, size * 2)


def load(source: str | Path | bytes, size: int, fit: str = "pad") -> np.ndarray:
    """Decode `source` to a (size, size, 3) uint8 array, or raise ImageError with the reason."""
    return decode(source, size, fit)[0]


def decode(source: str | Path | bytes, size: int, fit: str = "pad") -> tuple[np.ndarray, tuple[int, int]]:
    """(`load`'s array, the file's `upright_size`) from one read of its header: what a
    search query needs together."""
    img = open_image(source)
    upright = upright_size(img)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.seek(0)  # first frame of animations and multi-page files
            if img.format == "JPEG":
                img.draft("RGB", draft_request(img.size, size, fit))
            img = ImageOps.exif_transpose(img)
            img.load()
            out = fit_square(to_rgb(img), size, fit)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError("not enough memory to decode") from None
    except Exception as e:  # PIL raises many types for truncated/corrupt data
        raise ImageError(f"corrupt or truncated image data: {type(e).__name__}: {e}") from None
    return np.asarray(out, dtype=np.uint8), upright


def to_model_input(batch: np.ndarray) -> np.ndarray:
    """uint8 pixels to the float32 [0, 1] range the model sees; the only place this happens."""
    return np.asarray(batch, dtype=np.float32) * (1.0 / 255.0)


def preview(source: str | Path | bytes, side: int) -> Image.Image:
    """The image upright in RGB, decoded at no less than `side` pixels where the format allows
    it cheaply (JPEG draft decoding: a 24 MP photo is read at an eighth of its size); its first
    frame. What previews, maps and the edits' working copies start from."""
    img = open_image(source)
    img.seek(0)
    if img.format == "JPEG":
        img.draft("RGB", (side, side))
    return to_rgb(ImageOps.exif_transpose(img))


def thumbnail(source: str | Path | bytes, size: int = 160) -> Image.Image:
    """Small RGB preview for the app; never raises (an unreadable file gives a grey tile)."""
    try:
        img = preview(source, size)
        img.thumbnail((size, size))
        return img
    except Exception:
        return Image.new("RGB", (size, size), (200, 200, 200))
