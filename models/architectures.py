"""Each family's published architecture, and the layers a LoRA for that family may target.

A LoRA names the layers it changes; whether any of them is a layer of a model depends only on the
model's architecture, which every checkpoint of a family shares. So the bot, which holds no
model, knows a family's layers from its published configuration alone (the UNet's and the text
encoders' ``config.json`` fields that shape their modules, tiny's from ``models.tiny``): the
modules are built on torch's meta device, without weights, once per family and process (SD 1.x
in about 0.2 s, SDXL in about 0.7 s), and their names kept.

The flow-matching families (FLUX.2 klein, Z-Image) take LoRAs on their transformer alone, and one
model's LoRA does not load into a model of another width (diffusers refuses the shapes), so their
transformers are kept by name and width: every layer a LoRA can target there is a ``Linear``. FLUX.2
klein comes as 4B (3072 wide) and 9B (4096 wide) under one family, which a LoRA's header cannot tell from
the family alone; its configuration here is 4B's, the one whose published source is at hand, so a 9B LoRA
is refused as one for another size of FLUX.2 klein.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from models.tiny import TEXT_ENCODER_CONFIG as TINY_TEXT_ENCODER
from models.tiny import UNET_CONFIG as TINY_UNET
from models.tiny_flow import KLEIN_TRANSFORMER_CONFIG as TINY_KLEIN_TRANSFORMER
from models.tiny_flow import ZIMAGE_TRANSFORMER_CONFIG as TINY_ZIMAGE_TRANSFORMER
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


# -- the flow-matching families' transformers ---------------------------------------------------------------

#: FLUX.2 [klein] 4B's transformer (3.88 G parameters): the ``transformer/config.json`` of
#: https://huggingface.co/black-forest-labs/FLUX.2-klein-4B (as uploaded by the diffusers team, copied at
#: https://huggingface.co/YuCollection/FLUX.2-klein-4B-Diffusers/commit/b5957b7ef3fbc838e9494059666e5d742f327ae2).
#: ``joint_attention_dim`` is three stacked hidden states of Qwen3-4B (3 x 2560); no guidance embedding.
KLEIN_4B_TRANSFORMER: Final[Mapping[str, Any]] = {
    "patch_size": 1,
    "in_channels": 128,
    "out_channels": None,
    "num_layers": 5,
    "num_single_layers": 20,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 7680,
    "timestep_guidance_channels": 256,
    "mlp_ratio": 3.0,
    "axes_dims_rope": (32, 32, 32, 32),
    "rope_theta": 2000,
    "eps": 1e-06,
    "guidance_embeds": False,
}
#: Z-Image-Turbo's transformer (6.15 G parameters): the ``transformer/config.json`` of
#: https://huggingface.co/Tongyi-MAI/Z-Image-Turbo (diffusers 0.36.0.dev0; note ``axes_lens`` differs from
#: ``ZImageTransformer2DModel``'s default of (1024, 512, 512)). ``cap_feat_dim`` is Qwen3-4B's width.
ZIMAGE_TURBO_TRANSFORMER: Final[Mapping[str, Any]] = {
    "all_patch_size": (2,),
    "all_f_patch_size": (1,),
    "in_channels": 16,
    "dim": 3840,
    "n_layers": 30,
    "n_refiner_layers": 2,
    "n_heads": 30,
    "n_kv_heads": 30,
    "norm_eps": 1e-05,
    "qk_norm": True,
    "cap_feat_dim": 2560,
    "rope_theta": 256.0,
    "t_scale": 1000.0,
    "axes_dims": (32, 48, 48),
    "axes_lens": (1536, 512, 512),
}


@dataclass(frozen=True, slots=True)
class FlowArchitecture:
    """A flow-matching family's transformer, and the diffusers LoRA loader its pipelines read a file with."""

    model: str  # the model whose configuration this is, for a sentence: "FLUX.2 klein 4B"
    transformer: str  # the diffusers class: "Flux2Transformer2DModel", "ZImageTransformer2DModel"
    config: Mapping[str, Any]  # its config.json's fields
    lora_loader: str  # the pipelines' LoRA loader mixin, in ``diffusers.loaders``


_KLEIN_LOADER = "Flux2LoraLoaderMixin"  # Flux2KleinPipeline and Flux2KleinInpaintPipeline
_ZIMAGE_LOADER = "ZImageLoraLoaderMixin"  # ZImagePipeline, ZImageImg2ImgPipeline and ZImageInpaintPipeline

#: Cheapest first: recognising a file builds each in turn until one fits.
FLOW_ARCHITECTURES: Final[Mapping[ModelFamily, FlowArchitecture]] = {
    ModelFamily.TINY_KLEIN: FlowArchitecture(
        "builtin:tiny-klein", "Flux2Transformer2DModel", TINY_KLEIN_TRANSFORMER, _KLEIN_LOADER
    ),
    ModelFamily.TINY_ZIMAGE: FlowArchitecture(
        "builtin:tiny-zimage", "ZImageTransformer2DModel", TINY_ZIMAGE_TRANSFORMER, _ZIMAGE_LOADER
    ),
    ModelFamily.KLEIN: FlowArchitecture(
        "FLUX.2 klein 4B", "Flux2Transformer2DModel", KLEIN_4B_TRANSFORMER, _KLEIN_LOADER
    ),
    ModelFamily.ZIMAGE: FlowArchitecture(
        "Z-Image-Turbo", "ZImageTransformer2DModel", ZIMAGE_TURBO_TRANSFORMER, _ZIMAGE_LOADER
    ),
}


@dataclass(frozen=True, slots=True)
class TransformerLayers:
    """What a LoRA loader needs to know of a flow family's transformer: its loader, and each layer's widths."""

    model: str
    lora_loader: str
    linears: Mapping[str, tuple[int, int]]  # module name -> (in_features, out_features)


@functools.cache
def transformer_layers(family: ModelFamily) -> TransformerLayers:
    """``family``'s transformer layers, from its configuration built on the meta device: no weights, no download."""
    import diffusers
    import torch

    architecture = FLOW_ARCHITECTURES[family]
    with torch.device("meta"):
        transformer: torch.nn.Module = getattr(diffusers, architecture.transformer)(**architecture.config)
    linears = {
        name: (module.in_features, module.out_features)
        for name, module in transformer.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    return TransformerLayers(architecture.model, architecture.lora_loader, linears)
