"""Moderators: who counts as one, the check on their commands, and their log channel."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.jobs.messages import fit_content
from bot.jobs.records import AuditEntry
from cogs._shared.channels import messageable_channel

if TYPE_CHECKING:
    from bot.app import LatentcordBot

log = logging.getLogger(__name__)

#: What moderators' commands need by default, so Discord hides them from everyone else.
MANAGE_GUILD = discord.Permissions(manage_guild=True)


def is_moderator(interaction: discord.Interaction[Any]) -> bool:
    permissions = interaction.permissions
    return interaction.guild_id is not None and (permissions.manage_guild or permissions.administrator)


def guild_of(interaction: discord.Interaction[Any]) -> int:
    """The server a moderator command runs in; those commands are registered for servers only."""
    if interaction.guild_id is None:
        raise app_commands.NoPrivateMessage("This command works in servers only.")
    return interaction.guild_id


def moderators_only() -> Callable[[Any], Any]:
    def predicate(interaction: discord.Interaction[Any]) -> bool:
        if not is_moderator(interaction):
            name = interaction.command.qualified_name if interaction.command else "this command"
            raise app_commands.CheckFailure(f"You need the Manage Server permission to use /{name}.")
        return True

    return app_commands.check(predicate)


async def post_to_modlog(bot: LatentcordBot, guild_id: int, text: str) -> None:
    """Tell the guild's moderator log channel, if one is set; failures are logged, never raised."""
    channel_id = await bot.moderation.log_channel(guild_id)
    if channel_id is None:
        return
    try:
        channel = await messageable_channel(bot, channel_id)
        if channel is None:
            log.warning("the log channel %s of guild %s takes no messages", channel_id, guild_id)
            return
        await channel.send(fit_content(text), allowed_mentions=discord.AllowedMentions.none())
    except discord.HTTPException:
        log.warning("could not post to the log channel %s of guild %s", channel_id, guild_id)


def describe_change(entry: AuditEntry) -> str:
    target = f" for {_mention(entry.target)}" if entry.target else ""
    return (
        f"🛠️ <@{entry.actor_id}> changed **{entry.action.replace('_', ' ')}**{target}: "
        f"{entry.before or '—'} → {entry.after or '—'}"
    )


def _mention(target: str) -> str:
    kind, _, raw_id = target.partition(":")
    return {"user": f"<@{raw_id}>", "role": f"<@&{raw_id}>", "channel": f"<#{raw_id}>"}.get(kind, target)
