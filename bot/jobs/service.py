"""The service front ends call: it admits jobs, and is the one door to the parts that follow them.

A request is checked in this order, and nothing is charged or queued unless it passes every
check: options (done by the caller with ``bot.jobs.requests``), the prompt filter and NSFW
policy of the channel, the text encoder's token limit, room in the queue, then the quota
check-and-charge (one SQLite transaction that also records the job). That is this module's own
concern. The rest is delegated, by concern:

* ``bot.jobs.lifecycle.JobLifecycle``: an admitted job compiled into its request, queued,
  followed through its events, recorded, refunded, its files written; listeners and observers;
* ``bot.jobs.delivery.Deliveries``: whether a result reached Discord, and when to try again;
* ``bot.jobs.library.Library``: a guild's models, styles and fine-tunes and a member's defaults,
  as admission reads them (moderators change a guild's through ``bot.jobs.moderation``);
* ``bot.jobs.starboard.Starboard`` (``service.starboard``): ⭐ without the requester, reposts once;
* ``bot.jobs.privacy.MemberData`` (``service.privacy``): a member's data exported or deleted.

Front ends pass a listener with each request, or listen to every job that has none
(jobs resumed after a restart) with ``add_listener``. Listeners get ``Queued``,
``Started``, ``Progress``, ``Completed``, ``Failed`` and ``Cancelled``, in order,
after SQLite has recorded the change. Observers (``add_observer``: metrics, a live
gallery) get every job's events besides, and ``Delivered`` once a message holds a
result, without touching the job's path: an observer that raises is logged and skipped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from bot.errors import (
    DomainError,
    InvalidRequest,
    JobNotFound,
    NotAllowed,
    PromptRejected,
    QueueFull,
    QuotaExceeded,
    StorageBusy,
)
from bot.images.edits import describe, edit_size
from bot.images.metadata import sampler_name
from bot.images.uploads import bounded, fit_to, read_upload
from bot.jobs import permutations
from bot.jobs.admission import Admission, Origin, cost_of, fit_to_family
from bot.jobs.delivery import Deliveries
from bot.jobs.describe import DESCRIBE_COST, describe_recipe
from bot.jobs.editing import Editing, Guides
from bot.jobs.finetunes import Resolved
from bot.jobs.flags import parse_prompt_flags
from bot.jobs.library import Library
from bot.jobs.lifecycle import NOT_PREPARED, JobLifecycle
from bot.jobs.options import REPEAT, SEED, STEPS
from bot.jobs.outcomes import (
    Admitted,
    Completed,
    DeliveryVerdict,
    Job,
    JobObserver,
    JobResult,
    RefusalReason,
    Refused,
    ServiceEvent,
    ServiceListener,
    SubmittedJob,
    WaitingJob,
)
from bot.jobs.privacy import MemberData
from bot.jobs.prompts import check_prompt_weights
from bot.jobs.recipe import (
    MAX_SEED,
    UPSCALE_FACTOR,
    VARIATION_COUNT,
    JobKind,
    Recipe,
    consecutive_seeds,
    embedding_uses,
    lora_entry,
    lora_uses,
    random_seeds,
)
from bot.jobs.requests import (
    MAX_COUNT,
    MAX_SIDE,
    ImagineOptions,
    Picture,
    at_defaults,
    check_prompt_text,
    picture_size,
    resolve_imagine,
    styled,
)
from bot.jobs.starboard import Starboard
from bot.jobs.upscales import UPSCALE_PROMPT, UPSCALER_ONLY_COST, UpscaleMode, upscale_plan
from bot.workers.protocol import WorkerClient
from db.errors import QuotaExhausted, StorageUnavailable
from db.records import FineTune, MemberPreferences, NewJob, QuotaRule, Style
from models.errors import ModelError
from models.families import family, family_label
from models.presets import declared_preset
from models.sizes import size_multiple

if TYPE_CHECKING:
    from bot.policy.nsfw import NsfwDecision
    from bot.settings import Settings
    from db.store import Store
    from models.types import ModelPreset

log = logging.getLogger(__name__)

#: /edit's image, image2 and image3.
MAX_EDIT_PICTURES = 3
#: Told when the database refuses to record a new job (its disk failing, or full).
STORAGE_BUSY = "The bot cannot record new jobs at the moment; nothing was charged. Try again in a few minutes."

P = ParamSpec("P")
T = TypeVar("T")
#: Set while a request is on its way to admission, so a refusal is counted once, by the outermost entry point
#: (``/imagine`` checks its options, then ``submit`` checks the recipe: either may refuse, never both).
_admitting: ContextVar[bool] = ContextVar("latentcord_admitting", default=False)


def _counts_refusals(
    method: Callable[Concatenate[GenerationService, P], Awaitable[T]],
) -> Callable[Concatenate[GenerationService, P], Awaitable[T]]:
    """Observers hear ``Refused`` for a request refused anywhere on its way in: its options (``--ar 4:3``), the
    picture it names, or admission itself; once, however the entry points call each other."""

    @functools.wraps(method)
    async def counted(service: GenerationService, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if _admitting.get():
            return await method(service, *args, **kwargs)
        token = _admitting.set(True)
        try:
            return await method(service, *args, **kwargs)
        except (DomainError, ModelError) as refusal:
            service.jobs.observe(Refused(refusal_reason(refusal)))
            raise
        finally:
            _admitting.reset(token)

    return counted


# What front ends name with the service: the events its listeners get, and who asks.
__all__ = ["Completed", "GenerationService", "JobResult", "Origin", "ServiceEvent"]


class GenerationService:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store[Recipe],
        worker: WorkerClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        self._clock = clock
        self._admission = Admission(store=store, worker=worker, clock=clock)
        self.library = Library(settings=settings, store=store)
        self.jobs = JobLifecycle(
            images_dir=settings.images_dir, store=store, worker=worker, thumbnails=settings.web_port is not None
        )
        self.deliveries = Deliveries(
            settings=settings,
            store=store,
            stored_result=self.jobs.stored_result,
            observe=self.jobs.observe,
            clock=clock,
        )
        self._pictures = self.jobs.pictures
        self.editing = Editing(
            settings=settings, worker=worker, library=self.library, jobs=self.jobs, pictures=self._pictures
        )
        self.starboard = Starboard(store=store, jobs=self.jobs)
        self.privacy = MemberData(store=store, jobs=self.jobs, worker=worker, images_dir=settings.images_dir)

    # -- listeners -------------------------------------------------------------------

    def add_listener(self, listener: ServiceListener) -> None:
        self.jobs.add_listener(listener)

    def remove_listener(self, listener: ServiceListener) -> None:
        self.jobs.remove_listener(listener)

    def add_observer(self, observer: JobObserver) -> None:
        """``observer`` sees every job's events, whoever listens to them, and each result's delivery."""
        self.jobs.add_observer(observer)

    def remove_observer(self, observer: JobObserver) -> None:
        self.jobs.remove_observer(observer)

    # -- admission ---------------------------------------------------------------------

    @_counts_refusals
    async def imagine(
        self,
        options: ImagineOptions,
        origin: Origin,
        listener: ServiceListener | None = None,
        *,
        picture: bytes | None = None,
        references: Sequence[bytes] = (),
    ) -> SubmittedJob:
        """Check, charge and queue a new ``/imagine``, from ``picture`` (the encoded bytes a member gave) if given,
        guided by ``references`` (pictures a member gave) and the ``ref``/``mood`` options if given.

        Raises a ``DomainError`` or ``ModelError``.
        """
        recipe, notices, held = await self._recipe_for(options, origin, picture, references)
        return await self._submit_holding(recipe, origin, listener, notices=notices, held=held)

    async def _submit_holding(
        self,
        recipe: Recipe,
        origin: Origin,
        listener: ServiceListener | None,
        *,
        notices: Sequence[str] = (),
        held: Sequence[str] = (),
    ) -> SubmittedJob:
        """``submit``, the pictures kept for it (``held``) held until its job is recorded, let go of if it never is."""
        try:
            submitted = await self.submit(recipe, origin, listener, notices=notices)
        except Exception:
            self.editing.release(held)
            for path in held:
                await self.jobs.let_go_of_picture(path)
            raise
        except BaseException:
            self.editing.release(held)
            raise
        self.editing.release(held)
        return submitted

    async def _recipe_for(
        self, options: ImagineOptions, origin: Origin, picture: bytes | None, references: Sequence[bytes] = ()
    ) -> tuple[Recipe, list[str], tuple[str, ...]]:
        """The recipe an ``/imagine`` makes, the notices to give with it, and the kept pictures held for it (the
        caller releases them); nothing is charged or queued."""
        chosen = parse_prompt_flags(options).model  # what the member chose here, before their own default
        # 1. Options and the flags typed in the prompt through the one parser, the member's own defaults for
        #    what neither gave (one the server no longer allows is left out, with a notice), every value
        #    checked, before a model is loaded for them.
        options, notices = await self.library.with_member_defaults(parse_prompt_flags(options), origin)
        checked = options.checked(models=self.settings.models, max_prompt_chars=self.settings.prompt_max_chars)
        guided = bool(references or checked.ref or checked.mood)
        if guided:
            # 1b. Reference images need a model that reads them: the edit model, unless the member chose one.
            if picture is not None:
                raise InvalidRequest(
                    "A picture to start from and reference images do not go together: to change a picture as "
                    "words say, use /edit."
                )
            if checked.edit is not None:
                raise InvalidRequest("An edit of a picture takes no reference images.")
            if chosen or not await self.editing.edits(checked.model):
                preset = await self.editing.edit_model(origin.guild_id, chosen)
                checked = replace(checked, model=preset.model)
        if origin.guild_id is not None and checked.model in await self.store.disabled_models(origin.guild_id):
            raise InvalidRequest(
                f"The model {checked.model} is not enabled on this server; /model list shows which are."
            )
        if checked.style is not None:
            style = await self.library.style(origin.guild_id, checked.style)
            prompt, negative = styled(checked.prompt, checked.negative, style.prompt, style.negative)
            checked = replace(
                checked,
                prompt=check_prompt_text(prompt, max_chars=self.settings.prompt_max_chars),
                negative=negative,
                style=style.name,
            )
        # 2. The guild's LoRAs (tags taken out of the prompt) and embeddings (named in the prompts).
        fine = await self.library.finetunes.resolve(origin.guild_id, checked.prompt, checked.negative, options.lora)
        if fine.prompt != checked.prompt:
            checked = replace(checked, prompt=check_prompt_text(fine.prompt, max_chars=self.settings.prompt_max_chars))
        # 3. The chosen model's defaults; its fine-tunes must be of its family.
        preset = await self.worker.preset(checked.model)
        await self._check_families(origin.guild_id, fine, preset)
        # 4. A channel the moderators put in draft mode (/draft) gets fast previews.
        draft = (
            origin.guild_id is not None
            and origin.channel_id in (await self.store.guild_settings(origin.guild_id)).draft_channels
        )
        # 5. The picture, decoded off the event loop (a refused one is never decoded in full), and kept
        #    fitted to the model's size at the aspect preset nearest to its shape; last, as it is held from
        #    here until ``imagine`` releases it.
        kept: Picture | None = None
        guides = Guides()
        if guided:
            guides = await self.editing.guides(origin, references, ref=checked.ref, mood=checked.mood)
        try:
            if picture is not None:
                image = await asyncio.to_thread(read_upload, picture)
                width, height = picture_size(preset, image.width, image.height)
                fitted = await asyncio.to_thread(fit_to, image, width, height)
                kept = Picture(str(await self._pictures.keep(fitted)), width, height)
        except BaseException:
            self.editing.release(guides.held)
            raise
        recipe = replace(
            resolve_imagine(checked, preset, kept, draft=draft),
            loras=tuple(lora_entry(use) for use in fine.loras),
            embeddings=tuple(f"{item.name}:{item.sha256}" for item in fine.embeddings),
            style=checked.style,
            reference_images=guides.entries,
            mood=guides.mood,
        )
        if draft:
            notices.append(f"Draft channel: a fast preview, {sampler_name(recipe.scheduler)} at {recipe.steps} steps.")
        held = (*guides.held, *((kept.path,) if kept is not None else ()))
        return recipe, notices, held

    async def _reference(self, preset: ModelPreset) -> ModelPreset:
        """SD_MODEL's preset: a credit is one default image of it, whichever model (``preset``'s) does the work.

        Told from its files where this host can (so pricing a job never loads SD_MODEL in an in-process worker),
        else the workers'. While SD_MODEL cannot be had (a path that does not load, say), a job on another model
        is priced against its own model's defaults, as before there was a reference: 4 for a default /imagine.
        """
        model = self.settings.sd_model
        try:
            declared = await asyncio.to_thread(declared_preset, model)
            return declared if declared is not None else await self.worker.preset(model)
        except ModelError as unavailable:
            log.warning("pricing against %s's own defaults: SD_MODEL is not available (%s)", preset.model, unavailable)
            return preset

    async def _check_families(self, guild_id: int | None, fine: Resolved, preset: ModelPreset) -> None:
        """Refuse a LoRA or an embedding made for another family than the model's, naming both."""
        if not fine.loras and not fine.embeddings:
            return
        files = {item.sha256: item for item in await self.library.fine_tunes(guild_id)}
        used = [files[use.sha256] for use in fine.loras if use.sha256 in files] + list(fine.embeddings)
        for item in used:
            if item.family != preset.family:
                raise InvalidRequest(
                    f"The {item.kind} {item.name} is for {family_label(item.family)} models; {preset.model} is a "
                    f"{family_label(preset.family)} model."
                )

    @_counts_refusals
    async def expand(self, options: ImagineOptions, origin: Origin) -> list[ImagineOptions]:
        """The jobs one ``/imagine`` makes: each ``{a, b}`` permutation of its prompt, ``--repeat`` times each.

        Refused in a sentence above the server's limit (``/quota permutations``, 4 by default). A repeat
        of a job with a seed starts where the last one's seeds end, so each repeat is new and reproducible.
        """
        parsed = parse_prompt_flags(options)
        repeat = parsed.repeat or 1
        if parsed.repeat is not None:
            REPEAT.check(parsed.repeat)
        if parsed.seed is not None:  # before repeats count on from it
            SEED.check(parsed.seed)
        settings = await self.store.guild_settings(origin.guild_id) if origin.guild_id is not None else None
        limit = (settings.permutations if settings is not None else None) or permutations.DEFAULT_LIMIT
        if origin.console:  # the owner at the terminal: no server's limit
            limit = permutations.MAX_LIMIT
        total = permutations.count(parsed.prompt) * repeat
        if total > limit:
            where = "the command line allows" if origin.console else "this server allows"
            raise InvalidRequest(f"That prompt makes {total} jobs; {where} at most {limit} at once.")
        count = parsed.count or MAX_COUNT
        jobs = []
        for prompt in permutations.expand(parsed.prompt, limit):
            for turn in range(repeat):
                seed = None if parsed.seed is None else (parsed.seed + turn * count) % (MAX_SEED + 1)
                jobs.append(replace(parsed, prompt=prompt, repeat=None, seed=seed))
        return jobs

    async def quote(self, options: ImagineOptions, origin: Origin) -> int:
        """What ``imagine(options)`` would charge, checked as it would be (prompt, filter, model), charging nothing."""
        recipe, _, held = await self._recipe_for(options, origin, None)
        self.editing.release(held)
        decision = await self._admission.nsfw_decision(origin)
        await self._admission.check_prompt(recipe.prompt, origin, decision)
        preset = await self.worker.preset(recipe.model)
        return await self._cost(recipe, preset, None, await self.jobs.references_of(recipe))

    async def _cost(
        self, recipe: Recipe, preset: ModelPreset, source: bytes | None, references: tuple[bytes, ...]
    ) -> int:
        """What ``recipe`` is charged on ``preset``'s model, the images it reads counted (``bot.policy.pricing``)."""
        if recipe.kind == JobKind.UPSCALE and recipe.upscaler is not None and recipe.strength <= 0:
            return UPSCALER_ONLY_COST  # no diffusion: the upscaler's net alone
        pixels = await self.editing.input_pixels(recipe, source, references)
        return cost_of(recipe, preset, reference=await self._reference(preset), input_pixels=pixels)

    async def _nsfw_moodboards(self, guild_id: int | None) -> set[str]:
        if guild_id is None:
            return set()
        return {board.name for board in await self.library.moodboards(guild_id) if board.nsfw}

    # -- edits by instruction (bot.jobs.editing) -----------------------------------------------

    @_counts_refusals
    async def edit_pictures(
        self,
        instruction: str,
        pictures: Sequence[bytes],
        origin: Origin,
        listener: ServiceListener | None = None,
        *,
        model: str | None = None,
        mood: str | None = None,
        seed: int | None = None,
        steps: int | None = None,
    ) -> SubmittedJob:
        """``/edit``: four edits of the first of ``pictures`` as ``instruction`` says, the others its references.

        ``--seed``, ``--steps``, ``--mood`` and ``--ref`` may be typed in the instruction; the options given here
        win over them. Raises a ``DomainError``.
        """
        if not pictures:
            raise InvalidRequest("/edit needs a picture to change.")
        if len(pictures) > MAX_EDIT_PICTURES:
            raise InvalidRequest(
                f"/edit takes at most {MAX_EDIT_PICTURES} pictures: the one to change and two references."
            )
        given = ImagineOptions(prompt=instruction, model=model, mood=mood, seed=seed, steps=steps)
        parsed = parse_prompt_flags(given)
        others = sorted(
            name
            for name in ("negative", "aspect", "guidance", "count", "strength", "style", "repeat")
            if getattr(parsed, name) not in (None, "")
        )
        if others:
            raise InvalidRequest(
                f"/edit takes --seed, --steps, --mood and --ref in its instruction, not --{others[0]}: "
                "an edit keeps its picture's size."
            )
        text = check_prompt_text(parsed.prompt, max_chars=self.settings.prompt_max_chars, what="instruction")
        if parsed.seed is not None:
            SEED.check(parsed.seed)
        if parsed.steps is not None:
            STEPS.check(parsed.steps)
        preset = await self.editing.edit_model(origin.guild_id, parsed.model)
        guides = await self.editing.guides(origin, pictures[1:], ref=parsed.ref, mood=parsed.mood, besides=1)
        try:
            edited = await self.editing.edited_picture(pictures[0], preset)
        except BaseException:
            self.editing.release(guides.held)
            raise
        seeds = (
            consecutive_seeds(parsed.seed, VARIATION_COUNT)
            if parsed.seed is not None
            else random_seeds(VARIATION_COUNT)
        )
        recipe = replace(
            at_defaults(JobKind.EDIT, text, preset, (edited.width, edited.height), seeds, steps=parsed.steps),
            source=edited.path,
            reference_images=guides.entries,
            mood=guides.mood,
        )
        return await self._submit_holding(recipe, origin, listener, held=(edited.path, *guides.held))

    @_counts_refusals
    async def edit_image(
        self, job_id: int, index: int, instruction: str, origin: Origin, listener: ServiceListener | None = None
    ) -> SubmittedJob:
        """The Edit button: four edits of image ``index`` of a job as ``instruction`` says, at its aspect."""
        text = check_prompt_text(instruction, max_chars=self.settings.prompt_max_chars, what="instruction")
        parent = await self._finished_image(job_id, index)
        preset = await self.editing.edit_model(origin.guild_id)
        width, height = picture_size(preset, parent.recipe.width, parent.recipe.height)
        seeds = random_seeds(VARIATION_COUNT)
        recipe = replace(
            at_defaults(JobKind.EDIT, text, preset, (width, height), seeds), parent_job_id=parent.id, parent_image=index
        )
        return await self.submit(recipe, origin, listener)

    @_counts_refusals
    async def reroll(
        self, job_id: int, origin: Origin, listener: ServiceListener | None = None, *, prompt: str | None = None
    ) -> SubmittedJob:
        """The same request with new seeds (and ``prompt``, remixed); re-rolled variations vary the same image."""
        parent = await self._job(job_id)
        recipe = parent.recipe
        if recipe.kind == JobKind.VARIATION and recipe.parent_job_id is not None and recipe.parent_image is not None:
            return await self.variation(
                recipe.parent_job_id, recipe.parent_image, origin, listener, strength=recipe.strength, prompt=prompt
            )
        return await self.submit(self._remixed(recipe.as_reroll(parent.id), prompt), origin, listener)

    @_counts_refusals
    async def variation(
        self,
        job_id: int,
        index: int,
        origin: Origin,
        listener: ServiceListener | None = None,
        *,
        strength: float | None = None,
        prompt: str | None = None,
    ) -> SubmittedJob:
        """Four new images from image ``index`` of a job (0-based); from an upscale, at the original size."""
        parent = await self._finished_image(job_id, index)
        strength = strength if strength is not None else self.settings.variation_strength
        recipe = parent.recipe.as_variation(parent.id, index, strength=strength)
        return await self.submit(self._remixed(recipe, prompt), origin, listener)

    @_counts_refusals
    async def edit(
        self,
        job_id: int,
        index: int,
        mask: str,
        origin: Origin,
        listener: ServiceListener | None = None,
        *,
        prompt: str | None = None,
    ) -> SubmittedJob:
        """Vary (Region), Zoom Out or Pan (``mask``, from ``bot.images.edits``) on image ``index`` of a job."""
        parent = await self._finished_image(job_id, index)
        recipe = parent.recipe
        multiple = size_multiple(await self.worker.preset(recipe.model))
        width, height = edit_size(mask, recipe.width, recipe.height, multiple)
        if max(width, height) > MAX_SIDE:
            raise InvalidRequest(
                f"This image is {recipe.width}x{recipe.height}; {describe(mask)} would make it {width}x{height}, "
                f"past the {MAX_SIDE} px limit."
            )
        kind = JobKind(mask.partition(":")[0])
        edited = recipe.as_edit(parent.id, index, kind, mask, (width, height))
        return await self.submit(self._remixed(edited, prompt), origin, listener)

    @_counts_refusals
    async def upscale(
        self,
        job_id: int,
        index: int,
        origin: Origin,
        listener: ServiceListener | None = None,
        *,
        mode: UpscaleMode = UpscaleMode.STANDARD,
    ) -> SubmittedJob:
        """Image ``index`` of a job at twice its size: U1-U4 (``STANDARD``), or under an upscale, Upscale (Subtle)
        or (Creative) (``bot.jobs.upscales``)."""
        parent = await self._finished_image(job_id, index)
        recipe = parent.recipe
        plan = upscale_plan(mode, self.settings.upscaler, self.settings.upscale_strength)
        width, height = recipe.width * UPSCALE_FACTOR, recipe.height * UPSCALE_FACTOR
        if max(width, height) > plan.max_side:
            raise InvalidRequest(
                f"This image is already {recipe.width}x{recipe.height}; {plan.label} stops at {plan.max_side} px."
            )
        upscaled = recipe.as_upscale(parent.id, index, strength=plan.strength, upscaler=plan.upscaler)
        return await self.submit(upscaled, origin, listener)

    @_counts_refusals
    async def upscale_picture(
        self,
        picture: bytes,
        origin: Origin,
        listener: ServiceListener | None = None,
        *,
        mode: UpscaleMode = UpscaleMode.SUBTLE,
        prompt: str = UPSCALE_PROMPT,
    ) -> SubmittedJob:
        """A picture at twice its size (the command line's ``upscale``): Subtle, or Creative, on SD_MODEL."""
        plan = upscale_plan(mode, self.settings.upscaler, self.settings.upscale_strength)
        preset = await self.worker.preset(self.settings.sd_model)
        image = await asyncio.to_thread(read_upload, picture)
        multiple = size_multiple(preset)
        width = max(multiple, image.width // multiple * multiple)
        height = max(multiple, image.height // multiple * multiple)
        if max(width, height) * UPSCALE_FACTOR > plan.max_side:
            raise InvalidRequest(
                f"That picture is {image.width}x{image.height}; {plan.label} stops at {plan.max_side} px."
            )
        fitted = await asyncio.to_thread(fit_to, image, width, height)
        kept = str(await self._pictures.keep(fitted))
        text = check_prompt_text(prompt, max_chars=self.settings.prompt_max_chars)
        drawn = at_defaults(JobKind.IMAGINE, text, preset, (width, height), random_seeds(1))
        upscaled = replace(
            drawn.as_upscale(0, 0, strength=plan.strength, upscaler=plan.upscaler),
            parent_job_id=None,
            parent_image=None,
            source=kept,
        )
        return await self._submit_holding(upscaled, origin, listener, held=(kept,))

    @_counts_refusals
    async def describe(self, picture: bytes, origin: Origin, listener: ServiceListener | None = None) -> SubmittedJob:
        """/describe: four prompts for ``picture`` from the captioner, as a job of its own (``DESCRIBE_COST``)."""
        image = await asyncio.to_thread(bounded, await asyncio.to_thread(read_upload, picture))
        kept = await self._pictures.keep(image)
        recipe = describe_recipe(self.settings.captioner, str(kept), (image.width, image.height))
        return await self._submit_holding(recipe, origin, listener, held=(str(kept),))

    @_counts_refusals
    async def imagine_described(
        self, job_id: int, index: int, origin: Origin, listener: ServiceListener | None = None
    ) -> SubmittedJob:
        """A button under a /describe: an /imagine of its prompt ``index`` (from 0), for whoever pressed it."""
        job = await self._job(job_id)
        if job.recipe.kind != JobKind.DESCRIBE or job.status != "done":
            raise InvalidRequest("That description has no prompts to draw yet.")
        if job.withheld:
            raise NotAllowed("That picture was withheld by the content filter, so its prompts cannot be drawn.")
        if not 0 <= index < len(job.texts) or not job.texts[index].strip():
            raise JobNotFound(f"Job {job_id} has no prompt {index + 1}.")
        return await self.imagine(ImagineOptions(prompt=job.texts[index]), origin, listener)

    @_counts_refusals
    async def submit(
        self,
        recipe: Recipe,
        origin: Origin,
        listener: ServiceListener | None = None,
        *,
        notices: Sequence[str] = (),
    ) -> SubmittedJob:
        """Admit a complete recipe. ``listener`` gets this job's events; without one, the global listeners do.

        ``notices`` are sentences the member is told with the accepted job (a default left out); the
        job's ``waiting`` says when no worker is online to start it. Every kind of job passes here, so
        observers hear ``Admitted`` here; a refusal (here or on the way here) is ``Refused``, once, from
        ``_counts_refusals``.
        """
        submitted = await self._admit(recipe, origin, listener, notices=notices)  # refusals: _counts_refusals
        self.jobs.observe(Admitted(submitted.job_id, recipe.model, recipe.count, submitted.cost))
        return submitted

    async def _admit(
        self, recipe: Recipe, origin: Origin, listener: ServiceListener | None, *, notices: Sequence[str]
    ) -> SubmittedJob:
        # 1. The prompt against the guild's filter and this channel's NSFW policy; the names of its
        #    LoRAs and embeddings too, and an NSFW-marked one as an NSFW prompt.
        decision = await self._admission.nsfw_decision(origin)
        await self._admission.check_prompt(recipe.prompt, origin, decision)
        names = [use.name for use in lora_uses(recipe)] + [name for name, _ in embedding_uses(recipe)]
        if names:
            await self._admission.check_prompt(" ".join(names), origin, decision)
        flagged = await self.library.finetunes.nsfw_names(origin.guild_id, recipe)
        if recipe.mood is not None and recipe.mood in await self._nsfw_moodboards(origin.guild_id):
            flagged.append(f"The moodboard {recipe.mood}")
        if flagged and not decision.allow_nsfw_prompts:
            raise PromptRejected(
                f"{', '.join(flagged)} is marked NSFW by this server's moderators: use it in an age-restricted channel.",
                rule=f"NSFW fine-tune {', '.join(flagged)}",
            )
        # 2. What the model's family reads of a prompt (weights and a negative where it has them), and the text
        #    encoder's limit: a longer prompt runs, but never cut without saying so. (A description has no prompt
        #    and no diffusion model: its captioner is priced as a fixed few credits.)
        preset: ModelPreset | None = None
        if recipe.kind != JobKind.DESCRIBE:
            preset = await self.worker.preset(recipe.model)
            check_prompt_weights(recipe.negative_prompt)
            recipe, read = fit_to_family(recipe, preset)
            chunks = await self._admission.prompt_chunks(recipe, preset)
            if chunks > 1 and not family(preset.family).weighted_prompts:
                read.append(
                    f"The prompt is longer than the {preset.max_prompt_tokens} tokens {family_label(preset.family)} "
                    "models read; its end was left out."
                )
                chunks = 1
            recipe = replace(recipe, chunks=chunks)
            notices = [*notices, *read]
        # 3. Room in the queue, before anything is charged.
        self.worker.check_room(origin.user_id)
        source = await self.jobs.source_of(recipe)
        references = await self.jobs.references_of(recipe)
        # 4. Check and charge the quota and record the job, in one transaction.
        cost = DESCRIBE_COST if preset is None else await self._cost(recipe, preset, source, references)
        limit = None if origin.console else QuotaRule(origin.role_ids, self.settings.daily_credits)
        new = NewJob(
            recipe=recipe,
            guild_id=origin.guild_id,
            channel_id=origin.channel_id,
            user_id=origin.user_id,
            cost=cost,
            nsfw_allowed=not decision.classify_images,
            age_restricted=origin.channel_age_restricted,
            member_name=origin.member_name,
        )
        try:
            job = await self.store.admit_job(new, limit=limit)
        except QuotaExhausted as exhausted:
            raise QuotaExceeded(self._admission.quota_sentence(exhausted)) from None
        except StorageUnavailable as refused:
            log.warning("could not admit a job: %s", refused)
            raise StorageBusy(STORAGE_BUSY) from None
        # 5. Queue it. A queue that filled up in between refunds at once.
        try:
            position = await self.jobs.queue(job, decision, listener, source, references)
        except QueueFull:
            await self.store.mark_failed(job.id, "the queue was full")
            await self.store.refund(job.id, cost, "queue full")
            raise
        except Exception:  # it could not be made into a request: a bug, which charges nothing
            await self.store.mark_failed(job.id, NOT_PREPARED)
            await self.store.refund(job.id, cost, "not prepared")
            raise
        return SubmittedJob(
            job_id=job.id,
            position=position,
            recipe=recipe,
            cost=cost,
            notice=" ".join(notices) or None,
            waiting=self.waiting_reason(),
        )

    # -- jobs after admission (bot.jobs.lifecycle) -----------------------------------------

    async def cancel(self, job_id: int, *, actor_id: int, is_moderator: bool = False) -> None:
        await self.jobs.cancel(job_id, actor_id=actor_id, is_moderator=is_moderator)

    async def resume(self) -> list[int]:
        """Requeue jobs a crash or a restart left unfinished, in their original order, uncharged."""
        return await self.jobs.resume()

    def waiting_reason(self) -> str | None:
        return self.jobs.waiting_reason()

    def waiting_jobs(self, user_id: int) -> list[WaitingJob]:
        return self.jobs.waiting_jobs(user_id)

    async def shown(self, job_id: int, *, actor_id: int, guild_id: int | None, is_moderator: bool) -> JobResult:
        return await self.jobs.shown(job_id, actor_id=actor_id, guild_id=guild_id, is_moderator=is_moderator)

    async def job(self, job_id: int) -> Job | None:
        """A job as recorded, or ``None`` if there is no such job."""
        return await self.store.get_job(job_id)

    async def result_deleted(self, job_id: int, message_id: int, *, actor_id: int, is_moderator: bool = False) -> None:
        await self.jobs.result_deleted(job_id, message_id, actor_id=actor_id, is_moderator=is_moderator)

    async def results_message_deleted(self, message_ids: list[int]) -> list[int]:
        return await self.jobs.results_message_deleted(message_ids)

    async def results_channel_deleted(self, channel_id: int) -> list[int]:
        return await self.jobs.results_channel_deleted(channel_id)

    async def nsfw_decision(self, origin: Origin) -> NsfwDecision:
        """What this channel's NSFW policy allows: the one decision admission makes, for what /help says too."""
        return await self._admission.nsfw_decision(origin)

    async def learn_age_restricted(self, channels: dict[int, bool]) -> int:
        """Which channels are age-restricted (id: whether), for jobs made before the gallery knew: a gallery shows
        none of those jobs until their channel is known, and never one of an age-restricted channel."""
        return await self.store.learn_age_restricted(channels)

    async def image_files(self, job: Job) -> tuple[Path, ...]:
        return await self.jobs.image_files(job)

    # -- a guild's and a member's choices (bot.jobs.library) --------------------------------

    async def enabled_models(self, guild_id: int | None) -> list[str]:
        return await self.library.enabled_models(guild_id)

    async def styles(self, guild_id: int | None) -> list[Style]:
        return await self.library.styles(guild_id)

    async def fine_tunes(self, guild_id: int | None, kind: str | None = None) -> list[FineTune]:
        return await self.library.fine_tunes(guild_id, kind)

    async def preferences(self, user_id: int) -> MemberPreferences:
        return await self.library.preferences(user_id)

    async def set_default(self, user_id: int, name: str, value: str | int | float | None) -> MemberPreferences:
        return await self.library.set_default(user_id, name, value)

    async def reset_preferences(self, user_id: int) -> MemberPreferences:
        return await self.library.reset_preferences(user_id)

    async def remix_enabled(self, user_id: int) -> bool:
        return await self.library.remix_enabled(user_id)

    async def toggle_remix(self, user_id: int) -> bool:
        return await self.library.toggle_remix(user_id)

    # -- delivery of results (bot.jobs.delivery) -------------------------------------------

    async def record_status_message(
        self, job_id: int, *, message_id: int | None, interaction_token: str, token_created_at: float
    ) -> None:
        await self.deliveries.record_status_message(
            job_id, message_id=message_id, interaction_token=interaction_token, token_created_at=token_created_at
        )

    async def delivered(self, job_id: int, message_id: int | None) -> None:
        await self.deliveries.delivered(job_id, message_id)

    async def delivery_failed(self, job_id: int) -> DeliveryVerdict:
        return await self.deliveries.delivery_failed(job_id)

    async def undelivered_results(self) -> list[JobResult]:
        return await self.deliveries.undelivered_results()

    async def close(self) -> None:
        """Stop taking jobs, let the running batch finish, and leave the rest queued in SQLite."""
        await self.jobs.close()

    # -- inside ---------------------------------------------------------------------------

    async def _job(self, job_id: int) -> Job:
        return await self.jobs.job_named(job_id)

    def _remixed(self, recipe: Recipe, prompt: str | None) -> Recipe:
        """``recipe`` with the prompt a member typed in the Remix window, checked like any prompt."""
        if prompt is None:
            return recipe
        return recipe.with_prompt(check_prompt_text(prompt, max_chars=self.settings.prompt_max_chars))

    async def _finished_image(self, job_id: int, index: int) -> Job:
        """A finished job that has an image ``index`` that may be used."""
        parent = await self._job(job_id)
        if parent.status != "done":
            raise InvalidRequest("That job has not finished yet; wait for its images first.")
        if not 0 <= index < len(parent.image_paths):
            raise JobNotFound(f"Job {job_id} has no image {index + 1}.")
        if index in parent.withheld:
            raise NotAllowed("That image was withheld by the content filter, so it cannot be upscaled or varied.")
        return parent


def refusal_reason(refusal: DomainError | ModelError) -> RefusalReason:
    """What kind of refusal a domain error is, as the metrics count it."""
    match refusal:
        case PromptRejected():
            return RefusalReason.PROMPT
        case QuotaExceeded():
            return RefusalReason.QUOTA
        case QueueFull():
            return RefusalReason.QUEUE_FULL
        case StorageBusy():
            return RefusalReason.STORAGE
        case ModelError():
            return RefusalReason.MODEL
        case _:
            return RefusalReason.INVALID
