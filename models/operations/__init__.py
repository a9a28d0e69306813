"""The operations the engine can run, one module per operation.

Most are pipeline calls on the resident model (txt2img, img2img, inpaint); some run a component from the
engine's cache instead (super-resolution, caption: ``ComponentOperation``). The engine asks this package for
an operation's pipeline object and arguments, or for its component's call; everything that differs between
operations lives in their modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image

from models.errors import InvalidBatch
from models.families import FAMILIES
from models.operations import caption, img2img, inpaint, referenced, super_resolution, txt2img
from models.operations.base import (
    ComponentOperation,
    PipelineOperation,
    StepEnd,
    TaskOutputs,
    check_common,
    common_arguments,
    pipeline_for_call,
)
from models.types import BatchSpec, GenerationBatch, ImageTask, ModelFamily, Operation

if TYPE_CHECKING:
    import torch

    from models.pipeline import Pipeline

__all__ = [
    "ComponentOperation",
    "PipelineOperation",
    "StepEnd",
    "TaskOutputs",
    "call_arguments",
    "check_batch",
    "operation_for",
    "pipeline_for_call",
    "pipeline_operation_for",
    "planned_steps",
]

_OPERATIONS: dict[Operation, PipelineOperation | ComponentOperation] = {
    Operation.TXT2IMG: txt2img.OPERATION,
    Operation.VARIATION: img2img.OPERATION,  # img2img from a chosen image with new seeds
    Operation.UPSCALE: img2img.OPERATION,  # the resize to the target size is the upscale
    Operation.INPAINT: inpaint.OPERATION,  # Vary (Region), Zoom Out and Pan
    Operation.REFERENCED: referenced.OPERATION,  # /edit and reference images, on a family that reads them
    Operation.SUPER_RESOLUTION: super_resolution.OPERATION,  # an upscaler net, no diffusion
    Operation.CAPTION: caption.OPERATION,  # a captioner: texts, no images
}


def operation_for(operation: Operation) -> PipelineOperation | ComponentOperation:
    return _OPERATIONS[operation]


def pipeline_operation_for(operation: Operation) -> PipelineOperation:
    """The pipeline call of ``operation``, which must be one (not a component's)."""
    found = _OPERATIONS[operation]
    if not isinstance(found, PipelineOperation):
        raise InvalidBatch(f"A {operation} runs a component, not a diffusion pipeline.")
    return found


def planned_steps(spec: BatchSpec) -> int:
    """How many denoising steps a batch with ``spec`` runs (``StepProgress.total``); 0 for a component's."""
    return operation_for(spec.operation).planned_steps(spec)


def check_batch(batch: GenerationBatch, pipeline: Pipeline, family: ModelFamily) -> None:
    """Reject what diffusers would reject, with a sentence instead of a traceback."""
    entry = FAMILIES[family]
    check_common(batch, pipeline, entry.size_multiple)
    if batch.spec.weighted and not entry.weighted_prompts:
        raise InvalidBatch(f"{entry.label} models do not read prompt weights: send the prompt without them.")
    if batch.spec.embeddings and not entry.embeddings:
        raise InvalidBatch(f"{entry.label} models take no textual-inversion embeddings.")
    operation = pipeline_operation_for(batch.spec.operation)
    if family not in operation.pipeline_classes:
        raise InvalidBatch(f"{entry.label} models cannot edit by instruction or read reference images.")
    if len(batch.spec.references) > entry.max_references and entry.max_references:
        raise InvalidBatch(f"{entry.label} models read at most {entry.max_references} images in one call.")
    operation.check(batch)


def call_arguments(
    spec: BatchSpec,
    tasks: Sequence[ImageTask],
    generators: list[torch.Generator],
    step_end: StepEnd,
    family: ModelFamily,
) -> dict[str, Any]:
    """Everything one pipeline call for ``tasks`` is given, as ``family``'s pipeline takes it."""
    operation = pipeline_operation_for(spec.operation)
    arguments = {**common_arguments(spec, tasks, generators, step_end), **operation.arguments(spec, tasks)}
    entry = FAMILIES[family]
    if not entry.negative_prompt:  # its pipeline takes none (FLUX.2 klein)
        del arguments["negative_prompt"]
    if entry.img2img_as_inpaint and operation.name == "img2img":  # an inpaint of the whole image
        arguments["mask_image"] = [Image.new("L", image.size, 255) for image in arguments["image"]]
        arguments["width"], arguments["height"] = spec.width, spec.height
    return arguments
