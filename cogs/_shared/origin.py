"""Who asks, and where: an interaction as the service's ``Origin``."""

from __future__ import annotations

from typing import Any

import discord

from bot.jobs.service import Origin


def origin_of(interaction: discord.Interaction[Any]) -> Origin:
    user = interaction.user
    channel = interaction.channel
    age_restricted = False
    if channel is not None:
        checked = getattr(channel, "parent", None) if isinstance(channel, discord.Thread) else channel
        is_nsfw = getattr(checked, "is_nsfw", None)
        age_restricted = bool(is_nsfw()) if callable(is_nsfw) else False
    roles = tuple(role.id for role in getattr(user, "roles", ()) if not role.is_default())
    return Origin(
        user_id=user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        role_ids=roles,
        channel_age_restricted=age_restricted,
        member_name=getattr(user, "display_name", None) or user.name,
    )
