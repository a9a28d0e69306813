"""Answering an interaction ephemerally, fitted to Discord's limits.

``reply_ephemeral`` is the first answer to an interaction not answered yet; a failure
is raised, so the command tree's error handler sees it. Where the interaction may have
been answered or deferred already, and a failure should only be logged, use
``bot.app.send_ephemeral``, which the error handler uses too.
"""

from __future__ import annotations

from typing import Any

import discord

from bot.jobs.messages import fit_content


async def reply_ephemeral(
    interaction: discord.Interaction[Any],
    text: str,
    *,
    allowed_mentions: discord.AllowedMentions = discord.utils.MISSING,
    view: discord.ui.View = discord.utils.MISSING,
) -> None:
    await interaction.response.send_message(
        fit_content(text), ephemeral=True, allowed_mentions=allowed_mentions, view=view
    )
