"""Feature quality against baselines, end to end through the CLI, in one run.

Trains an autoencoder with the product's default settings (override any with the flags) for
each of `--seeds` training seeds, then runs `fext evaluate` on each, which measures in the same
run on the same splits: retrieval (precision@10, mAP: test queries against the training
split, relevant = same label), copy detection on the collection's own images (recall@1 of an
edited copy's source, no labels) and, with `--one-class` (first seed only), one-class anomaly
detection (ROC AUC averaged over labels) for the autoencoder, PCA at the same vector size, raw
pixels (and pHash for copies). Prints the mean over seeds and the autoencoder's ratio to the
best baseline. The baselines do not depend on the training seed.

    .venv/bin/python bench/quality.py -- --image-size 32     # the demo digits, three seeds
    .venv/bin/python bench/quality.py --images DIR --seeds 1 --one-class
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np
from common import REPO, fext, machine


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=str(REPO / "data" / "demo"))
    p.add_argument("--workspace", default=None, help="default: a temporary folder")
    p.add_argument("--seeds", type=int, default=3, help="training seeds to average over")
    p.add_argument("--one-class", action="store_true",
                   help="also one-class anomaly detection (first seed; trains one model per label)")
    p.add_argument("train_args", nargs=argparse.REMAINDER,
                   help="extra `fext train` options after --, e.g. -- --image-size 32")
    a = p.parse_args()
    print(machine())
    ws = a.workspace or tempfile.mkdtemp(prefix="fext-quality-")
    extra = [x for x in a.train_args if x != "--"]
    runs, times = [], []
    for seed in range(42, 42 + a.seeds):
        name = f"quality-{seed}"
        t0 = time.time()
        fext("train", "--images", a.images, "--name", name, "--workspace", ws, "--seed", str(seed),
             *extra)
        times.append(time.time() - t0)
        args = ["evaluate", "--name", name, "--workspace", ws, "--json"]
        result = json.loads(fext(*args, *(["--one-class"] if a.one_class and not runs else [])))
        if "note" in result:
            sys.exit(result["note"])
        runs.append(result)
        r = result["retrieval"]
        print(f"seed {seed}: trained in {times[-1]:.0f} s; precision@10 "
              + ", ".join(f"{m} {v['precision@10']:.4f}" for m, v in r.items())
              + "; copy recall@1 " + ", ".join(f"{m} {v['recall@1']:.3f}"
                                                for m, v in result["copies"]["methods"].items()),
              flush=True)
    first = runs[0]
    auc = first.get("one_class_auc", {})
    def mean(*path: str) -> float:
        """The figure at `path` of each run's result, averaged over the runs."""
        values = []
        for r in runs:
            for key in path:
                r = r[key]
            values.append(r)
        return float(np.mean(values))

    rows = {m: {"precision@10": mean("retrieval", m, "precision@10"),
                "mAP": mean("retrieval", m, "map"),
                "copy recall@1": mean("copies", "methods", m, "recall@1"),
                "one-class AUC": auc.get(m, {}).get("mean")} for m in first["retrieval"]}
    rows["pHash 64-bit"] = {"precision@10": None, "mAP": None, "one-class AUC": None,
                            "copy recall@1": mean("copies", "methods", "pHash 64-bit", "recall@1")}
    metrics = ["precision@10", "mAP", "copy recall@1", "one-class AUC"]
    print(f"\n{a.images}: {first['database']} training images, {first['queries']} test queries, "
          f"{first['labels']} labels; {first['copies']['queries']} edited copies among "
          f"{first['copies']['database']} images; mean of {len(runs)} training seed(s); "
          f"train {np.mean(times):.0f} s per seed")
    print(f"{'method':16s}" + "".join(f"{m:>15s}" for m in metrics))
    for method, r in rows.items():
        print(f"{method:16s}" + "".join(f"{r[m]:15.4f}" if r[m] is not None else f"{'-':>15s}"
                                        for m in metrics))
    ae = rows.pop("autoencoder")
    ratio = []
    for m in metrics:
        best = max((r[m] for r in rows.values() if r[m] is not None), default=None)
        ratio.append(f"{ae[m] / best:15.3f}" if best and ae[m] is not None else f"{'-':>15s}")
    print(f"{'AE / best base':16s}" + "".join(ratio))
    spread = [r["retrieval"]["autoencoder"]["precision@10"] for r in runs]
    print(f"autoencoder precision@10 per seed: {', '.join(f'{v:.4f}' for v in spread)}")


if __name__ == "__main__":
    main()
