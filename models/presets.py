"""What each model family is good at, and how to preview its latents cheaply.

A preset is chosen by the *pipeline family* of a loaded checkpoint, not by its
name: a fine-tuned SD1.5 under any name wants SD1.5's size and guidance.

Scheduler choice: every family defaults to ``EulerAncestralDiscreteScheduler``
("Euler a"). It gives good images at 20-30 steps on SD1.x, SD2 and SDXL alike,
handles both epsilon and v-prediction checkpoints through ``from_config``, and
draws fresh noise each step *from the per-image generators*, so the seed still
fully determines an image. DPM++ 2M (``DPMSolverMultistepScheduler``) converges
in fewer steps and can be named per batch in ``BatchSpec.scheduler`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from models.errors import ModelUnavailable
from models.tiny import TINY_MODEL_ID
from models.types import ModelPreset

if TYPE_CHECKING:
    from models.pipeline import Pipeline

DEFAULT_SCHEDULER = "EulerAncestralDiscreteScheduler"
# Draft mode (/draft): DPM++ 2M, a second-order multistep solver that gets close to Euler a's image
# in well under half its steps, and draws no noise of its own, so the seed still decides the image.
DRAFT_SCHEDULER = "DPMSolverMultistepScheduler"

# CLIP's context length; every family here uses CLIP text encoders.
CLIP_MAX_TOKENS = 77

# Steps for the builtin tiny model: it draws noise either way, so the count only
# has to exercise the loop while a 4-image 64 px job stays at a few CPU seconds.
TINY_DEFAULT_STEPS = 20

# Linear maps from a 4-channel latent to RGB in [-1, 1] (rows: latent channels;
# columns: R, G, B). These are the widely used public approximations, fitted by
# regressing decoded images on latents. SD2 shares SD1's VAE and so its factors.
SD1_LATENT_RGB_FACTORS: tuple[tuple[float, float, float], ...] = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
SD1_LATENT_RGB_BIAS: tuple[float, float, float] | None = None  # the SD1 fit has none

SDXL_LATENT_RGB_FACTORS: tuple[tuple[float, float, float], ...] = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
SDXL_LATENT_RGB_BIAS: tuple[float, float, float] = (0.1084, -0.0175, -0.0011)


class ModelFamily(StrEnum):
    """The families the engine can run; the value is ``ModelPreset.family``."""

    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"
    TINY = "tiny"


def model_family(model: str, pipeline: Pipeline) -> ModelFamily:
    """Tell the family from the loaded components, since names say nothing reliable.

    SDXL has a second text encoder; SD2 uses OpenCLIP ViT-H (1024-wide
    embeddings) where SD1 uses CLIP ViT-L (768-wide).
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if isinstance(pipeline, StableDiffusionXLPipeline):
        return ModelFamily.SDXL
    if not isinstance(pipeline, StableDiffusionPipeline):
        raise ModelUnavailable(
            f"{model} is a {type(pipeline).__name__}; Latentcord runs Stable Diffusion 1.x, 2.x and SDXL models."
        )
    if model == TINY_MODEL_ID:
        return ModelFamily.TINY
    if pipeline.unet.config.cross_attention_dim == 1024:
        return ModelFamily.SD2
    return ModelFamily.SD1


def _max_prompt_tokens(pipeline: Pipeline) -> int:
    """The tokenizer's context length; tokenizers without one report a huge sentinel."""
    length = getattr(pipeline.tokenizer, "model_max_length", CLIP_MAX_TOKENS)
    return int(length) if 0 < length <= 4096 else CLIP_MAX_TOKENS


@dataclass(frozen=True, slots=True)
class _FamilyDefaults:
    side: int | None  # None: read the UNet's native size from the checkpoint
    steps: int
    guidance: float
    latent_rgb_factors: tuple[tuple[float, float, float], ...]
    latent_rgb_bias: tuple[float, float, float] | None


_FAMILY_DEFAULTS = {
    ModelFamily.SD1: _FamilyDefaults(512, 25, 7.0, SD1_LATENT_RGB_FACTORS, SD1_LATENT_RGB_BIAS),
    # SD2 comes as 512 px (epsilon) and 768 px (v-prediction) checkpoints; the UNet tells them apart.
    ModelFamily.SD2: _FamilyDefaults(None, 25, 7.0, SD1_LATENT_RGB_FACTORS, SD1_LATENT_RGB_BIAS),
    ModelFamily.SDXL: _FamilyDefaults(1024, 25, 6.0, SDXL_LATENT_RGB_FACTORS, SDXL_LATENT_RGB_BIAS),
    ModelFamily.TINY: _FamilyDefaults(64, TINY_DEFAULT_STEPS, 7.0, SD1_LATENT_RGB_FACTORS, SD1_LATENT_RGB_BIAS),
}


def preset_for(model: str, pipeline: Pipeline) -> ModelPreset:
    """Defaults for ``model`` chosen by the family of its loaded ``pipeline``."""
    family = model_family(model, pipeline)
    defaults = _FAMILY_DEFAULTS[family]
    side = defaults.side or int(pipeline.unet.config.sample_size) * int(pipeline.vae_scale_factor)
    return ModelPreset(
        model=model,
        family=family.value,
        width=side,
        height=side,
        steps=defaults.steps,
        guidance=defaults.guidance,
        scheduler=DEFAULT_SCHEDULER,
        max_prompt_tokens=_max_prompt_tokens(pipeline),
        latent_rgb_factors=defaults.latent_rgb_factors,
        latent_rgb_bias=defaults.latent_rgb_bias,
    )
