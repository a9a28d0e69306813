"""FLOPs of one denoising step per pixel, for each family: the numbers ``models/compute.py`` prices credits by.

For each family, its denoiser is built on the meta device from its published configuration (no weights,
no download, no time) and run once under ``torch.utils.flop_counter.FlopCounterMode``, for one image at the
family's native size, with the rows its pipeline runs per image and step:

* Stable Diffusion (SD 1.x, SD 2.x, SDXL, builtin:tiny) runs classifier-free guidance as one batch of two
  rows (the negative prompt's and the prompt's) at its default guidance (7, 6: above 1), with CLIP's 77
  tokens of context; SDXL adds its pooled text embedding and size conditioning.
* FLUX.2 klein (guidance-distilled: no second row) attends jointly over the image's tokens and the
  prompt's, which its pipeline always pads to 512 tokens.
* Z-Image-Turbo at its default guidance of 0 runs one row; its caption is not padded beyond a multiple of
  32, counted here as 64 tokens (a prompt of a sentence or two in its chat template).

The counter counts matrix multiplications, convolutions and attention (two FLOPs per multiply-add); norms,
activations, RoPE and the like are left out, as in published FLOPs figures. The configurations are those
the rest of the project uses: ``models.architectures`` for the UNets (``models.tiny`` for builtin:tiny),
``bench._architectures`` for FLUX.2 [klein] 4B's and Z-Image-Turbo's transformers, ``models.tiny_flow``
for their tiny builds.

    python bench/count_flops.py [--sd2-side 768]

It prints one row per family and the table to paste into ``models/compute.py``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from torch.utils.flop_counter import FlopCounterMode

from models.families import FAMILIES
from models.types import ModelFamily

#: The VAE's downscale (every family's VAE has four levels) and the flow transformers' 2x2 patch.
VAE_FACTOR = 8
FLOW_PATCH = 2
CLIP_TOKENS = 77
KLEIN_TEXT_TOKENS = 512  # Flux2KleinPipeline pads every prompt to max_sequence_length, 512
ZIMAGE_CAPTION_TOKENS = 64  # a prompt of 33 to 64 tokens, chat template included, padded to a multiple of 32


@dataclass(frozen=True, slots=True)
class Counted:
    family: ModelFamily
    side: int
    rows: int
    flops: int
    by_operator: dict[str, int]

    @property
    def per_pixel(self) -> float:
        return self.flops / (self.side * self.side)


def _count(run: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        run()
    by_operator: Counter[str] = Counter()
    for operator, flops in counter.get_flop_counts()["Global"].items():
        by_operator[str(operator).split(".")[1]] += flops
    return counter.get_total_flops(), dict(by_operator)


def _built(model_class: Any, config: Any, dtype: torch.dtype) -> Any:
    """``model_class(**config)`` in ``dtype`` (diffusers' lazy classes are opaque to the type checker)."""
    return model_class(**config).to(dtype)


def _unet(family: ModelFamily, side: int) -> Counted:
    from diffusers import UNet2DConditionModel

    if family is ModelFamily.TINY:
        from models.tiny import UNET_CONFIG as config
    else:
        from models.architectures import ARCHITECTURES

        config = ARCHITECTURES[family].unet
    rows = 2  # classifier-free guidance: the negative prompt's row and the prompt's, in one batch
    latent = side // VAE_FACTOR
    with torch.device("meta"):
        unet: Any = _built(UNet2DConditionModel, config, torch.float16)
        sample = torch.empty(rows, unet.config.in_channels, latent, latent, dtype=torch.float16)
        context = torch.empty(rows, CLIP_TOKENS, unet.config.cross_attention_dim, dtype=torch.float16)
        timestep = torch.full((rows,), 999.0)
        added: dict[str, torch.Tensor] | None = None
        if unet.config.addition_embed_type == "text_time":  # SDXL: pooled bigG embedding and six size numbers
            pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
            added = {
                "text_embeds": torch.empty(rows, pooled, dtype=torch.float16),
                "time_ids": torch.empty(rows, 6, dtype=torch.float16),
            }
    flops, by_operator = _count(lambda: unet(sample, timestep, context, added_cond_kwargs=added))
    return Counted(family, side, rows, flops, by_operator)


def _klein(family: ModelFamily, side: int) -> Counted:
    from diffusers import Flux2Transformer2DModel

    from bench._architectures import KLEIN_4B_TRANSFORMER
    from models.tiny_flow import KLEIN_TRANSFORMER_CONFIG

    config = KLEIN_4B_TRANSFORMER if family is ModelFamily.KLEIN else KLEIN_TRANSFORMER_CONFIG
    tokens = (side // (VAE_FACTOR * FLOW_PATCH)) ** 2
    grid = side // (VAE_FACTOR * FLOW_PATCH)
    with torch.device("meta"):
        transformer: Any = _built(Flux2Transformer2DModel, config, torch.bfloat16)
        hidden = torch.empty(1, tokens, config["in_channels"], dtype=torch.bfloat16)
        text = torch.empty(1, KLEIN_TEXT_TOKENS, config["joint_attention_dim"], dtype=torch.bfloat16)
        timestep = torch.full((1,), 0.5, dtype=torch.bfloat16)
    # Positions as the pipeline makes them (T, H, W, L): the image's grid, and the prompt along L.
    rows, columns = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    zeros = torch.zeros(tokens, dtype=torch.long)
    image_ids = torch.stack([zeros, rows.flatten(), columns.flatten(), zeros], dim=-1)[None].to("meta")
    text_zeros = torch.zeros(KLEIN_TEXT_TOKENS, dtype=torch.long)
    text_ids = torch.stack([text_zeros, text_zeros, text_zeros, torch.arange(KLEIN_TEXT_TOKENS)], dim=-1)[None]
    text_ids = text_ids.to("meta")
    flops, by_operator = _count(
        lambda: transformer(
            hidden_states=hidden,
            timestep=timestep,
            guidance=None,
            encoder_hidden_states=text,
            txt_ids=text_ids,
            img_ids=image_ids,
            return_dict=False,
        )
    )
    return Counted(family, side, 1, flops, by_operator)


def _zimage(family: ModelFamily, side: int) -> Counted:
    from diffusers import ZImageTransformer2DModel

    from bench._architectures import ZIMAGE_TURBO_TRANSFORMER
    from models.tiny_flow import ZIMAGE_TRANSFORMER_CONFIG

    config = ZIMAGE_TURBO_TRANSFORMER if family is ModelFamily.ZIMAGE else ZIMAGE_TRANSFORMER_CONFIG
    latent = side // VAE_FACTOR
    with torch.device("meta"):
        transformer: Any = _built(ZImageTransformer2DModel, config, torch.bfloat16)
        image = torch.empty(config["in_channels"], 1, latent, latent, dtype=torch.bfloat16)
        caption = torch.empty(ZIMAGE_CAPTION_TOKENS, config["cap_feat_dim"], dtype=torch.bfloat16)
        timestep = torch.full((1,), 0.5, dtype=torch.bfloat16)
    flops, by_operator = _count(lambda: transformer([image], timestep, [caption], return_dict=False))
    return Counted(family, side, 1, flops, by_operator)


COUNTERS: dict[ModelFamily, Callable[[ModelFamily, int], Counted]] = {
    ModelFamily.SD1: _unet,
    ModelFamily.SD2: _unet,
    ModelFamily.SDXL: _unet,
    ModelFamily.TINY: _unet,
    ModelFamily.KLEIN: _klein,
    ModelFamily.TINY_KLEIN: _klein,
    ModelFamily.ZIMAGE: _zimage,
    ModelFamily.TINY_ZIMAGE: _zimage,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sd2-side", type=int, default=768, help="SD 2.x's side (its checkpoints are 512 or 768; the table's: 768)"
    )
    args = parser.parse_args()
    counted = []
    for family, counter in COUNTERS.items():
        side = FAMILIES[family].side or args.sd2_side
        counted.append(counter(family, side))
    print(f"torch {torch.__version__}, FlopCounterMode on the meta device\n")
    print(f"{'family':<12} {'side':>5} {'rows':>4} {'FLOPs per step':>16} {'per pixel':>12}  by operator")
    for row in counted:
        shares = ", ".join(
            f"{name} {flops / row.flops:.0%}" for name, flops in sorted(row.by_operator.items(), key=lambda kv: -kv[1])
        )
        print(f"{row.family.value:<12} {row.side:>5} {row.rows:>4} {row.flops:>16,} {row.per_pixel:>12,.0f}  {shares}")
    print("\nFor models/compute.py:")
    for row in counted:
        print(f'        "{row.family.value}": StepCount(flops={row.flops:_}, side={row.side}, rows={row.rows}),')


if __name__ == "__main__":
    main()
