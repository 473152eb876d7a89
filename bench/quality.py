"""Feature quality against baselines, end to end through the CLI, in one run.

Trains an autoencoder with the product's default settings (override any with the flags), then
runs `fext evaluate --one-class`, which measures in the same run on the same splits:
retrieval (precision@10, mAP: test queries against the training split, relevant = same label)
and one-class anomaly detection (ROC AUC averaged over labels) for the autoencoder, PCA at the
same vector size, and raw pixels. Prints method x metric and the autoencoder's ratio to the
best baseline.

    .venv/bin/python bench/quality.py                          # the demo collection, defaults
    .venv/bin/python bench/quality.py --images DIR --image-size 32
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from common import REPO, fext


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=str(REPO / "data" / "demo"))
    p.add_argument("--workspace", default=None, help="default: a temporary folder")
    p.add_argument("--no-one-class", action="store_true", help="retrieval only (fast)")
    p.add_argument("train_args", nargs=argparse.REMAINDER,
                   help="extra `fext train` options after --, e.g. -- --image-size 32")
    a = p.parse_args()
    ws = a.workspace or tempfile.mkdtemp(prefix="fext-quality-")
    extra = [x for x in a.train_args if x != "--"]
    t0 = time.time()
    fext("train", "--images", a.images, "--name", "quality", "--workspace", ws, *extra)
    trained = time.time() - t0
    args = ["evaluate", "--name", "quality", "--workspace", ws, "--json"]
    result = json.loads(fext(*args) if a.no_one_class else fext(*args, "--one-class"))
    if "note" in result:
        sys.exit(result["note"])
    auc = result.get("one_class_auc", {})
    rows = {m: {"precision@10": r["precision@10"], "mAP": r["map"],
                "one-class AUC": auc.get(m, {}).get("mean")} for m, r in result["retrieval"].items()}
    metrics = ["precision@10", "mAP", "one-class AUC"]
    print(f"\n{a.images}: {result['database']} training images, {result['queries']} test queries, "
          f"{result['labels']} labels; train {trained:.0f} s, total {time.time() - t0:.0f} s")
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
    pca = next(k for k in rows if k.startswith("PCA"))
    wins = [m for m in metrics if ae[m] is not None and ae[m] > rows[pca][m]]
    print(f"autoencoder beats {pca} on: {', '.join(wins) or 'nothing'}")


if __name__ == "__main__":
    main()
