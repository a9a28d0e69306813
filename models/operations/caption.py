"""Captions: each source described in words by a captioner (for /describe); texts come back, no images.

The captioner is the ``CAPTIONER`` component that ``spec.model`` names (``models.components``): any callable
from images and a task each to one text each, which its loader builds (``models.captioners``: Florence-2 with
its processor). Each task's prompt is its captioner task (``<CAPTION>``, ``<OD>``, ...), so the tasks of one
batch may ask different things of the same picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from PIL import Image

from models.components import Captioner, ComponentKind
from models.operations.base import ComponentOperation, TaskOutputs, check_sources
from models.types import BatchSpec, ImageTask


def run(captioner: object, _spec: BatchSpec, tasks: Sequence[ImageTask]) -> TaskOutputs:
    """One text per task: its source described as its prompt asks, in task order."""
    if not callable(captioner):
        raise TypeError(f"A captioner component must be callable, not {type(captioner).__name__}")
    texts = list(cast("Captioner", captioner)([_source(task) for task in tasks], [task.prompt for task in tasks]))
    if len(texts) != len(tasks) or not all(isinstance(text, str) for text in texts):
        raise TypeError(f"A captioner must return one text per image: {len(tasks)} images gave {len(texts)} items")
    return TaskOutputs(texts=tuple(texts))


def _source(task: ImageTask) -> Image.Image:
    assert task.init_image is not None  # check_sources made sure
    return task.init_image.convert("RGB")


OPERATION = ComponentOperation(
    name="caption",
    kind=ComponentKind.CAPTIONER,
    check=check_sources,
    run=run,
)
