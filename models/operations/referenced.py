"""A referenced call: text to image guided by reference images, on a family that reads them (FLUX.2 klein).

FLUX.2 klein's pipeline takes one list of images for the whole call and reads each one's
latents beside the image it draws, at every step: that is how it edits by instruction (the
first image is the picture to change, drawn again at the call's size, which the bot gives it
from that picture's) and how references guide a new image. So the list is the batch's, not a
task's: ``BatchSpec.references`` names the images by their hashes, and only jobs guided by the
same images share a call. A task's list is its ``init_image`` (an edit's picture), then its
``references``.

The pipeline refuses an image under 64 px a side or more than 8:1; the bot refuses the second
at admission, and a small one (a tiny model's picture) is scaled up here, its aspect kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from models.errors import InvalidBatch
from models.families import FAMILIES
from models.operations.base import PipelineOperation
from models.types import BatchSpec, GenerationBatch, ImageTask

PIPELINE_CLASSES = {name: entry.pipelines["referenced"] for name, entry in FAMILIES.items() if entry.edits}
#: The pipeline's own bounds on an image it reads.
MIN_SIDE = 64
MAX_ASPECT = 8


def images_of(task: ImageTask) -> list[Image.Image]:
    """What a task's call reads, in order: the picture it edits, if any, then its references."""
    first = [task.init_image] if task.init_image is not None else []
    return [*first, *task.references]


def planned_steps(spec: BatchSpec) -> int:
    return spec.steps


def check(batch: GenerationBatch) -> None:
    """Every task reads as many images as the spec names, and each is one the pipeline takes."""
    expected = len(batch.spec.references)
    if not expected:
        raise InvalidBatch("A referenced call needs at least one image to read.")
    for task in batch.tasks:
        images = images_of(task)
        if len(images) != expected:
            raise InvalidBatch(f"Every image of a referenced call reads the same {expected} images.")
        for image in images:
            if max(image.width / image.height, image.height / image.width) > MAX_ASPECT:
                raise InvalidBatch(
                    f"A {image.width}x{image.height} picture is too narrow to read: at most {MAX_ASPECT}:1."
                )


def arguments(spec: BatchSpec, tasks: Sequence[ImageTask]) -> dict[str, Any]:
    # One list for the call: the spec's hashes made sure every task's is the same.
    return {
        "image": [_readable(image.convert("RGB")) for image in images_of(tasks[0])],
        "width": spec.width,
        "height": spec.height,
    }


def _readable(image: Image.Image) -> Image.Image:
    """``image`` scaled up, its aspect kept, where a side is under the pipeline's minimum."""
    short = min(image.size)
    if short >= MIN_SIDE:
        return image
    scale = MIN_SIDE / short
    size = (max(MIN_SIDE, round(image.width * scale)), max(MIN_SIDE, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


OPERATION = PipelineOperation(
    name="referenced",
    pipeline_classes=PIPELINE_CLASSES,
    planned_steps=planned_steps,
    check=check,
    arguments=arguments,
)
