"""Remix and Vary (Region): a window to edit the prompt before a job starts, and the menu of regions.

With Remix on (``/prefer remix``), V1–V4, 🔄, Vary, Zoom Out and Pan open the **Remix** window
with the job's prompt in its **Prompt** box; submitting starts the job with what is there
(checked like any prompt), closing it starts nothing and charges nothing. Vary (Region) first
offers the regions in a menu, then always opens the window, to say what goes there.

The menu is a ``DynamicItem`` (``lc-region:<job>:<n>``, apart from the buttons' ``lc:...``), so it works after a restart, like the
buttons. The window lives only while the member types in it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.app import send_ephemeral
from bot.images.edits import REGIONS, region_mask, region_slug

#: Discord's limit for a text input's contents.
TEXT_INPUT_LIMIT = 4000
REGION_QUESTION = "Which part of the image should change?"

Submit = Callable[[discord.Interaction[Any], str], Awaitable[None]]


class RemixModal(discord.ui.Modal, title="Remix"):
    """The Remix window: one **Prompt** box holding the job's prompt; ``submit`` gets what was typed."""

    def __init__(self, prompt: str, max_chars: int, submit: Submit) -> None:
        super().__init__(timeout=15 * 60)
        limit = min(TEXT_INPUT_LIMIT, max_chars)
        self.prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label="Prompt",
            custom_id="prompt",
            style=discord.TextStyle.paragraph,
            default=prompt[:limit],
            required=True,
            min_length=1,
            max_length=limit,
        )
        self.add_item(self.prompt)
        self._submit = submit

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        await self._submit(interaction, self.prompt.value)

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception, /) -> None:  # type: ignore[override]  # Modal narrows BaseView's signature
        await interaction.client.report_error(interaction, error)


class RegionSelect(discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"lc-region:(?P<job>[0-9]+):(?P<n>[0-9]+)"):
    """The menu of regions Vary (Region) offers for image ``n`` of a job."""

    def __init__(self, job_id: int, n: int) -> None:
        select: discord.ui.Select[Any] = discord.ui.Select(
            custom_id=f"lc-region:{job_id}:{n}",
            placeholder="Choose the part to redraw",
            options=[discord.SelectOption(label=label, value=region_slug(label)) for label in REGIONS],
        )
        super().__init__(select)
        self.job_id, self.n = job_id, n

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> RegionSelect:
        return cls(int(match["job"]), int(match["n"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        cog = interaction.client.get_cog("Imagine")
        if cog is None:
            await send_ephemeral(interaction, "The bot is starting up; choose again in a moment.")
            return
        chosen = self.item.values[0] if self.item.values else ""
        label = next((label for label in REGIONS if region_slug(label) == chosen), None)
        try:
            if label is None:
                await send_ephemeral(interaction, "That region is not one this bot knows; press Vary (Region) again.")
                return
            await cog.handle_region(interaction, self.job_id, self.n, region_mask(label))
        except Exception as error:
            await interaction.client.report_error(interaction, error)


def region_menu(job_id: int, n: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RegionSelect(job_id, n))
    return view
