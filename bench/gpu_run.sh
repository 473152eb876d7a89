#!/usr/bin/env bash
# The GPU check of docs/BENCHMARKS.md §5 as one command, for a lent machine with JAX and no
# network: Keras, its two missing dependencies and faiss from carried wheels (.whl/), the
# benchmark (bench/gpu_train.py), then `fext train` and `fext extract` through the CLI, as a
# user runs them, on 400 synthetic photos. Everything it prints lands in $OUT (or ./gpu-out).
set -u
out=${OUT:-gpu-out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
nproc | tee -a "$out/gpu.txt"
timeout "${BENCH_S:-400}" python3 bench/gpu_train.py --models "${MODELS:-vgg16:128,medium:64}" \
  --out "$out/bench.md" 2>&1 | tee "$out/bench.log"
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path
from common import write_photos; write_photos(Path('/tmp/photos'), 400)"
{ time timeout "${CLI_S:-150}" python3 -m fext train --images /tmp/photos --workspace /tmp/ws \
    --name gpu; } 2>&1 | tee "$out/cli.log"
{ time timeout 90 python3 -m fext extract --workspace /tmp/ws --name gpu; } 2>&1 | tee -a "$out/cli.log"
cp /tmp/ws/models/gpu/metrics.json "$out/" 2>/dev/null || true
