#!/usr/bin/env bash
# The GPU check in one script, for a machine with a CUDA device (under 8 minutes on one
# H100-class GPU): the CUDA/AMP tests, then benchmarks/gpu_speed.py (fit of ResNet-50 at
# 224 px in bf16, one U-Net epoch, feature extraction, the metrics at N = 50,000, each as a
# fraction of the measured roofline) and the U-Net epoch benchmark. Records land in
# benchmarks/out/*.json. Without a CUDA device it says so and exits 0.
#
#     bash benchmarks/gpu.sh            # from the repository root, after the quick start's install
#     PY=python bash benchmarks/gpu.sh  # another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
start=$(date +%s)

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu.sh: no CUDA device visible to torch ($("$PY" -c 'import torch; print(torch.__version__)')): nothing to measure, skipping"
  exit 0
fi
"$PY" -c "import torch; p = torch.cuda.get_device_properties(0); print(f'gpu.sh: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}')"

echo "== CUDA/AMP tests (tests/test_cuda.py) =="
timeout 180 "$PY" -m pytest -q tests/test_cuda.py -p no:cacheprovider

echo "== speed as a fraction of the roofline (benchmarks/gpu_speed.py) =="
(cd benchmarks && timeout 300 "$PY" gpu_speed.py --device cuda)

echo "== U-Net epoch, CPU and GPU (benchmarks/unet_epoch.py) =="
(cd benchmarks && timeout 120 "$PY" unet_epoch.py --n 256)

echo "gpu.sh: finished in $(( $(date +%s) - start )) s; records in benchmarks/out/"
