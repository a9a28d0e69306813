"""A tiny random-weight Florence-2, built locally in a second (issue 25, /describe).

``builtin:tiny-florence2`` is to the captioner what ``builtin:tiny`` (``models.tiny``) is to the diffusion
engine: the real ``Florence2ForConditionalGeneration`` with its ``Florence2Processor``, only a few dozen wide,
saved with ``save_pretrained`` and loaded back through the same ``from_pretrained`` path as
``florence-community/Florence-2-base``, so what works with it works with the published models (only bigger).

What the published folders have, and the captioner relies on, is kept:

- a DaViT vision tower of four stages (strides 4, 2, 2, 2), so an image of ``IMAGE_SIZE`` px is a 2x2 grid of
  features plus their mean: ``image_seq_length`` image tokens, as 577 are for 768 px;
- a BART encoder-decoder whose generation starts from ``</s>`` and is forced to say ``<s>`` first, as Florence's
  does, with 3 beams and no repeated trigram (its ``generation_config.json``); its ``max_new_tokens`` is small,
  so a test's captions are a dozen tokens, not the hundreds a real model stops well before;
- a byte-level BPE tokenizer with BART's control tokens (``<s>``, ``<pad>``, ``</s>``, ``<unk>``, ``<mask>``),
  the ``<image>`` token the processor expands, and Florence's task and location tokens (``<loc_0>`` ...
  ``<loc_999>``, ``<od>``, ``<poly>``, ...), so detection output parses as the real model's does;
- the processor's post-processing rules (``post_processor_config``) for every kind of answer.

Weights are drawn from a ``torch.Generator`` seeded here, with a variance of 1/fan-in, so captions differ
between images and tasks and every build on every machine is the same bytes.
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from models.tiny import built_once

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

TINY_FLORENCE_MODEL_ID = "builtin:tiny-florence2"

# Bump when the recipe below changes, so an old build on disk is not reused.
_RECIPE_VERSION = 1
_FOLDER_NAME = f"builtin-tiny-florence2-v{_RECIPE_VERSION}"
# ``built_once`` (models.tiny) calls a folder complete when it holds diffusers' index file; a transformers folder
# has none, so the build writes one that names what the folder holds (nothing loads it as a pipeline).
_COMPLETE_MARKER = "model_index.json"

#: Pictures are resized to this square, as the published processors resize to 768.
IMAGE_SIZE = 64
#: The most tokens the tiny model's generation config lets a caption run to.
MAX_NEW_TOKENS = 12

# BART's control tokens, ids 0 to 3 as in Florence-2's vocabulary; ``<mask>`` ends the vocabulary.
_BOS, _PAD, _EOS, _UNK, _MASK = "<s>", "<pad>", "</s>", "<unk>", "<mask>"
_IMAGE = "<image>"
#: Florence-2's added tokens that its answers use: location bins, detection, OCR, caption and polygon markers.
FLORENCE_TOKENS = (
    "<od>",
    "</od>",
    "<ocr>",
    "</ocr>",
    *(f"<loc_{index}>" for index in range(1000)),
    "<cap>",
    "</cap>",
    "<ncap>",
    "</ncap>",
    "<dcap>",
    "</dcap>",
    "<grounding>",
    "</grounding>",
    "<seg>",
    "</seg>",
    "<sep>",
    "<poly>",
    "</poly>",
)

#: The vision tower: DaViT's four stages, 8 to 16 wide; windows of 2 cover the last stages' grids.
VISION_CONFIG: Mapping[str, Any] = {
    "depths": (1, 1, 1, 1),
    "patch_size": (7, 3, 3, 3),
    "patch_stride": (4, 2, 2, 2),
    "patch_padding": (3, 1, 1, 1),
    "patch_prenorm": (False, True, True, True),
    "embed_dim": (8, 8, 16, 16),
    "num_heads": (1, 1, 2, 2),
    "num_groups": (1, 1, 2, 2),
    "window_size": 2,
    "drop_path_rate": 0.0,
    "projection_dim": 16,
}
#: The language model: BART shaped, 16 wide, one encoder and one decoder layer; positions as many as the
#: published models have, so a real model's token budgets fit.
TEXT_CONFIG: Mapping[str, Any] = {
    "d_model": 16,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 32,
    "decoder_ffn_dim": 32,
    "max_position_embeddings": 1024,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "scale_embedding": False,
}
#: How the processor parses each kind of answer (``Florence2PostProcessor`` refuses a kind not named here).
POST_PROCESSOR_CONFIG: Mapping[str, Any] = {
    "ocr": {
        "PATTERN": r"(.+?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>"
    },
    "phrase_grounding": {"FILTER_BY_BLACK_LIST": True},
    "pure_text": {},
    "description_with_bboxes": {},
    "description_with_polygons": {},
    "polygons": {},
    "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}
# ImageNet's statistics, as the published processors normalise with.
_IMAGE_MEAN = (0.485, 0.456, 0.406)
_IMAGE_STD = (0.229, 0.224, 0.225)
_BICUBIC = 3

# Constructing a model advances the process-wide RNG (restored afterwards by fork_rng): one build at a time.
_BUILD_LOCK = threading.Lock()


def ensure_tiny_florence(cache_dir: Path) -> Path:
    """The folder of the tiny Florence-2 under ``cache_dir``, building it once (``built_once``)."""
    return built_once(Path(cache_dir), _FOLDER_NAME, build_tiny_florence)


def build_tiny_florence(folder: Path) -> Path:
    """Write a complete Florence-2 folder (``save_pretrained``: safetensors, configs, tokenizer, processor)."""
    import torch

    folder = Path(folder)
    with (
        _BUILD_LOCK,
        torch.random.fork_rng(devices=[]),
        tempfile.TemporaryDirectory(prefix="tiny-florence-") as scratch,
    ):
        # 1. Tokenizer, written as vocab and merges and read back like BART's.
        tokenizer = build_florence_tokenizer(Path(scratch))
        # 2. Processor: the tokenizer, a small image processor and the answer-parsing rules.
        processor = _processor(tokenizer)
        # 3. Model, its weights drawn from a generator of its own.
        model = _model(tokenizer)
        # 4. Save, and name what the folder is in the file ``built_once`` looks for.
        model.save_pretrained(folder, safe_serialization=True)
        processor.save_pretrained(folder)
    manifest = {"_class_name": "Florence2ForConditionalGeneration", "_recipe": _FOLDER_NAME}
    (folder / _COMPLETE_MARKER).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


# -- the tokenizer ---------------------------------------------------------------------------------


def _vocabulary() -> tuple[dict[str, int], list[str]]:
    """BART's control tokens, then a byte-level BPE vocabulary that can spell any text.

    Every byte is a token, so any text tokenizes; merges of a space with a lowercase letter and of lowercase
    letter pairs make English take about half a token per character.
    """
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    space = "Ġ"  # how byte-level BPE spells a space
    letters = "abcdefghijklmnopqrstuvwxyz"
    pairs = [(space, letter) for letter in letters]
    pairs += [(first, second) for first in letters for second in letters]
    tokens = [_BOS, _PAD, _EOS, _UNK, *alphabet, *(first + second for first, second in pairs), _MASK]
    return {token: index for index, token in enumerate(tokens)}, [f"{first} {second}" for first, second in pairs]


def build_florence_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """A ``BartTokenizer`` over ``_vocabulary`` with Florence-2's ``<image>``, task and location tokens.

    Written as ``vocab.json``/``merges.txt`` to ``folder/source`` and read from there, as BART's is; then saved
    to ``folder/saved`` and read back, so what the processor saves is what a load gets.
    """
    from tokenizers import AddedToken
    from transformers import BartTokenizer

    vocab, merges = _vocabulary()
    source = folder / "source"
    source.mkdir(parents=True)
    (source / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (source / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tokenizer = BartTokenizer.from_pretrained(
        source,
        bos_token=_BOS,
        eos_token=_EOS,
        sep_token=_EOS,
        cls_token=_BOS,
        unk_token=_UNK,
        pad_token=_PAD,
        mask_token=AddedToken(_MASK, lstrip=True, special=True),
        image_token=_IMAGE,  # the processor reads ``tokenizer.image_token`` and its id
        model_max_length=1024,
        add_prefix_space=False,
    )
    tokenizer.add_tokens([AddedToken(token, special=True) for token in FLORENCE_TOKENS], special_tokens=True)
    tokenizer.save_pretrained(folder / "saved")
    return cast("PreTrainedTokenizerBase", BartTokenizer.from_pretrained(folder / "saved"))


# -- the processor and the model -------------------------------------------------------------------


def _processor(tokenizer: PreTrainedTokenizerBase) -> Any:
    from transformers import CLIPImageProcessorPil, Florence2Processor

    # The processor writes ``image_seq_length`` ``<image>`` tokens per picture: the last stage's grid, plus its mean.
    grid = IMAGE_SIZE // math.prod(VISION_CONFIG["patch_stride"])
    image_processor = CLIPImageProcessorPil(
        image_seq_length=grid * grid + 1,
        do_resize=True,
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        resample=_BICUBIC,
        do_center_crop=False,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(_IMAGE_MEAN),
        image_std=list(_IMAGE_STD),
        do_convert_rgb=True,
    )
    return Florence2Processor(
        image_processor=image_processor, tokenizer=tokenizer, post_processor_config=dict(POST_PROCESSOR_CONFIG)
    )


def _model(tokenizer: PreTrainedTokenizerBase) -> Any:
    from transformers import BartConfig, Florence2Config, Florence2ForConditionalGeneration, GenerationConfig

    ids = tokenizer.get_vocab()
    text = BartConfig(
        vocab_size=len(ids),
        **TEXT_CONFIG,
        bos_token_id=ids[_BOS],
        pad_token_id=ids[_PAD],
        eos_token_id=ids[_EOS],
        decoder_start_token_id=ids[_EOS],
        forced_eos_token_id=ids[_EOS],
    )
    config = Florence2Config(
        text_config=text.to_dict(),
        vision_config=dict(VISION_CONFIG),
        image_token_id=ids[_IMAGE],
    )
    model = Florence2ForConditionalGeneration(config)
    _draw_weights(model, seed=0)
    model.generation_config = GenerationConfig(
        bos_token_id=ids[_BOS],
        pad_token_id=ids[_PAD],
        eos_token_id=ids[_EOS],
        decoder_start_token_id=ids[_EOS],
        forced_bos_token_id=ids[_BOS],
        forced_eos_token_id=ids[_EOS],
        num_beams=3,
        no_repeat_ngram_size=3,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    return model


def _draw_weights(module: Any, seed: int) -> None:
    """Give every linear, convolution and embedding weight of ``module`` random values from ``seed``.

    Normal with a variance of 1/fan-in (embeddings: 1); biases zero; norms keep their defaults. Modules are
    visited in definition order, so the same configuration always gets the same weights.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in cast("torch.nn.Module", module).modules():
            if isinstance(layer, torch.nn.Linear | torch.nn.Conv2d):
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) / math.sqrt(fan_in))
                if layer.bias is not None:
                    layer.bias.zero_()
            elif isinstance(layer, torch.nn.Embedding):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
