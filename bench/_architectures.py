"""SD1.5- and SDXL-architecture pipelines with random weights, built here in seconds, for the GPU benchmark.

``full`` is the published configuration of each (runwayml SD1.5: an 859.5 M-parameter UNet,
CLIP ViT-L, the SD VAE; SDXL base: its 2.6 G-parameter UNet, CLIP ViT-L and OpenCLIP bigG,
the same VAE). ``smoke`` keeps every block type and the conditioning of each but at a small
width, so a CPU runs the benchmark's whole path in minutes. The vocabulary is the tiny
model's (the text towers' cost does not depend on it), so nothing is downloaded.

Random weights are drawn with a variance of 1/fan-in, a little under, so activations stay
finite through every block in bf16 and fp16; the images are noise, the work is real.

The flow-matching families of issue 23 are here by their denoisers (``flow_denoiser``): FLUX.2 [klein]
4B's and Z-Image-Turbo's transformers at their published configurations (``models.architectures``, where
the LoRA checks read them too, with their sources), built on the meta device
(no memory, no time) and given random weights on the device that runs them; ``smoke`` is the
transformer of ``builtin:tiny-klein`` / ``builtin:tiny-zimage`` (``models/tiny_flow.py``). Their whole
txt2img pipelines (``flow_pipeline``) are built in memory on the device the same way, with Qwen3-4B as
the text encoder and each family's VAE at their published configurations (``FLOW_ARCHS``), so nothing
of their 16 and 20 GB is written to disk; ``smoke`` is builtin:tiny-klein's and builtin:tiny-zimage's parts.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch

from models.architectures import KLEIN_4B_TRANSFORMER, ZIMAGE_TURBO_TRANSFORMER
from models.tiny import build_tokenizer
from models.tiny_flow import (
    KLEIN_SCHEDULER_CONFIG,
    KLEIN_TEXT_LAYERS,
    KLEIN_TRANSFORMER_CONFIG,
    QWEN3_CONFIG,
    ZIMAGE_SCHEDULER_CONFIG,
    ZIMAGE_TEXT_LAYERS,
    ZIMAGE_TRANSFORMER_CONFIG,
)
from models.types import ModelFamily

ARCHITECTURES = ("sd15", "sdxl")
GAIN = 0.8

#: Qwen3-4B, the text encoder of both flow families (klein's ``text_encoder`` folder holds it as a
#: ``Qwen3ForCausalLM``, Z-Image-Turbo's as a ``Qwen3Model``): the fields of https://huggingface.co/Qwen/Qwen3-4B's
#: ``config.json`` that shape its modules (4.02 G parameters, the embedding tied to the LM head).
QWEN3_4B_TEXT_ENCODER: Final[Mapping[str, Any]] = {
    "vocab_size": 151936,
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000,
    "tie_word_embeddings": True,
}
_VAE_BLOCKS: Final = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
}
#: FLUX.2's VAE (klein's ``vae/config.json``, ``AutoencoderKLFlux2``): 32 latent channels, seen by the
#: transformer as 2x2 patches (128 channels), normalised by batch-norm statistics.
FLUX2_VAE: Final[Mapping[str, Any]] = {
    **_VAE_BLOCKS,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 32,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "use_quant_conv": True,
    "use_post_quant_conv": True,
    "batch_norm_eps": 1e-4,
    "batch_norm_momentum": 0.1,
    "patch_size": (2, 2),
}
#: FLUX.1's VAE, which Z-Image-Turbo ships (its ``vae/config.json``, ``AutoencoderKL``): 16 latent channels.
FLUX1_VAE: Final[Mapping[str, Any]] = {
    **_VAE_BLOCKS,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 16,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}
#: builtin:tiny-klein's and builtin:tiny-zimage's VAEs (``models.tiny_flow``): four levels a few channels wide.
_TINY_VAE: Final = {
    "block_out_channels": (8, 16, 16, 16),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 64,
}


@dataclass(frozen=True, slots=True)
class FlowArch:
    """A flow-matching family as the GPU benchmark builds it: its classes, and each part's configuration by
    scale ("full": the published one; "smoke": the builtin tiny model's)."""

    family: ModelFamily  # whose defaults (side, steps, guidance, negative prompt) ``models.families`` declares
    pipeline: str  # the diffusers class that runs its txt2img
    transformer: str
    transformer_config: Mapping[str, Mapping[str, Any]]
    text_encoder: str  # the transformers class
    text_encoder_config: Mapping[str, Mapping[str, Any]]  # a Qwen3Config's fields; no vocab_size: the tokenizer's
    vae: str
    vae_config: Mapping[str, Mapping[str, Any]]
    scheduler_config: Mapping[str, Any]  # FlowMatchEulerDiscreteScheduler's, as the published folder's
    pipeline_options: Mapping[str, Any]  # what its model_index.json adds to the parts


FLOW_ARCHS: Final[Mapping[str, FlowArch]] = {
    "klein": FlowArch(
        family=ModelFamily.KLEIN,
        pipeline="Flux2KleinPipeline",
        transformer="Flux2Transformer2DModel",
        transformer_config={"full": KLEIN_4B_TRANSFORMER, "smoke": KLEIN_TRANSFORMER_CONFIG},
        text_encoder="Qwen3ForCausalLM",
        text_encoder_config={
            "full": QWEN3_4B_TEXT_ENCODER,
            "smoke": {**QWEN3_CONFIG, "num_hidden_layers": KLEIN_TEXT_LAYERS},
        },
        vae="AutoencoderKLFlux2",
        vae_config={"full": FLUX2_VAE, "smoke": {**FLUX2_VAE, **_TINY_VAE, "latent_channels": 4}},
        scheduler_config=KLEIN_SCHEDULER_CONFIG,
        pipeline_options={"is_distilled": True},  # FLUX.2 [klein] 4B's: no unconditional pass
    ),
    "zimage": FlowArch(
        family=ModelFamily.ZIMAGE,
        pipeline="ZImagePipeline",
        transformer="ZImageTransformer2DModel",
        transformer_config={"full": ZIMAGE_TURBO_TRANSFORMER, "smoke": ZIMAGE_TRANSFORMER_CONFIG},
        text_encoder="Qwen3Model",
        text_encoder_config={
            "full": QWEN3_4B_TEXT_ENCODER,
            "smoke": {**QWEN3_CONFIG, "num_hidden_layers": ZIMAGE_TEXT_LAYERS},
        },
        vae="AutoencoderKL",
        vae_config={"full": FLUX1_VAE, "smoke": {**FLUX1_VAE, **_TINY_VAE}},
        scheduler_config=ZIMAGE_SCHEDULER_CONFIG,
        pipeline_options={},
    ),
}
FLOW_DENOISERS = tuple(FLOW_ARCHS)


def _tame(module: torch.nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, torch.nn.Linear | torch.nn.Conv2d):
            fan_in = layer.weight[0].numel()
            torch.nn.init.normal_(layer.weight, 0.0, GAIN / math.sqrt(fan_in))
            if layer.bias is not None:
                torch.nn.init.zeros_(layer.bias)


def flow_denoiser(
    arch: str, scale: str = "full", device: torch.device | str = "meta", dtype: torch.dtype = torch.bfloat16
) -> torch.nn.Module:
    """klein's or Z-Image's transformer at ``scale``, built on the meta device; on any other ``device``
    its storage is allocated there (in ``dtype``, never first in fp32 on the host) and filled with
    random weights: linear layers as ``_tame`` draws them, norms' scales one, the rest (Z-Image's pad
    tokens) zero, as their constructors set them."""
    import diffusers

    if arch not in FLOW_ARCHS:
        raise SystemExit(f"the flow denoisers are {', '.join(FLOW_ARCHS)}, not {arch}")
    spec = FLOW_ARCHS[arch]
    with torch.device("meta"):
        model: torch.nn.Module = getattr(diffusers, spec.transformer)(**spec.transformer_config[scale]).to(dtype)
    if torch.device(device).type == "meta":
        return model
    model = model.to_empty(device=device)
    with torch.no_grad():
        _tame(model)
        for layer in model.modules():
            if isinstance(layer, torch.nn.Linear | torch.nn.Conv2d):
                continue
            for name, parameter in layer.named_parameters(recurse=False):
                scale_of_norm = "Norm" in type(layer).__name__ and name == "weight"
                parameter.fill_(1.0 if scale_of_norm else 0.0)
    return model


@contextlib.contextmanager
def _allocated_as(dtype: torch.dtype) -> Iterator[None]:
    """New modules' parameters in ``dtype`` (and, inside ``torch.device(...)``, on that device) from the start."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def flow_pipeline(arch: str, scale: str, device: torch.device | str, dtype: torch.dtype, scratch: Path) -> Any:
    """klein's or Z-Image's whole txt2img pipeline at ``scale`` with random weights, built in memory on ``device``
    (in ``dtype``), so a benchmark of the real models' pipelines writes nothing but a tokenizer to ``scratch``.

    The tokenizer is builtin:tiny's Qwen-style byte-level BPE with Qwen3's chat template (Qwen3's own is a
    download): klein pads every prompt to 512 tokens whatever the vocabulary; Z-Image's caption is the
    prompt's own length, which in this vocabulary is somewhat longer than in Qwen3's. The text encoder keeps
    Qwen3-4B's full vocabulary, so its embedding and (klein's) LM head cost what the real ones do.
    """
    import diffusers
    import transformers

    from models.tiny_flow import build_qwen_tokenizer

    spec = FLOW_ARCHS[arch]
    torch.manual_seed(0)

    # 1. Tokenizer.
    tokenizer = build_qwen_tokenizer(scratch / f"{arch}-tokenizer")

    # 2. Text encoder and VAE, allocated on the device in ``dtype`` (buffers as their constructors make
    #    them: the VAE's batch-norm statistics, RoPE's frequencies), then drawn as the SD parts are.
    text_config = transformers.Qwen3Config(**{"vocab_size": len(tokenizer), **spec.text_encoder_config[scale]})
    with torch.device(device), _allocated_as(dtype):
        text_encoder = getattr(transformers, spec.text_encoder)(text_config)
        vae = getattr(diffusers, spec.vae)(**spec.vae_config[scale])
    _tame(text_encoder)
    _tame(vae)

    # 3. Transformer.
    transformer = flow_denoiser(arch, scale, device=device, dtype=dtype)

    # 4. Scheduler, and the pipeline as its model_index.json assembles it.
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(**spec.scheduler_config)
    pipeline = getattr(diffusers, spec.pipeline)(
        scheduler=scheduler,
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        transformer=transformer.eval(),
        **spec.pipeline_options,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _text_config(vocab: int, scale: str, *, width: int, layers: int, heads: int, act: str) -> Any:
    from transformers import CLIPTextConfig

    if scale == "smoke":
        width, layers, heads = 32, 2, 4
    return CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        projection_dim=width,
        max_position_embeddings=77,
        hidden_act=act,
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
    )


def _vae(scale: str, scaling_factor: float) -> Any:
    from diffusers import AutoencoderKL

    full = scale == "full"
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512) if full else (8, 16, 16, 16),
        layers_per_block=2 if full else 1,
        latent_channels=4,
        norm_num_groups=32 if full else 8,
        sample_size=512 if full else 64,
        scaling_factor=scaling_factor,
    )


def build(arch: str, scale: str, folder: Path) -> Path:
    """Build ``arch`` at ``scale`` ("full" or "smoke") and ``save_pretrained`` it into ``folder``."""
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tokenizer = build_tokenizer(folder.parent / f"{folder.name}-tokenizer")
    vocab = len(tokenizer.get_vocab())
    full = scale == "full"
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    text_encoder = CLIPTextModel(_text_config(vocab, scale, width=768, layers=12, heads=12, act="quick_gelu"))
    if arch == "sd15":
        from diffusers import StableDiffusionPipeline

        unet = UNet2DConditionModel(
            sample_size=64 if full else 8,
            cross_attention_dim=768 if full else 32,
            block_out_channels=(320, 640, 1280, 1280) if full else (32, 64, 64, 64),
            layers_per_block=2 if full else 1,
            attention_head_dim=8,
        )
        parts: dict[str, Any] = {"unet": unet, "vae": _vae(scale, 0.18215), "text_encoder": text_encoder}
        pipeline: Any = StableDiffusionPipeline(
            **parts,
            tokenizer=tokenizer,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    elif arch == "sdxl":
        from diffusers import StableDiffusionXLPipeline

        second = CLIPTextModelWithProjection(_text_config(vocab, scale, width=1280, layers=32, heads=20, act="gelu"))
        first_width, second_width = text_encoder.config.hidden_size, second.config.hidden_size
        time_dim = 256 if full else 8
        unet = UNet2DConditionModel(
            sample_size=128 if full else 8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(320, 640, 1280) if full else (32, 64, 64),
            layers_per_block=2 if full else 1,
            transformer_layers_per_block=(1, 2, 10) if full else (1, 1, 2),
            attention_head_dim=(5, 10, 20) if full else (2, 4, 4),
            cross_attention_dim=first_width + second_width,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=time_dim,
            projection_class_embeddings_input_dim=second.config.projection_dim + 6 * time_dim,
        )
        parts = {"unet": unet, "vae": _vae(scale, 0.13025), "text_encoder": text_encoder, "text_encoder_2": second}
        pipeline = StableDiffusionXLPipeline(
            **parts, tokenizer=tokenizer, tokenizer_2=tokenizer, scheduler=scheduler, force_zeros_for_empty_prompt=True
        )
    else:
        raise SystemExit(f"--arch must be one of {', '.join(ARCHITECTURES)}, not {arch}")
    for part in parts.values():
        _tame(part)
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def parameters(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def write_tiny_loras(folder: Path, names: list[str], *, rank: int = 4, scale: float = 0.5) -> list[Path]:
    """LoRAs for ``builtin:tiny``'s attention (PEFT on its UNet, saved in diffusers' layout), the n-th from
    seed n, with random weights of ``scale`` so they show: for the LoRA tests and the LoRA benchmark."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    from models.loading import load_pipeline
    from models.tiny import TINY_MODEL_ID

    pipeline = load_pipeline(TINY_MODEL_ID, device=torch.device("cpu"), dtype=torch.float32, cache_dir=folder)
    unet = pipeline.unet
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"]), "made")
    template = get_peft_model_state_dict(unet, adapter_name="made")
    files = []
    for seed, name in enumerate(names):
        generator = torch.Generator().manual_seed(seed)
        state = {key: torch.randn(tensor.shape, generator=generator) * scale for key, tensor in template.items()}
        StableDiffusionPipeline.save_lora_weights(
            folder, unet_lora_layers=convert_state_dict_to_diffusers(state), weight_name=name
        )
        files.append(folder / name)
    return files
