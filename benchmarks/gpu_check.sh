#!/usr/bin/env bash
# GPU check for the torch backend of kernels.plan (issue 7), as one prepared run:
#   1. which device, torch and numpy this is;
#   2. the backend parity suite on the GPU (tests/kernels/test_backend.py and the common planner suite over
#      numpy / torch-cpu / torch-cuda; the CUDA cases skip only where there is no GPU);
#   3. the scaling table J = 5k, 20k, 50k, 100k at T = 192 (up to 100,000 GPUs) with torch on the GPU, and
#      numpy on this machine's CPU timed on the same instances in the same run as the baseline: cold solves,
#      warm re-plans, their ratio, plan parity, per-stage times and one dual iteration against the GPU's
#      copy bandwidth.
# Writes device.txt, parity.txt, parity.xml, scaling.txt, optimizer.json and optimizer.md to ${OUT:-out/gpu_check}.
#
# Needs Python with PyTorch (the GPU machines have it, with numpy, pyyaml, pytest and hypothesis). Whatever
# else is missing (pydantic, on those machines) is installed from the wheels in ${WHEELS:-.whl}, fetched
# beforehand on a connected machine by benchmarks/fetch_gpu_wheels.sh, into a scratch folder outside $OUT.
# Without ../shared/data the instances come from the embedded synthetic energy and job models, and the
# JSON says so ("energy"). On a machine without CUDA everything runs with torch on the CPU instead, so the
# script can be checked anywhere (tests/integration/test_gpu_check_script.py runs it in CI, small).
#
#   bash benchmarks/gpu_check.sh                      # the full table (a few minutes on an H100)
#   SIZES=2000 RUNS=1 TICKS=2 PARITY=quick bash benchmarks/gpu_check.sh   # a quick look
#   PARITY=full (the default) | quick (the move and warm-chain parity tests) | smoke (the move test only)
#
# CHECK=parity (issue 11, one short call, about 4 minutes on an H100): steps 2 and 3 replaced by
# benchmarks/backend_parity.py on the GPU: the plans of the first ${CORPUS:-20} seed-0 corpus instances, ${CHAINS:-1} warm
# chain(s) (cold + ${CHAIN_TICKS:-3} warm ticks) and make_problem(${BIG:-50000}, ${BIG_SLOTS:-192}) cold + ${BIG_TICKS:-2} warm ticks,
# each on numpy (this machine's CPU) and torch (the GPU), compared (backend_parity.close_enough: the suite's CUDA
# tolerances; the cells that differ are counted either way) and timed (process CPU and wall, the device synchronised): $OUT/parity/parity.json
# (summary: "ok", the cases that differ, numpy and torch seconds; per tick lines) and parity.jsonl. Exit 0
# where every tick is the same plan, 1 where one differs.
#   CHECK=parity bash benchmarks/gpu_check.sh
#   CHECK=parity CORPUS=2 CHAINS=1 CHAIN_TICKS=1 BIG=48 BIG_SLOTS=12 BIG_TICKS=1 bash benchmarks/gpu_check.sh  # dry run
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/gpu_check}"
WHEELS="${WHEELS:-.whl}"
PY="${PYTHON:-python3}"
SITE_DIR="${WINDWARD_GPU_SITE:-${TMPDIR:-/tmp}/windward-gpu-site}"
mkdir -p "$OUT"

missing=$("$PY" - <<'PY'
import importlib.util
need = {"numpy": "numpy", "yaml": "pyyaml", "pydantic": "pydantic", "pytest": "pytest", "hypothesis": "hypothesis",
        "torch": "torch"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
PY
)
if [ -n "$missing" ]; then
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "missing Python packages: $missing, and no wheels in $WHEELS (run benchmarks/fetch_gpu_wheels.sh on a connected machine)"
    exit 2
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE_DIR" \
    "$WHEELS"/*.whl >"$OUT/pip.log" 2>&1 || { echo "installing the wheels in $WHEELS failed, see $OUT/pip.log"; exit 2; }
  export PYTHONPATH="$SITE_DIR${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$PY" - <<'PY' | tee "$OUT/device.txt"
import os, platform
import numpy, torch
cuda = torch.cuda.is_available()
print("torch", torch.__version__, "numpy", numpy.__version__, "python", platform.python_version(),
      "cpus", os.cpu_count(), "cuda", cuda, torch.cuda.get_device_name(0) if cuda else "-")
PY

DEV=cpu  # from the probe above (a second Python importing torch only to ask again cost ~2.5 s of CPU)
grep -q " cuda True " "$OUT/device.txt" && DEV=cuda

if [ "${CHECK:-full}" = "parity" ]; then
  set +e
  "$PY" benchmarks/backend_parity.py --device "$DEV" --corpus "${CORPUS:-20}" --chains "${CHAINS:-1}" \
    --chain-ticks "${CHAIN_TICKS:-3}" --big "${BIG:-50000}" --big-slots "${BIG_SLOTS:-192}" \
    --big-ticks "${BIG_TICKS:-2}" --time --out "$OUT/parity" 2>&1 | tee "$OUT/parity.txt"
  rc=${PIPESTATUS[0]}
  echo "results in $OUT/parity: parity.json, parity.jsonl (exit code $rc)"
  exit "$rc"
fi

# 2. parity on every backend this machine has
if [ "${PARITY:-full}" = "quick" ]; then
  sel=(tests/kernels/test_backend.py -k "move or warm")
elif [ "${PARITY:-full}" = "smoke" ]; then  # one parity test: that the step runs (CI; the suite has the rest)
  sel=(tests/kernels/test_backend.py -k "move")
else
  sel=(tests/kernels/test_backend.py tests/kernels/test_planner.py)
fi
set +e
"$PY" -m pytest -q -p no:cacheprovider "${sel[@]}" --junitxml="$OUT/parity.xml" 2>&1 | tee "$OUT/parity.txt"
parity_rc=${PIPESTATUS[0]}
set -e

# 3. scaling table, numpy on this machine's CPU in the same run as the baseline
"$PY" benchmarks/optimizer.py --backend torch --device "$DEV" --baseline-numpy \
  --sizes "${SIZES:-5000,20000,50000,100000}" --slots "${SLOTS:-192}" --runs "${RUNS:-3}" --ticks "${TICKS:-5}" \
  --highs-max-j 0 --out "$OUT" 2>&1 | tee "$OUT/scaling.txt"
echo "results in $OUT: optimizer.json, optimizer.md, parity.xml (parity exit code $parity_rc)"
exit "$parity_rc"
