#!/usr/bin/env bash
# Fetch, on a connected machine, the wheels benchmarks/gpu_check.sh needs on a GPU machine that cannot reach
# a package index: the Python packages the kernels benchmark imports that such a machine lacks (pydantic and
# its own needs; numpy, pyyaml, pytest, hypothesis and torch are there). The versions are this venv's.
#
#   bash benchmarks/fetch_gpu_wheels.sh            # into .whl/ (git-ignored), for CPython 3.12 x86-64
#   PY_VERSION=3.11 WHEELS=/tmp/w bash benchmarks/fetch_gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS="${WHEELS:-.whl}"
PY="${PYTHON:-.venv/bin/python}"
PYV="${PY_VERSION:-3.12}"
mkdir -p "$WHEELS"
pins=$("$PY" - <<'PY'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("pydantic", "pydantic-core", "annotated-types", "typing-inspection",
                                             "typing-extensions")))
PY
)
# shellcheck disable=SC2086
"$PY" -m pip download --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$WHEELS" $pins
ls -l "$WHEELS"
