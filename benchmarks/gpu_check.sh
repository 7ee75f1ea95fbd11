#!/usr/bin/env bash
# GPU check for the torch backend of kernels.plan (issue 7): parity tests on the GPU, then the scaling
# table J = 5k, 20k, 50k, 100k at T = 192 with torch/cuda, numpy on this machine's CPU timed in the same
# run as the baseline. Writes JSON + markdown to ${OUT:-out/gpu_check}.
#
# Assumes only Python + PyTorch on the machine. Everything else (numpy, pyyaml, pydantic, pytest,
# hypothesis, scipy, highspy) comes from a wheel directory prepared beforehand on a connected machine:
#     pip download -d wheels numpy pyyaml pydantic pytest pytest-timeout hypothesis scipy highspy
# and found through $WHEELS (default: ./wheels). Without shared/data the instances use the embedded
# synthetic energy and job models (the JSON says which).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/gpu_check}"
WHEELS="${WHEELS:-wheels}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
if ! "$PY" -c "import numpy, yaml, pydantic, pytest, hypothesis" 2>/dev/null; then
  if [ -d "$WHEELS" ]; then
    "$PY" -m pip install --no-index --find-links "$WHEELS" numpy pyyaml pydantic pytest pytest-timeout hypothesis \
      scipy highspy >"$OUT/pip.log" 2>&1 || { echo "installing from $WHEELS failed, see $OUT/pip.log"; exit 2; }
  else
    echo "missing numpy/pyyaml/pydantic/pytest/hypothesis and no wheel dir $WHEELS"; exit 2
  fi
fi
"$PY" - <<'PY' | tee "$OUT/device.txt"
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
PY
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# 1. parity: the common suite on numpy / torch-cpu / torch-cuda (CUDA cases skip only without a GPU)
"$PY" -m pytest -q -p no:cacheprovider tests/kernels/test_planner.py -k "backends or every_plan" \
  --junitxml="$OUT/parity.xml" 2>&1 | tee "$OUT/parity.txt"
# 2. scaling table, numpy CPU baseline in the same run
DEV=cpu; "$PY" -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" && DEV=cuda
"$PY" benchmarks/optimizer.py --backend torch --device "$DEV" --baseline-numpy --sizes "${SIZES:-5000,20000,50000,100000}" \
  --slots 192 --runs "${RUNS:-3}" --highs-max-j 0 --out "$OUT" 2>&1 | tee "$OUT/scaling.txt"
echo "results in $OUT: optimizer.json, optimizer.md, parity.xml"
