"""/moodboard add, /moodboard remove, /moodboard list: named sets of reference pictures members use with
``--mood name`` or ``mood:`` on /imagine and /edit.

The pictures are read only after what Discord says of each (type, size) passes, and answered after a
deferral, since five pictures of 10 MB take longer than Discord's 3 seconds to fetch.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.jobs.messages import CHOICE_TEXT_LIMIT, fit_content, fit_select_options
from bot.jobs.moderation import AttachedPicture
from cogs._shared.moderators import describe_change, guild_of, moderators_only, post_to_modlog
from cogs._shared.replies import reply_ephemeral
from cogs.moderation._base import ModeratorCommands, moderator_group

NAME_DESCRIPTION = "2-32 letters, digits, - or _"
MORE_PICTURES = "Another picture for the set (PNG, JPEG or WebP)"


class MoodboardCommands(ModeratorCommands):
    moodboard_group = moderator_group("moodboard", "Sets of reference pictures members may draw with on this server.")

    @moodboard_group.command(name="add", description="Add a moodboard: a named set of 1 to 5 reference pictures.")
    @app_commands.describe(
        name=f"What members write: --mood name, or the mood option ({NAME_DESCRIPTION})",
        image="A picture for the set (PNG, JPEG or WebP)",
        image2=MORE_PICTURES,
        image3=MORE_PICTURES,
        image4=MORE_PICTURES,
        image5=MORE_PICTURES,
        nsfw="Whether its pictures are NSFW: then only age-restricted channels may use it (default no)",
    )
    @moderators_only()
    async def moodboard_add(
        self,
        interaction: discord.Interaction[Any],
        name: app_commands.Range[str, 1, 64],
        image: discord.Attachment,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        image5: discord.Attachment | None = None,
        nsfw: bool = False,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        given = [item for item in (image, image2, image3, image4, image5) if item is not None]
        moodboard, entry = await self.moderation.add_moodboard(
            guild_of(interaction),
            name,
            [AttachedPicture(item.filename, item.content_type, item.size, item.read) for item in given],
            nsfw=nsfw,
            actor_id=interaction.user.id,
        )
        count = len(moodboard.images)
        marked = " It is marked NSFW: only age-restricted channels may use it." if moodboard.nsfw else ""
        await interaction.followup.send(
            fit_content(
                f"Added the moodboard `{moodboard.name}` with {count} picture{'s' if count != 1 else ''}; "
                f"members use it with `--mood {moodboard.name}` or `mood:{moodboard.name}`.{marked}"
            ),
            ephemeral=True,
        )
        await post_to_modlog(self.bot, guild_of(interaction), describe_change(entry))

    @moodboard_group.command(name="remove", description="Take a moodboard off this server's list.")
    @app_commands.describe(name="The moodboard's name")
    @moderators_only()
    async def moodboard_remove(
        self, interaction: discord.Interaction[Any], name: app_commands.Range[str, 1, 64]
    ) -> None:
        entry = await self.moderation.remove_moodboard(guild_of(interaction), name, actor_id=interaction.user.id)
        await self._changed(interaction, entry, f"The moodboard `{name}` is no longer on this server's list.")

    @moodboard_remove.autocomplete("name")
    async def _moodboard_names(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None:
            return []
        typed = current.casefold()
        names = [item.name for item in await self.moderation.moodboards(interaction.guild_id)]
        return fit_select_options(
            [
                app_commands.Choice(name=name, value=name)
                for name in names
                if typed in name.casefold() and len(name) <= CHOICE_TEXT_LIMIT
            ]
        )

    @moodboard_group.command(name="list", description="Show this server's moodboards.")
    @moderators_only()
    async def moodboard_list(self, interaction: discord.Interaction[Any]) -> None:
        moodboards = await self.moderation.moodboards(guild_of(interaction))
        if not moodboards:
            await reply_ephemeral(interaction, "This server has no moodboards yet: /moodboard add adds one.")
            return
        lines = [
            f"`{item.name}` · {len(item.images)} picture{'s' if len(item.images) != 1 else ''}"
            + (" · NSFW" if item.nsfw else "")
            for item in moodboards
        ]
        await reply_ephemeral(interaction, "This server's moodboards:\n" + "\n".join(lines))
