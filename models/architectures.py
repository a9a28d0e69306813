"""Each family's published architecture, and the layers a LoRA for that family may target.

A LoRA names the layers it changes; whether any of them is a layer of a model depends only on the
model's architecture, which every checkpoint of a family shares. So the bot, which holds no
model, knows a family's layers from its published configuration alone (the UNet's and the text
encoders' ``config.json`` fields that shape their modules, tiny's from ``models.tiny``): the
modules are built on torch's meta device, without weights, once per family and process (SD 1.x
in about 0.2 s, SDXL in about 0.7 s), and their names kept.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from models.tiny import TEXT_ENCODER_CONFIG as TINY_TEXT_ENCODER
from models.tiny import UNET_CONFIG as TINY_UNET
from models.types import ModelFamily


@dataclass(frozen=True, slots=True)
class TextEncoder:
    component: str  # the pipeline's attribute, and the prefix of its keys in a LoRA: "text_encoder", ...
    config: Mapping[str, Any]  # a CLIPTextConfig's fields
    projection: bool = False  # CLIPTextModelWithProjection (SDXL's second encoder), else CLIPTextModel


@dataclass(frozen=True, slots=True)
class Architecture:
    unet: Mapping[str, Any]  # a UNet2DConditionModel's config
    text_encoders: tuple[TextEncoder, ...]
    xl: bool = False  # run by StableDiffusionXLPipeline, whose LoRA loader maps kohya's sgm block names


_CLIP_L: Final = {  # openai/clip-vit-large-patch14's text tower: SD 1.x, and SDXL's first encoder
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
_SD1_UNET: Final = {
    "sample_size": 64,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
}

ARCHITECTURES: Final[Mapping[ModelFamily, Architecture]] = {
    ModelFamily.SD1: Architecture(_SD1_UNET, (TextEncoder("text_encoder", _CLIP_L),)),
    ModelFamily.SD2: Architecture(
        {
            **_SD1_UNET,
            "sample_size": 96,
            "attention_head_dim": (5, 10, 20, 20),
            "cross_attention_dim": 1024,
            "use_linear_projection": True,
        },
        (  # OpenCLIP ViT-H without its last layer, as stabilityai/stable-diffusion-2-1 ships it
            TextEncoder(
                "text_encoder",
                {
                    "hidden_size": 1024,
                    "intermediate_size": 4096,
                    "num_hidden_layers": 23,
                    "num_attention_heads": 16,
                    "projection_dim": 512,
                    "hidden_act": "gelu",
                },
            ),
        ),
    ),
    ModelFamily.SDXL: Architecture(
        {
            "sample_size": 128,
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            "block_out_channels": (320, 640, 1280),
            "layers_per_block": 2,
            "transformer_layers_per_block": (1, 2, 10),
            "attention_head_dim": (5, 10, 20),
            "cross_attention_dim": 2048,
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": 2816,
        },
        (
            TextEncoder("text_encoder", _CLIP_L),
            TextEncoder(  # OpenCLIP ViT-bigG
                "text_encoder_2",
                {
                    "hidden_size": 1280,
                    "intermediate_size": 5120,
                    "num_hidden_layers": 32,
                    "num_attention_heads": 20,
                    "projection_dim": 1280,
                    "hidden_act": "gelu",
                },
                projection=True,
            ),
        ),
        xl=True,
    ),
    ModelFamily.TINY: Architecture(TINY_UNET, (TextEncoder("text_encoder", TINY_TEXT_ENCODER),)),
}


@dataclass(frozen=True, slots=True)
class FamilyLayers:
    """What a LoRA loader needs to know of a family's models: their layers, and the UNet's config."""

    unet_config: Any  # the UNet's FrozenDict config, as diffusers' loaders read it
    layers: Mapping[str, frozenset[str]]  # component -> the names of its Linear, Conv2d and Embedding modules
    xl: bool
    #: The text encoders whose module names do not start with ``text_model.`` (transformers' flattened
    #: CLIPTextModel), from which diffusers strips that prefix off a LoRA's names.
    flattened: frozenset[str]


@functools.cache
def family_layers(family: ModelFamily) -> FamilyLayers:
    """``family``'s layers, from its architecture built on the meta device: no weights, no download."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    architecture = ARCHITECTURES[family]
    with torch.device("meta"):  # thread-local: a worker thread of this process keeps its own device
        unet: Any = UNet2DConditionModel(**architecture.unet)  # diffusers' lazy classes are opaque to mypy
        encoders = {
            encoder.component: (CLIPTextModelWithProjection if encoder.projection else CLIPTextModel)(
                CLIPTextConfig(**encoder.config)
            )
            for encoder in architecture.text_encoders
        }
    targetable = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Embedding)

    def names(module: torch.nn.Module) -> frozenset[str]:
        return frozenset(name for name, child in module.named_modules() if isinstance(child, targetable))

    return FamilyLayers(
        unet_config=unet.config,
        layers={"unet": names(unet), **{component: names(encoder) for component, encoder in encoders.items()}},
        xl=architecture.xl,
        flattened=frozenset(component for component, encoder in encoders.items() if not hasattr(encoder, "text_model")),
    )
