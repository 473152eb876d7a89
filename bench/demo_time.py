"""The bundled demo's preparation (what `make app` starts at once): the shipped demo settings
against earlier ones, each in a fresh workspace, one after another in one run.

Per configuration: seconds in all (`fext.demo.prepare`: training, read-out, evaluation,
reference, extraction, map) and until the read-out (training), the steps run and the epoch
published, and what the demo's pages then show: the held-out copies found by the published
epoch, the share of each digit's 5 nearest images that are the same digit (Search, the Map), the
ranks of the 8 planted photographs in the Anomalies ranking, whether Duplicates suggests near
copies (it must not: the digits look alike as much as copies do). Ratios against the first
configuration named. Each configuration runs in a process of its own, after the map's compiled
code is cached (`fext.projection.warm`, as `make setup` does), as `make app`'s job does.

    .venv/bin/python bench/demo_time.py                              # medium (before), shipped
    .venv/bin/python bench/demo_time.py --configs medium,shipped,medium-epochs5
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine, table

CONFIGS = {  # changes to fext.demo.DEMO_CONFIG
    "shipped": {},
    "medium": {"preset": "medium"},  # the demo's settings before 2026-12-05
    "medium-epochs5": {"preset": "medium", "epochs": 5},
}


def prepare(name: str, root: Path) -> list:
    import fext.demo as demo
    from fext.artifacts import Artifacts
    from fext.workspace import Workspace

    shipped = dict(demo.DEMO_CONFIG)
    demo.DEMO_CONFIG = {**shipped, **CONFIGS[name]}
    ws = Workspace(root / name)
    stamps = {}
    start = time.perf_counter()
    try:
        demo.prepare(ws, progress=lambda stage, *_, **__: stamps.setdefault(stage, time.perf_counter()))
    finally:
        demo.DEMO_CONFIG = shipped
    total = time.perf_counter() - start
    metrics = json.loads((ws.root / "models" / "demo" / "metrics.json").read_text())
    art = Artifacts.open(ws, "demo")
    labels = art.items["label"].to_numpy()
    photo = art.items["path"].str.contains("photo_").to_numpy()
    ids = np.asarray(art.neighbours()[0])
    same = float((labels[ids[~photo, :5]] == labels[~photo, None]).mean())
    order = np.argsort(-art.scores(), kind="stable")
    ranks = (np.flatnonzero(photo[order]) + 1).tolist()
    return [name, total, stamps["readout"] - start, metrics["steps_run"],
            f"{metrics['best_epoch']} of {metrics['epochs_run']}", metrics.get("val_copies", ""),
            same, ", ".join(map(str, ranks)), "yes" if art.meta["duplicates"]["trusted"] else "no"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="medium,shipped",
                   help=f"comma-separated, the first is the baseline: {', '.join(CONFIGS)}")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        out = Path(a.out)
        return out.write_text(json.dumps(prepare(a.worker, out.parent)))
    print(machine(), flush=True)
    from fext.projection import warm

    warm()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fext-demo-time-") as tmp:
        for name in a.configs.split(","):
            out = Path(tmp) / f"{name}.json"
            subprocess.run([sys.executable, __file__, "--worker", name, "--out", str(out)],
                           check=True)
            rows.append(json.loads(out.read_text()))
            print(rows[-1], flush=True)
            shutil.rmtree(Path(tmp) / name, ignore_errors=True)
    base = rows[0][1]
    print(table(["config", "seconds", "training s", "steps", "published", "held-out copies",
                 "same digit among 5 nearest", "planted photos' ranks", "near copies suggested",
                 f"time / {rows[0][0]}"], [r + [r[1] / base] for r in rows]))


if __name__ == "__main__":
    main()
