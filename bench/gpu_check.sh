#!/usr/bin/env bash
# The one prepared run for a session lent a GPU machine (see the device tool's README). First, here:
#     bash bench/gpu_wheels.sh
# then, through the device tool, with carry [".whl"] and timeout_s 595, naming the commit measured:
#     bash bench/gpu_check.sh $(git rev-parse --short HEAD) [RUN ...]
# It installs the carried wheels, then runs bench/bench_gpu.py in this order, each given what is left of
# GPU_CHECK_S (default 570 s): FLUX.2 klein 4B and Z-Image-Turbo (a transformer step and the whole pipeline,
# built in memory; at most FLOW_RUN_S each, default 110 s), SD1.5 eager, SD1.5 compiled (SD_COMPILE=auto,
# rounds while buckets compile), SDXL eager. Naming runs after the commit (klein, zimage, sd15-eager,
# sd15-compiled, sdxl-eager) runs only those. Each run's output goes to $OUT/<run>.log as it is printed, so a
# run cut short still reports what it measured; $OUT/gpu.txt names the GPU, its driver and the commit.
# Without the device tool, OUT=gpu-out.
set -uo pipefail
cd "$(dirname "$0")/.."
commit=${1:-unknown}
shift $(($# > 0 ? 1 : 0))
runs=" $* "
out=${OUT:-gpu-out}
mkdir -p "$out"
deadline=$((SECONDS + ${GPU_CHECK_S:-570}))
flow_run_s=${FLOW_RUN_S:-110}

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "the wheels did not install: run bench/gpu_wheels.sh here and carry .whl" | tee "$out/gpu.txt"; exit 1; }
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
{
    echo "commit $commit, $(date -u +%Y-%m-%dT%H:%MZ)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c 'import torch, diffusers; print("torch", torch.__version__, "diffusers", diffusers.__version__)'
} > "$out/gpu.txt" 2>&1

# bench NAME BOUND_S ARGS...: one bench_gpu.py run, given what is left (less 15 s), at most BOUND_S if not 0.
bench() {
    local name=$1 bound=$2 left=$((deadline - SECONDS))
    shift 2
    if [[ $runs != "  " && $runs != *" $name "* ]]; then
        return
    fi
    if ((left < 60)); then
        echo "$name: not run, $left s left" | tee -a "$out/gpu.txt"
        return
    fi
    local limit=$((left - 15))
    if ((bound > 0 && bound < limit)); then
        limit=$bound
    fi
    timeout --signal=INT --kill-after=10 "$limit" python3 bench/bench_gpu.py --device cuda "$@" 2>&1 \
        | tee "$out/$name.log"
    echo "$name: exit ${PIPESTATUS[0]} after $((SECONDS)) s (limit $limit s)" >> "$out/gpu.txt"
}

bench klein "$flow_run_s" --arch klein --repeat 3
bench zimage "$flow_run_s" --arch zimage --repeat 3
bench sd15-eager 0 --arch sd15 --compile off
bench sd15-compiled 0 --arch sd15 --compile auto --compile-wait-s 240 --max-rounds 8
bench sdxl-eager 0 --arch sdxl --compile off --members 8 --jobs 8
cat "$out/gpu.txt"
