"""Start-up of the CLI's read-only commands (anomalies, export, scan), which never import Keras or
TensorFlow, against `python -c "import keras"` (what every command paid before) in the same run.

A tiny model is trained and extracted once in a temporary workspace; each command then runs as
a whole new process several times (median wall time). Goal: under 1.5 s.

    .venv/bin/python bench/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, machine, table
from PIL import Image, ImageDraw


def shapes(folder: Path, count: int = 48) -> Path:
    for i in range(count):
        img = Image.new("RGB", (32, 32), (245, 245, 240))
        ImageDraw.Draw(img).ellipse((i % 10, i % 7, 20 + i % 12, 22 + i % 9), fill=(200, 40, i * 5))
        (folder / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
        img.save(folder / f"c{i % 3}" / f"s{i:03d}.png")
    return folder


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=7)
    a = p.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images, ws = shapes(tmp / "images"), str(tmp / "ws")
        fx = [sys.executable, "-m", "fext"]
        for args in (["train", "--images", str(images), "--preset", "small", "--image-size", "16",
                      "--latent-dim", "8", "--epochs", "1"], ["extract"]):
            subprocess.run(fx + args + ["--name", "m", "--workspace", ws], cwd=REPO, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        baseline = wall([sys.executable, "-c", "import keras"], a.runs)
        rows = []
        for name, args in (("anomalies --top 5", ["anomalies", "--name", "m", "--top", "5"]),
                           ("export --csv", ["export", "--name", "m", "--csv", str(tmp / "f.csv")]),
                           ("scan --images", ["scan", "--images", str(images)])):
            seconds = wall(fx + args + ["--workspace", ws], a.runs)
            rows.append([f"fext {name}", seconds, f"{seconds / baseline:.2f}"])
        rows.append(['python -c "import keras" (baseline)', baseline, "1.00"])
        print(table(["command", "median s", "ratio to import keras"], rows))


if __name__ == "__main__":
    main()
