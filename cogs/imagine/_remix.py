"""Remix and Vary (Region): a window to edit the prompt before a job starts, and the menu of regions.

With Remix on (``/prefer remix``), V1–V4, 🔄, Vary, Zoom Out and Pan open the **Remix** window
with the job's prompt in its **Prompt** box; submitting starts the job with what is there
(checked like any prompt), closing it starts nothing and charges nothing. Vary (Region) first
offers the regions in a menu, then always opens the window, to say what goes there.

The menu is a ``DynamicItem`` (``lc-region:<job>:<n>``, apart from the buttons' ``lc:...``), so it works after
a restart, like the buttons. The window names what it starts in its custom id
(``lc-remix:<action>:<job>:<n>``, the action a button's or ``rg-<region>``), and the cog answers every
submission from that id alone (``remix_request``), so a window opened before a restart and sent after it
still starts its job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import discord

from bot.app import send_ephemeral
from bot.images.edits import REGIONS, region_mask, region_slug
from cogs._shared.windows import submitted_value

#: Discord's limit for a text input's contents.
TEXT_INPUT_LIMIT = 4000
REGION_QUESTION = "Which part of the image should change?"

PROMPT_INPUT_ID = "prompt"
REMIX_ID = re.compile(r"lc-remix:(?P<action>[a-z0-9-]+):(?P<job>[0-9]+):(?P<n>[0-9]+)")
REGION_ACTION_PREFIX = "rg-"


@dataclass(frozen=True, slots=True)
class RemixRequest:
    """A submitted Remix window: what it starts (a button's action, or ``rg-<region>``), on which image, and the prompt."""

    action: str
    job_id: int
    n: int
    prompt: str


def remix_custom_id(action: str, job_id: int, n: int) -> str:
    return f"lc-remix:{action}:{job_id}:{n}"


def region_action(mask: str) -> str:
    """The Remix window's action for a Vary (Region) mask (``region:left-half`` -> ``rg-left-half``)."""
    return REGION_ACTION_PREFIX + mask.partition(":")[2]


def region_of(slug: str) -> str | None:
    """The Vary (Region) mask a region's slug names (``left-half`` -> ``region:left-half``); ``None`` if none."""
    label = next((label for label in REGIONS if region_slug(label) == slug), None)
    return region_mask(label) if label is not None else None


def remix_request(data: Mapping[str, Any] | None) -> RemixRequest | None:
    """A Remix window's submission read from the interaction's data alone; ``None`` if it is not one."""
    match = REMIX_ID.fullmatch(str((data or {}).get("custom_id", "")))
    if match is None:
        return None
    prompt = submitted_value(data or {}, PROMPT_INPUT_ID)
    return RemixRequest(match["action"], int(match["job"]), int(match["n"]), prompt or "")


class RemixModal(discord.ui.Modal, title="Remix"):
    """The Remix window: one **Prompt** box holding the job's prompt.

    Its submission is answered by the cog from the custom id (``remix_request``), not by this object,
    which a restart would lose.
    """

    def __init__(self, prompt: str, max_chars: int, custom_id: str) -> None:
        super().__init__(timeout=15 * 60, custom_id=custom_id)
        limit = min(TEXT_INPUT_LIMIT, max_chars)
        self.prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label="Prompt",
            custom_id=PROMPT_INPUT_ID,
            style=discord.TextStyle.paragraph,
            default=prompt[:limit],
            required=True,
            min_length=1,
            max_length=limit,
        )
        self.add_item(self.prompt)


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
        mask = region_of(self.item.values[0] if self.item.values else "")
        try:
            if mask is None:
                await send_ephemeral(interaction, "That region is not one this bot knows; press Vary (Region) again.")
                return
            await cog.handle_region(interaction, self.job_id, self.n, mask)
        except Exception as error:
            await interaction.client.report_error(interaction, error)


def region_menu(job_id: int, n: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RegionSelect(job_id, n))
    return view
