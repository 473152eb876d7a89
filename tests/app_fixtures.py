"""The tiny trained workspace the app tests open on, built once per test session.

tests/test_app.py (AppTest) and tests/test_browser.py (a real browser) both use it; the model is
trained once, however many modules ask for it. Its model is named "demo", so the app opens on
it and never starts the real demo preparation.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220)}
PER_LABEL = 12
READABLE = PER_LABEL * len(COLOURS)
BROKEN = {"red/bad.jpg": b"this is text, not a picture\n", "empty.png": b""}
DIM = 8

_built: dict[str, object] = {}


def shape(label: str, i: int, size: int = 32) -> Image.Image:
    """A labelled picture: colour and shape depend on the label, position and size on i."""
    rng = np.random.default_rng([sorted(COLOURS).index(label), i])
    img = Image.new("RGB", (size, size), (245, 245, 240))
    d = ImageDraw.Draw(img)
    r = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
    box = (cx - r, cy - r, cx + r, cy + r)
    if label == "red":
        d.ellipse(box, fill=COLOURS[label])
    elif label == "green":
        d.rectangle(box, fill=COLOURS[label])
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=COLOURS[label])
    return img


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def make_collection(root: Path) -> Path:
    """3 labelled sub-folders of shapes, plus files that must be skipped (BROKEN)."""
    for label in COLOURS:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(PER_LABEL):
            shape(label, i).save(root / label / f"{label}_{i:03d}.png")
    for rel, data in BROKEN.items():
        (root / rel).write_bytes(data)
    return root


def app_workspace(tmp_path_factory):
    """Workspace with a tiny model "demo" trained, extracted and mapped (built once)."""
    if "ws" not in _built:
        from fext.config import DataConfig, ModelConfig, RunConfig, TrainConfig
        from fext.features import extract
        from fext.projection import project
        from fext.train import train
        from fext.workspace import Workspace

        images = make_collection(tmp_path_factory.mktemp("app-images"))
        ws = Workspace(tmp_path_factory.mktemp("app-ws"))
        cfg = RunConfig(DataConfig(str(images), 16), ModelConfig("small", DIM),
                        TrainConfig(2, 16, patience=5, seed=42))
        train(ws, "demo", cfg)
        extract(ws, "demo")
        project(ws, "demo")
        _built["ws"] = ws
    return _built["ws"]


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims 10 gigapixels: decoding it would exhaust memory."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) \
        + chunk(b"IEND", b"")
