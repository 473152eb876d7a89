"""The one home of generated test data: labelled shapes, the app's tiny collection, a
decompression bomb, and a corpus of awkward and broken files.

Every picture comes from a seeded generator whose seeds are stable values (a label's position
in a sorted list, an index): the same files, and so the same fixture models, in every run.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220)}
PER_LABEL = 12
READABLE = PER_LABEL * len(COLOURS)  # readable images in make_collection's folder
BROKEN = {"red/bad.jpg": b"this is text, not a picture\n", "empty.png": b""}  # ... and the rest
# The broken files of make_awkward, each with a word its skip reason must contain.
AWKWARD_BROKEN = {
    "broken/empty.jpg": "empty", "broken/truncated.jpg": "truncated",
    "broken/corrupt.png": "image", "broken/random.bin": "not an image",
    "broken/text.jpg": "not an image", "broken/vector.svg": "not an image",
    "broken/bomb.png": "too large",
}


def shape_image(label: str, i: int, size: int = 32) -> Image.Image:
    """A labelled picture: colour and shape depend on the label, position and size on i."""
    rng = np.random.default_rng([sorted(COLOURS).index(label), i])
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


def make_shapes(root: Path, per_label: int = 12, size: int = 32, labels=tuple(COLOURS)) -> list[Path]:
    """`per_label` shapes in one sub-folder per label; returns their paths."""
    paths = []
    for label in labels:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            p = root / label / f"{label}_{i:03d}.png"
            shape_image(label, i, size).save(p)
            paths.append(p)
    return paths


def grained_sky(side: int = 400) -> Image.Image:
    """A smooth sky with a faint grain (fog, a wall, water): at the model's 64 px the grain is
    averaged away and the pixel check cannot pin a crop's alignment down; at 128 px it can."""
    from PIL import ImageFilter

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side] / side
    sky = np.stack([120 + 60 * y, 120 + 40 * y + 10 * x, 200 + 30 * y], -1)
    noise = Image.fromarray(rng.normal(128, 40, (side, side)).clip(0, 255).astype(np.uint8))
    grain = np.asarray(noise.filter(ImageFilter.GaussianBlur(1.2)), np.float32) - 128
    return Image.fromarray(np.clip(sky + 0.15 * grain[..., None], 0, 255).astype(np.uint8))


def png(img: Image.Image) -> bytes:
    """The image as PNG bytes (what an upload carries)."""
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def make_collection(root: Path) -> Path:
    """The app tests' collection: PER_LABEL shapes per label, plus the files in BROKEN."""
    make_shapes(root, per_label=PER_LABEL)
    for rel, data in BROKEN.items():
        (root / rel).write_bytes(data)
    return root


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
