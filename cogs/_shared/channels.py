"""A channel by its id, from the cache or else from Discord, when it is one that takes messages."""

from __future__ import annotations

import discord


async def messageable_channel(client: discord.Client, channel_id: int) -> discord.abc.Messageable | None:
    """The channel, or ``None`` when it takes no messages (a category, a forum); Discord's errors are raised."""
    channel = client.get_channel(channel_id) or await client.fetch_channel(channel_id)
    return channel if isinstance(channel, discord.abc.Messageable) else None
