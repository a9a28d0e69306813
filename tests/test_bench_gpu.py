"""The GPU benchmark's CPU mode: the same script, small widths, so it cannot rot where no GPU is at hand."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench._architectures import build, flow_pipeline, parameters
from models.compute import STEP_COUNTS
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


@pytest.mark.parametrize(
    ("arch", "label", "text_tokens", "tiny"),
    [("klein", "FLUX.2 klein", 512, "tiny-klein"), ("zimage", "Z-Image", 64, "tiny-zimage")],
)
def test_the_benchmark_runs_a_flow_family_on_a_cpu_and_prints_its_figures(
    arch: str, label: str, text_tokens: int, tiny: str
) -> None:
    command = [sys.executable, "bench/bench_gpu.py", "--arch", arch, "--device", "cpu"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"{arch} architecture (smoke): {label}, random weights in fp32, on CPU" in out
    assert "64 px, 2 steps, FlowMatch Euler" in out
    # The transformer's step: 16 image tokens at 64 px, and the family's text tokens (klein pads to 512).
    number = r"[\d.]+(?:e-\d+)?"
    step = re.search(
        rf"transformer {number} M parameters .*; a step at 64 px reads 16 image and {text_tokens} text tokens "
        rf"an image: ({number}) TFLOP",
        out,
    )
    assert step, out
    # ... whose FLOPs are those credits are priced by for the family's builtin tiny model.
    assert float(step[1]) == pytest.approx(STEP_COUNTS[tiny].flops / 1e12, rel=0.01)
    assert re.search(
        rf"a step \(one transformer call\) of 1 / 4 images: {number} / {number} ms = {number} / {number} TFLOP/s, "
        rf"\d+% / \d+% of the measured matmul rate \({number} TFLOP/s\); peak resident memory {number} / {number} GiB",
        out,
    )
    assert re.search(
        rf"whole pipeline, txt2img of 1 / 4 images a call: {number} / {number} s = {number} / {number} images/s, "
        rf"the transformer's steps about \d+% / \d+% of it",
        out,
    )
    assert re.search(rf"built in memory: text encoder {number} M, transformer {number} M, VAE {number} M", out)
    # What only Stable Diffusion has is said to be skipped, and not run.
    assert re.findall(r"^  skipped, (.+?):", out, flags=re.MULTILINE) == [
        "the UNet phase",
        "the worker and bot phases",
        "--compile",
        "compel",
    ]
    assert "UNet " not in out.split("skipped")[0] and "the bot," not in out


@pytest.mark.parametrize("arch", ["klein", "zimage"])
def test_the_published_flow_pipelines_build_and_their_step_is_the_one_credits_are_priced_by(
    tmp_path: Path, arch: str
) -> None:
    """The full-size build and inputs, which only a GPU runs, on the meta device: their sizes fit, and one step of
    one image at 1024 px counts the FLOPs ``models/compute.py`` prices (``bench/count_flops.py`` counted them)."""
    from torch.utils.flop_counter import FlopCounterMode

    from bench.bench_gpu import ARCH_FAMILIES, denoiser_inputs

    pipeline = flow_pipeline(arch, "full", "meta", torch.bfloat16, tmp_path)
    text_encoder, vae, transformer = pipeline.text_encoder, pipeline.vae, pipeline.transformer
    assert 4.0e9 < parameters(text_encoder) < 4.05e9  # Qwen3-4B
    assert 83e6 < parameters(vae) < 85e6  # FLUX.2's and FLUX.1's VAEs
    assert {part.dtype for part in (text_encoder, vae, transformer)} == {torch.bfloat16}
    # The parts fit one another: the VAE's latents are the transformer's input, the encoder's width its context.
    if arch == "klein":
        assert 4 * vae.config.latent_channels == transformer.config.in_channels  # 2x2 patches
        assert 3 * text_encoder.config.hidden_size == transformer.config.joint_attention_dim
    else:
        assert vae.config.latent_channels == transformer.config.in_channels
        assert text_encoder.config.hidden_size == transformer.config.cap_feat_dim

    meta = torch.device("meta")
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        out = transformer(**denoiser_inputs(arch, transformer, 1, 1024, meta), return_dict=False)[0]
    if arch == "klein":  # the packed latents' 4096 tokens of 128 channels, predicted
        assert tuple(out.shape) == (1, 4096, 128)
    else:  # one (16, 1, 128, 128) latent per image
        assert [tuple(image.shape) for image in out] == [(16, 1, 128, 128)]
    assert counter.get_total_flops() == STEP_COUNTS[ARCH_FAMILIES[arch].value].flops
