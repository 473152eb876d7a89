"""GPU training throughput of the vgg16 preset: Keras on JAX, mixed bfloat16, as images/s and
as a fraction of the accelerator's peak (model FLOPs utilisation).

Two rows, same model and step count: `model.fit` on synthetic in-memory arrays (what the
accelerator can do), and fext's own loop, `run_epochs` over a memory-mapped uint8 cache (the
real input pipeline, prefetched in a background thread). Their ratio is the input pipeline's
cost on that machine. A third row times the input pipeline alone (memory map -> float batches,
no model): well above the training rows, it cannot be what limits them.
MFU = 3 x forward FLOPs per image (`fext.model.flops_per_image`) x images/s / peak.

    KERAS_BACKEND=jax python bench/gpu_train.py                     # H100 SXM, 128 px
    python bench/gpu_train.py --peak-tflops 1979 --batch-size 256   # another GPU's bf16 peak
    python bench/gpu_train.py --quick                               # CPU smoke check, tiny

Needs JAX (`pip install "jax[cuda12]"` on a GPU machine; it is not in requirements.txt).
Without JAX it says so and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

H100_SXM_BF16_TFLOPS = 989.0  # dense bfloat16 peak


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="vgg16")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=50, help="timed steps per row")
    p.add_argument("--peak-tflops", type=float, default=H100_SXM_BF16_TFLOPS,
                   help="the accelerator's dense bf16 peak (H100 SXM: 989)")
    p.add_argument("--precision", default="mixed_bfloat16",
                   choices=["mixed_bfloat16", "float32"])
    p.add_argument("--backend", default="jax", help="Keras backend (default: jax)")
    p.add_argument("--quick", action="store_true",
                   help="CPU smoke check: small preset, 32 px, a few steps")
    a = p.parse_args()
    if a.quick:
        a.preset, a.image_size, a.batch_size, a.steps = "small", 32, 16, 3
    return a


def main() -> int:
    a = parse()
    if a.backend == "jax" and importlib.util.find_spec("jax") is None:
        print("JAX is not installed here: nothing measured. On the GPU machine run "
              "`pip install \"jax[cuda12]\"`, then: KERAS_BACKEND=jax python bench/gpu_train.py")
        return 0
    os.environ["KERAS_BACKEND"] = a.backend  # before Keras is imported
    import keras
    import numpy as np
    from common import Timer, machine, table

    from fext import model as model_lib
    from fext.config import ModelConfig, TrainConfig
    from fext.feed import iter_batches
    from fext.images import to_model_input
    from fext.loop import run_epochs

    keras.config.set_dtype_policy(a.precision)
    print(machine(), "| backend", keras.backend.backend(), "| devices", _devices(a.backend))
    n = a.batch_size * a.steps
    cfg = ModelConfig(preset=a.preset)
    rng = np.random.default_rng(0)

    def fresh():
        keras.utils.set_random_seed(0)
        return model_lib.compile_autoencoder(model_lib.build_autoencoder(cfg, a.image_size), 1e-3)

    flops = 3 * model_lib.flops_per_image(fresh())
    with tempfile.TemporaryDirectory(prefix="fext-bench-gpu-") as tmp:
        path = Path(tmp) / "cache.u8"
        shape = (n, a.image_size, a.image_size, 3)
        cache = np.memmap(path, np.uint8, "w+", shape=shape)
        for s in range(0, n, 256):
            cache[s:s + 256] = rng.integers(0, 256, (min(256, n - s),) + shape[1:], np.uint8)
        cache.flush()
        cache = np.memmap(path, np.uint8, "r", shape=shape)
        x = to_model_input(cache)

        fit_model = fresh()
        fit_model.fit(x[:a.batch_size * 2], x[:a.batch_size * 2], batch_size=a.batch_size,
                      epochs=1, verbose=0)  # compile
        with Timer() as t_fit:
            fit_model.fit(x, x, batch_size=a.batch_size, epochs=1, verbose=0)

        ours = fresh()
        tcfg = TrainConfig(epochs=2, batch_size=a.batch_size)
        rows = np.arange(n)
        quiet = dict(batch_size=tcfg.batch_size, seed=tcfg.seed, on_epoch=lambda r: False,
                     progress=lambda *args, **kw: None)
        run_epochs(ours, cache, rows[:a.batch_size * 2], epochs=1, **quiet)  # compile
        with Timer() as t_ours:
            run_epochs(ours, cache, rows, epochs=2, start_epoch=1, **quiet)
        with Timer() as t_input:
            for _ in iter_batches(cache, rows, a.batch_size):
                pass
    table_rows = []
    for name, seconds in (("model.fit, synthetic in-memory arrays", t_fit.seconds),
                          ("fext run_epochs, memory-mapped uint8 cache", t_ours.seconds)):
        ips = n / seconds
        table_rows.append([name, ips, flops * ips / 1e12, flops * ips / (a.peak_tflops * 1e12)])
    table_rows.append(["input pipeline alone (memory map -> float batches)",
                       n / t_input.seconds, "", ""])
    print(table(["training loop", "images/s", "TFLOP/s", "MFU"], table_rows,
                f"{a.preset} at {a.image_size}px, batch {a.batch_size}, {a.steps} steps, "
                f"{a.precision}, {flops / 1e9:.2f} GFLOP per training image, "
                f"peak {a.peak_tflops:g} TFLOP/s"))
    print(f"input pipeline ratio (fext / fit): {t_fit.seconds / t_ours.seconds:.2f}")
    return 0


def _devices(backend: str) -> str:
    if backend == "jax":
        import jax

        return ", ".join(str(d) for d in jax.devices())
    return "see backend"


if __name__ == "__main__":
    sys.exit(main())
