"""Tiny random-weight FLUX.2 [klein] and Z-Image pipelines, built locally in seconds (issue 23).

``builtin:tiny-klein`` and ``builtin:tiny-zimage`` are to the two flow-matching families what
``builtin:tiny`` (``models.tiny``) is to Stable Diffusion: the real ``Flux2KleinPipeline`` and
``ZImagePipeline`` with every component their published checkpoints have (a FlowMatch Euler
scheduler, the family's VAE, a Qwen3 text encoder, a Qwen2 byte-level BPE tokenizer with Qwen3's
chat template, the transformer), only a few dozen wide. Each is saved with ``save_pretrained`` and
loaded back through the same ``from_pretrained`` path as a download, so what works with them works
with FLUX.2 [klein] 4B and Z-Image-Turbo (only bigger), and a 64 px image of 2 steps takes well
under a second on a CPU.

What the real models' pipelines rely on is kept, not just their class names:

- klein reads hidden states 9, 18 and 27 of its text encoder (``text_encoder_out_layers``), so
  the tiny Qwen3 has 27 layers (of width 16) and the pipeline's defaults work unchanged;
  ``joint_attention_dim`` is three times the encoder's width, as 7680 is for Qwen3-4B's 2560.
- ``is_distilled`` is true, as in FLUX.2 [klein] 4B's ``model_index.json``: guidance is ignored
  and there is no unconditional pass (``is_distilled=False`` in ``from_pretrained`` gives the
  Base variants' behaviour on the same weights).
- Z-Image reads the second-to-last hidden state of a ``Qwen3Model`` (no LM head); klein's
  encoder is a ``Qwen3ForCausalLM``, as in the published folders.
- The tokenizer has Qwen's special tokens (``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>``)
  and ``<think>``/``</think>``, and a chat template that renders a user turn exactly as Qwen3's
  does, with ``enable_thinking`` (klein passes False, which adds the empty think block; Z-Image
  passes True).
- The schedulers are configured as the published ones: klein's with resolution-dependent
  (exponential) shifting, Z-Image-Turbo's with a fixed shift of 3.

Weights are drawn from a ``torch.Generator`` seeded per component, not from the process-wide RNG,
so every build on every machine is the same bytes and a seed gives the same image everywhere.
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from models.tiny import built_once

if TYPE_CHECKING:
    import torch
    from transformers import Qwen2Tokenizer

TINY_KLEIN_MODEL_ID = "builtin:tiny-klein"
TINY_ZIMAGE_MODEL_ID = "builtin:tiny-zimage"

# Bump when a recipe below changes, so an old build on disk is not reused.
_RECIPE_VERSION = 1
_COMPLETE_MARKER = "model_index.json"

# Qwen's control tokens, by the names Qwen3's tokenizer gives them.
_END_OF_TEXT = "<|endoftext|>"  # Qwen3's pad token
_IM_START = "<|im_start|>"
_IM_END = "<|im_end|>"  # Qwen3's end of a turn, and its eos token
_THINK = "<think>"
_END_THINK = "</think>"

#: Qwen3's chat template reduced to what the two pipelines ask of it: each turn between
#: ``<|im_start|>role`` and ``<|im_end|>``, then the assistant's turn opened, with an empty think
#: block when ``enable_thinking`` is False. For one user message it renders the same text as Qwen3's.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)
# Qwen3's tokenizer_config; the pipelines pass their own max_length (512) to every call.
_MODEL_MAX_LENGTH = 131072

#: The text encoders: Qwen3-shaped (grouped-query attention, q/k norms, RoPE), 16 wide. klein's has
#: 27 layers because its pipeline reads hidden states 9, 18 and 27 by default (Qwen3-4B has 36).
QWEN3_CONFIG: Mapping[str, Any] = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 8,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
KLEIN_TEXT_LAYERS = 27
ZIMAGE_TEXT_LAYERS = 2
#: klein's transformer: one double- and one single-stream block, 2 heads of 16, RoPE over the four
#: axes (time, height, width, layer) as in the real one. ``in_channels`` is the VAE's latent
#: channels times the 2x2 patch; ``joint_attention_dim`` is three stacked encoder layers.
KLEIN_TRANSFORMER_CONFIG: Mapping[str, Any] = {
    "patch_size": 1,
    "in_channels": 16,
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 3 * QWEN3_CONFIG["hidden_size"],
    "timestep_guidance_channels": 256,
    "mlp_ratio": 3.0,
    "axes_dims_rope": (4, 4, 4, 4),
    "rope_theta": 2000,
    "eps": 1e-6,
    "guidance_embeds": False,
}
#: Z-Image's: two main blocks and one noise and one context refiner, 2 heads of 16; RoPE over
#: (caption position, height, width) with the real model's lengths, so a 512-token prompt fits.
ZIMAGE_TRANSFORMER_CONFIG: Mapping[str, Any] = {
    "all_patch_size": (2,),
    "all_f_patch_size": (1,),
    "in_channels": 16,
    "dim": 32,
    "n_layers": 2,
    "n_refiner_layers": 1,
    "n_heads": 2,
    "n_kv_heads": 2,
    "norm_eps": 1e-5,
    "qk_norm": True,
    "cap_feat_dim": QWEN3_CONFIG["hidden_size"],
    "rope_theta": 256.0,
    "t_scale": 1000.0,
    "axes_dims": (8, 4, 4),
    "axes_lens": (1536, 512, 512),
}
# Both VAEs have four levels, so one latent pixel is 8x8 image pixels as in the real ones, and the
# transformers see 2x2 latent patches: a 64 px image is 16 tokens.
_VAE_LEVELS = (8, 16, 16, 16)
_KLEIN_LATENT_CHANNELS = 4  # FLUX.2's VAE has 32
_ZIMAGE_LATENT_CHANNELS = 16  # as FLUX.1's VAE, which Z-Image uses
# FLUX.2 [dev]'s scheduler_config.json (klein's own was not at hand): the shift follows the image's size, through
# the ``mu`` that klein's pipeline computes for every call and only a dynamically shifting scheduler reads.
KLEIN_SCHEDULER_CONFIG: Mapping[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
    "time_shift_type": "exponential",
}
# Z-Image-Turbo's scheduler_config.json: a fixed shift of 3.
ZIMAGE_SCHEDULER_CONFIG: Mapping[str, Any] = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False}

# Random weights with a variance of 1/fan-in keep activations finite through every block.
_GAIN = 1.0

# Builds draw their weights from generators of their own, but constructing a module still advances the
# global RNG (restored afterwards by fork_rng): one build at a time, so two never restore each other's.
_BUILD_LOCK = threading.Lock()


class _SavedPipeline(Protocol):
    """What a build asks of the pipeline it assembles (diffusers' lazy classes are opaque to the type checker)."""

    def save_pretrained(self, folder: Any, **options: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class TinyFlowModel:
    """One tiny flow-matching family: its reference, its folder in the cache, and how it is built."""

    model_id: str
    pipeline_class: str
    folder_name: str
    build: Callable[[Path], Path]


def build_tiny_klein(folder: Path) -> Path:
    """Write a complete ``Flux2KleinPipeline`` folder (``save_pretrained``, safetensors) to ``folder``."""
    return _build_locked(folder, _assemble_klein)


def build_tiny_zimage(folder: Path) -> Path:
    """Write a complete ``ZImagePipeline`` folder (``save_pretrained``, safetensors) to ``folder``."""
    return _build_locked(folder, _assemble_zimage)


TINY_FLOW_MODELS: Mapping[str, TinyFlowModel] = {
    TINY_KLEIN_MODEL_ID: TinyFlowModel(
        TINY_KLEIN_MODEL_ID, "Flux2KleinPipeline", f"builtin-tiny-klein-v{_RECIPE_VERSION}", build_tiny_klein
    ),
    TINY_ZIMAGE_MODEL_ID: TinyFlowModel(
        TINY_ZIMAGE_MODEL_ID, "ZImagePipeline", f"builtin-tiny-zimage-v{_RECIPE_VERSION}", build_tiny_zimage
    ),
}


def ensure_tiny_flow_model(model_id: str, cache_dir: Path) -> Path:
    """Return the folder of ``model_id`` (one of ``TINY_FLOW_MODELS``) under ``cache_dir``, building it once, as
    ``models.tiny.ensure_tiny_model`` does (``built_once``)."""
    recipe = TINY_FLOW_MODELS[model_id]
    return built_once(Path(cache_dir), recipe.folder_name, recipe.build)


# -- the tokenizer ---------------------------------------------------------------------------------


def _vocabulary() -> tuple[dict[str, int], list[str]]:
    """A byte-level BPE vocabulary that can spell any text, as Qwen's can.

    Every byte is a token, so any prompt in any language tokenizes; merges of a space with a
    lowercase letter and of lowercase letter pairs make English take about half a token per
    character. The control tokens are added by the tokenizer after these.
    """
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    space = "Ġ"  # how byte-level BPE spells a space
    letters = "abcdefghijklmnopqrstuvwxyz"
    pairs = [(space, letter) for letter in letters]
    pairs += [(first, second) for first in letters for second in letters]
    tokens = [*alphabet, *(first + second for first, second in pairs)]
    return {token: index for index, token in enumerate(tokens)}, [f"{first} {second}" for first, second in pairs]


def build_qwen_tokenizer(folder: Path) -> Qwen2Tokenizer:
    """A ``Qwen2Tokenizer`` over ``_vocabulary``, with Qwen3's control tokens and chat template.

    Written as ``vocab.json``/``merges.txt`` to ``folder/source`` and read from there, as a Qwen
    tokenizer is; then saved to ``folder/saved`` (``tokenizer.json``, ``tokenizer_config.json``,
    ``chat_template.jinja``: what the pipelines' ``tokenizer`` folders hold) and read back.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = _vocabulary()
    source = folder / "source"
    source.mkdir(parents=True)
    (source / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (source / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tokenizer = Qwen2Tokenizer.from_pretrained(
        source,
        bos_token=None,
        eos_token=_IM_END,
        pad_token=_END_OF_TEXT,
        model_max_length=_MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(_IM_START, special=True), AddedToken(_END_OF_TEXT, special=True)]}
    )
    # Qwen3 adds the think markers as ordinary (not special) added tokens: one id each, kept on decode.
    tokenizer.add_tokens([AddedToken(_THINK, special=False), AddedToken(_END_THINK, special=False)])
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder / "saved")
    return Qwen2Tokenizer.from_pretrained(folder / "saved")


# -- the builds ------------------------------------------------------------------------------------


def _build_locked(folder: Path, assemble: Callable[[Path], _SavedPipeline]) -> Path:
    """Assemble a pipeline (its tokenizer's sources in a scratch folder) and ``save_pretrained`` it to ``folder``."""
    import torch

    folder = Path(folder)
    # The global RNG is left as the caller had it; the weights never come from it.
    with _BUILD_LOCK, torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory(prefix="tiny-flow-") as scratch:
        assemble(Path(scratch)).save_pretrained(folder, safe_serialization=True)
    return folder


def _draw_weights(module: Any, seed: int) -> None:
    """Give every linear, convolution and embedding weight of ``module`` random values from ``seed``.

    Normal with a variance of ``_GAIN``/fan-in; biases zero; norms keep their defaults (ones and
    zeros), and so do the VAE's batch-norm statistics. Modules are visited in definition order, so
    the same configuration always gets the same weights.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in cast("torch.nn.Module", module).modules():
            if isinstance(layer, torch.nn.Linear | torch.nn.Conv2d):
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * (_GAIN / math.sqrt(fan_in)))
                if layer.bias is not None:
                    layer.bias.zero_()
            elif isinstance(layer, torch.nn.Embedding):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))


def _qwen3_config(tokenizer: Qwen2Tokenizer, layers: int) -> Any:
    from transformers import Qwen3Config

    vocab = tokenizer.get_vocab()
    return Qwen3Config(
        vocab_size=len(vocab),
        num_hidden_layers=layers,
        **QWEN3_CONFIG,
        bos_token_id=vocab[_END_OF_TEXT],
        eos_token_id=vocab[_IM_END],
        pad_token_id=vocab[_END_OF_TEXT],
    )


def _vae_shape() -> dict[str, Any]:
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * len(_VAE_LEVELS),
        "up_block_types": ("UpDecoderBlock2D",) * len(_VAE_LEVELS),
        "block_out_channels": _VAE_LEVELS,
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "sample_size": 64,
    }


def _assemble_klein(scratch: Path) -> _SavedPipeline:
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3ForCausalLM

    # 1. Tokenizer, written as vocab and merges and read back like Qwen's.
    tokenizer = build_qwen_tokenizer(scratch)

    # 2. Text encoder: a causal Qwen3 with 27 layers, so hidden states 9, 18 and 27 exist.
    text_encoder = Qwen3ForCausalLM(_qwen3_config(tokenizer, KLEIN_TEXT_LAYERS))
    _draw_weights(text_encoder, seed=1)

    # 3. FLUX.2's VAE shape (2x2 patches, batch-norm statistics of the patched latents), four levels.
    vae = AutoencoderKLFlux2(**_vae_shape(), latent_channels=_KLEIN_LATENT_CHANNELS)
    _draw_weights(vae, seed=2)

    # 4. Transformer: one double- and one single-stream block.
    transformer = Flux2Transformer2DModel(**KLEIN_TRANSFORMER_CONFIG)
    _draw_weights(transformer, seed=3)

    # 5. Scheduler, and the step-distilled flag of the published 4B model.
    pipeline = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**KLEIN_SCHEDULER_CONFIG),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=True,
    )
    return cast("_SavedPipeline", pipeline)


def _assemble_zimage(scratch: Path) -> _SavedPipeline:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Model

    # 1. Tokenizer, written as vocab and merges and read back like Qwen's.
    tokenizer = build_qwen_tokenizer(scratch)

    # 2. Text encoder: a Qwen3 without LM head; the pipeline reads its second-to-last hidden state.
    text_encoder = Qwen3Model(_qwen3_config(tokenizer, ZIMAGE_TEXT_LAYERS))
    _draw_weights(text_encoder, seed=1)

    # 3. FLUX.1's VAE shape (16 latent channels, its scaling and shift), four levels.
    vae = AutoencoderKL(
        **_vae_shape(),
        latent_channels=_ZIMAGE_LATENT_CHANNELS,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    _draw_weights(vae, seed=2)

    # 4. Transformer: two blocks and a refiner each for the noise and the caption.
    transformer = ZImageTransformer2DModel(**ZIMAGE_TRANSFORMER_CONFIG)
    _draw_weights(transformer, seed=3)

    # 5. Z-Image-Turbo's scheduler.
    pipeline = ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**ZIMAGE_SCHEDULER_CONFIG),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    return cast("_SavedPipeline", pipeline)


# -- LoRAs -----------------------------------------------------------------------------------------

# Attention projections of both block kinds, as diffusers' DreamBooth LoRA scripts target them. klein's
# double-stream blocks hold ``to_out`` as a list (``to_out.0``), its single-stream blocks as one Linear.
KLEIN_LORA_TARGETS = (
    r".*transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
    r"|.*single_transformer_blocks\.\d+\.attn\.(to_qkv_mlp_proj|to_out)"
)
ZIMAGE_LORA_TARGETS = r".*\.attention\.(to_q|to_k|to_v|to_out\.0)"
_LORA_TARGETS = {"Flux2KleinPipeline": KLEIN_LORA_TARGETS, "ZImagePipeline": ZIMAGE_LORA_TARGETS}


def write_tiny_flow_loras(
    model_folder: Path, folder: Path, names: Sequence[str], *, rank: int = 4, scale: float = 0.5
) -> list[Path]:
    """LoRAs for the tiny pipeline in ``model_folder`` (PEFT on its transformer, saved by the pipeline
    class's ``save_lora_weights``: ``transformer.<module>.lora_A/lora_B.weight`` keys in a .safetensors
    file), the n-th from seed n, with random weights of ``scale`` so they show."""
    import diffusers
    import torch
    from peft import LoraConfig, get_peft_model_state_dict

    pipeline_class_name = _pipeline_class_name(model_folder)
    pipeline_class = getattr(diffusers, pipeline_class_name)
    transformer_class = getattr(diffusers, _component_class_name(model_folder, "transformer"))
    transformer = transformer_class.from_pretrained(model_folder / "transformer")
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=_LORA_TARGETS[pipeline_class_name])
    transformer.add_adapter(config, "made")
    template = get_peft_model_state_dict(transformer, adapter_name="made")
    files = []
    for seed, name in enumerate(names):
        generator = torch.Generator().manual_seed(seed)
        state = {key: torch.randn(tensor.shape, generator=generator) * scale for key, tensor in template.items()}
        pipeline_class.save_lora_weights(folder, transformer_lora_layers=state, weight_name=name)
        files.append(folder / name)
    return files


def _pipeline_class_name(model_folder: Path) -> str:
    return str(json.loads((model_folder / "model_index.json").read_text(encoding="utf-8"))["_class_name"])


def _component_class_name(model_folder: Path, component: str) -> str:
    return str(json.loads((model_folder / "model_index.json").read_text(encoding="utf-8"))[component][1])
