"""Moderator commands: /filter, /nsfw, /quota, /modlog. Every change is audited and logged.

Discord hides these commands from members without Manage Server through their
default permissions, but not every client honours that, so each one checks the
permission again when it runs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import InvalidRequest
from bot.jobs.messages import fit_content
from bot.jobs.records import MAX_FILTER_TERM_LENGTH, AuditEntry, NsfwMode
from bot.policy import content_filter
from cogs._shared.moderators import MANAGE_GUILD, describe_change, guild_of, moderators_only, post_to_modlog
from cogs._shared.usage_text import describe_usage

if TYPE_CHECKING:
    from bot.app import LatentcordBot

log = logging.getLogger(__name__)


class Moderation(commands.Cog):
    filter_group = app_commands.Group(
        name="filter",
        description="Words blocked in prompts on this server.",
        default_permissions=MANAGE_GUILD,
        guild_only=True,
    )
    quota_group = app_commands.Group(
        name="quota",
        description="Credits members may spend per 24 hours.",
        default_permissions=MANAGE_GUILD,
        guild_only=True,
    )

    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot
        self.moderation = bot.moderation

    async def _changed(self, interaction: discord.Interaction[Any], entry: AuditEntry, reply: str) -> None:
        await interaction.response.send_message(fit_content(reply), ephemeral=True)
        await post_to_modlog(self.bot, guild_of(interaction), describe_change(entry))

    # -- /filter ---------------------------------------------------------------------------

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
        await interaction.response.send_message(fit_content(text), ephemeral=True)

    # -- /nsfw -------------------------------------------------------------------------------

    @app_commands.command(name="nsfw", description="Where NSFW prompts and images are allowed on this server.")
    @app_commands.describe(mode="block: nowhere; age-restricted: only in channels Discord marks age-restricted")
    @app_commands.choices(mode=[app_commands.Choice(name=mode.value, value=mode.value) for mode in NsfwMode])
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    @moderators_only()
    async def nsfw(self, interaction: discord.Interaction[Any], mode: app_commands.Choice[str]) -> None:
        chosen = NsfwMode(mode.value)
        entry = await self.moderation.set_nsfw_mode(guild_of(interaction), chosen, actor_id=interaction.user.id)
        reply = {
            NsfwMode.BLOCK: "NSFW prompts and images are now blocked in every channel.",
            NsfwMode.AGE_RESTRICTED: "NSFW is now allowed in age-restricted channels only, and blocked everywhere else.",
        }[chosen]
        await self._changed(interaction, entry, reply)

    # -- /quota ------------------------------------------------------------------------------

    @quota_group.command(name="set", description="Set the credits per 24 hours of a member, a role, or the server.")
    @app_commands.describe(
        limit="Credits per rolling 24 hours", user="The member", role="The role (give neither for the server default)"
    )
    @moderators_only()
    async def quota_set(
        self,
        interaction: discord.Interaction[Any],
        limit: app_commands.Range[int, 0, 1_000_000],
        user: discord.Member | None = None,
        role: discord.Role | None = None,
    ) -> None:
        if user is not None and role is not None:
            raise InvalidRequest("Give a user or a role, not both.")
        if user is None and role is None:
            # Neither: the server's default for everyone without an override of their own.
            entry = await self.moderation.set_server_credits(guild_of(interaction), limit, actor_id=interaction.user.id)
            await self._changed(
                interaction, entry, f"Members without an override may now spend {limit} credits per 24 hours."
            )
            return
        entry = await self.moderation.set_credits(
            guild_of(interaction),
            user_id=user.id if user else None,
            role_id=role.id if role else None,
            credits=limit,
            actor_id=interaction.user.id,
        )
        who = user.mention if user is not None else role.mention if role is not None else "nobody"
        await self._changed(interaction, entry, f"{who} may now spend {limit} credits per 24 hours.")

    @quota_group.command(name="show", description="Show a member's credits used and left.")
    @app_commands.describe(user="The member (default: you)")
    @moderators_only()
    async def quota_show(self, interaction: discord.Interaction[Any], user: discord.Member | None = None) -> None:
        member = user or interaction.user
        roles = tuple(role.id for role in getattr(member, "roles", ()) if not role.is_default())
        usage, limit = await self.moderation.credits_of(guild_of(interaction), member.id, roles)
        await interaction.response.send_message(
            f"{member.mention}: {describe_usage(usage, limit, self.bot.clock())}",
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @quota_group.command(name="reset", description="Give a member their full credits back now.")
    @app_commands.describe(user="The member")
    @moderators_only()
    async def quota_reset(self, interaction: discord.Interaction[Any], user: discord.Member) -> None:
        entry = await self.moderation.reset_usage(guild_of(interaction), user.id, actor_id=interaction.user.id)
        await self._changed(interaction, entry, f"{user.mention} has their full credits back.")

    # -- /modlog -------------------------------------------------------------------------------

    @app_commands.command(name="modlog", description="Where the bot reports moderator changes and rejected prompts.")
    @app_commands.describe(channel="The moderator log channel")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    @moderators_only()
    async def modlog(self, interaction: discord.Interaction[Any], channel: discord.TextChannel) -> None:
        entry = await self.moderation.set_log_channel(guild_of(interaction), channel.id, actor_id=interaction.user.id)
        await self._changed(interaction, entry, f"Moderator changes and rejected prompts now go to {channel.mention}.")


async def setup(bot: LatentcordBot) -> None:
    await bot.add_cog(Moderation(bot))
