"""Training throughput on CPU per preset: fext's loop over the memory-mapped cache against a
plain Keras `model.fit` on in-memory float arrays of the same model, in the same run.

The ratio (fext / fit) is the cost of fext's input pipeline and explicit, resumable loop
(uint8 cache rows gathered and converted per batch, `train_on_batch` per step); goal >= 0.9.
Each side gets a warm-up epoch (tracing), then timed epochs alternate between the two so that
load from other processes hits both alike; the best epoch of each is kept.

    .venv/bin/python bench/train.py             # all presets (a few minutes on 2 cores)
    .venv/bin/python bench/train.py --quick     # small and medium, fewer images
    .venv/bin/python bench/train.py --presets vgg16 --images 256 --rounds 3
    .venv/bin/python bench/train.py --decoders  # the recipe's step, lean against wide decoder

`--first-step` times a training run's first optimiser step (its tracing included) with the
optimiser's and the loss's state built before it (`fext.loop.build_state`, as `run_epochs`
does) against Keras's own deferral, which creates them inside the traced step and makes
TensorFlow trace it twice: each in a fresh process (cold caches), alternating, at the shipped
preset, size, batch and precision, and at the tests' tiny model.

`--decoders` times one optimiser step of the shipped recipe (two edited views of each image,
both decoded, the invariance term; fext.train.views and fext.model.build_trainer) at the
shipped preset, size, batch and precision (`--precision auto` as on this machine), for each
decoder (`--decoder lean`, the default, and `wide`), steps interleaved, median of each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import Timer, machine, table

SIZES = {"small": 64, "medium": 64, "large": 64, "vgg16": 32}  # vgg16 needs a multiple of 32


def synthetic_cache(path: Path, n: int, size: int) -> np.ndarray:
    """A memory-mapped uint8 image cache like a collection's (smooth random pictures)."""
    rng = np.random.default_rng(0)
    cache = np.memmap(path, np.uint8, "w+", shape=(n, size, size, 3))
    base = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.float32)
    cache[:] = np.repeat(np.repeat(base, size // 4, 1), size // 4, 2).astype(np.uint8)
    cache.flush()
    return np.memmap(path, np.uint8, "r", shape=(n, size, size, 3))


def fresh_model(preset: str, size: int):
    from fext import model as model_lib
    from fext.config import ModelConfig
    from fext.loop import set_seed

    set_seed(0)
    return model_lib.compile_autoencoder(
        model_lib.build_autoencoder(ModelConfig(preset=preset), size), 1e-3)


def ours_epoch(model, cache: np.ndarray, batch_size: int, epoch: int) -> float:
    """Seconds for one epoch of fext.loop.run_epochs over every row of the cache."""
    from fext.config import TrainConfig
    from fext.loop import run_epochs

    tcfg = TrainConfig(epochs=epoch + 1, batch_size=batch_size)
    with Timer() as t:
        run_epochs(model, cache, np.arange(len(cache)), epochs=tcfg.epochs,
                   batch_size=tcfg.batch_size, seed=tcfg.seed, on_epoch=lambda row: False,
                   progress=lambda *a, **k: None, start_epoch=epoch)
    return t.seconds


def fit_epoch(model, x: np.ndarray, batch_size: int) -> float:
    with Timer() as t:
        model.fit(x, x, batch_size=batch_size, epochs=1, shuffle=True, verbose=0)
    return t.seconds


def one_preset(preset: str, n: int, batch_size: int, rounds: int, tmp: Path) -> list:
    from fext.images import to_model_input
    from fext.model import flops_per_image

    size = SIZES[preset]
    cache = synthetic_cache(tmp / f"{preset}.u8", n, size)
    in_memory = to_model_input(cache)  # the baseline's whole data set as float32, in RAM
    ours, base = fresh_model(preset, size), fresh_model(preset, size)
    ours_epoch(ours, cache, batch_size, 0)  # warm-up: tracing and first allocations
    fit_epoch(base, in_memory, batch_size)
    t_ours, t_base = [], []
    for r in range(rounds):
        t_ours.append(ours_epoch(ours, cache, batch_size, r + 1))
        t_base.append(fit_epoch(base, in_memory, batch_size))
    ips_ours, ips_base = n / min(t_ours), n / min(t_base)
    gflop = 3 * flops_per_image(ours) / 1e9
    print(f"{preset}: fit {ips_base:.1f} img/s, fext {ips_ours:.1f} img/s", file=sys.stderr,
          flush=True)  # partial results survive an interrupted run
    return [preset, f"{size}px", n, batch_size, gflop, ips_base, ips_ours, ips_ours / ips_base]


def photo_batch(n: int, size: int) -> np.ndarray:
    """`n` photo crops as model inputs at `size` px (bench/photos.py, seed 0)."""
    from photos import crops

    from fext.images import fit_square, to_model_input, to_rgb

    return to_model_input(np.stack([np.asarray(fit_square(to_rgb(im), size))
                                    for _, im in crops(n, seed=0)]))


def decoder_steps(steps: int) -> list:
    """Median seconds of a shipped-recipe training step per decoder, interleaved."""
    from fext import model as model_lib
    from fext.config import DECODERS, DataConfig, ModelConfig, TrainConfig
    from fext.encoding import resolve_precision
    from fext.loop import set_seed
    from fext.train import views

    tc, size, precision = TrainConfig(), DataConfig().image_size, resolve_precision("auto")
    per_step = tc.batch_size // 2  # images a step: two views each
    x = photo_batch(4 * per_step, size)
    trainers = {}
    for decoder in DECODERS:
        set_seed(0)
        ae = model_lib.build_autoencoder(ModelConfig(decoder=decoder), size, precision)
        trainers[decoder] = model_lib.build_trainer(ae, tc.invariance, tc.learning_rate,
                                                    0.0, tc.decoded_views)
    seconds = {d: [] for d in DECODERS}
    for step in range(steps + 2):  # the first two of each: tracing and first allocations
        batch = x[(step % 4) * per_step:(step % 4 + 1) * per_step]
        inputs, targets = views(batch, None, tc, 0, step)
        for decoder, trainer in trainers.items():
            with Timer() as t:
                trainer.train_on_batch(inputs, targets)
            if step >= 2:
                seconds[decoder].append(t.seconds)
    wide = float(np.median(seconds["wide"]))
    return [[d, f"{size}px", tc.batch_size, precision,
             3 * model_lib.flops_per_image(model_lib.autoencoder_of(trainers[d])) / 1e9,
             float(np.median(seconds[d])), float(np.median(seconds[d])) / wide] for d in DECODERS]


def first_step(config: str, built: bool) -> float:
    """Seconds of the first step of a fresh shipped-recipe trainer (`config`: "shipped" or
    "tiny", the tests' model), with its state built first or left to Keras."""
    from fext import model as model_lib
    from fext.config import DataConfig, ModelConfig, TrainConfig
    from fext.encoding import resolve_precision
    from fext.loop import build_state, set_seed
    from fext.train import views

    tc, size, model = TrainConfig(), DataConfig().image_size, ModelConfig()
    if config == "tiny":  # tests/helpers.py's TINY
        tc, size, model = TrainConfig(batch_size=16), 16, ModelConfig(preset="small", latent_dim=8)
    precision = resolve_precision("auto")
    x = photo_batch(tc.batch_size // 2, size)
    set_seed(0)
    trainer = model_lib.build_trainer(model_lib.build_autoencoder(model, size, precision),
                                      tc.invariance, tc.learning_rate, 0.0, tc.decoded_views)
    inputs, targets = views(x, None, tc, 0, 0)
    with Timer() as t:
        if built:
            build_state(trainer, inputs, targets)
        trainer.train_on_batch(inputs, targets)
    return t.seconds


def first_steps(rounds: int) -> list:
    """Median first-step seconds, built against deferred, each run in a fresh process."""
    import subprocess

    rows = []
    for config in ("shipped", "tiny"):
        seconds = {True: [], False: []}
        for _ in range(rounds):
            for built in (True, False):
                out = subprocess.run([sys.executable, __file__, "--first-step-child", config,
                                      str(int(built))], capture_output=True, text=True, check=True)
                seconds[built].append(float(out.stdout.split()[-1]))
        b, d = (float(np.median(seconds[k])) for k in (True, False))
        rows.append([config, rounds, d, b, d / b])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="small,medium,large,vgg16")
    p.add_argument("--images", type=int, default=1024, help="images per epoch")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3, help="timed epochs per side")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--decoders", action="store_true",
                   help="time the shipped recipe's step with each decoder instead")
    p.add_argument("--steps", type=int, default=20, help="timed steps per decoder (--decoders)")
    p.add_argument("--first-step", action="store_true",
                   help="time a run's first step with its state built first or deferred")
    p.add_argument("--first-step-child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.first_step_child:
        print(first_step(a.first_step_child[0], bool(int(a.first_step_child[1]))))
        return
    if a.first_step:
        print(machine())
        print(table(["model", "runs each", "deferred s", "built first s", "ratio"],
                    first_steps(a.rounds),
                    "A training run's first step (tracing included), state built before it "
                    "against Keras's deferral (fresh process each, alternating, median)"))
        return
    if a.decoders:
        print(machine())
        print(table(["decoder", "size", "batch", "precision", "train GFLOP/img", "s / step",
                     "of wide"], decoder_steps(a.steps),
                    "The shipped recipe's training step per decoder (same run, interleaved, "
                    "median)"))
        return
    presets = ["small", "medium"] if a.quick else a.presets.split(",")
    n, rounds = (256, 2) if a.quick else (a.images, a.rounds)
    print(machine())
    with tempfile.TemporaryDirectory(prefix="fext-bench-train-") as tmp:
        rows = [one_preset(pr, n if pr != "vgg16" else max(a.batch_size, n // 2), a.batch_size,
                           rounds, Path(tmp)) for pr in presets]
    print(table(["preset", "size", "images", "batch", "train GFLOP/img", "fit img/s",
                 "fext img/s", "ratio"], rows,
                "Training throughput, CPU (baseline: model.fit on in-memory arrays, same run; "
                "goal ratio >= 0.9)"))


if __name__ == "__main__":
    main()
