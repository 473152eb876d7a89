"""Start-up of the CLI's read-only commands (anomalies, export, scan), which never import Keras or
TensorFlow, against `python -c "import keras"` (what every command paid before) in the same run;
and how fast a mistake is answered (a usage error, a bad setting, a missing folder: every cheap
check runs before Keras is imported) against `python -c pass`.

A tiny model is trained and extracted once in a temporary workspace; each command then runs as
a whole new process several times (median wall time). Goals: under 1.5 s; a mistake well under 1 s.

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


def wall(cmd: list[str], runs: int, status: int = 0) -> float:
    """Median seconds of `cmd` as a new process; it must exit with `status`."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
        if proc.returncode != status:
            raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}, not {status}")
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

        bare = wall([sys.executable, "-c", "pass"], a.runs)
        train = fx + ["train", "--name", "x", "--workspace", ws]
        rows = []
        for name, args, status in (
                ("usage error (--preset nope)", ["--images", str(images), "--preset", "nope"], 2),
                ("bad setting (--image-size 4)", ["--images", str(images), "--image-size", "4"], 1),
                ("missing folder (--images /missing)", ["--images", str(tmp / "missing")], 1)):
            seconds = wall(train + args, a.runs, status)
            rows.append([f"fext train, {name}", seconds, f"{seconds / bare:.2f}"])
        rows.append(["python -c pass (baseline)", bare, "1.00"])
        print(table(["mistake", "median s", "ratio to python -c pass"], rows))


if __name__ == "__main__":
    main()
