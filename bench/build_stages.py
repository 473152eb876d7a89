"""Where a build's time goes besides training: `fext build` stage by stage, this tree against
another (a git worktree of an older commit), in the same run.

Training's own time is bench/train_time.py's; what every build adds to it (scan and decode,
the held-out copies, read-out, evaluation, reference, map statistics, extraction with its
duplicate calibration and pixel check, the map) does not shrink with fewer steps, and grows with
the folder. Each build here trains one epoch of two steps, so the rest is what is measured;
`--training` gives other options (several whole epochs: what each epoch adds besides its steps,
the held-out copies and the look-alike grouping, shows in the train stage).
Per stage: the seconds from the previous stage's last line to this stage's last line, as the
CLI prints them; per tree the median over repeats, interleaved repeat by repeat, and the ratio.

    git worktree add /tmp/oldtree <commit>
    .venv/bin/python bench/build_stages.py --size 2000 --repeats 3 --baseline-tree /tmp/oldtree
    .venv/bin/python bench/build_stages.py --baseline-tree /tmp/oldtree \
        --training "--epochs 4 --patience 4"    # four whole epochs, never stopped early
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import REPO, machine, table
from photos import write_collection

SHORT = ["--epochs", "1", "--epoch-steps", "2"]  # training all but skipped
STAGE = re.compile(r"^\[([^\]]+)\]")


def stages(tree: Path, folder: Path, ws: Path,
           training: list[str]) -> tuple[float, dict[str, float]]:
    """(wall seconds, {stage: seconds}) of one `fext build` run from `tree` (its own `fext`
    package, this interpreter and its packages) with the `training` options."""
    cmd = [sys.executable, "-m", "fext", "build", "--workspace", str(ws), "--name", "p",
           "--images", str(folder), *training]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    last: dict[str, float] = {}
    order: list[str] = []
    buffer = b""
    while chunk := proc.stdout.read1(65536):
        buffer += chunk
        *lines, buffer = re.split(rb"[\r\n]", buffer)
        now = time.perf_counter() - start
        for line in lines:
            m = STAGE.match(line.decode(errors="replace").strip())
            if m:
                name = m.group(1)
                if name in last and order[-1] != name:
                    name = f"{name} (again)"  # a stage seen before: the scan of extraction
                if name not in last:
                    order.append(name)
                last[name] = now
    if proc.wait():
        raise SystemExit(f"fext build failed in {tree}")
    wall = time.perf_counter() - start
    out, previous = {}, 0.0
    for name in order:
        out[name], previous = last[name] - previous, last[name]
    out["(after the last stage)"] = wall - previous
    return wall, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=2000, help="photos in the collection")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline-tree", type=Path, default=None,
                   help="a checkout of the code to compare with (its own `fext` package)")
    p.add_argument("--seed", type=int, default=0, help="seed of the collection")
    p.add_argument("--training", default=shlex.join(SHORT),
                   help="`fext build` options of the training (default: %(default)s)")
    a = p.parse_args()
    training = shlex.split(a.training)
    trees = {"this tree": REPO, **({"baseline": a.baseline_tree.resolve()} if a.baseline_tree else {})}
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        write_collection(folder, a.size, a.seed)
        rows = []
        for repeat in range(a.repeats):
            for label, tree in trees.items():
                ws = Path(tmp) / "ws"
                shutil.rmtree(ws, ignore_errors=True)
                wall, times = stages(tree, folder, ws, training)
                rows += [{"tree": label, "repeat": repeat, "stage": s, "seconds": v}
                         for s, v in times.items()]
                rows.append({"tree": label, "repeat": repeat, "stage": "whole build", "seconds": wall})
                print(f"repeat {repeat + 1}, {label}: {wall:.1f} s", flush=True)
    runs = pd.DataFrame(rows)
    med = runs.groupby(["stage", "tree"], sort=False)["seconds"].median().unstack("tree")
    columns = ["stage", *(f"{t} s" for t in trees)]
    if "baseline" in trees:
        columns.append("this / baseline")
    out = []
    for stage, r in med.iterrows():
        row = [stage, *(f"{r.get(t, float('nan')):.1f}" for t in trees)]
        if "baseline" in trees:
            row.append(f"{r['this tree'] / r['baseline']:.2f}" if r.get("baseline", 0) > 0.05 else "-")
        out.append(row)
    how = ("training cut to two steps" if training == SHORT else f"training `{a.training}`")
    print(table(columns, out, f"`fext build` of {a.size:,} photos, {how}: "
                              f"median seconds over {a.repeats} repeats"))


if __name__ == "__main__":
    main()
