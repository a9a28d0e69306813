"""Value objects shared by the diffusion engine and its callers.

Nothing here knows about Discord or SQL: the worker in ``bot/`` turns jobs into
``GenerationBatch`` objects and gets a ``BatchOutput`` back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from PIL import Image


class ModelFamily(StrEnum):
    """The families the engine can run (``models.families`` describes each); the value is ``ModelPreset.family``."""

    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"
    TINY = "tiny"
    KLEIN = "flux2-klein"
    ZIMAGE = "z-image"
    TINY_KLEIN = "tiny-klein"  # builtin:tiny-klein
    TINY_ZIMAGE = "tiny-zimage"  # builtin:tiny-zimage


class Operation(StrEnum):
    """What a batch does with its inputs: a diffusion pipeline call, or a call of a cached component."""

    TXT2IMG = "txt2img"
    VARIATION = "variation"  # img2img from a chosen image with new seeds
    UPSCALE = "upscale"  # resize to the target size, then low-strength img2img
    INPAINT = "inpaint"  # redraw where the mask is white; the source comes back where it is black
    # Text to image guided by reference images (FLUX.2 klein's image list); an edit by instruction is one whose
    # first image is the picture to change, drawn at its size.
    REFERENCED = "referenced"
    # Components (``models.components``), no diffusion: ``BatchSpec.model`` names the component.
    SUPER_RESOLUTION = "super_resolution"  # enlarge each source with an upscaler net, to the spec's size
    CAPTION = "caption"  # describe each source in words with a captioner: texts, not images


@dataclass(frozen=True, slots=True)
class BatchSpec:
    """Everything that must be equal for images to share one pipeline call.

    ``width``/``height`` are the size of the output images. ``strength`` only
    matters for img2img operations (variation, upscale) and is 0.0 for txt2img.
    For an operation that runs a component instead of the diffusion model
    (super-resolution, caption), ``model`` is the component's reference and
    the diffusion fields (steps, guidance, scheduler) are not read.
    """

    model: str
    operation: Operation
    width: int
    height: int
    steps: int
    guidance: float
    scheduler: str
    strength: float = 0.0
    # Fine-tune files: the LoRAs applied with their weights, and the embeddings loaded (each known in the
    # prompts as ``embedding_token(file)``). The engine gets their paths; before a worker resolves them
    # (to batch jobs together) they are the files' ids, whose stems the paths keep.
    loras: tuple[tuple[str, float], ...] = ()
    embeddings: tuple[str, ...] = ()
    # Prompts in compel's syntax, encoded per row with compel (weights, or longer than the text encoder
    # reads: ``prompt_chunks`` of its length); rows of one call must agree, as their shapes do.
    weighted: bool = False
    prompt_chunks: int = 1
    # A referenced call's images, by the SHA-256 of their encoded bytes, in the order the model reads them: the
    # pipeline takes one list for the whole call, so only jobs guided by the same images share one.
    references: tuple[str, ...] = ()
    # An upscale's super-resolution net (a component's reference): the sources are enlarged with it to the spec's
    # size before they are redrawn; None: the pipeline's own resize.
    upscaler: str | None = None
    # The side of the tiles a redraw too large for one call is made in (``models.operations.tiled``); 0: one call.
    redraw_tile: int = 0


def embedding_token(file: str) -> str:
    """The token an embedding file is known by in the text encoder: unique per file, whoever named it what."""
    return f"<lc-{PurePath(file).stem[:16]}>"


@dataclass(frozen=True, slots=True, eq=False)
class ImageTask:
    """One output image: its prompt, its own seed, and (for img2img and inpainting) its source.

    ``mask_image`` (inpainting) is an "L" image of the source's size: 255 where the image is
    redrawn, 0 where the source's own pixels come back exactly, a ramp between the two.
    ``references`` guide a referenced call (``Operation.REFERENCED``), after ``init_image`` where
    the call edits one.
    """

    prompt: str
    negative_prompt: str
    seed: int
    init_image: Image.Image | None = None
    mask_image: Image.Image | None = None
    references: tuple[Image.Image, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class GenerationBatch:
    spec: BatchSpec
    tasks: tuple[ImageTask, ...]


@dataclass(frozen=True, slots=True, eq=False)
class BatchOutput:
    """What ``DiffusionEngine.run`` made of a batch: one RGB image per task, in task order, or (an
    operation that describes, such as a caption) one text per task and no images.

    ``seeds[i]`` is the seed of task ``i`` (the batch's own task seeds, echoed
    so a caller need not zip them back). ``pipeline_calls`` is 1 unless the GPU
    ran out of memory and the batch was split (a component's calls count the
    same); ``seconds`` is the wall time of the whole run, model loading excluded.
    """

    images: tuple[Image.Image, ...]
    seeds: tuple[int, ...]
    pipeline_calls: int
    seconds: float
    texts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelPreset:
    """Defaults a model is good at, and how to preview its latents cheaply."""

    model: str
    family: str  # a ModelFamily value: "sd1", "sd2", "sdxl", "tiny", "flux2-klein", "z-image"
    width: int
    height: int
    steps: int
    guidance: float
    scheduler: str  # a diffusers scheduler class name, e.g. "EulerAncestralDiscreteScheduler"
    max_prompt_tokens: int
    draft_scheduler: str = "DPMSolverMultistepScheduler"  # what a draft channel draws with (models.families)
    # Rows are latent channels, columns R, G, B; None where no approximation is known.
    latent_rgb_factors: tuple[tuple[float, float, float], ...] | None = None
    latent_rgb_bias: tuple[float, float, float] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class StepProgress:
    """Handed to the step callback, in the GPU thread, after every denoising step.

    ``step`` counts from 1 to ``total``. Row ``i`` of ``latents`` belongs to task
    ``first_task + i`` of the batch (an out-of-memory split runs a batch in parts).
    The latents stay on the device: the callee decides whether a preview is due
    before doing any work with them.
    """

    step: int
    total: int
    latents: torch.Tensor  # (only the type checker imports torch here)
    first_task: int = 0


StepCallback = Callable[[StepProgress], None]
