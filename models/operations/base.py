"""What every operation shares: the shapes of one, its per-call pipeline, and the arguments all calls take.

An operation is one of two kinds of value. A ``PipelineOperation`` (txt2img,
img2img, inpaint) is a diffusers pipeline call on the resident model: which
pipeline class runs it for each model family, how many denoising steps it really
runs, what it checks beyond the common checks, and which arguments it adds to the
common ones. A ``ComponentOperation`` (super-resolution, caption) runs a
component from the engine's cache (``models.components``) on each task's source
instead: no pipeline, no steps, and an image or a text per task. The engine
knows nothing more of either.
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

    from models.components import ComponentKind
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


@dataclass(frozen=True, slots=True, eq=False)
class TaskOutputs:
    """What one call made for its tasks, in task order: an image each, or (a captioner) a text each."""

    images: tuple[Image.Image, ...] = ()
    texts: tuple[str, ...] = ()

    def __add__(self, later: TaskOutputs) -> TaskOutputs:
        """This call's outputs, then ``later``'s: the parts of a batch split on running out of memory."""
        return TaskOutputs(self.images + later.images, self.texts + later.texts)


@dataclass(frozen=True, slots=True)
class ComponentOperation:
    """One kind of call of a cached component on the tasks' source images; see the module docstring.

    ``spec.model`` is the component's reference; the engine takes the component of ``kind`` from its cache
    and hands it to ``run`` with the batch's spec and the tasks of one call.
    """

    name: str
    kind: ComponentKind
    check: Callable[[GenerationBatch], None]
    run: Callable[[object, BatchSpec, Sequence[ImageTask]], TaskOutputs]

    def planned_steps(self, _spec: BatchSpec) -> int:
        """No denoising steps: no ``StepProgress`` is reported."""
        return 0


def no_extra_check(_batch: GenerationBatch) -> None:
    """For operations the common checks cover entirely."""


def check_common(batch: GenerationBatch, pipeline: Pipeline, size_multiple: int = 8) -> None:
    """Reject what diffusers would reject for any operation, with a sentence instead of a traceback.

    Sizes are multiples of the VAE's scale, or of the family's ``size_multiple`` where that is larger (a
    transformer packs 2x2 latents into a token: FLUX.2 klein would round a size down, Z-Image refuse it).
    """
    spec = batch.spec
    multiple = max(int(pipeline.vae_scale_factor), size_multiple)
    if not batch.tasks:
        raise InvalidBatch("A batch needs at least one image.")
    if spec.width <= 0 or spec.height <= 0 or spec.width % multiple or spec.height % multiple:
        raise InvalidBatch(
            f"Width and height must be positive multiples of {multiple}, not {spec.width}x{spec.height}."
        )
    if spec.steps < 1:
        raise InvalidBatch(f"Steps must be at least 1, not {spec.steps}.")


def check_sources(batch: GenerationBatch) -> None:
    """What a component operation needs: tasks, a positive output size, and a source image for every task."""
    spec = batch.spec
    if not batch.tasks:
        raise InvalidBatch("A batch needs at least one image.")
    if spec.width <= 0 or spec.height <= 0:
        raise InvalidBatch(f"Width and height must be positive, not {spec.width}x{spec.height}.")
    if any(task.init_image is None for task in batch.tasks):
        raise InvalidBatch(f"A {spec.operation} needs a source image for every task.")


#: ``from_pipe``'s own arguments, which ``pipeline_for_call`` sets: no component may stand in for them.
_SET_PER_CALL = frozenset({"scheduler", "dtype", "torch_dtype"})


def pipeline_for_call(
    operation: PipelineOperation,
    base: Pipeline,
    family: ModelFamily,
    spec: BatchSpec,
    components: Mapping[str, object] | None = None,
) -> Pipeline:
    """A fresh pipeline object with its own scheduler for one call; the weights are ``base``'s, shared.

    ``components`` are modules the pipeline class takes that ``base`` lacks or that replace its own, by the
    name of its constructor's argument (``{"controlnet": a ControlNetModel}`` for a ControlNet pipeline):
    diffusers' ``from_pipe`` takes them as keyword arguments. They are not copied: the call uses the object.
    """
    import diffusers

    extra = dict(components or {})
    if clash := _SET_PER_CALL & extra.keys():
        raise ValueError(f"pipeline_for_call sets {', '.join(sorted(clash))} itself; it is not a component")
    scheduler_class = _scheduler_class(spec.scheduler, base)
    pipeline_class = getattr(diffusers, operation.pipeline_classes[family])
    # dtype must be passed: from_pipe otherwise casts the shared modules to fp32.
    pipeline = pipeline_class.from_pipe(
        base, scheduler=scheduler_class.from_config(base.scheduler.config), dtype=base.dtype, **extra
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
