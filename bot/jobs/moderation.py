"""What moderators change on their server, and what they and members may read of it.

The one way the Discord edge changes a guild's policy (the filter, NSFW, quotas, styles, the
models it allows, its LoRAs, embeddings and moodboards): each change is audited by the store in
the same transaction, and filter terms are normalised here, the way the content filter reads
prompts, before they are kept. A moodboard's pictures are checked like any member's upload and
kept once each, as the pictures jobs start from are (``bot.images.uploads``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from PIL import Image

from bot.errors import InvalidRequest
from bot.images.uploads import bounded, check_attachment, read_upload
from bot.jobs.finetunes import FineTuneLibrary, check_name
from bot.jobs.permutations import MAX_LIMIT as MAX_PERMUTATIONS
from bot.jobs.starboard import MAX_THRESHOLD as MAX_STARBOARD_THRESHOLD
from bot.policy import content_filter
from bot.policy.nsfw import NsfwMode
from db.records import AuditEntry, FineTune, Moodboard, Style, Usage
from models.errors import ModelError
from models.families import family_label
from models.finetunes import FineTuneKind
from models.licences import Licence, licence_of
from models.presets import declared_preset

STYLE_NAME = re.compile(r"[A-Za-z0-9_-]{2,32}")
#: A model's family where no worker has announced it and this host's files cannot tell it.
FAMILY_NOT_KNOWN = "family not known yet"
#: The most pictures one moodboard holds (/moodboard add's image .. image5).
MAX_MOODBOARD_PICTURES: Final = 5

if TYPE_CHECKING:
    from bot.images.uploads import KeptPictures
    from bot.settings import Settings
    from bot.workers.protocol import WorkerClient
    from db.store import Store
    from models.types import ModelPreset


@dataclass(frozen=True, slots=True)
class ModelState:
    """A configured model as /model list shows it."""

    model: str
    enabled: bool  # whether this server may use it
    family: str  # as members read it ("SDXL", "FLUX.2 klein"), or FAMILY_NOT_KNOWN
    licence: Licence


@dataclass(frozen=True, slots=True)
class AttachedPicture:
    """A picture a moderator attached, as Discord describes it (checked first), and how to download it."""

    filename: str
    content_type: str | None
    size: int
    read: Callable[[], Awaitable[bytes]]


class ModerationService:
    def __init__(
        self, *, store: Store, settings: Settings, worker: WorkerClient, pictures: KeptPictures | None = None
    ) -> None:
        self._store = store
        self._settings = settings
        self._worker = worker  # the models' presets: which families a LoRA or embedding must fit
        self._finetunes = FineTuneLibrary(settings, store)
        self._pictures = pictures  # where moodboards' pictures are kept: the service's, shared with jobs

    # -- the filter ------------------------------------------------------------------

    async def block_term(self, guild_id: int, term: str, *, actor_id: int) -> tuple[str, AuditEntry]:
        """Block a term; returns it as it is kept (normalised) with the audit entry."""
        normalised = _normalised_term(term)
        return normalised, await self._store.add_filter_term(guild_id, normalised, actor_id=actor_id)

    async def allow_term(self, guild_id: int, term: str, *, actor_id: int) -> tuple[str, AuditEntry]:
        normalised = _normalised_term(term)
        return normalised, await self._store.remove_filter_term(guild_id, normalised, actor_id=actor_id)

    async def blocked_terms(self, guild_id: int) -> list[str]:
        return await self._store.filter_terms(guild_id)

    # -- NSFW and the log channel --------------------------------------------------------

    async def set_nsfw_mode(self, guild_id: int, mode: NsfwMode, *, actor_id: int) -> AuditEntry:
        return await self._store.set_nsfw_mode(guild_id, mode, actor_id=actor_id)

    async def set_log_channel(self, guild_id: int, channel_id: int, *, actor_id: int) -> AuditEntry:
        return await self._store.set_log_channel(guild_id, channel_id, actor_id=actor_id)

    async def set_draft(self, guild_id: int, channel_id: int, on: bool, *, actor_id: int) -> AuditEntry:
        """Draft mode on or off in a channel: /imagine there draws fast previews (DPM++ 2M, fewer steps)."""
        return await self._store.set_draft_channel(guild_id, channel_id, on, actor_id=actor_id)

    async def set_starboard(self, guild_id: int, channel_id: int, threshold: int, *, actor_id: int) -> AuditEntry:
        """Repost results reaching ``threshold`` ⭐ (their requester's not counted) to ``channel_id``."""
        if not 1 <= threshold <= MAX_STARBOARD_THRESHOLD:
            raise InvalidRequest(f"The threshold must be from 1 to {MAX_STARBOARD_THRESHOLD} stars.")
        return await self._store.set_starboard(guild_id, channel_id, threshold, actor_id=actor_id)

    async def log_channel(self, guild_id: int) -> int | None:
        return (await self._store.guild_settings(guild_id)).log_channel_id

    # -- quotas ------------------------------------------------------------------------

    async def set_server_credits(self, guild_id: int, credits: int, *, actor_id: int) -> AuditEntry:
        return await self._store.set_guild_daily_credits(guild_id, credits, actor_id=actor_id)

    async def set_credits(
        self, guild_id: int, *, user_id: int | None = None, role_id: int | None = None, credits: int, actor_id: int
    ) -> AuditEntry:
        return await self._store.set_quota_override(
            guild_id, user_id=user_id, role_id=role_id, credits=credits, actor_id=actor_id
        )

    async def reset_usage(self, guild_id: int, user_id: int, *, actor_id: int) -> AuditEntry:
        return await self._store.reset_usage(guild_id, user_id, actor_id=actor_id)

    async def credits_of(self, guild_id: int | None, user_id: int, role_ids: tuple[int, ...]) -> tuple[Usage, int]:
        """A member's usage in the rolling window and their limit there."""
        limit = await self._store.quota_limit(guild_id, user_id, role_ids, self._settings.daily_credits)
        return await self._store.usage(guild_id, user_id), limit

    async def set_permutation_limit(self, guild_id: int, limit: int, *, actor_id: int) -> AuditEntry:
        if not 1 <= limit <= MAX_PERMUTATIONS:
            raise InvalidRequest(f"One /imagine may make between 1 and {MAX_PERMUTATIONS} jobs, not {limit}.")
        return await self._store.set_permutation_limit(guild_id, limit, actor_id=actor_id)

    # -- styles ----------------------------------------------------------------------------------

    async def add_style(self, guild_id: int, name: str, prompt: str, negative: str, *, actor_id: int) -> AuditEntry:
        if not STYLE_NAME.fullmatch(name):
            raise InvalidRequest("A style's name must be 2-32 letters, digits, - or _.")
        text = " ".join(prompt.split())
        if not text:
            raise InvalidRequest("A style needs a prompt; write {prompt} where the member's text goes.")
        limit = self._settings.prompt_max_chars
        if len(text) > limit or len(negative) > limit:
            raise InvalidRequest(f"A style's prompt and negative may be at most {limit} characters each.")
        style = Style(guild_id, name, text, " ".join(negative.split()))
        return await self._store.add_style(style, actor_id=actor_id)

    async def remove_style(self, guild_id: int, name: str, *, actor_id: int) -> AuditEntry:
        return await self._store.remove_style(guild_id, name, actor_id=actor_id)

    async def styles(self, guild_id: int) -> list[Style]:
        return await self._store.styles(guild_id)

    # -- the models a server may use -----------------------------------------------------------

    async def model_states(self, guild_id: int) -> list[ModelState]:
        """Each configured model (SD_MODEL first): whether this server may use it, its family and its licence."""
        disabled = await self._store.disabled_models(guild_id)
        models = self._settings.models
        families = await asyncio.gather(*(self._family_of(model) for model in models))
        licences = await asyncio.gather(*(asyncio.to_thread(licence_of, model) for model in models))
        return [
            ModelState(model, model not in disabled, family, licence)
            for model, family, licence in zip(models, families, licences, strict=True)
        ]

    async def _family_of(self, model: str) -> str:
        """A model's family as members read it, told without loading the model or waiting for a worker.

        With workers on other hosts (REDIS_URL), the worker seam's preset: as one announced it, else as told
        from the model's files here, never waiting. Otherwise those files alone (``declared_preset``: the
        builtins, folders, single files, this host's Hugging Face cache), which the bot's own workers share:
        asking a worker in this process for a preset would load the model.
        """
        preset: ModelPreset | None
        try:
            if self._settings.redis_url is not None:
                preset = await self._worker.preset(model)
            else:
                preset = await asyncio.to_thread(declared_preset, model)
        except ModelError:  # ModelUnavailable: not announced and not told here; a pickle file; a pipeline not run
            return FAMILY_NOT_KNOWN
        return FAMILY_NOT_KNOWN if preset is None else family_label(preset.family)

    async def set_model_enabled(self, guild_id: int, model: str, enabled: bool, *, actor_id: int) -> AuditEntry:
        if model not in self._settings.models:
            raise InvalidRequest(f"This bot runs no model named {model[:100]}; /model list shows them.")
        if not enabled and model == self._settings.sd_model:
            raise InvalidRequest(f"{model} is the bot's default model (SD_MODEL); it cannot be disabled.")
        return await self._store.set_model_enabled(guild_id, model, enabled, actor_id=actor_id)

    # -- LoRAs and embeddings ---------------------------------------------------------------------

    async def add_fine_tune(
        self,
        guild_id: int,
        kind: str,
        name: str,
        *,
        filename: str,
        size: int,
        read: Callable[[], Awaitable[bytes]],
        actor_id: int,
        weight: float = 1.0,
        nsfw: bool = False,
    ) -> tuple[FineTune, AuditEntry]:
        """A moderator's upload (``kind``: "lora" or "embedding"), checked against the families of the
        guild's enabled models before it is kept."""
        disabled = await self._store.disabled_models(guild_id)
        enabled = [model for model in self._settings.models if model not in disabled]
        families = sorted({(await self._worker.preset(model)).family for model in enabled})
        return await self._finetunes.add(
            guild_id,
            FineTuneKind(kind),
            name,
            filename=filename,
            size=size,
            read=read,
            families=families,
            actor_id=actor_id,
            weight=weight,
            nsfw=nsfw,
        )

    async def remove_fine_tune(self, guild_id: int, kind: str, name: str, *, actor_id: int) -> AuditEntry:
        return await self._finetunes.remove(guild_id, FineTuneKind(kind), name, actor_id=actor_id)

    async def fine_tunes(self, guild_id: int, kind: str | None = None) -> list[FineTune]:
        return await self._finetunes.listed(guild_id, None if kind is None else FineTuneKind(kind))

    # -- moodboards ---------------------------------------------------------------------------------

    async def add_moodboard(
        self, guild_id: int, name: str, pictures: Sequence[AttachedPicture], *, nsfw: bool, actor_id: int
    ) -> tuple[Moodboard, AuditEntry]:
        """Check, keep and record a set of reference pictures; a bad picture changes nothing."""
        kept_pictures = self._kept_pictures()
        # 1. What can be checked before anything is downloaded: the name, where it is free, and what Discord says.
        check_name(name)
        if not 1 <= len(pictures) <= MAX_MOODBOARD_PICTURES:
            raise InvalidRequest(f"A moodboard holds 1 to {MAX_MOODBOARD_PICTURES} pictures, not {len(pictures)}.")
        await self._store.ensure_name_free(guild_id, name)
        for picture in pictures:
            with _naming(picture):
                check_attachment(picture.filename, picture.content_type, picture.size)
        # 2. Download and decode each, off the event loop, scaled to what a model reads of a reference.
        images: list[Image.Image] = []
        for picture in pictures:
            with _naming(picture):
                images.append(await asyncio.to_thread(_reference_of, await picture.read()))
        # 3. Keep each (held, so no sweep or removal deletes it meanwhile), record the set, then let the holds go.
        kept: list[Path] = []
        try:
            for image in images:
                kept.append(await kept_pictures.keep(image))
            moodboard = Moodboard(guild_id, name, nsfw, tuple(str(path) for path in kept))
            entry = await self._store.add_moodboard(moodboard, actor_id=actor_id)
        except BaseException:
            for path in kept:
                kept_pictures.release(path)
            # 4. Not recorded (the name was taken meanwhile, the disk failed): delete what nothing else names. Should
            #    that fail too, the refusal still stands; a picture left behind goes at the next start (``sweep``).
            with contextlib.suppress(Exception):
                await self._let_go_unused(str(path) for path in kept)
            raise
        for path in kept:
            kept_pictures.release(path)
        return moodboard, entry

    async def remove_moodboard(self, guild_id: int, name: str, *, actor_id: int) -> AuditEntry:
        """Take a set off the list, and delete those of its pictures no job or other set names."""
        entry, paths = await self._store.remove_moodboard(guild_id, name, actor_id=actor_id)
        await self._let_go_unused(paths)
        return entry

    async def moodboards(self, guild_id: int) -> list[Moodboard]:
        return await self._store.moodboards(guild_id)

    def _kept_pictures(self) -> KeptPictures:
        if self._pictures is None:
            raise RuntimeError("This ModerationService was built without the kept pictures moodboards need.")
        return self._pictures

    async def _let_go_unused(self, paths: Iterable[str]) -> None:
        kept_pictures = self._kept_pictures()
        for path in dict.fromkeys(paths):  # once each, in order
            if not await self._store.source_in_use(path):
                await kept_pictures.let_go(path)


def _reference_of(data: bytes) -> Image.Image:
    """A moodboard's picture from its bytes: checked and decoded like any upload, at most a reference's size."""
    return bounded(read_upload(data))


@contextlib.contextmanager
def _naming(picture: AttachedPicture) -> Iterator[None]:
    """Say which picture a refusal is about: a moodboard takes several."""
    try:
        yield
    except InvalidRequest as refused:
        shown = picture.filename.replace("`", "")[:60]
        raise InvalidRequest(f"`{shown}`: {refused}") from None


def _normalised_term(term: str) -> str:
    try:
        return content_filter.normalise_term(term)
    except ValueError as error:
        raise InvalidRequest(str(error)) from None
