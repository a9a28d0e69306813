"""Text to image: noise in, the spec's size out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.families import FAMILIES
from models.operations.base import PipelineOperation, no_extra_check
from models.types import BatchSpec, ImageTask

PIPELINE_CLASSES = {name: entry.pipelines["txt2img"] for name, entry in FAMILIES.items()}


def planned_steps(spec: BatchSpec) -> int:
    return spec.steps


def arguments(spec: BatchSpec, _tasks: Sequence[ImageTask]) -> dict[str, Any]:
    return {"width": spec.width, "height": spec.height}


OPERATION = PipelineOperation(
    name="txt2img",
    pipeline_classes=PIPELINE_CLASSES,
    planned_steps=planned_steps,
    check=no_extra_check,
    arguments=arguments,
)
