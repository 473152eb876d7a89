"""Time to a result: `fext build` on a photo collection, the shipped defaults against named
configurations and candidates, each for several training seeds, in the same run.

What a new user waits for (issue "training in minutes"): `fext build --images DIR` through
the CLI as a user runs it (scan and decode, training, read-out, evaluation, extraction, map),
each run in a fresh workspace. Per configuration and seed: the build's wall time, training's
own seconds (the epochs of history.csv), the optimiser steps taken (epochs run x steps per
epoch), the epoch published, the precision it trained in, and the copy recall@1 of the
published model on the benchmark's own edited queries (bench/copies.py's measure: seeded
edits of a sample of the collection at the image's own size, each searched through the
product's search path). Then per configuration the means over seeds and the time ratio
against "557225e", measured in the same run, interleaved seed by seed.

"557225e" pins every training setting as commit 557225e shipped it (6 epochs of 100 steps,
patience 5, float32, the rest as today's defaults were then), run by today's code, so the
baseline stays put when the shipped defaults move. Candidates are any `fext build` options:

    .venv/bin/python bench/train_time.py                                  # 500 and 2,000 photos
    .venv/bin/python bench/train_time.py --sizes 500 --seeds 3 \\
        --candidate short="--epoch-steps 50 --patience 2 --precision bfloat16"
    .venv/bin/python bench/train_time.py --quick    # smoke run: every configuration cut short
    .venv/bin/python bench/train_time.py --sizes 1000 --seeds 1 --only "shipped defaults"
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import fext, machine, table
from copies import recall
from photos import write_collection
from PIL import Image

BASELINE = "557225e"
SHIPPED = "shipped defaults"
# commit 557225e's training defaults, every one spelt out (`git show 557225e:fext/config.py`)
CONFIGS = {
    SHIPPED: [],
    BASELINE: ["--image-size", "64", "--fit", "pad", "--val-fraction", "0.1",
               "--test-fraction", "0.1", "--preset", "medium", "--latent-dim", "128",
               "--epochs", "6", "--epoch-steps", "100", "--batch-size", "64",
               "--learning-rate", "0.001", "--patience", "5", "--noise", "0.0",
               "--augment", "edits", "--invariance", "0.1", "--labels", "0.8",
               "--neighbours", "4", "--readout", "whiten", "--precision", "float32",
               "--decoded-views", "2", "--decoder", "wide", "--lr-drop", "1"],
}
# --quick: appended to every configuration (the last of a repeated option wins), a smoke run
QUICK = ["--epochs", "1", "--epoch-steps", "3", "--image-size", "32", "--preset", "small"]


def candidate(text: str) -> tuple[str, list[str]]:
    """NAME="--option value ..." -> (NAME, its options)."""
    name, sep, options = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=\"--option value ...\", got {text!r}")
    return name, shlex.split(options)


def edited_queries(paths: list[Path], count: int, seed: int, folder: Path):
    """(query files, the index in `paths` of each one's source): seeded edits of a sample of
    the collection at the image's own size, as bench/copies.py makes them."""
    from fext.edits import edit

    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(paths), size=min(count, len(paths)), replace=False))
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for j, i in enumerate(picks):
        with Image.open(paths[i]) as img:
            q = edit(img.convert("RGB"), seed=int(rng.integers(2 ** 31)))
        files.append(folder / f"q{j:04d}.jpg")
        q.save(files[-1], quality=95)
    return files, picks


def copy_recall(ws: Path, name: str, paths: list[Path], queries: list[Path],
                truth: np.ndarray) -> float:
    """Recall@1 of the queries' sources through the search path `fext search` uses."""
    from fext.search import Searcher
    from fext.workspace import Workspace

    searcher = Searcher.open(Workspace(ws), name)
    row_of = {p: i for i, p in enumerate(searcher.artifacts.items["path"])}
    inverse = np.argsort(np.array([row_of[p.name] for p in paths]))  # index row -> file
    found = [[inverse[row_of[h["path"]]] for h in searcher.search(str(f), 1)] or [-1]
             for f in queries]
    return recall(np.array(found), truth, 1)


def one_build(folder: Path, tmp: Path, config: str, options: list[str], seed: int,
              paths: list[Path], queries: list[Path], truth: np.ndarray) -> dict:
    ws, name = tmp / "ws", "timed"
    shutil.rmtree(ws, ignore_errors=True)  # a fresh workspace: what a new user waits for
    t0 = time.perf_counter()
    fext("build", "--images", str(folder), "--name", name, "--workspace", str(ws), *options,
         "--seed", str(seed), "--json")
    wall = time.perf_counter() - t0
    d = ws / "models" / name
    m = json.loads((d / "metrics.json").read_text())
    history = pd.read_csv(d / "history.csv")
    train_s = float(history["seconds"].sum())
    check_s = float(history.get("validation_seconds", pd.Series([0.0])).sum())
    r1 = copy_recall(ws, name, paths, queries, truth)
    shutil.rmtree(ws, ignore_errors=True)
    if "val_copies" in history:  # the held-out curve the stop rule read, for the log
        print("  held-out copies by epoch: " + ", ".join(f"{v:.3f}" for v in history["val_copies"]))
    return {"config": config, "seed": seed, "wall s": wall, "train s": train_s,
            "steps": int(m["steps_run"]), "published": f"{m['best_epoch']} of {m['epochs_run']}",
            "precision": m.get("train_precision", "float32"),
            "validation share": f"{check_s / max(train_s, 1e-9):.0%}",
            "test PSNR": round(float(m["splits"]["test"]["psnr"]), 2), "recall@1": r1}


def summary(runs: pd.DataFrame, order: list[str]) -> list[list]:
    base = runs[runs["config"] == BASELINE]

    def ratio(r: pd.DataFrame, column: str) -> str:  # "-" where the baseline was not run
        return f"{r[column].mean() / base[column].mean():.2f}" if len(base) else "-"

    rows = []
    for config in order:
        r = runs[runs["config"] == config]
        rows.append([config, len(r), r["wall s"].mean(), r["train s"].mean(), r["steps"].mean(),
                     r["test PSNR"].mean(), r["recall@1"].mean(),
                     f"{r['recall@1'].min():.3f}-{r['recall@1'].max():.3f}",
                     ratio(r, "wall s"), ratio(r, "train s")])
    return rows


def run(size: int, a, configs: dict[str, list[str]], tmp: Path) -> None:
    folder = tmp / f"photos-{size}"
    paths = write_collection(folder, size, seed=a.seed)
    queries, truth = edited_queries(paths, a.queries, a.seed, tmp / f"queries-{size}")
    seeds = [a.first_seed + i for i in range(a.seeds)]
    found = []
    for seed in seeds:  # interleaved: load from other processes hits every configuration alike
        for config, options in configs.items():
            found.append(one_build(folder, tmp, config, options, seed, paths, queries, truth))
            f = found[-1]
            print(f"  {size} photos, {config}, seed {seed}: {f['wall s']:.0f} s, recall@1 "
                  f"{f['recall@1']:.3f}", flush=True)  # partial results survive an interruption
    runs = pd.DataFrame(found)
    print()
    print(table(list(runs.columns), runs.values.tolist(),
                f"{size} photos, {len(queries)} edited queries: every build"))
    print()
    print(table(["config", "seeds", "wall s", "train s", "steps", "test PSNR", "recall@1",
                 "recall@1 range",
                 f"wall / {BASELINE}", f"train / {BASELINE}"], summary(runs, list(configs)),
                f"{size} photos: means over seeds {', '.join(map(str, seeds))} (ratios: against "
                f"{BASELINE}, same run)"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="500,2000", help="collection sizes")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per configuration")
    p.add_argument("--first-seed", type=int, default=42, help="the first training seed "
                                                              "(the shipped --seed)")
    p.add_argument("--candidate", type=candidate, action="append", default=[],
                   metavar='NAME="OPTIONS"', help="a configuration to compare: fext build options")
    p.add_argument("--queries", type=int, default=200, help="edited queries per collection")
    p.add_argument("--seed", type=int, default=0, help="seed of the collection and its queries")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 60 photos, 1 seed, 20 queries, every configuration cut to "
                        + " ".join(QUICK) + " (figures meaningless)")
    p.add_argument("--only", default="", metavar="NAMES",
                   help="comma-separated configurations to run, for an absolute time alone "
                        "(no ratio without 557225e)")
    a = p.parse_args()
    configs = {**CONFIGS, **dict(a.candidate)}
    if a.only:
        wanted = [n.strip() for n in a.only.split(",")]
        if unknown := [n for n in wanted if n not in configs]:
            p.error(f"unknown configuration(s) {unknown}; known: {list(configs)}")
        configs = {n: configs[n] for n in wanted}
    if a.quick:
        a.sizes, a.seeds, a.queries = "60", 1, 20
        configs = {k: v + QUICK for k, v in configs.items()}
    from fext.model import native_bfloat16

    print(machine())
    print(f"native bfloat16 on this CPU: {'yes' if native_bfloat16() else 'no'}")
    for config, options in configs.items():
        print(f"  {config}: {' '.join(options) or '(no options)'}")
    with tempfile.TemporaryDirectory(prefix="fext-train-time-") as tmp:
        for size in (int(s) for s in a.sizes.split(",")):
            run(size, a, configs, Path(tmp))


if __name__ == "__main__":
    main()
