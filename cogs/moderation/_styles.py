"""/style add, /style remove, /style list: named styles members apply with /imagine style: or --style."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.jobs.messages import STRING_OPTION_LIMIT
from cogs._shared.moderators import guild_of, moderators_only
from cogs._shared.replies import reply_ephemeral
from cogs.moderation._base import ModeratorCommands, moderator_group


class StyleCommands(ModeratorCommands):
    style_group = moderator_group("style", "Named styles members may apply to their prompts.")

    @style_group.command(name="add", description="Add a style: a prompt with {prompt} where the member's text goes.")
    @app_commands.describe(
        name="What members choose (2-32 letters, digits, - or _)",
        prompt="The style's prompt, with {prompt} where the member's text goes (else it comes first)",
        negative="Added to the member's negative prompt",
    )
    @moderators_only()
    async def style_add(
        self,
        interaction: discord.Interaction[Any],
        name: app_commands.Range[str, 1, 64],
        prompt: app_commands.Range[str, 1, STRING_OPTION_LIMIT],
        negative: app_commands.Range[str, 1, STRING_OPTION_LIMIT] | None = None,
    ) -> None:
        entry = await self.moderation.add_style(
            guild_of(interaction), name, prompt, negative or "", actor_id=interaction.user.id
        )
        await self._changed(interaction, entry, f"Members may now use the style `{name}`.")

    @style_group.command(name="remove", description="Remove a style.")
    @app_commands.describe(name="The style's name")
    @moderators_only()
    async def style_remove(self, interaction: discord.Interaction[Any], name: app_commands.Range[str, 1, 64]) -> None:
        entry = await self.moderation.remove_style(guild_of(interaction), name, actor_id=interaction.user.id)
        await self._changed(interaction, entry, f"The style `{name}` is no longer on this server's list.")

    @style_group.command(name="list", description="Show this server's styles.")
    @moderators_only()
    async def style_list(self, interaction: discord.Interaction[Any]) -> None:
        styles = await self.moderation.styles(guild_of(interaction))
        if not styles:
            await reply_ephemeral(interaction, "This server has no styles yet: /style add adds one.")
            return
        lines = [
            f"`{style.name}`: {style.prompt}" + (f" (negative: {style.negative})" if style.negative else "")
            for style in styles
        ]
        await reply_ephemeral(interaction, "This server's styles:\n" + "\n".join(lines))
