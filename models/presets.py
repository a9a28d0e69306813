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

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import ModelUnavailable, UnsafeCheckpoint
from models.families import (
    BY_INDEX_CLASS,
    CLIP_MAX_TOKENS,
    FAMILIES,
    supported_families,
)
from models.tiny import TINY_MODEL_ID
from models.tiny_flow import TINY_KLEIN_MODEL_ID, TINY_ZIMAGE_MODEL_ID
from models.types import ModelFamily, ModelPreset

if TYPE_CHECKING:
    from models.pipeline import Pipeline

# The width of the text the UNet's cross-attention reads: CLIP ViT-L (SD 1.x) or OpenCLIP ViT-H (SD 2.x).
SD1_TEXT_WIDTH = 768
SD2_TEXT_WIDTH = 1024
# A tensor of an original-format SD 1.x/2.x checkpoint whose last side is that width (as diffusers tells v2).
_SINGLE_FILE_CROSS_ATTENTION_KEY = "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"

#: The builtin tiny models of the flow-matching families, by id: their own families (as builtin:tiny's).
_TINY_FLOW_FAMILIES = {TINY_KLEIN_MODEL_ID: ModelFamily.TINY_KLEIN, TINY_ZIMAGE_MODEL_ID: ModelFamily.TINY_ZIMAGE}


def model_family(model: str, pipeline: Pipeline) -> ModelFamily:
    """Tell the family from the loaded components, since names say nothing reliable.

    SDXL has a second text encoder; SD2 uses OpenCLIP ViT-H (1024-wide embeddings) where SD1 uses
    CLIP ViT-L (768-wide); every other family is its pipeline's class (``models.families``).
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if isinstance(pipeline, StableDiffusionXLPipeline):
        return ModelFamily.SDXL
    if not isinstance(pipeline, StableDiffusionPipeline):
        found = BY_INDEX_CLASS.get(type(pipeline).__name__)
        if found is None:
            raise ModelUnavailable(
                f"{model} is a {type(pipeline).__name__}; Latentcord runs {supported_families()} models."
            )
        return _TINY_FLOW_FAMILIES.get(model, found)
    if model == TINY_MODEL_ID:
        return ModelFamily.TINY
    if pipeline.unet.config.cross_attention_dim == SD2_TEXT_WIDTH:
        return ModelFamily.SD2
    return ModelFamily.SD1


def _max_prompt_tokens(pipeline: Pipeline, family: ModelFamily) -> int:
    """What the text encoder reads: a CLIP tokenizer's context length (tokenizers without one report a huge
    sentinel), or the family's own limit where its pipeline sets one (the Qwen3 encoders read 512)."""
    if not FAMILIES[family].sd:
        return FAMILIES[family].max_prompt_tokens
    length = getattr(pipeline.tokenizer, "model_max_length", CLIP_MAX_TOKENS)
    return int(length) if 0 < length <= 4096 else CLIP_MAX_TOKENS


def preset_for(model: str, pipeline: Pipeline) -> ModelPreset:
    """Defaults for ``model`` chosen by the family of its loaded ``pipeline``."""
    family = model_family(model, pipeline)
    side = FAMILIES[family].side or int(pipeline.unet.config.sample_size) * int(pipeline.vae_scale_factor)
    return _preset(model, family, side, _max_prompt_tokens(pipeline, family))


def declared_preset(model: str) -> ModelPreset | None:
    """The preset ``preset_for`` gives once ``model`` is loaded, told from its id and configuration alone.

    For a bot whose workers run on other hosts and have not announced the model yet: admission
    needs its size and steps (the cost, the recipe) all the same. ``builtin:tiny``, a local
    diffusers folder, a local ``.safetensors`` file (by its header) and a hub model whose
    configuration is in this host's Hugging Face cache are told without reading a weight or
    the network. None when only loading can tell: a hub model not in the cache, a path this host
    does not have (the workers' hosts may), an SD 2.x single file (512 or 768 px: its missing
    configuration says which). A model no worker could ever run is refused with its sentence.
    """
    from models.sources import SourceKind, resolve_model_source

    try:
        source = resolve_model_source(model)
    except UnsafeCheckpoint:
        raise
    except ModelUnavailable:
        return None
    match source.kind:
        case SourceKind.TINY:
            family = _TINY_FLOW_FAMILIES.get(model, ModelFamily.TINY)
            return _preset(model, family, _side(family), FAMILIES[family].max_prompt_tokens)
        case SourceKind.SINGLE_FILE:
            return _single_file_preset(model, Path(source.location))
        case SourceKind.FOLDER:
            folder = Path(source.location)
            return _configured_preset(model, lambda name: _json_file(folder / name))
        case SourceKind.HUB:
            return _configured_preset(model, lambda name: _cached_hub_json(source.location, name))


def _preset(model: str, family: ModelFamily, side: int, max_prompt_tokens: int) -> ModelPreset:
    entry = FAMILIES[family]
    return ModelPreset(
        model=model,
        family=family.value,
        width=side,
        height=side,
        steps=entry.steps,
        guidance=entry.guidance,
        scheduler=entry.scheduler,
        max_prompt_tokens=max_prompt_tokens,
        draft_scheduler=entry.draft_scheduler,
        latent_rgb_factors=entry.latent_rgb_factors,
        latent_rgb_bias=entry.latent_rgb_bias,
    )


def _configured_preset(model: str, read: Callable[[str], dict[str, Any] | None]) -> ModelPreset | None:
    """From a diffusers model's JSON files, as ``from_pretrained`` would read them (``read``: None if missing)."""
    from models.sources import SUPPORTED_PIPELINES, unsupported_pipeline

    index = read("model_index.json")
    if index is None:
        return None
    class_name = str(index.get("_class_name", ""))
    if class_name not in SUPPORTED_PIPELINES:
        raise unsupported_pipeline(model, class_name)
    family = BY_INDEX_CLASS[class_name]
    if not FAMILIES[family].sd:
        return _preset(model, family, _side(family), FAMILIES[family].max_prompt_tokens)
    tokenizer = read("tokenizer/tokenizer_config.json") or {}
    tokens = _token_limit(tokenizer.get("model_max_length"))
    if class_name == "StableDiffusionXLPipeline":
        return _preset(model, ModelFamily.SDXL, _side(ModelFamily.SDXL), tokens)
    unet = read("unet/config.json")
    if unet is None:
        return None
    if unet.get("cross_attention_dim") != SD2_TEXT_WIDTH:
        return _preset(model, ModelFamily.SD1, _side(ModelFamily.SD1), tokens)
    vae = read("vae/config.json")
    sample_size = unet.get("sample_size")
    if vae is None or not isinstance(sample_size, int):
        return None
    # diffusers' vae_scale_factor: one halving per VAE block after the first.
    scale = 2 ** (len(vae.get("block_out_channels", (64,))) - 1)
    return _preset(model, ModelFamily.SD2, sample_size * scale, tokens)


def _single_file_preset(model: str, path: Path) -> ModelPreset | None:
    """From the tensor names and shapes of an original-format checkpoint, as ``load_pipeline`` tells them."""
    from models.finetunes import FineTuneError, read_header
    from models.sources import SDXL_SINGLE_FILE_PREFIX

    try:
        tensors = read_header(path)
    except (FineTuneError, OSError):
        return None  # the worker's load says what is wrong with it
    if any(name.startswith(SDXL_SINGLE_FILE_PREFIX) for name in tensors):
        return _preset(model, ModelFamily.SDXL, _side(ModelFamily.SDXL), CLIP_MAX_TOKENS)
    key = tensors.get(_SINGLE_FILE_CROSS_ATTENTION_KEY)
    if key is not None and key.shape[-1:] == (SD1_TEXT_WIDTH,):
        return _preset(model, ModelFamily.SD1, _side(ModelFamily.SD1), CLIP_MAX_TOKENS)
    return None


def _side(family: ModelFamily) -> int:
    side = FAMILIES[family].side
    if side is None:
        raise ValueError(f"the {family} family's size is read from its checkpoint")
    return side


def _token_limit(length: object) -> int:
    """As ``_max_prompt_tokens`` reads a loaded tokenizer's ``model_max_length``."""
    return length if isinstance(length, int) and 0 < length <= 4096 else CLIP_MAX_TOKENS


def _json_file(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _cached_hub_json(repo_id: str, name: str) -> dict[str, Any] | None:
    """A hub model's file from this host's Hugging Face cache only: never the network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, name)
    return _json_file(Path(found)) if isinstance(found, str) else None
