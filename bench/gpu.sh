#!/usr/bin/env bash
# RM and DPO steps on a ~0.5B-parameter random-initialised causal LM in bf16 where a GPU is present;
# on a CPU it runs a tiny model so CI can check that it works. Ends with `ratio=<MFU>`: achieved
# model FLOP/s over the bf16 matmul rate measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${TENET_PYTHON:-.venv/bin/python}" bench/gpu.py "$@"
