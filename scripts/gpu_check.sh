#!/usr/bin/env bash
# The GPU check of cnnkit's CuPy backend: run it on a machine with CuPy, a CUDA GPU, PyTorch (CUDA) and pytest,
# from the working tree:   bash scripts/gpu_check.sh
# 1. tests/gpu (every layer forward/backward vs NumPy, directional gradient checks, fit + model file) on the
#    cupy backend, plus tests/test_backend.py; prints pytest's summary line;
# 2. training throughput of BASE, a VGG-style stack and VGG-16 (batch 32) on CuPy and on PyTorch CUDA
#    (scripts/gpu_bench.py), written to gpu_bench.json. Meant to finish within ~8 minutes.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export CNNKIT_JIT=0            # numba is never used under CuPy; skip compiling it
PY="${PYTHON:-python}"

echo "== environment"
"$PY" - <<'PYEOF'
import numpy, sys
print("python", sys.version.split()[0], "numpy", numpy.__version__)
try:
    import cupy
    print("cupy", cupy.__version__, "devices", cupy.cuda.runtime.getDeviceCount(),
          cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
except Exception as e:
    print("cupy unavailable:", type(e).__name__, e)
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.cuda.is_available())
except Exception as e:
    print("torch unavailable:", type(e).__name__, e)
from cnnkit import backend
backend.use("cupy")
print("cnnkit backend:", backend.name(), backend.is_gpu())
PYEOF

echo "== tests (cupy backend)"
timeout 240 "$PY" -m pytest -q -p no:cacheprovider -rs tests/gpu tests/test_backend.py 2>&1 | tail -25
echo "pytest exit: ${PIPESTATUS[0]}"

echo "== benchmark (CuPy vs PyTorch CUDA)"
timeout 300 "$PY" scripts/gpu_bench.py --device gpu --steps 20 --warmup 3 --budget 25 --json gpu_bench.json
echo "bench exit: $?"
