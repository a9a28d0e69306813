"""The pipeline calls the engine can make, one module per operation (txt2img, img2img, inpaint).

The engine asks this package for an operation's pipeline object and arguments;
everything that differs between operations lives in their modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from models.operations import img2img, inpaint, txt2img
from models.operations.base import (
    PipelineOperation,
    StepEnd,
    check_common,
    common_arguments,
    pipeline_for_call,
)
from models.types import BatchSpec, GenerationBatch, ImageTask, Operation

if TYPE_CHECKING:
    import torch

    from models.pipeline import Pipeline

__all__ = [
    "PipelineOperation",
    "StepEnd",
    "call_arguments",
    "check_batch",
    "operation_for",
    "pipeline_for_call",
    "planned_steps",
]

_OPERATIONS: dict[Operation, PipelineOperation] = {
    Operation.TXT2IMG: txt2img.OPERATION,
    Operation.VARIATION: img2img.OPERATION,  # img2img from a chosen image with new seeds
    Operation.UPSCALE: img2img.OPERATION,  # the resize to the target size is the upscale
    Operation.INPAINT: inpaint.OPERATION,  # Vary (Region), Zoom Out and Pan
}


def operation_for(operation: Operation) -> PipelineOperation:
    return _OPERATIONS[operation]


def planned_steps(spec: BatchSpec) -> int:
    """How many denoising steps a batch with ``spec`` runs (``StepProgress.total``)."""
    return operation_for(spec.operation).planned_steps(spec)


def check_batch(batch: GenerationBatch, pipeline: Pipeline) -> None:
    """Reject what diffusers would reject, with a sentence instead of a traceback."""
    check_common(batch, pipeline)
    operation_for(batch.spec.operation).check(batch)


def call_arguments(
    spec: BatchSpec, tasks: Sequence[ImageTask], generators: list[torch.Generator], step_end: StepEnd
) -> dict[str, Any]:
    """Everything one pipeline call for ``tasks`` is given."""
    return {
        **common_arguments(spec, tasks, generators, step_end),
        **operation_for(spec.operation).arguments(spec, tasks),
    }
