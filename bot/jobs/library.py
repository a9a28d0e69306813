"""What a guild and a member have chosen, as admission reads it: the models a server allows, its styles,
fine-tunes and moodboards, and a member's own ``/settings`` defaults.

Moderators change a guild's choices through ``bot.jobs.moderation.ModerationService`` (audited);
members change their own defaults here, each checked like the ``/imagine`` option it fills.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bot.errors import InvalidRequest
from bot.jobs.finetunes import FineTuneLibrary
from bot.jobs.options import OPTIONS
from bot.jobs.requests import ImagineOptions
from db.records import FineTune, MemberPreferences, Moodboard, Style
from models.finetunes import FineTuneKind

if TYPE_CHECKING:
    from bot.jobs.admission import Origin
    from bot.jobs.recipe import Recipe
    from bot.settings import Settings
    from db.store import Store

#: The ``/settings`` defaults that fill an option left empty, as they are named in both (the model and the style
#: are checked against what the server allows first, below).
MEMBER_DEFAULTS = tuple(name for name, option in OPTIONS.items() if option.setting and name not in ("model", "style"))


class Library:
    """A guild's models, styles, fine-tunes and moodboards, and a member's defaults, read (and a member's, changed)."""

    def __init__(self, *, settings: Settings, store: Store[Recipe]) -> None:
        self._settings = settings
        self._store = store
        self.finetunes = FineTuneLibrary(settings, store)

    # -- a guild's --------------------------------------------------------------------------

    async def enabled_models(self, guild_id: int | None) -> list[str]:
        """The configured models a guild may use (``/model enable|disable``), the default first."""
        disabled = await self._store.disabled_models(guild_id) if guild_id is not None else set()
        return [model for model in self._settings.models if model not in disabled]

    async def styles(self, guild_id: int | None) -> list[Style]:
        return await self._store.styles(guild_id) if guild_id is not None else []

    async def style(self, guild_id: int | None, name: str) -> Style:
        """The guild's style called ``name`` (in any case); a sentence naming /style list when there is none."""
        for style in await self.styles(guild_id):
            if style.name.casefold() == name.casefold():
                return style
        raise InvalidRequest(f"This server has no style named `{name[:40]}`; /style list shows them.")

    async def fine_tunes(self, guild_id: int | None, kind: str | None = None) -> list[FineTune]:
        if guild_id is None:
            return []
        return await self.finetunes.listed(guild_id, None if kind is None else FineTuneKind(kind))

    async def moodboards(self, guild_id: int | None) -> list[Moodboard]:
        return await self._store.moodboards(guild_id) if guild_id is not None else []

    async def moodboard(self, guild_id: int | None, name: str) -> Moodboard:
        """The guild's moodboard called ``name`` (in any case); a sentence naming /moodboard list when there is none.

        Whether its NSFW mark allows it where it is used is the caller's to check, as for a LoRA.
        """
        if guild_id is None:
            raise InvalidRequest("Moodboards belong to a server; use one there.")
        moodboard = await self._store.moodboard(guild_id, name)
        if moodboard is None:
            raise InvalidRequest(f"This server has no moodboard named `{name[:40]}`; /moodboard list shows them.")
        return moodboard

    # -- a member's ---------------------------------------------------------------------------

    async def preferences(self, user_id: int) -> MemberPreferences:
        return await self._store.member_preferences(user_id)

    async def set_default(self, user_id: int, name: str, value: str | int | float | None) -> MemberPreferences:
        """Set one of a member's ``/settings`` defaults (``None``: the server's), checked like the option it fills."""
        if value is not None:
            options = {name: value} if name != "negative" else {"negative": str(value)}
            ImagineOptions(prompt="x", **options).checked(
                models=self._settings.models, max_prompt_chars=self._settings.prompt_max_chars
            )
        return await self._store.set_member_default(user_id, name, value)

    async def reset_preferences(self, user_id: int) -> MemberPreferences:
        return await self._store.reset_member_preferences(user_id)

    async def remix_enabled(self, user_id: int) -> bool:
        """Whether a member's buttons first open the Remix window (``/prefer remix``)."""
        return (await self._store.member_preferences(user_id)).remix

    async def toggle_remix(self, user_id: int) -> bool:
        """Flip a member's Remix switch; whether it is on now."""
        return (await self._store.toggle_remix(user_id)).remix

    async def with_member_defaults(self, options: ImagineOptions, origin: Origin) -> tuple[ImagineOptions, list[str]]:
        """``options`` with the member's ``/settings`` defaults where nothing was given; notices for any skipped."""
        preferences = await self._store.member_preferences(origin.user_id)
        notices: list[str] = []
        given: dict[str, object] = {}
        if options.model is None and preferences.model is not None:
            if preferences.model in await self.enabled_models(origin.guild_id):
                given["model"] = preferences.model
            else:
                notices.append(f"Your default model {preferences.model} is not available here; the server's was used.")
        for name in MEMBER_DEFAULTS:
            value = getattr(preferences, name)
            if value is not None and getattr(options, name) in (None, ""):
                given[name] = value
        if options.style is None and preferences.style is not None:
            styles = {style.name.casefold() for style in await self.styles(origin.guild_id)}
            if preferences.style.casefold() in styles:
                given["style"] = preferences.style
            else:
                notices.append(f"Your default style {preferences.style} is not on this server; no style was used.")
        return replace(options, **given), notices  # type: ignore[arg-type]
