#!/usr/bin/env bash
# Issue 9's GPU measurements in one run, on a lent GPU node (Python with torch, no network).
#
#   here:  ../shared/tools/offline-wheels.sh .venv wheels      (wheels/ is git-ignored; carry it)
#   there: bash bench/gpu_node.sh wheels [OUT]
#
# Installs the carried wheels, then runs bench/stages.py (each GPU stage against its bare network,
# GPU utilization) and bench/chain.py (a BBBC021-shaped simulated screen through Snakemake, projected
# to 13,200 fields) with nvidia-smi's utilization log beside them; writes gpu.txt, stages.txt,
# chain.txt, dmon.txt and profile/<stage>.txt (where each GPU rule's time goes) to OUT (default: $OUT,
# the device tool's folder).
set -euo pipefail
wheels=$1
out=${2:-$OUT}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --target /tmp/site "$wheels"/*.whl
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
cores=$(nproc)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
nvidia-smi dmon -s u -d 2 >"$out/dmon.txt" &
dmon=$!
trap 'kill $dmon' EXIT
python3 bench/stages.py --fields 64 --threads "$cores" --profile "$out/profile" 2>&1 | grep -v "Sparse invariant\|sparse_coo_tensor" | tee "$out/stages.txt"
python3 bench/chain.py --plates 4 --sites 4 --cores "$cores" --snakemake-args="--scheduler greedy" 2>&1 | tee "$out/chain.txt"
