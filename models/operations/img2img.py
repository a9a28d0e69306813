"""Image to image (variations and upscales): each task's source image, resized to the spec, partly re-noised.

The img2img pipelines share the txt2img weights through ``from_pipe``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from models.errors import InvalidBatch
from models.families import FAMILIES
from models.operations.base import PipelineOperation
from models.types import BatchSpec, GenerationBatch, ImageTask

PIPELINE_CLASSES = {name: entry.pipelines["img2img"] for name, entry in FAMILIES.items()}


def planned_steps(spec: BatchSpec) -> int:
    """img2img starts part-way down the noise schedule: ``int(steps * strength)`` of the ``steps``.

    That holds for the usual first-order schedulers; second-order ones such as
    Heun report their own count.
    """
    return min(int(spec.steps * spec.strength), spec.steps)


def check_strength(spec: BatchSpec) -> None:
    """A strength in (0, 1] that leaves at least one step to run (inpainting shares this)."""
    if not 0.0 < spec.strength <= 1.0:
        raise InvalidBatch(f"Strength must be above 0 and at most 1, not {spec.strength}.")
    if planned_steps(spec) < 1:
        raise InvalidBatch(f"{spec.steps} steps at strength {spec.strength} leaves no step to run: raise either.")


def check(batch: GenerationBatch) -> None:
    spec = batch.spec
    check_strength(spec)
    if any(task.init_image is None for task in batch.tasks):
        raise InvalidBatch(f"A {spec.operation} needs a source image for every task.")


def arguments(spec: BatchSpec, tasks: Sequence[ImageTask]) -> dict[str, Any]:
    return {"image": [_init_image_for(task, spec) for task in tasks], "strength": spec.strength}


def _init_image_for(task: ImageTask, spec: BatchSpec) -> Image.Image:
    """The source image at the output size (for an upscale, that resize is the upscale)."""
    assert task.init_image is not None  # check() made sure
    image = task.init_image.convert("RGB")
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), Image.Resampling.LANCZOS)
    return image


OPERATION = PipelineOperation(
    name="img2img",
    pipeline_classes=PIPELINE_CLASSES,
    planned_steps=planned_steps,
    check=check,
    arguments=arguments,
)
