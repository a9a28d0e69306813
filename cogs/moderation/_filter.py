"""/filter add, /filter remove, /filter list: the words blocked in prompts on a server."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.jobs.records import MAX_FILTER_TERM_LENGTH
from bot.policy import content_filter
from cogs._shared.moderators import guild_of, moderators_only
from cogs._shared.replies import reply_ephemeral
from cogs.moderation._base import ModeratorCommands, moderator_group


class FilterCommands(ModeratorCommands):
    filter_group = moderator_group("filter", "Words blocked in prompts on this server.")

    @filter_group.command(name="add", description="Block a word or phrase in prompts on this server.")
    @app_commands.describe(term="The word or phrase to block")
    @moderators_only()
    async def filter_add(
        self, interaction: discord.Interaction[Any], term: app_commands.Range[str, 1, MAX_FILTER_TERM_LENGTH]
    ) -> None:
        normalised, entry = await self.moderation.block_term(guild_of(interaction), term, actor_id=interaction.user.id)
        await self._changed(interaction, entry, f"Prompts containing `{normalised}` are now blocked on this server.")

    @filter_group.command(name="remove", description="Allow a word or phrase again.")
    @app_commands.describe(term="The word or phrase to allow again")
    @moderators_only()
    async def filter_remove(
        self, interaction: discord.Interaction[Any], term: app_commands.Range[str, 1, MAX_FILTER_TERM_LENGTH]
    ) -> None:
        normalised, entry = await self.moderation.allow_term(guild_of(interaction), term, actor_id=interaction.user.id)
        await self._changed(interaction, entry, f"`{normalised}` is no longer blocked on this server.")

    @filter_group.command(name="list", description="Show the words this server blocks.")
    @moderators_only()
    async def filter_list(self, interaction: discord.Interaction[Any]) -> None:
        terms = await self.moderation.blocked_terms(guild_of(interaction))
        builtin = len(content_filter.builtin_nsfw_terms())
        shown = ", ".join(f"`{term}`" for term in terms) if terms else "none yet"
        text = f"This server blocks: {shown}.\nThe built-in NSFW list ({builtin} terms) applies as set by /nsfw."
        await reply_ephemeral(interaction, text)
