"""The one translation point: a job's recipe, and the image it starts from, as the request a GPU worker runs.

A ``Recipe`` is the bot's: SQL's columns, the guild's names for its LoRAs and embeddings, the
edit a button asked for. A worker gets a ``bot.wire.GenerationRequest`` made here, once, when
the job is queued: the operation and the batch key the dispatcher batches on; each image's
prompt, negative prompt and seed in the model's terms (an embedding's name replaced by its
file's token, weighted-prompt syntax translated for compel); the input images by role, with
an edit's canvas and mask already laid out; and the text the grid's file carries. So a new
kind of job, or an option that reaches the GPU, is translated here and run there, and a worker
knows nothing of recipes, guilds or policy.

``generation_request`` is CPU work when the job edits an image (the canvas and mask are made
and encoded): callers run it in a thread.
"""

from __future__ import annotations

import hashlib
import io
import re

from PIL import Image

from bot.images.archive import grid_stem
from bot.images.edits import plan_edit
from bot.images.metadata import infotext
from bot.jobs.describe import describe_tasks
from bot.jobs.prompts import compel_prompt, has_weights
from bot.jobs.recipe import EDIT_KINDS, JobKind, Recipe, embedding_uses, lora_uses
from bot.jobs.requests import MAX_SIDE
from bot.wire import GenerationRequest, ImagePrompt, ImageRole, InputImage
from bot.workers.protocol import WorkOrder
from models.types import BatchSpec, Operation, embedding_token

#: The side of the tiles an upscale's redraw is made in past the bot's largest side (models.operations.tiled).
REDRAW_TILE = 1024
#: The size a caption's batch key names (the captioner reads any picture at its own size).
CAPTION_SIDE = 768
#: What the pipeline does for each kind of job.
OPERATIONS = {
    JobKind.IMAGINE: Operation.TXT2IMG,
    JobKind.REROLL: Operation.TXT2IMG,
    JobKind.VARIATION: Operation.VARIATION,
    JobKind.UPSCALE: Operation.UPSCALE,
    JobKind.IMAGE: Operation.VARIATION,  # img2img from the member's picture, fitted to the job's size
    JobKind.REGION: Operation.INPAINT,
    JobKind.ZOOM: Operation.INPAINT,
    JobKind.PAN: Operation.INPAINT,
    JobKind.EDIT: Operation.REFERENCED,  # the picture it changes first in the model's image list
    JobKind.DESCRIBE: Operation.CAPTION,  # the captioner's four tasks on one picture: texts, no images
}


def work_order(
    job_id: int,
    owner: int,
    recipe: Recipe,
    source: bytes | None = None,
    references: tuple[bytes, ...] = (),
    *,
    classify: bool = True,
) -> WorkOrder:
    """A job for the queue: its recipe and the request it compiles to (CPU work for an edit: not on the event loop)."""
    request = generation_request(job_id, recipe, source, references, classify=classify)
    return WorkOrder(job_id, owner, recipe, request)


def generation_request(
    job_id: int, recipe: Recipe, source: bytes | None, references: tuple[bytes, ...] = (), *, classify: bool = True
) -> GenerationRequest:
    """Job ``job_id`` as a worker runs it; ``source``: the encoded image it starts from, if it starts from one;
    ``references``: the encoded images that guide it, in its recipe's order."""
    names = {sha256: name for name, sha256 in reversed(_fine_tunes(recipe))}  # the first name of each file wins
    inputs = input_images(recipe, source, references)
    return GenerationRequest(
        job_id=job_id,
        spec=batch_spec(recipe, read=_read_images(inputs) if operation_of(recipe) == Operation.REFERENCED else ()),
        images=image_prompts(recipe),
        inputs=inputs,
        classify=classify,
        parameters=infotext(recipe),
        stem=grid_stem(job_id),
        names=names,
    )


def operation_of(recipe: Recipe) -> Operation:
    """What the pipeline does for a job: its kind's operation, a referenced call where images guide it, or the
    upscaler alone for an upscale that redraws nothing."""
    if recipe.reference_images:
        return Operation.REFERENCED
    if recipe.kind == JobKind.UPSCALE and recipe.upscaler is not None and recipe.strength <= 0:
        return Operation.SUPER_RESOLUTION
    return OPERATIONS[recipe.kind]


def batch_spec(recipe: Recipe, *, read: tuple[str, ...] = ()) -> BatchSpec:
    """What must be equal for jobs to share one pipeline call; ``read``: a referenced call's images, by hash.

    A call of a component names the component as its model (the upscaler's file, the captioner); an upscale
    that redraws names its upscaler besides, which enlarges the sources first.
    """
    operation = operation_of(recipe)
    component = {Operation.SUPER_RESOLUTION: recipe.upscaler, Operation.CAPTION: recipe.model}.get(operation)
    # A caption has no output size: every description shares one key, so members' pictures share a call.
    width, height = (CAPTION_SIDE, CAPTION_SIDE) if operation == Operation.CAPTION else (recipe.width, recipe.height)
    return BatchSpec(
        model=component or recipe.model,
        operation=operation,
        width=width,
        height=height,
        steps=recipe.steps,
        guidance=recipe.guidance,
        scheduler=recipe.scheduler,
        strength=recipe.strength,
        loras=tuple((use.sha256, use.weight) for use in lora_uses(recipe)),
        embeddings=tuple(sorted(sha256 for _, sha256 in embedding_uses(recipe))),
        weighted=encoded_with_compel(recipe),
        prompt_chunks=recipe.chunks,
        references=read,
        upscaler=recipe.upscaler if operation == Operation.UPSCALE else None,
        redraw_tile=REDRAW_TILE if operation == Operation.UPSCALE and max(width, height) > MAX_SIDE else 0,
    )


def encoded_with_compel(recipe: Recipe) -> bool:
    """Whether the worker encodes the prompts with compel: weights in them, or longer than one window."""
    return recipe.chunks > 1 or has_weights(recipe.prompt) or has_weights(recipe.negative_prompt)


def image_prompts(recipe: Recipe) -> tuple[ImagePrompt, ...]:
    """One image per seed, its prompts in the model's terms: embedding tokens, compel's syntax where it is used;
    for a description, one task of the captioner each, on its one picture."""
    if recipe.kind == JobKind.DESCRIBE:
        return tuple(ImagePrompt(task, "", recipe.seeds[0]) for task in describe_tasks())
    prompt, negative = recipe.prompt, recipe.negative_prompt
    for name, sha256 in embedding_uses(recipe):  # the name a guild gave it -> the file's own token
        word = re.compile(rf"(?<![A-Za-z0-9_-]){re.escape(name)}(?![A-Za-z0-9_-])", re.IGNORECASE)
        prompt = word.sub(embedding_token(sha256), prompt)
        negative = word.sub(embedding_token(sha256), negative)
    if encoded_with_compel(recipe):
        prompt, negative = compel_prompt(prompt), compel_prompt(negative)
    return tuple(ImagePrompt(prompt, negative, seed) for seed in recipe.seeds)


def input_images(recipe: Recipe, source: bytes | None, references: tuple[bytes, ...] = ()) -> tuple[InputImage, ...]:
    """The images a job starts from, by role: an edit's canvas and mask made here; any other source as given;
    then the references that guide it."""
    if len(references) != len(recipe.reference_images):
        raise ValueError(f"the recipe names {len(recipe.reference_images)} references, not {len(references)}")
    guides = tuple(InputImage(ImageRole.REFERENCE, data) for data in references)
    if source is None:
        return guides
    if recipe.kind not in EDIT_KINDS or recipe.mask is None:
        return (InputImage(ImageRole.SOURCE, source), *guides)
    with Image.open(io.BytesIO(source)) as opened:
        plan = plan_edit(recipe.mask, opened.convert("RGB"), (recipe.width, recipe.height))
    return (InputImage(ImageRole.SOURCE, _png(plan.canvas)), InputImage(ImageRole.MASK, _png(plan.mask)))


def _read_images(inputs: tuple[InputImage, ...]) -> tuple[str, ...]:
    """A referenced call's images by hash, in the order it reads them (its source first): its batch key."""
    read = [image for image in inputs if image.role == ImageRole.SOURCE] + [
        image for image in inputs if image.role == ImageRole.REFERENCE
    ]
    return tuple(hashlib.sha256(image.data).hexdigest() for image in read)


def _fine_tunes(recipe: Recipe) -> list[tuple[str, str]]:
    """(name, sha256) of each LoRA and embedding the recipe uses, in the order its guild's names appear."""
    return [(use.name, use.sha256) for use in lora_uses(recipe)] + embedding_uses(recipe)


def _png(image: Image.Image) -> bytes:
    """Lossless, and quick to make: what the worker decodes is exactly what was laid out here."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
