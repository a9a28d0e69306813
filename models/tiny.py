"""A tiny random-weight Stable Diffusion pipeline, built locally in seconds.

``builtin:tiny`` lets the tests and the local demo run every line of the real
engine on a CPU with no downloads. It draws noise, but through the real
``StableDiffusionPipeline``: it is saved with ``save_pretrained`` and loaded back
through the same ``from_pretrained`` path as a real checkpoint, so what works
with it works with SD1.5 (only bigger).

The weights come from ``torch.manual_seed(0)``, so every build on every machine
is the same model and a seed gives the same image everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

    from models.pipeline import Pipeline

TINY_MODEL_ID = "builtin:tiny"

# Bump when the recipe below changes, so an old build on disk is not reused.
_RECIPE_VERSION = 1
_FOLDER_NAME = f"builtin-tiny-v{_RECIPE_VERSION}"
_COMPLETE_MARKER = "model_index.json"

_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"
_MAX_TOKENS = 77

#: The text encoder's architecture: CLIP shaped, 32 wide (its vocabulary is the tokenizer's). With
#: ``UNET_CONFIG``, also what ``models.architectures`` reads to know the tiny model's layers.
TEXT_ENCODER_CONFIG: Mapping[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "projection_dim": 32,
    "max_position_embeddings": _MAX_TOKENS,
}
#: The UNet's: one plain and one cross-attention level; 8x8 latents for 64 px.
UNET_CONFIG: Mapping[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}

# The build seeds torch's process-wide RNG; two builds interleaving in one process
# would draw from it in turn and get different weights. Builds in separate
# processes have separate RNGs and are covered by the atomic rename.
_BUILD_LOCK = threading.Lock()


def ensure_tiny_model(cache_dir: Path) -> Path:
    """Return the folder of the tiny pipeline under ``cache_dir``, building it once (``built_once``)."""
    return built_once(Path(cache_dir), _FOLDER_NAME, _build_into)


def built_once(cache_dir: Path, folder_name: str, build: Callable[[Path], object]) -> Path:
    """``cache_dir / folder_name``, made by ``build(folder)`` the first time it is asked for.

    The build happens in a private temporary folder that is renamed into place in one step, so a
    reader never sees half a model, and when two processes race the loser simply discards its copy
    and uses the winner's (identical) one. Builds in this process take turns (``_BUILD_LOCK``).
    """
    target = cache_dir / folder_name
    if (target / _COMPLETE_MARKER).is_file():
        return target
    with _BUILD_LOCK:
        if (target / _COMPLETE_MARKER).is_file():  # another thread built it while we waited
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{folder_name}-", dir=cache_dir))
        try:
            build(scratch / "model")
            try:
                os.rename(scratch / "model", target)
            except OSError:
                # Another process renamed its build into place first.
                if not (target / _COMPLETE_MARKER).is_file():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def _tokenizer_files() -> tuple[dict[str, int], list[str]]:
    """A byte-level BPE vocabulary that can spell any text.

    Every byte is a token (alone or ending a word), so any prompt in any
    language tokenizes; merges of lowercase letter pairs make English prompts
    take about half a token per character, closer to real CLIP counts.
    """
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    letters = "abcdefghijklmnopqrstuvwxyz"
    merges: list[str] = []
    tokens: list[str] = [*alphabet, *(f"{char}</w>" for char in alphabet)]
    for first in letters:
        for second in letters:
            merges.append(f"{first} {second}")
            merges.append(f"{first} {second}</w>")
            tokens.extend((f"{first}{second}", f"{first}{second}</w>"))
    tokens.extend((_BOS, _EOS))
    return {token: index for index, token in enumerate(tokens)}, merges


def build_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP tokenizer over ``_tokenizer_files``' vocabulary, written to ``folder`` and read back.

    Also what ``bench/`` gives its random-weight SD1.5 and SDXL architectures, which have no hub to fetch one from.
    """
    from transformers import CLIPTokenizer

    vocab, merges = _tokenizer_files()
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(
        folder, model_max_length=_MAX_TOKENS, bos_token=_BOS, eos_token=_EOS, pad_token=_EOS
    )


def _build_into(folder: Path) -> None:
    """Build the pipeline and ``save_pretrained`` it (safetensors) into ``folder``."""
    import torch

    # Seed the global RNG for the build only, leaving the caller's RNG state as it was.
    with torch.random.fork_rng(devices=[]):
        _build_seeded_into(folder)


def _build_seeded_into(folder: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    # 1. Tokenizer, written as vocab.json / merges.txt and read back like CLIP's.
    tokenizer = build_tokenizer(folder.parent / "tokenizer-source")
    vocab = tokenizer.get_vocab()

    # 2. Text encoder: CLIP shaped, 32 wide.
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            **TEXT_ENCODER_CONFIG,
            bos_token_id=vocab[_BOS],
            eos_token_id=vocab[_EOS],
            pad_token_id=vocab[_EOS],
        )
    )

    # 3. VAE with four blocks, so one latent pixel is 8x8 image pixels as in SD.
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.18215,
    )

    # 4. UNet: UNET_CONFIG, one plain and one cross-attention level.
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**UNET_CONFIG)

    # 5. SD1.5's own noise schedule; the engine swaps in its scheduler per call.
    scheduler = PNDMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
        set_alpha_to_one=False,
    )

    # diffusers' lazy classes are opaque to the type checker: say what this is.
    pipeline = cast(
        "Pipeline",
        StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        ),
    )
    pipeline.save_pretrained(folder, safe_serialization=True)
