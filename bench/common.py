"""Shared helpers of the benchmarks: synthetic photos, timing, tables, memory.

Every benchmark measures its own baseline in the same run and prints the ratio, so figures
taken on a busy or shared machine still compare like with like.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")



def photo(seed: int, width: int = 640, height: int = 480) -> Image.Image:
    """A synthetic 'photo': smooth colour gradients, a few shapes, sensor noise.

    Gradients and noise give JPEG files the size of real photos at this resolution
    (tens of kilobytes at quality 90), unlike flat synthetic shapes; throughput benchmarks
    need thousands of distinct ones, more than the photographs available offline.
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

def fext(*args: str) -> str:
    """Run `python -m fext ...` as a user does; its stdout (progress goes to the terminal)."""
    proc = subprocess.run([sys.executable, "-m", "fext", *args], cwd=REPO, text=True,
                          stdout=subprocess.PIPE)
    if proc.returncode:
        sys.exit(f"fext {args[0]} failed")
    return proc.stdout


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or the architecture where it cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def machine() -> str:
    """One line naming the machine the figures come from."""
    return (f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"load average {os.getloadavg()[0]:.1f} at start")


class Timer:
    """`with Timer() as t: ...` then `t.seconds`."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def table(headers: list[str], rows: list[list], title: str = "") -> str:
    """A plain-text table (also valid Markdown), numbers formatted compactly."""
    def fmt(v) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda vals: "| " + " | ".join(v.rjust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    out = ([title, ""] if title else []) + [line(headers),
                                            "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(out + [line(r) for r in cells])


def status_kib(pid: int | str, field: str) -> int:
    """One memory field of a live process's /proc status (VmHWM, RssAnon, ...), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc status (not Linux?)")


def peak_rss_mib(pid: int | str = "self") -> float:
    """Peak resident memory (VmHWM) of a live process, in MiB."""
    return status_kib(pid, "VmHWM") / 1024


def write_photos(folder: Path, count: int, distinct: int | None = None, quality: int = 90,
                 labels: int = 0) -> list[Path]:
    """`count` JPEG files in `folder`; beyond `distinct` generated ones, hard links to them
    under new names (the files are only read, so a link costs no disk and decodes the same)."""
    folder.mkdir(parents=True, exist_ok=True)
    distinct = min(count, distinct or count)
    paths = []
    for i in range(count):
        sub = folder / f"c{i % labels}" if labels else folder
        sub.mkdir(exist_ok=True)
        p = sub / f"img_{i:07d}.jpg"
        if not p.exists():
            if i < distinct:
                photo(i).save(p, quality=quality)
            else:
                os.link(paths[i % distinct], p)
        paths.append(p)
    return paths
