"""Edits by instruction and reference images, as admission sees them: which model does them, and the images
that guide a job, checked and kept before anything is charged.

``/edit``, the Edit button and references run on a family that reads images beside its prompt
(FLUX.2 klein: ``models.families.Family.edits``). ``SD_EDIT_MODEL`` names the model; left empty,
it is the first such model among ``SD_MODEL`` and ``SD_EXTRA_MODELS``. Without one, the command
is refused with a sentence naming what to configure, and nothing is charged.

A job's guides come from three places, in this order (the order the model reads them): pictures a
member gave (checked as ``/imagine image:`` checks one, scaled down to what the model reads, kept
content-addressed), images of jobs posted on the same server (``--ref 12:1``), and a moodboard's
pictures (``--mood name``). Kept pictures are held until the caller releases them
(``KeptPictures``), so none is deleted between being kept and its job being recorded.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from PIL import Image

from bot.errors import InvalidRequest, JobNotFound, NotAllowed
from bot.images.uploads import REFERENCE_MAX_PIXELS, bounded, fit_to, read_upload
from bot.jobs.references import MAX_GIVEN_REFERENCES, parse_job_images
from bot.jobs.requests import check_model, picture_size
from models.errors import ModelError
from models.families import MAX_KLEIN_REFERENCES, family, family_label
from models.operations.referenced import MAX_ASPECT
from models.presets import declared_preset

if TYPE_CHECKING:
    from bot.images.uploads import KeptPictures
    from bot.jobs.admission import Origin
    from bot.jobs.library import Library
    from bot.jobs.lifecycle import JobLifecycle
    from bot.jobs.recipe import Recipe
    from bot.settings import Settings
    from bot.workers.protocol import WorkerClient
    from models.types import ModelPreset

log = logging.getLogger(__name__)

#: The model named when none edits: the default, which does.
SUGGESTED_EDIT_MODEL: Final = "black-forest-labs/FLUX.2-klein-4B"
NO_EDIT_MODEL: Final = (
    "No model of this bot edits by instruction or reads reference images: its owner can set SD_EDIT_MODEL to a "
    f"FLUX.2 klein model (such as {SUGGESTED_EDIT_MODEL}) or add one to SD_EXTRA_MODELS; nothing was charged."
)


@dataclass(frozen=True, slots=True)
class Guides:
    """The images that guide a job, as its recipe names them, and the kept pictures held for it until released."""

    entries: tuple[str, ...] = ()
    mood: str | None = None
    held: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class EditedPicture:
    """The picture an ``/edit`` changes, kept fitted to the edit model's size at its own aspect."""

    path: str
    width: int
    height: int


class Editing:
    """Resolves the edit model and a job's guides for the service; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        worker: WorkerClient,
        library: Library,
        jobs: JobLifecycle,
        pictures: KeptPictures,
    ) -> None:
        self._settings = settings
        self._worker = worker
        self._library = library
        self._jobs = jobs
        self._pictures = pictures
        # Whether each model edits, once told: a model's family does not change while the bot runs, and /edit's
        # model autocomplete asks for every model on every keystroke.
        self._edit_capable: dict[str, bool] = {}

    # -- the model --------------------------------------------------------------------------

    async def edit_model(self, guild_id: int | None, requested: str | None = None) -> ModelPreset:
        """The preset of the model that edits (``requested``, if a member chose one); a sentence when none can."""
        if requested:
            model = check_model(requested, self._settings.models)
            preset = await self._worker.preset(model)
            if not family(preset.family).edits:
                raise InvalidRequest(
                    f"{model} is a {family_label(preset.family)} model, which cannot edit by instruction or read "
                    f"reference images: choose a FLUX.2 klein model, or leave the model out."
                )
            return await self._enabled(guild_id, preset)
        configured = self._settings.edit_model
        if configured:
            preset = await self._worker.preset(configured)
            if not family(preset.family).edits:
                raise InvalidRequest(
                    f"SD_EDIT_MODEL is {configured}, a {family_label(preset.family)} model, which cannot edit by "
                    f"instruction: its owner can set it to a FLUX.2 klein model; nothing was charged."
                )
            return await self._enabled(guild_id, preset)
        for model in self._settings.models:
            if await self._edits(model):
                return await self._enabled(guild_id, await self._worker.preset(model))
        raise InvalidRequest(NO_EDIT_MODEL)

    async def edits(self, model: str) -> bool:
        """Whether ``model`` edits by instruction and reads reference images."""
        return await self._edits(model)

    async def _edits(self, model: str) -> bool:
        """Told from the model's files where this host can, so no model is loaded only to learn its family; kept
        once told (a model that cannot be had now is asked again next time)."""
        known = self._edit_capable.get(model)
        if known is not None:
            return known
        try:
            preset = await asyncio.to_thread(declared_preset, model)
            if preset is None:
                preset = await self._worker.preset(model)
        except ModelError as unavailable:
            log.info("%s is not considered for edits: %s", model, unavailable)
            return False
        self._edit_capable[model] = family(preset.family).edits
        return self._edit_capable[model]

    async def _enabled(self, guild_id: int | None, preset: ModelPreset) -> ModelPreset:
        if preset.model not in await self._library.enabled_models(guild_id):
            raise InvalidRequest(
                f"The model {preset.model} is not enabled on this server; /model list shows which are."
            )
        return preset

    # -- the pictures -----------------------------------------------------------------------

    async def edited_picture(self, data: bytes, preset: ModelPreset) -> EditedPicture:
        """The picture an /edit changes: checked, fitted to ``preset``'s size at its aspect, kept and held."""
        image = await asyncio.to_thread(read_upload, data)
        width, height = picture_size(preset, image.width, image.height)
        fitted = await asyncio.to_thread(fit_to, image, width, height)
        return EditedPicture(str(await self._pictures.keep(fitted)), width, height)

    async def guides(
        self,
        origin: Origin,
        uploads: Sequence[bytes] = (),
        *,
        ref: str | None = None,
        mood: str | None = None,
        besides: int = 0,
    ) -> Guides:
        """A job's guides, checked and (pictures) kept and held; ``besides``: images the job reads already (an
        /edit's picture). On a refusal, nothing stays held."""
        jobs = parse_job_images(ref) if ref else ()
        board = await self._library.moodboard(origin.guild_id, mood) if mood else None
        if len(uploads) > MAX_GIVEN_REFERENCES:
            raise InvalidRequest(f"A job may be given at most {MAX_GIVEN_REFERENCES} reference pictures.")
        total = besides + len(uploads) + len(jobs) + (len(board.images) if board is not None else 0)
        if total > MAX_KLEIN_REFERENCES:
            raise InvalidRequest(
                f"A job may read at most {MAX_KLEIN_REFERENCES} images (its pictures, references and moodboard); "
                f"this one names {total}."
            )
        for image in jobs:  # before any picture is kept
            await self._check_job_image(origin, image.job_id, image.n)
        held: list[str] = []
        try:
            for data in uploads:
                held.append(await self._keep_reference(data))
        except BaseException:
            for path in held:
                self._pictures.release(path)
            raise
        entries = (*held, *(image.entry for image in jobs), *(board.images if board is not None else ()))
        return Guides(entries=entries, mood=board.name if board is not None else None, held=tuple(held))

    async def _keep_reference(self, data: bytes) -> str:
        image = await asyncio.to_thread(read_upload, data)
        if max(image.width / image.height, image.height / image.width) > MAX_ASPECT:
            raise InvalidRequest(
                f"That picture is {image.width}x{image.height}, too narrow to guide an image: its sides may differ "
                f"at most {MAX_ASPECT} to 1."
            )
        return str(await self._pictures.keep(await asyncio.to_thread(bounded, image)))

    async def _check_job_image(self, origin: Origin, job_id: int, n: int) -> None:
        """``--ref`` names an image that was posted where this job is asked for, and may be shown."""
        job = await self._jobs.store.get_job(job_id)
        if job is None:
            raise JobNotFound(f"Job {job_id} does not exist (it may have been deleted).")
        posted_here = job.guild_id == origin.guild_id if origin.guild_id is not None else job.user_id == origin.user_id
        if not posted_here and not origin.console:
            raise NotAllowed(f"Job {job_id} was not posted on this server, so it cannot guide an image here.")
        if job.status != "done":
            raise InvalidRequest(f"Job {job_id} has not finished yet; wait for its images first.")
        if not 1 <= n <= len(job.image_paths):
            raise JobNotFound(f"Job {job_id} has no image {n}.")
        if n - 1 in job.withheld:
            raise NotAllowed(f"Image {n} of job {job_id} was withheld by the content filter, so it cannot guide one.")

    def release(self, paths: Sequence[str]) -> None:
        for path in paths:
            self._pictures.release(path)

    # -- what they cost ---------------------------------------------------------------------

    async def input_pixels(self, recipe: Recipe, source: bytes | None, references: tuple[bytes, ...]) -> int:
        """The pixels of the images a referenced job reads beside each it draws (``bot.policy.pricing``): each
        one's own, at most what the pipeline reads of it."""
        if not references and not (source is not None and recipe.kind == "edit"):
            return 0
        read = ([source] if source is not None and recipe.kind == "edit" else []) + list(references)
        return sum(await asyncio.to_thread(_pixels_read, read))


def _pixels_read(images: list[bytes]) -> list[int]:
    sizes = []
    for data in images:
        with Image.open(io.BytesIO(data)) as opened:  # the header only
            sizes.append(min(opened.width * opened.height, REFERENCE_MAX_PIXELS))
    return sizes
