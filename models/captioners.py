"""The captioner for /describe: Florence-2 through transformers' own classes, as a ``CAPTIONER`` component.

``captioner_loader(cache_dir)`` is the ``ComponentLoader`` the engine is given for ``ComponentKind.CAPTIONER``;
what it loads answers Florence-2's task tokens, one text per (image, task) pair, all of a batch in one
``generate`` call. A /describe job is ``DESCRIBE_TASKS`` on one picture: three captions of growing detail and
the objects detected in it, which come back as a prompt of their names ("car, tree, person").

References are a Hugging Face id, a local folder, or ``builtin:tiny-florence2`` (``models.tiny_florence``,
built under the engine's cache folder). The model must be in transformers' native Florence-2 format: the
``florence-community/Florence-2-*`` repositories, converted from Microsoft's. ``microsoft/Florence-2-*`` hold
the remote-code format, which is never run here (no ``trust_remote_code``), and is refused with a sentence.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from models.components import Captioner, ComponentLoader
from models.errors import InvalidBatch, ModelUnavailable
from models.tiny_florence import TINY_FLORENCE_MODEL_ID, ensure_tiny_florence

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

#: The captioner the bot uses unless ``CAPTIONER`` names another: Florence-2 base (0.23B, MIT), converted to
#: transformers' own classes.
DEFAULT_CAPTIONER = "florence-community/Florence-2-base"

CAPTION = "<CAPTION>"
DETAILED_CAPTION = "<DETAILED_CAPTION>"
MORE_DETAILED_CAPTION = "<MORE_DETAILED_CAPTION>"
OBJECT_DETECTION = "<OD>"
#: The four prompts of a /describe job, in the order its tasks (and its numbered answers) come.
DESCRIBE_TASKS: tuple[str, ...] = (CAPTION, DETAILED_CAPTION, MORE_DETAILED_CAPTION, OBJECT_DETECTION)
#: The most tokens each task may generate: a real model stops well before (a caption is a dozen tokens, a
#: detection about seven per object); a batch runs to the largest of its tasks'. A model whose own generation
#: config sets ``max_new_tokens`` is held to that too (the tiny one's is 12).
MAX_NEW_TOKENS: Mapping[str, int] = {
    CAPTION: 64,
    DETAILED_CAPTION: 128,
    MORE_DETAILED_CAPTION: 256,
    OBJECT_DETECTION: 256,
}
#: Beams, as Florence-2's generation config and its model card use.
NUM_BEAMS = 3

# A Hugging Face repository id: owner/name.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class _Florence(Protocol):
    """What the captioner asks of ``Florence2ForConditionalGeneration``."""

    device: torch.device
    dtype: torch.dtype
    generation_config: Any

    def generate(self, **inputs: Any) -> torch.Tensor: ...


class FlorenceCaptioner:
    """A loaded Florence-2 and its processor: ``captioner(images, tasks)`` is one text per pair, in order.

    Captions are the processor's post-processed answer (``post_process_generation``), stripped; a detection is
    its labels, each once, in the order found, joined by commas. An empty answer stays empty: what to say
    instead is the caller's choice.
    """

    def __init__(self, model: _Florence, processor: Any, *, max_new_tokens: Mapping[str, int]) -> None:
        self._model = model
        self._processor = processor
        self._max_new_tokens = dict(max_new_tokens)

    def __call__(self, images: Sequence[Image.Image], tasks: Sequence[str]) -> list[str]:
        import torch

        # 1. Check inputs: a task per image, each one this captioner answers.
        if len(images) != len(tasks):
            raise InvalidBatch(f"A captioner needs one task per image: {len(images)} images, {len(tasks)} tasks.")
        unknown = sorted(set(tasks) - self._max_new_tokens.keys())
        if unknown:
            raise InvalidBatch(f"This captioner answers {', '.join(self._max_new_tokens)}, not {', '.join(unknown)}.")
        if not images:
            return []
        pictures = [image.convert("RGB") for image in images]

        # 2. Encode the pictures and the task prompts, padded to one batch.
        inputs = self._processor(text=list(tasks), images=pictures, return_tensors="pt", padding=True)
        inputs = inputs.to(self._model.device, self._model.dtype)

        # 3. Generate every answer in one call, as long as the longest task may run.
        with torch.inference_mode():
            generated = self._model.generate(
                **inputs,
                max_new_tokens=max(self._max_new_tokens[task] for task in tasks),
                num_beams=NUM_BEAMS,
                do_sample=False,
            )

        # 4. Decode each answer without its padding, and read it as its task's kind of answer.
        pad = self._processor.tokenizer.pad_token_id
        texts = []
        for sequence, task, picture in zip(generated.cpu(), tasks, pictures, strict=True):
            answer = self._processor.tokenizer.decode(sequence[sequence != pad], skip_special_tokens=False)
            parsed = self._processor.post_process_generation(answer, task=task, image_size=picture.size)[task]
            texts.append(_labels_prompt(parsed["labels"]) if task == OBJECT_DETECTION else str(parsed).strip())
        return texts


def _labels_prompt(labels: Sequence[str]) -> str:
    """Detected labels as a prompt: each once, in the order found ("car, tree")."""
    unique = dict.fromkeys(label.strip() for label in labels)
    return ", ".join(label for label in unique if label)


def captioner_loader(cache_dir: Path) -> ComponentLoader:
    """The engine's ``CAPTIONER`` loader, building builtin models under ``cache_dir``."""

    def load(reference: str, device: torch.device, dtype: torch.dtype) -> object:
        return load_captioner(reference, device, dtype, cache_dir=cache_dir)

    return load


def load_captioner(
    reference: str, device: torch.device, dtype: torch.dtype, *, cache_dir: Path | None = None
) -> Captioner:
    """Florence-2 ``reference`` on ``device`` at ``dtype``; raises ``ModelUnavailable`` if it cannot be loaded.

    Builtin models are built under ``cache_dir``; without one, only folders and Hugging Face ids load.
    """
    import torch
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    # 1. Where the model is: built here, a folder, or a Hugging Face repository.
    location = _locate(reference, cache_dir)

    # 2. Read the weights and the processor (CPU); a checkpoint that is not native Florence-2 is refused,
    # including one whose weights load only in part (the rest would be random).
    try:
        # With ``output_loading_info`` it gives (model, what loaded), which its annotation does not say.
        model, loading = cast(
            "tuple[Any, dict[str, Any]]",
            Florence2ForConditionalGeneration.from_pretrained(
                location, dtype=dtype, use_safetensors=True, output_loading_info=True
            ),
        )
        processor = AutoProcessor.from_pretrained(location)
    except Exception as exc:
        log.warning("loading captioner %s failed: %s", reference, exc)
        raise ModelUnavailable(_failure_sentence(reference)) from exc
    if loading["missing_keys"] or loading["mismatched_keys"]:
        missing, mismatched = sorted(loading["missing_keys"]), sorted(loading["mismatched_keys"])
        log.warning(
            "captioner %s: %d weights missing (%s...), %d mismatched",
            reference,
            len(missing),
            missing[:3],
            len(mismatched),
        )
        raise ModelUnavailable(_failure_sentence(reference))

    # 3. Move it to the device.
    try:
        model = model.to(device).eval()
    except torch.cuda.OutOfMemoryError as exc:
        del model
        torch.cuda.empty_cache()
        raise ModelUnavailable(f"The captioner {reference} does not fit in this GPU's memory.") from exc
    return FlorenceCaptioner(model, processor, max_new_tokens=_budgets(model.generation_config))


def _locate(reference: str, cache_dir: Path | None) -> str:
    if reference == TINY_FLORENCE_MODEL_ID:
        if cache_dir is None:
            raise ModelUnavailable(f"The captioner {reference} is built on first use, and no cache folder was given.")
        return str(ensure_tiny_florence(cache_dir))
    if reference.startswith("builtin:"):
        raise ModelUnavailable(f"There is no builtin captioner called {reference}; {TINY_FLORENCE_MODEL_ID} is one.")
    folder = Path(reference).expanduser()
    if folder.is_dir():
        return str(folder)
    if _HUB_ID.fullmatch(reference):
        return reference
    raise ModelUnavailable(f"The captioner {reference} is neither a folder here nor a Hugging Face id (owner/name).")


def _failure_sentence(reference: str) -> str:
    return (
        f"Could not load the captioner {reference}: it must be a Florence-2 model in transformers' own format "
        f"with .safetensors weights (such as {DEFAULT_CAPTIONER}), in a folder here or on Hugging Face, "
        "reachable or cached."
    )


def _budgets(generation_config: Any) -> dict[str, int]:
    """``MAX_NEW_TOKENS``, each no more than the model's own ``max_new_tokens`` where it sets one."""
    ceiling = getattr(generation_config, "max_new_tokens", None)
    if not isinstance(ceiling, int) or ceiling < 1:
        return dict(MAX_NEW_TOKENS)
    return {task: min(budget, ceiling) for task, budget in MAX_NEW_TOKENS.items()}
