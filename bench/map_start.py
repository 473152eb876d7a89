"""A new process's first map: umap-learn compiling its numba functions in every process (as
before) against `fext.projection`'s cache of them, each run in a fresh process, interleaved.

What a user waits for whenever a command or the app's job draws a map in a new process (the
bundled demo's map, `fext build`, `fext project`): the import, the compilation and the fit.
The vectors are the demo's size (1,805 x 64, clustered, L2-normalised). Both modes use one
fresh numba cache folder (NUMBA_CACHE_DIR), so the few functions umap-learn caches by itself
are cached in both; one cached process fills the cache before the timed runs, as `make setup`
does (`fext.projection.warm`).

    .venv/bin/python bench/map_start.py [--runs 3] [--n 1805]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import REPO, machine, table


def worker(mode: str, n: int) -> None:
    """Draw one map in this process; `plain`: umap-learn as imported (no cache of ours)."""
    import numpy as np

    from fext import projection

    if mode == "plain":
        import umap

        projection._umap = lambda: umap
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 64))[rng.integers(0, 10, n)] + 0.5 * rng.standard_normal((n, 64))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    projection.umap_2d(x.astype(np.float32))


def timed(mode: str, n: int, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--worker", mode, "--n", str(n)], cwd=REPO, env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="processes per mode, interleaved")
    p.add_argument("--n", type=int, default=1805, help="vectors (the demo has 1,805 images)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker, a.n)
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        first = timed("cached", a.n, env)  # fills the cache, as `make setup` does
        times = {"plain": [], "cached": []}
        for _ in range(a.runs):
            for mode in times:
                times[mode].append(timed(mode, a.n, env))
    plain = statistics.median(times["plain"])
    rows = [["umap-learn compiling in every process (before)", a.n, plain,
             ", ".join(f"{t:.1f}" for t in times["plain"]), 1.0]]
    rows.append(["compiled functions cached (fext.projection)", a.n,
                 statistics.median(times["cached"]),
                 ", ".join(f"{t:.1f}" for t in times["cached"]),
                 statistics.median(times["cached"]) / plain])
    print(table(["a new process's first map", "vectors", "median s", "runs s", "/ before"], rows))
    print(f"the process that filled the cache: {first:.1f} s")


if __name__ == "__main__":
    main()
