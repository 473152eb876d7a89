"""Generated test collections: labelled shapes, photo-like pictures (also used by
bench/), and a corpus of awkward and broken files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220)}


def shape_image(label: str, i: int, size: int = 32) -> Image.Image:
    """A labelled picture: colour and shape depend on the label, position and size on i."""
    rng = np.random.default_rng([hash(label) % 1000, i])
    img = Image.new("RGB", (size, size), (245, 245, 240))
    d = ImageDraw.Draw(img)
    r = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
    box = (cx - r, cy - r, cx + r, cy + r)
    colour = COLOURS[label]
    if label == "red":
        d.ellipse(box, fill=colour)
    elif label == "green":
        d.rectangle(box, fill=colour)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return img


def photo(seed: int, width: int = 640, height: int = 480):
    """A synthetic 'photo' (PIL image): smooth colour gradients, a few shapes, sensor noise.

    Gradients and noise give JPEG files the size of real photos at this resolution
    (tens of kilobytes at quality 90), unlike flat synthetic shapes.
    """
    rng = np.random.default_rng(seed)
    h, w = height // 8, width // 8  # gradients drawn small, then smoothly upscaled
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) * 8
    small = np.empty((h, w, 3), np.float32)
    for c in range(3):
        a, b, f = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.005, 0.02)
        small[..., c] = 128 + 60 * np.sin(f * (a * xx + b * yy) + rng.uniform(0, 6.3))
    pil = Image.fromarray(small.astype(np.uint8)).resize((width, height), Image.BILINEAR)
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        x1, y1 = x0 + int(rng.integers(30, 250)), y0 + int(rng.integers(30, 200))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    noise = rng.integers(-10, 11, (height, width, 3), dtype=np.int16)
    noisy = np.asarray(pil, np.int16) + noise
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def make_shapes(root: Path, per_label: int = 12, size: int = 32, labels=tuple(COLOURS)) -> list[Path]:
    paths = []
    for label in labels:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            p = root / label / f"{label}_{i:03d}.png"
            shape_image(label, i, size).save(p)
            paths.append(p)
    return paths


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims 10 gigapixels: decoding it would exhaust memory."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _save(img: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kw)
    return path


def make_awkward(root: Path) -> tuple[list[str], list[str]]:
    """Write >= 30 awkward files; returns (relative paths that must be read, that must be skipped)."""
    base = shape_image("red", 1, 48)
    good: list[str] = []
    bad: list[str] = []

    def ok(rel, img, fmt=None, **kw):
        _save(img, root / rel, fmt, **kw)
        good.append(rel)

    def broken(rel, data: bytes):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        bad.append(rel)

    ok("modes/mode_1.png", base.convert("1"))
    ok("modes/mode_L.png", base.convert("L"))
    ok("modes/mode_LA.png", base.convert("LA"))
    ok("modes/mode_P.png", base.convert("P"))
    ok("modes/mode_P_transparent.gif", base.convert("P"), transparency=0)
    ok("modes/mode_RGB.bmp", base)
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    ok("modes/mode_RGBA.png", rgba)
    ok("modes/mode_CMYK.jpg", base.convert("CMYK"))
    ok("modes/mode_CMYK.tiff", base.convert("CMYK"))
    i16 = Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257)  # mode I;16
    ok("modes/mode_I16.png", i16)
    ok("modes/mode_I16.tiff", i16)
    f32 = Image.fromarray(np.asarray(base.convert("L"), np.float32) / 255.0)  # mode F
    ok("modes/mode_F.tiff", f32)
    ok("modes/mode_I.tiff", base.convert("I"))

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    ok("exif/rotated.jpg", shape_image("green", 2, 40).crop((0, 0, 40, 20)), exif=exif.tobytes())
    ok("formats/progressive.jpg", base, progressive=True, quality=85)
    frames = [shape_image(c, 3, 32) for c in COLOURS]
    _save(frames[0], root / "formats/animated.gif", save_all=True, append_images=frames[1:],
          duration=100, loop=0)
    good.append("formats/animated.gif")
    _save(frames[0], root / "formats/multipage.tiff", save_all=True, append_images=frames[1:])
    good.append("formats/multipage.tiff")
    ok("formats/image.webp", base, "WEBP")
    ok("formats/one_pixel.png", Image.new("RGB", (1, 1), (10, 200, 30)))
    ok("formats/very_wide.png", Image.new("RGB", (4000, 3), (200, 30, 30)))
    ok("formats/very_tall.png", Image.new("L", (3, 4000), 90))
    ok("names/png_named.jpg", base, "PNG")
    ok("names/no_extension", base, "PNG")
    ok("names/ünïcödé ñame with spaces.png", base)
    ok("names/日本語.png", base)
    ok("deep/a/b/c/nested.png", base)

    jpeg = io.BytesIO()
    noisy = np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(jpeg, "JPEG", quality=95)
    broken("broken/empty.jpg", b"")
    broken("broken/truncated.jpg", jpeg.getvalue()[: len(jpeg.getvalue()) * 3 // 5])
    corrupt = bytearray(jpeg.getvalue())
    corrupt[200:] = bytes(len(corrupt) - 200)
    broken("broken/corrupt.png", b"\x89PNG\r\n\x1a\n" + bytes(corrupt[8:60]))
    broken("broken/random.bin", np.random.default_rng(0).bytes(4096))
    broken("broken/text.jpg", b"this is not an image, just text\n" * 10)
    broken("broken/vector.svg",
           b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>')
    broken("broken/bomb.png", bomb_png())
    return good, bad
