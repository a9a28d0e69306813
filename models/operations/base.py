"""What every operation shares: the shape of one, its per-call pipeline, and the arguments all calls take.

An operation (txt2img, img2img, and inpaint to come) is a ``PipelineOperation``
value: which diffusers pipeline class runs it for each model family, how many
denoising steps it really runs, what it checks beyond the common checks, and
which arguments it adds to the common ones. The engine knows nothing more of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.errors import InvalidBatch
from models.types import BatchSpec, GenerationBatch, ImageTask, ModelFamily

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from models.pipeline import Pipeline

StepEnd = Callable[["Pipeline", int, Any, dict[str, Any]], dict]
"""diffusers' ``callback_on_step_end``: (pipeline, step index, timestep, tensors) -> tensors."""


@dataclass(frozen=True, slots=True)
class PipelineOperation:
    """One kind of pipeline call; see the module docstring."""

    name: str
    pipeline_classes: Mapping[ModelFamily, str]
    planned_steps: Callable[[BatchSpec], int]
    check: Callable[[GenerationBatch], None]
    arguments: Callable[[BatchSpec, Sequence[ImageTask]], dict[str, Any]]
    # What is done to the pipeline's images before they leave the engine (inpainting pastes the source back).
    finish: Callable[[Sequence[Image.Image], Sequence[ImageTask]], list[Image.Image]] = lambda images, _: [*images]


def no_extra_check(_batch: GenerationBatch) -> None:
    """For operations the common checks cover entirely."""


def check_common(batch: GenerationBatch, pipeline: Pipeline) -> None:
    """Reject what diffusers would reject for any operation, with a sentence instead of a traceback."""
    spec = batch.spec
    multiple = int(pipeline.vae_scale_factor)
    if not batch.tasks:
        raise InvalidBatch("A batch needs at least one image.")
    if spec.width <= 0 or spec.height <= 0 or spec.width % multiple or spec.height % multiple:
        raise InvalidBatch(
            f"Width and height must be positive multiples of {multiple}, not {spec.width}x{spec.height}."
        )
    if spec.steps < 1:
        raise InvalidBatch(f"Steps must be at least 1, not {spec.steps}.")


def pipeline_for_call(operation: PipelineOperation, base: Pipeline, family: ModelFamily, spec: BatchSpec) -> Pipeline:
    """A fresh pipeline object with its own scheduler for one call; the weights are ``base``'s, shared."""
    import diffusers

    scheduler_class = _scheduler_class(spec.scheduler, base)
    pipeline_class = getattr(diffusers, operation.pipeline_classes[family])
    # dtype must be passed: from_pipe otherwise casts the shared modules to fp32.
    pipeline = pipeline_class.from_pipe(
        base, scheduler=scheduler_class.from_config(base.scheduler.config), dtype=base.dtype
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def common_arguments(
    spec: BatchSpec, tasks: Sequence[ImageTask], generators: list[torch.Generator], step_end: StepEnd
) -> dict[str, Any]:
    """The arguments every call takes: lists, one entry per task.

    Negative prompts are always passed (an empty one as ""), so SDXL never
    swaps in its zero embedding for some rows and not others depending on the
    batch-mates.
    """
    return {
        "prompt": [task.prompt for task in tasks],
        "negative_prompt": [task.negative_prompt for task in tasks],
        "num_inference_steps": spec.steps,
        "guidance_scale": spec.guidance,
        "generator": generators,
        "output_type": "pil",
        "callback_on_step_end": step_end,
        "callback_on_step_end_tensor_inputs": ["latents"],
    }


def _scheduler_class(name: str, base: Pipeline) -> Any:
    """The scheduler class named ``name``, if it is one this pipeline can use."""
    compatible = {cls.__name__: cls for cls in base.scheduler.compatibles}
    compatible[type(base.scheduler).__name__] = type(base.scheduler)
    if name not in compatible:
        raise InvalidBatch(
            f"{name} is not a scheduler this model can use: try EulerAncestralDiscreteScheduler "
            "or DPMSolverMultistepScheduler."
        )
    return compatible[name]
