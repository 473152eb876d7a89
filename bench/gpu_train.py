"""Training and extraction throughput on an accelerator: Keras on JAX, mixed bfloat16, as
images/s, step time, the share of the time the input pipeline keeps the device waiting, and
model FLOPs utilisation (MFU) against the accelerator's dense bf16 peak.

For each model (default: `medium` at 64 px, `vgg16` at 128 px), in one run:
- training without the recipe (the autoencoder on clean images, MSE): the device alone (one
  batch already on it, the same step repeated) and fext's loop (`fext.loop.run_epochs` over a
  memory-mapped uint8 cache of synthetic photos, the next batch prepared in a thread);
- training with the shipped recipe (`fext.train.views`: two edited views per image, the
  invariance term, look-alike batches): the device alone, then fext's loop with the views
  edited in the loop's thread (as before this benchmark) and by `fext.edits.edit_pool`
  processes (what `fext train` uses on an accelerator);
- extraction (`fext.encoding.encode_rows`, what `fext extract` runs): features only, and with
  the reconstruction scores, in float32 and bfloat16.
Input stall = time the loop waits for its next batch / time of the loop. MFU = model FLOPs
(3 x forward for a training step, `fext.model.flops_per_image`) x images/s / peak.

    KERAS_BACKEND=jax python bench/gpu_train.py --out gpu.md        # H100/H200 SXM: peak 989
    python bench/gpu_train.py --models vgg16:128 --batch-size 256 --steps 50
    python bench/gpu_train.py --quick                               # CPU smoke check, tiny

Needs JAX (docs/BENCHMARKS.md §5 says how to bring it and Keras to a GPU machine). Without
JAX it says so and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

SXM_BF16_TFLOPS = 989.0  # H100 and H200 SXM, dense bfloat16 (datasheet)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="medium:64,vgg16:128", help="preset:size, comma-separated")
    p.add_argument("--batch-size", type=int, default=256, help="inputs per training step")
    p.add_argument("--steps", type=int, default=50, help="timed steps per training row")
    p.add_argument("--slow-steps", type=int, default=15,
                   help="timed steps of the recipe with views edited in the loop's thread")
    p.add_argument("--workers", default="auto",
                   help="edit processes for the recipe's second row (auto: fext.edits.edit_workers)")
    p.add_argument("--threads", type=int, default=0,
                   help="batch-making threads of the rows marked 'now' (0: fext.feed.feed_threads)")
    p.add_argument("--extract-batch", type=int, default=1024)
    p.add_argument("--extract-batches", type=int, default=8, help="timed batches per extraction row")
    p.add_argument("--images", type=int, default=4096, help="distinct images in the cache")
    p.add_argument("--peak-tflops", type=float, default=SXM_BF16_TFLOPS,
                   help="the accelerator's dense bf16 peak (H100/H200 SXM: 989)")
    p.add_argument("--backend", default="jax", help="Keras backend (default: jax)")
    p.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    p.add_argument("--quick", action="store_true", help="CPU smoke check: tiny everything")
    a = p.parse_args()
    if a.quick:
        a.models, a.batch_size, a.steps, a.slow_steps = "small:32", 16, 3, 2
        a.extract_batch, a.extract_batches, a.images = 32, 2, 64
        a.workers = "2" if a.workers == "auto" else a.workers
    return a


class Stalls:
    """Wraps `fext.feed.prefetch` where a loop imported it: the time the loop waited for each
    item, and the span from its first request to its last item (the loop's own time)."""

    def __init__(self, module, name: str = "prefetch"):
        self.module, self.name, self.original = module, name, getattr(module, name)
        self.reset()
        setattr(module, name, self.timed)

    def reset(self) -> None:
        self.wait, self.start, self.end, self.items = 0.0, None, None, 0

    def timed(self, items, depth: int = 1, **work):
        source = self.original(items, depth, **work)
        while True:
            t = time.perf_counter()
            if self.start is None:
                self.start = t
            try:
                item = next(source)
            except StopIteration:
                self.end = time.perf_counter()
                return
            self.wait += time.perf_counter() - t
            self.items += 1
            yield item

    @property
    def span(self) -> float:
        return self.end - self.start


def feeding(threads: int) -> None:
    """Make fext's loops prepare batches with `threads` threads (1: as before feed_threads)."""
    import fext.encoding
    import fext.loop

    for module in (fext.loop, fext.encoding):
        module.feed_threads = lambda accelerator, n=threads: n


def main() -> int:
    a = parse()
    if a.backend == "jax" and importlib.util.find_spec("jax") is None:
        print("JAX is not installed here: nothing measured. See docs/BENCHMARKS.md §5, then: "
              "KERAS_BACKEND=jax python bench/gpu_train.py")
        return 0
    os.environ["KERAS_BACKEND"] = a.backend  # before Keras is imported
    import keras
    from common import machine, table

    import fext.encoding
    import fext.loop
    from fext.edits import edit_workers
    from fext.model import accelerator, native_bfloat16

    loop_stalls, extract_stalls = Stalls(fext.loop), Stalls(fext.encoding)
    from fext.feed import feed_threads

    workers = edit_workers(True) if a.workers == "auto" else int(a.workers)
    a.threads = a.threads or feed_threads(True)
    header = (f"{machine()} | backend {keras.backend.backend()} | devices {_devices(a.backend)} "
              f"| keras {keras.__version__} | fext: accelerator {accelerator()}, native bfloat16 "
              f"{native_bfloat16()}, edit processes {edit_workers(accelerator())}, batch threads "
              f"{feed_threads(accelerator())} (this run: {workers} and {a.threads})")
    out = [header]
    print(header, flush=True)
    matmul = _matmul_tflops(a.backend) if not a.quick else None
    if matmul:
        line = f"bf16 matrix product 8192^3 on this device: {matmul:.0f} TFLOP/s"
        out.append(line)
        print(line, flush=True)

    def emit(title: str, headers: list[str], rows: list[list]) -> None:
        text = table(headers, rows, title)
        print(text + "\n", flush=True)
        out.append(text)
        if a.out:
            a.out.write_text("\n\n".join(out) + "\n")

    for spec in a.models.split(","):
        preset, size = spec.split(":")
        measure(preset, int(size), a, workers, emit, loop_stalls, extract_stalls)
    return 0


def measure(preset: str, size: int, a: argparse.Namespace, workers: int, emit,
            loop_stalls: Stalls, extract_stalls: Stalls) -> None:
    """The training table and the extraction table of one model."""
    import keras
    import numpy as np
    from common import photo

    from fext import model as model_lib
    from fext.config import ModelConfig, TrainConfig
    from fext.edits import edit_pool
    from fext.encoding import encode_all, encode_rows
    from fext.images import to_model_input
    from fext.loop import run_epochs
    from fext.train import RowFeatures, look_alike_batches, views

    peak = a.peak_tflops * 1e12
    cfg = ModelConfig(preset=preset)
    tc = TrainConfig(batch_size=a.batch_size)
    with tempfile.TemporaryDirectory(prefix="fext-bench-gpu-") as tmp:
        t0 = time.perf_counter()
        cache = _photo_cache(Path(tmp) / "cache.u8", a.images, size, photo)
        made = time.perf_counter() - t0

        def fresh(recipe: bool):
            keras.utils.set_random_seed(0)
            ae = model_lib.build_autoencoder(cfg, size, "bfloat16")
            if recipe:
                return ae, model_lib.build_trainer(ae, tc.invariance, tc.learning_rate)
            return ae, model_lib.compile_autoencoder(ae, tc.learning_rate)

        per_image = model_lib.flops_per_image(fresh(False)[0])
        train_flops = 3 * per_image
        rows = []

        def row(name: str, inputs: int, seconds: float, steps: int, stall: float | str):
            ips = inputs / seconds
            rows.append([name, ips, 1000 * seconds / steps, stall,
                         train_flops * ips / 1e12, train_flops * ips / peak])

        # -- without the recipe: the autoencoder on clean images
        ae, model = fresh(False)
        x0 = to_model_input(cache[:a.batch_size])
        device_x = _on_device(x0, a.backend)
        for _ in range(2):  # compile
            float(model.train_on_batch(device_x, device_x, return_dict=True)["loss"])
        t = time.perf_counter()
        for _ in range(a.steps):
            float(model.train_on_batch(device_x, device_x, return_dict=True)["loss"])
        row("plain: device alone (one batch on the device)", a.steps * a.batch_size,
            time.perf_counter() - t, a.steps, "")
        quiet = dict(seed=0, on_epoch=lambda r: False, progress=lambda *args, **kw: None)
        for threads in (1, a.threads):
            feeding(threads)
            loop_stalls.reset()
            run_epochs(model, cache, np.arange(len(cache)), epochs=1, batch_size=a.batch_size,
                       epoch_steps=a.steps, **quiet)
            row(f"plain: fext loop, batches made by {threads} thread{'s' * (threads > 1)}"
                + (" (before)" if threads == 1 else " (now)"), a.steps * a.batch_size,
                loop_stalls.span, a.steps, loop_stalls.wait / loop_stalls.span)

        # -- the shipped recipe: two edited views per image, invariance, look-alike batches
        ae, trainer = fresh(True)
        per_step = a.batch_size // 2
        x_in, y = views(to_model_input(cache[:per_step]), None, tc, 0, 0)
        device_in, device_y = _on_device(x_in, a.backend), [_on_device(v, a.backend) for v in y]
        for _ in range(2):
            float(trainer.train_on_batch(device_in, device_y, return_dict=True)["loss"])
        t = time.perf_counter()
        for _ in range(a.steps):
            float(trainer.train_on_batch(device_in, device_y, return_dict=True)["loss"])
        row("recipe: device alone", a.steps * a.batch_size, time.perf_counter() - t,
            a.steps, "")
        encoder = model_lib.encoder_of(ae)
        encode_all((encoder, None), cache, np.arange(a.batch_size), a.batch_size,
                   reconstruct=False)  # compile the look-alike pass
        arrange_seconds = []
        arrange = look_alike_batches(RowFeatures(encoder, cache, a.batch_size),
                                     min(tc.neighbours, per_step))

        def timed_arrange(r, epoch):
            t = time.perf_counter()
            order = arrange(r, epoch)
            arrange_seconds.append(time.perf_counter() - t)
            return order

        for label, threads, n_workers, steps in (
                ("1 thread, edits in it (before)", 1, 0, a.slow_steps),
                (f"1 thread, edits in {workers} processes", 1, workers, a.steps),
                (f"{a.threads} threads, edits in {workers} processes (now)", a.threads, workers,
                 a.steps)):
            feeding(threads)
            with edit_pool(n_workers) as pool:
                if pool is not None:  # start the processes before timing
                    views(to_model_input(cache[:per_step]), None, tc, 0, 0, pool=pool)
                loop_stalls.reset()
                run_epochs(trainer, cache, np.arange(len(cache)), epochs=1,
                           batch_size=per_step, epoch_steps=steps, arrange=timed_arrange,
                           make_batch=lambda x, y, e, s: views(x, y, tc, e, s, pool=pool),
                           **quiet)
            row(f"recipe: fext loop, {label}", steps * a.batch_size, loop_stalls.span,
                steps, loop_stalls.wait / loop_stalls.span)
        emit(f"Training: {preset} at {size} px, batch {a.batch_size} inputs, mixed bfloat16, "
             f"{train_flops / 1e9:.2f} GFLOP per training input, peak {a.peak_tflops:g} "
             f"TFLOP/s; the look-alike pass before an epoch took "
             f"{min(arrange_seconds):.2f} s for {a.steps * per_step:,} images; "
             f"cache of {a.images:,} synthetic photos made in {made:.0f} s",
             ["training", "inputs/s", "step ms", "input stall", "TFLOP/s", "MFU"], rows)

        # -- extraction: what `fext extract` runs, per batch of a.extract_batch
        published = model_lib.in_float32(ae)
        n = a.extract_batch * a.extract_batches
        order = np.arange(n) % len(cache)
        rows, first = [], {}
        for precision in ("float32", "bfloat16"):
            parts = model_lib.inference_parts(published, precision)
            enc_flops = model_lib.flops_per_image(parts[0])
            dec_flops = model_lib.flops_per_image(parts[1])
            for reconstruct, threads in ((False, 1), (False, a.threads), (True, 1),
                                         (True, a.threads)):
                feeding(threads)
                warm = list(encode_rows(parts, cache, order[:a.extract_batch], a.extract_batch,
                                        reconstruct))  # compile
                first[precision] = warm[0][1]
                extract_stalls.reset()
                for _ in encode_rows(parts, cache, order, a.extract_batch, reconstruct):
                    pass
                ips = n / extract_stalls.span
                flops = enc_flops + (dec_flops if reconstruct else 0)
                what = "with reconstruction scores" if reconstruct else "features only"
                rows.append([f"{precision}, {what}, {threads} thread{'s' * (threads > 1)}",
                             ips, 1000 * extract_stalls.span / a.extract_batches,
                             extract_stalls.wait / extract_stalls.span,
                             flops * ips / 1e12, flops * ips / peak])
        cosine = np.sum(first["float32"] * first["bfloat16"], axis=1)
        emit(f"Extraction: {preset} at {size} px, batch {a.extract_batch}, "
             f"{a.extract_batches} batches (fext.encoding.encode_rows over the memory map); "
             f"bfloat16 features against float32: cosine min {cosine.min():.5f}, "
             f"median {np.median(cosine):.5f}",
             ["extraction", "images/s", "batch ms", "input stall", "TFLOP/s", "MFU"], rows)


def _photo_cache(path: Path, count: int, size: int, photo):
    """A memory-mapped uint8 cache of `count` synthetic photos (bench/common.photo) at `size`:
    what a collection's cache holds, with content that costs what photos cost to edit."""
    import numpy as np
    from PIL import Image

    cache = np.memmap(path, np.uint8, "w+", shape=(count, size, size, 3))
    for i in range(count):
        side = max(size, 64)
        cache[i] = np.asarray(photo(i, side, side).resize((size, size), Image.BILINEAR))
    cache.flush()
    return np.memmap(path, np.uint8, "r", shape=(count, size, size, 3))


def _on_device(x, backend: str):
    """`x` placed on the accelerator once, so a step repeated on it measures the device alone."""
    if backend == "jax":
        import jax

        return jax.device_put(x)
    return x


def _matmul_tflops(backend: str) -> float | None:
    """The bf16 matrix-product rate this device reaches (8192^3, mean of 10 after 3 warm-ups):
    the practical ceiling beside the datasheet's peak."""
    if backend != "jax":
        return None
    import jax
    import jax.numpy as jnp

    if jax.default_backend() == "cpu":
        return None
    n = 8192
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.bfloat16)
    f = jax.jit(lambda m: m @ m)
    for _ in range(3):
        f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(10):
        r = f(a)
    r.block_until_ready()
    return 2 * n ** 3 * 10 / (time.perf_counter() - t) / 1e12


def _devices(backend: str) -> str:
    if backend == "jax":
        import jax

        return ", ".join(str(d) for d in jax.devices())
    return "see backend"


if __name__ == "__main__":
    sys.exit(main())
