"""What one denoising step of each family's model costs the GPU, per pixel of the image: what credits are priced by.

Credits buy GPU work (``bot.policy.pricing``), and almost all of a job's work is its denoiser's steps:
a step's FLOPs grow with the image's pixels, and per pixel differ ninefold between families (SD 1.5's
UNet against Z-Image-Turbo's 6 B-parameter transformer). So each family's count is here, once, as
numbers: the bot prices a job before any worker has loaded its model, and imports no torch.

How they were counted (``python bench/count_flops.py``, torch 2.13, diffusers 0.42.1, 6 December 2026):
each family's denoiser built on the meta device from its published configuration (the UNets of
``models.architectures``, FLUX.2 [klein] 4B's and Z-Image-Turbo's transformers of
``bench._architectures``; the tiny builds' of ``models.tiny`` and ``models.tiny_flow``) and run once
under ``torch.utils.flop_counter.FlopCounterMode`` for one image at the family's native size, with
the rows its pipeline runs per image and step: two for Stable Diffusion (classifier-free guidance
batches the negative prompt's row with the prompt's; 77 CLIP tokens), one for FLUX.2 klein (guidance-
distilled; its prompt padded to 512 tokens, as its pipeline does) and one for Z-Image-Turbo at its
guidance of 0 (a 64-token caption). Matrix products, convolutions and attention are counted, two FLOPs
per multiply-add; norms and activations are not, as in published figures. SD 2.x is counted at 768 px
(its v-prediction checkpoints; the 512 px ones cost a little less per pixel, its attention being
quadratic in the pixels). The text encoders and the VAE run once per image, not per step, and are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True, slots=True)
class StepCount:
    """One denoising step of a family's denoiser for one image, as counted."""

    flops: int  # forward FLOPs of the step: all its rows
    side: int  # the square image it was counted at, in pixels: the family's native side
    rows: int  # the denoiser's rows per image: 2 with classifier-free guidance, else 1

    @property
    def per_pixel(self) -> Fraction:
        return Fraction(self.flops, self.side * self.side)


#: Keyed by ``ModelFamily`` value (``ModelPreset.family``); see the module docstring for how they were counted.
#: Per step and image at the native side, and per pixel: SD 1.x 1.61 TFLOPs (6.13 M a pixel), SD 2.x 4.30 T at
#: 768 px (7.29 M; 6.14 M at 512 px), SDXL 13.5 T (12.9 M), FLUX.2 klein 4B 34.8 T (33.2 M), Z-Image-Turbo
#: 55.6 T (53.0 M). As checks: SD 1.5's count less its attention products (16 %) is 339 G multiply-adds a row,
#: the figure published for its UNet (BK-SDM, 2023); klein's is 2 x its linear layers' weights x the 4,608 tokens
#: each sees plus 25 blocks of attention over them, worked out by hand, within 0.01 %.
STEP_COUNTS: Final[Mapping[str, StepCount]] = MappingProxyType(
    {
        "sd1": StepCount(flops=1_606_546_882_560, side=512, rows=2),
        "sd2": StepCount(flops=4_298_211_491_840, side=768, rows=2),
        "sdxl": StepCount(flops=13_522_472_796_160, side=1024, rows=2),
        "tiny": StepCount(flops=89_522_176, side=64, rows=2),
        "flux2-klein": StepCount(flops=34_820_178_051_072, side=1024, rows=1),
        "z-image": StepCount(flops=55_605_935_865_856, side=1024, rows=1),
        # The tiny flow builds: at 64 px their 16 image tokens are outnumbered by the prompt's (klein's 512).
        "tiny-klein": StepCount(flops=101_142_528, side=64, rows=1),
        "tiny-zimage": StepCount(flops=11_280_384, side=64, rows=1),
    }
)


def flops_per_pixel_step(family: str) -> Fraction:
    """FLOPs of one denoising step per pixel of the image, for a family (a ``ModelFamily`` value), exactly."""
    try:
        return STEP_COUNTS[family].per_pixel
    except KeyError:
        raise KeyError(f"no FLOPs are counted for the {family!r} family: run bench/count_flops.py") from None
