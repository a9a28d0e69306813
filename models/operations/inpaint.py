"""Inpainting and outpainting: redraw where the mask is white, keep the source where it is black.

The inpaint pipelines are made with ``from_pipe`` from the loaded model, so they share its
weights: any SD1.x, SD2 or SDXL checkpoint inpaints with its own UNet (the pipeline blends
the source's re-noised latents back outside the mask at every step), and a checkpoint with
a dedicated 9-channel inpainting UNet is used as such by the same pipeline.

Diffusers works in latents, an eighth of the resolution, so its edges are soft and the VAE
touches every pixel. ``finish`` therefore pastes the source back: where the mask is 0 the
output *is* the source, byte for byte, and across the mask's ramp it blends into the new
pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from models.errors import InvalidBatch
from models.families import FAMILIES
from models.operations.base import PipelineOperation
from models.operations.img2img import check_strength, planned_steps
from models.types import BatchSpec, GenerationBatch, ImageTask

PIPELINE_CLASSES = {name: entry.pipelines["inpaint"] for name, entry in FAMILIES.items()}


def check(batch: GenerationBatch) -> None:
    """img2img's checks of strength and steps, then a source and a mask of the spec's size for every task."""
    spec = batch.spec
    check_strength(spec)
    for task in batch.tasks:
        if task.init_image is None or task.mask_image is None:
            raise InvalidBatch("Inpainting needs a source image and a mask for every task.")
        if task.init_image.size != (spec.width, spec.height) or task.mask_image.size != (spec.width, spec.height):
            raise InvalidBatch(f"The source and its mask must both be {spec.width}x{spec.height}.")


def arguments(spec: BatchSpec, tasks: Sequence[ImageTask]) -> dict[str, Any]:
    return {
        "image": [_source(task).convert("RGB") for task in tasks],
        "mask_image": [_mask(task) for task in tasks],
        "strength": spec.strength,
        "width": spec.width,
        "height": spec.height,
    }


def finish(images: Sequence[Image.Image], tasks: Sequence[ImageTask]) -> list[Image.Image]:
    """Each new image blended onto its source through its mask: exactly the source where the mask is 0."""
    return [paste_back(image, _source(task), _mask(task)) for image, task in zip(images, tasks, strict=True)]


def paste_back(generated: Image.Image, source: Image.Image, mask: Image.Image) -> Image.Image:
    new = np.asarray(generated.convert("RGB"), dtype=np.float32)
    old = np.asarray(source.convert("RGB"), dtype=np.float32)
    weight = np.asarray(mask.convert("L"), dtype=np.float32)[..., None] / 255.0
    blended = np.rint(old + (new - old) * weight).clip(0, 255).astype(np.uint8)
    kept = np.asarray(mask.convert("L")) == 0
    blended[kept] = np.asarray(source.convert("RGB"))[kept]  # no float round trip where nothing changes
    return Image.fromarray(blended, "RGB")


def _source(task: ImageTask) -> Image.Image:
    assert task.init_image is not None  # check() made sure
    return task.init_image


def _mask(task: ImageTask) -> Image.Image:
    assert task.mask_image is not None  # check() made sure
    return task.mask_image.convert("L")


OPERATION = PipelineOperation(
    name="inpaint",
    pipeline_classes=PIPELINE_CLASSES,
    planned_steps=planned_steps,
    check=check,
    arguments=arguments,
    finish=finish,
)
