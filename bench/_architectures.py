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
transformer of ``builtin:tiny-klein`` / ``builtin:tiny-zimage`` (``models/tiny_flow.py``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from models.architectures import KLEIN_4B_TRANSFORMER, ZIMAGE_TURBO_TRANSFORMER
from models.tiny import build_tokenizer

ARCHITECTURES = ("sd15", "sdxl")
GAIN = 0.8

FLOW_DENOISERS = ("klein", "zimage")


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
    from diffusers import Flux2Transformer2DModel, ZImageTransformer2DModel

    from models.tiny_flow import KLEIN_TRANSFORMER_CONFIG, ZIMAGE_TRANSFORMER_CONFIG

    if arch not in FLOW_DENOISERS:
        raise SystemExit(f"the flow denoisers are {', '.join(FLOW_DENOISERS)}, not {arch}")
    full = scale == "full"
    if arch == "klein":
        model_class: Any = Flux2Transformer2DModel
        config = KLEIN_4B_TRANSFORMER if full else KLEIN_TRANSFORMER_CONFIG
    else:
        model_class = ZImageTransformer2DModel
        config = ZIMAGE_TURBO_TRANSFORMER if full else ZIMAGE_TRANSFORMER_CONFIG
    with torch.device("meta"):
        model: torch.nn.Module = model_class(**config).to(dtype)
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
