"""Feature extraction as a Ray Data job: the same encoding step, spread over a cluster.

`RayEncoder` is an encoder for `fext.features.extract` (the `--engine ray` of the CLI). The
driver (this process) still scans the folder, decodes new files into the cache, publishes the
artefacts and builds the index; the cluster runs the expensive part, the forward passes. Rows
of the cache are split into blocks (`ray.data.from_numpy`); `map_batches` hands them to a pool
of actors, each of which loads the model once and runs `fext.encoding.encode_rows` on its
batches, exactly what the single-process engine runs, so the features are the same. Results
stream back block by block into the memory-mapped features file: the driver's memory does not
grow with the collection.

Workers read the model and the cache by path: on a multi-machine cluster the workspace must be
on storage every node mounts at the same path (docs/SCALEOUT.md). Ray is imported only here,
only when this engine is used.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from .encoding import EncodeJob, encode_rows
from .errors import UsageError

BLOCK_ROWS = 4096  # cache rows per Ray Data block: big enough to amortise scheduling


class EncodeBatches:
    """A Ray Data actor: loads the model once, then encodes the batches it is given."""

    def __init__(self, job: EncodeJob):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from .model import inference_parts, load

        self.job, self.images = job, job.images()
        self.parts = inference_parts(load(job.model_path), job.precision)

    def __call__(self, batch: dict) -> dict:
        pairs = np.asarray(batch["data"], np.int64)  # (positions, cache rows)
        job = self.job
        out = list(encode_rows(self.parts, self.images, pairs[:, 1], job.batch_size,
                               job.reconstruct))
        recon = (np.concatenate([o[2] for o in out]) if job.reconstruct
                 else np.zeros(len(pairs), np.float32))
        return {"pos": pairs[np.concatenate([o[0] for o in out]), 0],
                "features": np.concatenate([o[1] for o in out]), "recon": recon}


class RayEncoder:
    """Encode on a Ray cluster (`address`), or on a local one started for the job.

    `workers` model replicas run at once (default: one per CPU of the cluster, each given
    `cpus_per_worker`). A Ray session already initialised by the caller (tests, notebooks) is
    used as it is and left running.
    """

    def __init__(self, address: str | None = None, workers: int | None = None,
                 cpus_per_worker: float = 1.0):
        if workers is not None and workers < 1:
            raise UsageError(f"workers must be at least 1, got {workers}")
        if cpus_per_worker <= 0:
            raise UsageError(f"cpus per worker must be positive, got {cpus_per_worker}")
        self.address, self.workers, self.cpus_per_worker = address, workers, cpus_per_worker

    def __call__(self, job: EncodeJob):
        import ray

        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     runtime_env=_runtime_env(self.address))
        try:
            yield from self._run(job, ray)
        finally:
            if started:
                ray.shutdown()

    def _run(self, job: EncodeJob, ray):
        pairs = np.stack([np.arange(len(job.rows)), np.asarray(job.rows, np.int64)], axis=1)
        blocks = np.array_split(pairs, max(1, -(-len(pairs) // BLOCK_ROWS)))
        workers = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)
                                             // self.cpus_per_worker))
        ds = ray.data.from_numpy(blocks).map_batches(
            EncodeBatches, batch_size=None, batch_format="numpy", concurrency=workers,
            num_cpus=self.cpus_per_worker,
            # the job without its rows: each actor gets its rows block by block
            fn_constructor_kwargs={"job": replace(job, rows=np.empty(0, np.int64))})
        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            yield out["pos"], out["features"], out["recon"] if job.reconstruct else None


def _runtime_env(address: str | None) -> dict:
    """Make `fext` importable by the workers: shipped to a remote cluster, on the path locally."""
    package = Path(__file__).resolve().parent
    if address:
        return {"py_modules": [str(package)]}
    path = os.pathsep.join(p for p in (str(package.parent), os.environ.get("PYTHONPATH")) if p)
    return {"env_vars": {"PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3"}}
