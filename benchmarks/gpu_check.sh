#!/usr/bin/env bash
# The CUDA checks of the torch.sparse path, as one prepared run for a machine with an NVIDIA
# GPU (about 5 minutes on an H100/H200; no install needed where torch, scipy, numpy,
# matplotlib, pytest and hypothesis are present, as on this workplace's GPU image):
#   1. the CUDA tests (they skip on machines without a GPU),
#   2. bench_torch.py on CUDA: ToeplitzConv2d vs cuDNN, and the sparse products against
#      the measured copy bandwidth (issue 4's GPU targets), with 'auto' (CSR) storage,
#   3. the same with BSR forced on the wide layers (cuSPARSE bsrmm), to choose the default.
# Usage, from the repository root:  bash benchmarks/gpu_check.sh [OUTPUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-.}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 THP_MEM_ALLOC_ENABLE=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$out/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" | tee -a "$out/gpu.txt"
status=0
"$PY" -m pytest -q -p no:cacheprovider -rs tests/test_torch_sparse.py 2>&1 | tee "$out/cuda_tests.txt" || status=1
timeout 300 "$PY" benchmarks/bench_torch.py --device cuda --budget 1 2>&1 | tee "$out/bench_cuda.txt" || status=1
timeout 120 "$PY" benchmarks/bench_torch.py --device cuda --budget 1 --layout bsr --layers 3,4 2>&1 | tee "$out/bench_cuda_bsr.txt" || status=1
exit $status
