"""Memory while LoRAs come and go: 100 batches on one model, each with its own adapter set, through the engine.

Six LoRAs (random weights, diffusers layout) for ``builtin:tiny`` and an adapter cache of three, so
adapters are loaded, used and evicted all the time. Printed every 10 batches: the process's resident
memory (and CUDA memory on a GPU) and how many adapters are loaded. The goal is a steady state: after
the first round of loads, memory stays flat.

    python bench/bench_lora.py [--batches 100] [--cache 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import itertools
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psutil
import torch

from bench._architectures import write_tiny_loras
from models.engine import DiffusionEngine, EngineConfig
from models.tiny import TINY_MODEL_ID
from models.types import GenerationBatch, ImageTask
from tests.recipes import a_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--cache", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = [f"{hashlib.sha256(str(number).encode()).hexdigest()}.safetensors" for number in range(6)]
        files = [str(path) for path in write_tiny_loras(folder, names, rank=8, scale=0.3)]
        engine = DiffusionEngine(EngineConfig(device=args.device, cache_dir=folder, lora_cache=args.cache))
        engine.load(TINY_MODEL_ID)
        sets = itertools.cycle(
            [((files[n % 6], 1.0),) for n in range(6)]
            + [((files[0], 0.5), (files[3], 0.7)), ((files[4], 1.0), (files[5], -0.5)), ()]
        )
        process = psutil.Process()
        print(f"{args.batches} batches of 2 images, 64 px, 2 steps; 6 LoRAs, cache of {args.cache}, on {args.device}")
        for batch in range(1, args.batches + 1):
            spec = a_spec(loras=next(sets))
            engine.run(GenerationBatch(spec, (ImageTask("a fox", "", batch), ImageTask("a cat", "", batch))))
            if batch % 10 == 0:
                gc.collect()
                rss = process.memory_info().rss / 1024 / 1024
                cuda = (
                    f", CUDA {torch.cuda.memory_allocated() / 1024 / 1024:.1f} MB" if torch.cuda.is_available() else ""
                )
                loaded = engine.adapters_loaded()
                print(f"  after {batch:3d} batches: resident {rss:7.1f} MB{cuda}, adapters loaded {loaded}")


if __name__ == "__main__":
    main()
