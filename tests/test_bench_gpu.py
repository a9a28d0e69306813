"""The GPU benchmark's CPU mode: the same script, small widths, so it cannot rot where no GPU is at hand."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench._architectures import build
from models.engine import DiffusionEngine, EngineConfig
from models.types import GenerationBatch, ImageTask
from tests.recipes import a_spec

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("arch", "family", "side"), [("sd15", "sd1", 512), ("sdxl", "sdxl", 1024)])
def test_the_random_architectures_load_as_their_family_and_draw_images(
    tmp_path: Path, arch: str, family: str, side: int
) -> None:
    folder = build(arch, "smoke", tmp_path / arch)
    engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=tmp_path / "cache"))
    preset = engine.load(str(folder))
    assert (preset.family, preset.width, preset.height) == (family, side, side)
    spec = a_spec(model=str(folder), steps=1, guidance=preset.guidance, scheduler=preset.scheduler)
    output = engine.run(GenerationBatch(spec, (ImageTask("a cat", "", 1), ImageTask("a dog", "", 2))))
    assert [image.size for image in output.images] == [(64, 64), (64, 64)]


def test_the_benchmark_runs_every_part_on_a_cpu_and_prints_its_figures() -> None:
    command = [sys.executable, "bench/bench_gpu.py", "--device", "cpu", "--members", "1", "--jobs", "2", "--steps", "1"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"UNet 2\.\d M parameters, 8 rows at 64 px: .* TFLOP/s, \d+% of the measured matmul rate", out)
    assert re.search(r"bare diffusers, images/s at 1 / 4 / 8 a call: [\d.]+ / [\d.]+ / [\d.]+", out)
    assert re.search(r"the worker \(SD_COMPILE=auto\), 2 jobs of 4, batches of 8: [\d.]+ images/s", out)
    assert re.search(r"the bot, 1 member at once: [\d.]+ images/s delivered", out)
    assert re.search(r"idle /imagine to grid posted: [\d.]+ s", out)
