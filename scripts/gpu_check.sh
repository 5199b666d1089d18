#!/usr/bin/env bash
# The CUDA subset of the fixture matrix, for a machine with one NVIDIA GPU; under 5 minutes.
#
#   scripts/gpu_check.sh            # from anywhere; PYTHON=/path/to/python to pick the interpreter
#
# 1. nccl with world size 1: the rewritten scripts run on the CUDA device with the nccl backend
#    (checkpoint barriers are no-ops alone; saves, atomic writes and error handling are real).
#    Scenarios that need a second rank (stall, death) are left out.
# 2. Two ranks sharing the GPU with CUDA tensors over gloo (nccl refuses two ranks on one device):
#    the full 2-rank fault matrix of the main cases, compared with case.toml.
# Prints both matrices (markdown, for the README); exits non-zero if a run disagrees with case.toml.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=1

"$PY" - <<'PYEOF' || exit 2
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device here")
print(f"torch {torch.__version__}, {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, "
      f"nccl {'.'.join(map(str, torch.cuda.nccl.version()))}")
PYEOF

started=$SECONDS
status=0
echo
echo "## nccl, world size 1"
timeout 140 "$PY" -m fixtures.report --device cuda --nproc 1 --workers 4 \
    --cases seed_trainer,script_loop,metric_allreduce,torch_alias,inline_style \
    --scenarios none,save_raises,kill_mid_save || status=1
echo
echo "## gloo with CUDA tensors, 2 ranks (4 for the 4-rank row) on one GPU"
timeout 150 "$PY" -m fixtures.report --device cuda --backend gloo --workers 4 \
    --cases seed_trainer,script_loop,guide_by_hand || status=1
echo
echo "gpu_check: $((SECONDS - started)) s, status $status"
exit $status
