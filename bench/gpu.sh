#!/usr/bin/env bash
# RM and DPO steps on a ~0.5B-parameter random-initialised causal LM in bf16 where a GPU is present;
# on a CPU it runs a tiny model so CI can check that it works. Ends with `ratio=<MFU>`: achieved
# model FLOP/s over the bf16 matmul rate measured in the same run.
# With CUDA GPUs visible (and no --tiny) it first measures the trainer's multi-GPU path, FSDP2
# training steps under torchrun, on 1 GPU and on all visible GPUs (bench/gpu_fsdp.py); without a GPU
# that part is skipped with a note on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${TENET_PYTHON:-.venv/bin/python}"
gpus=$("$python" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)')
if [[ " $* " == *" --tiny "* ]]; then
  echo "multi-GPU (FSDP2): skipped with --tiny" >&2
elif ((gpus == 0)); then
  echo "multi-GPU (FSDP2): skipped, no CUDA GPU visible" >&2
else
  for n in $(printf '%s\n' 1 "$gpus" | sort -un); do
    OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$python" -m torch.distributed.run --standalone --nproc-per-node "$n" bench/gpu_fsdp.py "$@"
  done
fi
exec "$python" bench/gpu.py "$@"
