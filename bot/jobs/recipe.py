"""The recipe: one frozen value with everything that determines a job's images.

A recipe is made once, at admission (``bot.jobs.requests.resolve_imagine``, or from a
finished job with ``as_reroll``, ``as_variation`` and ``as_upscale``), and then only read:
SQLite keeps it as one column per field (``db.rows``) and a worker gets it as a map of the
same fields (``bot.workers.protocol``), both derived from the fields below without a
hand-written copy; the protocol's version is derived from them too, so a worker built from
other fields is refused rather than half-served. A new field therefore needs the field here,
a migration that adds its column, and the code that uses it.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, replace
from enum import StrEnum

#: An upscale doubles each side.
UPSCALE_FACTOR = 2
MAX_SEED = 2**32 - 1
#: A variation makes this many images.
VARIATION_COUNT = 4


class JobKind(StrEnum):
    """What a job makes; the values are what SQLite stores in ``jobs.kind``."""

    IMAGINE = "imagine"
    VARIATION = "variation"
    UPSCALE = "upscale"
    REROLL = "reroll"
    IMAGE = "image"  # /imagine from a member's own picture (img2img)
    REGION = "region"  # Vary (Region): one region of an image redrawn
    ZOOM = "zoom"  # Zoom Out: an image shrunk inside its own frame, the border drawn
    PAN = "pan"  # Pan: the frame grown on one side, the new strip drawn
    EDIT = "edit"  # /edit or the Edit button: an image changed as an instruction says, on an edit-capable model
    DESCRIBE = "describe"  # /describe: a picture described in four prompts by the captioner (texts, no images)


#: Jobs that redraw part of an image (inpainting); ``Recipe.mask`` says which part.
EDIT_KINDS = frozenset({JobKind.REGION, JobKind.ZOOM, JobKind.PAN})
#: A reference that is an image of a job: "job:<id>:<n>", n from 1 (bot.jobs.references).
JOB_IMAGE_PREFIX = "job:"
#: Edits draw their new part from noise: nothing of what was there shows through.
EDIT_STRENGTH = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipe:
    """A complete, valid job: what will run, and what it is charged for.

    ``seeds`` holds one seed per image. ``strength`` is the img2img denoising strength (0.0
    for text-to-image). ``parent_job_id`` and ``parent_image`` (an index into the parent's
    images) name the image a variation, an upscale or an edit starts from, and the job a
    re-roll repeats. ``source`` is the stored picture an ``image`` job starts from, and
    ``mask`` the edit a ``region``, ``zoom`` or ``pan`` job makes (``bot.images.edits``), on its
    parent's image or, from the command line, on a picture (``source``).
    """

    kind: JobKind
    prompt: str
    negative_prompt: str
    model: str
    width: int
    height: int
    steps: int
    guidance: float
    seeds: tuple[int, ...]
    scheduler: str
    strength: float = 0.0
    parent_job_id: int | None = None
    parent_image: int | None = None
    source: str | None = None
    mask: str | None = None
    loras: tuple[str, ...] = ()  # "name:weight:sha256" for each LoRA applied (bot.jobs.finetunes)
    embeddings: tuple[str, ...] = ()  # "name:sha256" for each embedding its prompts name
    style: str | None = None  # the guild style its prompt was made with
    chunks: int = 1  # the text encoder's windows its prompt fills (more than one: a long prompt, never cut)
    # The images that guide it, in order (bot.jobs.references): a kept picture's path, or "job:<id>:<n>".
    reference_images: tuple[str, ...] = ()
    mood: str | None = None  # the guild moodboard its references were taken from
    upscaler: str | None = None  # an upscale's super-resolution net (UPSCALER's file); None: a resize

    @property
    def count(self) -> int:
        return len(self.seeds)

    @property
    def from_image(self) -> bool:
        """Whether it starts from one of its parent's images (variations, upscales and edits)."""
        return (
            self.kind in (JobKind.VARIATION, JobKind.UPSCALE, JobKind.EDIT) or self.kind in EDIT_KINDS
        ) and self.parent_image is not None

    @property
    def pictures(self) -> tuple[str, ...]:
        """The kept pictures it names: what it starts from (a member's), and its references that are pictures."""
        named = (self.source, *self.reference_images)
        return tuple(path for path in named if path is not None and not path.startswith(JOB_IMAGE_PREFIX))

    @property
    def from_upload(self) -> bool:
        """Whether it starts from a picture a member gave (``/imagine`` with an image, or an edit of one)."""
        return self.source is not None

    # -- recipes made from a finished job's recipe -------------------------------------------

    def as_reroll(self, job_id: int) -> Recipe:
        """The same request with new seeds, as a re-roll of job ``job_id``.

        A job drawn from a picture or an edit stays what it was, on the same source and references: only the
        seeds change.
        """
        if self.kind in (JobKind.IMAGE, JobKind.EDIT) or self.kind in EDIT_KINDS:
            return replace(self, seeds=random_seeds(self.count))
        return replace(
            self,
            kind=JobKind.REROLL,
            seeds=random_seeds(self.count),
            strength=0.0,
            parent_job_id=job_id,
            parent_image=None,
        )

    def as_variation(self, job_id: int, index: int, *, strength: float) -> Recipe:
        """Four new images from image ``index`` of job ``job_id``; from an upscale, at the original size."""
        width, height = self.width, self.height
        if self.kind == JobKind.UPSCALE:
            width, height = width // UPSCALE_FACTOR, height // UPSCALE_FACTOR
        return replace(
            self,
            kind=JobKind.VARIATION,
            width=width,
            height=height,
            seeds=random_seeds(VARIATION_COUNT),
            steps=img2img_steps(self.steps, strength),
            strength=strength,
            parent_job_id=job_id,
            parent_image=index,
            source=None,
            mask=None,
            reference_images=(),
            mood=None,
            upscaler=None,
        )

    def as_upscale(self, job_id: int, index: int, *, strength: float, upscaler: str | None = None) -> Recipe:
        """Image ``index`` of job ``job_id`` at twice its size, from its own seed: enlarged by ``upscaler`` where
        given, then redrawn at ``strength`` (0: the upscaler alone)."""
        if strength <= 0 and upscaler is None:
            raise ValueError("an upscale without an upscaler redraws: its strength must be above 0")
        return replace(
            self,
            kind=JobKind.UPSCALE,
            width=self.width * UPSCALE_FACTOR,
            height=self.height * UPSCALE_FACTOR,
            seeds=(self.seeds[index],),
            steps=img2img_steps(self.steps, strength) if strength > 0 else self.steps,
            upscaler=upscaler,
            strength=strength,
            parent_job_id=job_id,
            parent_image=index,
            source=None,
            mask=None,
            reference_images=(),
            mood=None,
        )

    def as_edit(self, job_id: int | None, index: int | None, kind: JobKind, mask: str, size: tuple[int, int]) -> Recipe:
        """Four new images that redraw part of image ``index`` of job ``job_id`` (``size``: the edit's).

        Without a job, the caller gives the edit its picture (``source``), as the command line does.
        """
        if kind not in EDIT_KINDS:
            raise ValueError(f"{kind} is not an edit")
        return replace(
            self,
            kind=kind,
            width=size[0],
            height=size[1],
            seeds=random_seeds(VARIATION_COUNT),
            steps=img2img_steps(self.steps, EDIT_STRENGTH),
            strength=EDIT_STRENGTH,
            parent_job_id=job_id,
            parent_image=index,
            source=None,
            mask=mask,
            reference_images=(),
            mood=None,
            upscaler=None,
        )

    def with_prompt(self, prompt: str) -> Recipe:
        """The same recipe with another prompt (Remix)."""
        return replace(self, prompt=prompt)

    def with_seeds(self, seeds: tuple[int, ...]) -> Recipe:
        """The same recipe for some of its images (one image's metadata names its own seed)."""
        return replace(self, seeds=seeds)


@dataclass(frozen=True, slots=True)
class LoraUse:
    name: str
    weight: float
    sha256: str


def lora_entry(use: LoraUse) -> str:
    return f"{use.name}:{use.weight:g}:{use.sha256}"


def lora_uses(recipe: Recipe) -> list[LoraUse]:
    """The LoRAs a recipe applies, with their weights and files."""
    uses = []
    for entry in recipe.loras:
        name, weight, sha256 = entry.rsplit(":", 2)
        uses.append(LoraUse(name, float(weight), sha256))
    return uses


def embedding_uses(recipe: Recipe) -> list[tuple[str, str]]:
    """(name, sha256) of each embedding a recipe's prompts name."""
    return [tuple(entry.rsplit(":", 1)) for entry in recipe.embeddings]  # type: ignore[misc]


def lora_tags(recipe: Recipe) -> str:
    """The recipe's LoRAs as A1111 writes them in a prompt: ``<lora:name:0.8>``."""
    return " ".join(f"<lora:{use.name}:{use.weight:g}>" for use in lora_uses(recipe))


def img2img_steps(steps: int, strength: float) -> int:
    """img2img runs ``steps * strength`` of its steps: make sure at least one runs."""
    return max(steps, math.ceil(1 / strength))


def random_seeds(count: int) -> tuple[int, ...]:
    return tuple(secrets.randbelow(MAX_SEED + 1) for _ in range(count))


def consecutive_seeds(first: int, count: int) -> tuple[int, ...]:
    return tuple((first + offset) % (MAX_SEED + 1) for offset in range(count))
