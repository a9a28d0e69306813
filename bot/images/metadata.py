"""What made an image, written into the file users download.

The recipe, in AUTOMATIC1111's ``parameters`` format (``infotext``), which ``bot.images.encoding``
writes into each file; ``fit_upload`` makes a file Discord will take.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

from PIL import Image

from bot.images.edits import describe
from bot.images.encoding import EncodedImage, encode_image
from bot.jobs.recipe import JobKind, lora_tags, lora_uses
from bot.jobs.references import describe_edit, describe_references

if TYPE_CHECKING:
    from bot.jobs.recipe import Recipe

# Diffusers scheduler class names, as AUTOMATIC1111 names the samplers.
SAMPLER_NAMES = {
    "EulerAncestralDiscreteScheduler": "Euler a",
    "EulerDiscreteScheduler": "Euler",
    "DPMSolverMultistepScheduler": "DPM++ 2M",
    "DDIMScheduler": "DDIM",
    "PNDMScheduler": "PLMS",
    "LMSDiscreteScheduler": "LMS",
    "HeunDiscreteScheduler": "Heun",
    "UniPCMultistepScheduler": "UniPC",
    "FlowMatchEulerDiscreteScheduler": "Euler",  # FLUX.2 and Z-Image: Euler on the flow's sigmas
}


def sampler_name(scheduler: str) -> str:
    """A diffusers scheduler class as AUTOMATIC1111 names its sampler ("DPM++ 2M"), or its class name."""
    return SAMPLER_NAMES.get(scheduler, scheduler)


def infotext(recipe: Recipe) -> str:
    """What made an image, in AUTOMATIC1111's ``parameters`` format; a grid lists every seed.

    LoRAs are written as A1111 does, as ``<lora:name:weight>`` at the end of the prompt and their
    hashes in ``Lora hashes``, so other tools find them.
    """
    if recipe.kind == JobKind.DESCRIBE:
        return f"Described by {recipe.model}"
    tags = lora_tags(recipe)
    lines = [f"{recipe.prompt} {tags}" if tags else recipe.prompt]
    if recipe.negative_prompt:
        lines.append(f"Negative prompt: {recipe.negative_prompt}")
    fields = [
        ("Steps", str(recipe.steps)),
        ("Sampler", sampler_name(recipe.scheduler)),
        ("CFG scale", f"{recipe.guidance:g}"),
        ("Seed", str(recipe.seeds[0])),
        ("Size", f"{recipe.width}x{recipe.height}"),
        ("Model", recipe.model),
    ]
    if recipe.strength:
        fields.append(("Denoising strength", f"{recipe.strength:g}"))
    edit = edit_of(recipe)
    if edit:
        fields.append(("Edit", edit))
    elif recipe.reference_images and recipe.kind != JobKind.EDIT:
        fields.append(("References", describe_references(recipe)))
    if recipe.style:
        fields.append(("Style", recipe.style))
    uses = lora_uses(recipe)
    if uses:
        fields.append(("Lora hashes", ", ".join(f"{use.name}: {use.sha256[:12]}" for use in uses)))
    if len(recipe.seeds) > 1:
        fields.append(("Seeds", ", ".join(str(seed) for seed in recipe.seeds)))
    written = ", ".join(f"{key}: {_quote(value)}" for key, value in fields)
    if recipe.kind == JobKind.EDIT:  # last and as people read it: Edit: "make it night" of job 12, image 1; ...
        written += f", {describe_edit(recipe)}"
    lines.append(written)
    return "\n".join(lines)


def edit_of(recipe: Recipe) -> str:
    """What was done to which image, in words: "Zoom Out 2x of job 12, image 1", "img2img from a picture" ..."""
    if recipe.kind == "image":
        return "img2img from a member's picture"
    where = f"job {recipe.parent_job_id}, image {(recipe.parent_image or 0) + 1}"
    if recipe.mask:
        return f"{describe(recipe.mask)} of {where}"
    if recipe.kind in ("variation", "upscale") and recipe.parent_job_id is not None:
        return f"{recipe.kind} of {where}"
    return ""


def _quote(value: str) -> str:
    # AUTOMATIC1111 quotes a value holding a comma, colon or newline, JSON style, so it parses back.
    if any(mark in value for mark in ",:\n"):
        return json.dumps(value, ensure_ascii=False)
    return value


def fit_upload(encoded: EncodedImage, recipe: Recipe, limit_bytes: int) -> EncodedImage:
    """``encoded`` as Discord will take it: itself when it fits ``limit_bytes``, else a JPEG made from it.

    Files are kept lossless whatever their size; only what is uploaded shrinks. CPU work when it shrinks.
    """
    if len(encoded.data) <= limit_bytes:
        return encoded
    with Image.open(io.BytesIO(encoded.data)) as image:
        return encode_image(image, infotext(recipe), stem=encoded.filename.rsplit(".", 1)[0], limit_bytes=limit_bytes)
