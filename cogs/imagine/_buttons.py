"""The buttons under a job's messages: U1–U4, V1–V4, 🔄, Vary, Edit, Zoom Out, Pan, the upscales, a /describe's
prompts, Cancel and Delete.

Each is a ``DynamicItem`` whose custom id names its job and image (``lc:u:<job>:<n>``), so a
press on a message posted before a restart still works: everything else is in SQLite.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import discord

from bot.app import send_ephemeral
from bot.images.edits import pan_mask, zoom_mask


class ButtonAction(StrEnum):
    """What a button under a job does; the value is what its custom id stores, so never change one."""

    UPSCALE = "u"
    VARIATION = "v"
    REROLL = "r"
    VARY_STRONG = "vs"
    VARY_SUBTLE = "vt"
    VARY_REGION = "vr"
    EDIT = "ed"  # opens the Edit window: the image changed as its instruction says
    UPSCALE_SUBTLE = "us"  # Upscale (Subtle): the upscaler alone, twice the side
    UPSCALE_CREATIVE = "uc"  # Upscale (Creative): the upscaler, then a stronger redraw
    DESCRIBED_PROMPT = "dp"  # under a /describe: /imagine its prompt n
    ZOOM_OUT_2 = "zx"
    ZOOM_OUT_1_5 = "zy"
    PAN_LEFT = "pl"
    PAN_RIGHT = "pr"
    PAN_UP = "pu"
    PAN_DOWN = "pd"
    CANCEL = "x"
    DELETE = "del"


#: The buttons that open the Remix window first when a member has Remix on.
REMIXABLE = frozenset(
    {
        ButtonAction.VARIATION,
        ButtonAction.REROLL,
        ButtonAction.VARY_STRONG,
        ButtonAction.VARY_SUBTLE,
        ButtonAction.ZOOM_OUT_2,
        ButtonAction.ZOOM_OUT_1_5,
        ButtonAction.PAN_LEFT,
        ButtonAction.PAN_RIGHT,
        ButtonAction.PAN_UP,
        ButtonAction.PAN_DOWN,
    }
)

#: The edit each Zoom Out and Pan button makes (``bot.images.edits``).
EDIT_MASKS = {
    ButtonAction.ZOOM_OUT_2: zoom_mask("2"),
    ButtonAction.ZOOM_OUT_1_5: zoom_mask("1.5"),
    ButtonAction.PAN_LEFT: pan_mask("left"),
    ButtonAction.PAN_RIGHT: pan_mask("right"),
    ButtonAction.PAN_UP: pan_mask("up"),
    ButtonAction.PAN_DOWN: pan_mask("down"),
}


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"lc:(?P<action>[a-z]+):(?P<job>[0-9]+):(?P<n>[0-9]+)"
):
    """A button that names its job and image (``lc:u:<job>:<n>``, n from 1), so it needs no memory."""

    def __init__(
        self,
        action: ButtonAction | str,
        job_id: int,
        n: int = 0,
        *,
        label: str | None = None,
        emoji: str | None = None,
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        disabled: bool = False,
        row: int | None = None,
    ) -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=label, emoji=emoji, style=style, disabled=disabled, custom_id=self.custom_id_for(action, job_id, n)
        )
        super().__init__(button, row=row)
        self.action, self.job_id, self.n = action, job_id, n

    @staticmethod
    def custom_id_for(action: ButtonAction | str, job_id: int, n: int = 0) -> str:
        return f"lc:{action}:{job_id}:{n}"

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> JobButton:
        return cls(match["action"], int(match["job"]), int(match["n"]))  # checked when pressed

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        cog = interaction.client.get_cog("Imagine")
        if cog is None:
            await send_ephemeral(interaction, "The bot is starting up; press the button again in a moment.")
            return
        try:
            await cog.handle_button(interaction, self.action, self.job_id, self.n)
        except Exception as error:
            # Buttons bypass the command tree's handler, so they share it explicitly.
            await interaction.client.report_error(interaction, error)


def grid_buttons(job_id: int, images: int, withheld: frozenset[int]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for n in range(1, images + 1):
        view.add_item(JobButton(ButtonAction.UPSCALE, job_id, n, label=f"U{n}", disabled=n - 1 in withheld, row=0))
    view.add_item(JobButton(ButtonAction.REROLL, job_id, 0, label="🔄", style=discord.ButtonStyle.primary, row=0))
    for n in range(1, images + 1):
        view.add_item(JobButton(ButtonAction.VARIATION, job_id, n, label=f"V{n}", disabled=n - 1 in withheld, row=1))
    view.add_item(
        JobButton(ButtonAction.DELETE, job_id, 0, label="Delete", emoji="🗑️", style=discord.ButtonStyle.danger, row=2)
    )
    return view


#: Under an upscaled image, in this order: the Vary trio, Edit, Zoom Out, Pan, then the two upscales (label, action).
UPSCALE_EDITS = (
    ("Vary (Strong)", ButtonAction.VARY_STRONG),
    ("Vary (Subtle)", ButtonAction.VARY_SUBTLE),
    ("Vary (Region)", ButtonAction.VARY_REGION),
    ("Edit", ButtonAction.EDIT),
    ("Zoom Out 2x", ButtonAction.ZOOM_OUT_2),
    ("Zoom Out 1.5x", ButtonAction.ZOOM_OUT_1_5),
    ("⬅️", ButtonAction.PAN_LEFT),
    ("➡️", ButtonAction.PAN_RIGHT),
    ("⬆️", ButtonAction.PAN_UP),
    ("⬇️", ButtonAction.PAN_DOWN),
    ("Upscale (Subtle)", ButtonAction.UPSCALE_SUBTLE),
    ("Upscale (Creative)", ButtonAction.UPSCALE_CREATIVE),
)


def upscale_buttons(job_id: int, withheld: bool) -> discord.ui.View:
    """Vary (Strong/Subtle/Region), Edit, Zoom Out 2x/1.5x, ⬅️ ➡️ ⬆️ ⬇️, Upscale (Subtle/Creative) and Delete:
    five to a row, as Discord allows."""
    view = discord.ui.View(timeout=None)
    for place, (label, action) in enumerate(UPSCALE_EDITS):
        view.add_item(JobButton(action, job_id, 1, label=label, disabled=withheld, row=place // 5))
    view.add_item(
        JobButton(
            ButtonAction.DELETE,
            job_id,
            0,
            label="Delete",
            emoji="🗑️",
            style=discord.ButtonStyle.danger,
            row=len(UPSCALE_EDITS) // 5,
        )
    )
    return view


def describe_buttons(job_id: int, prompts: int) -> discord.ui.View:
    """Under a /describe: one button per prompt, "1" to "4", each an /imagine of it for whoever presses; Delete."""
    view = discord.ui.View(timeout=None)
    for n in range(1, prompts + 1):
        view.add_item(JobButton(ButtonAction.DESCRIBED_PROMPT, job_id, n, label=str(n), row=0))
    view.add_item(
        JobButton(ButtonAction.DELETE, job_id, 0, label="Delete", emoji="🗑️", style=discord.ButtonStyle.danger, row=1)
    )
    return view


def cancel_button(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton(ButtonAction.CANCEL, job_id, 0, label="Cancel", style=discord.ButtonStyle.secondary))
    return view


def holds_result(message: discord.Message, me: int, job_id: int) -> bool:
    """Whether the bot's ``message`` holds the result of ``job_id``: only a result carries its Delete button."""
    marker = JobButton.custom_id_for(ButtonAction.DELETE, job_id)
    return message.author.id == me and any(
        getattr(child, "custom_id", None) == marker
        for row in message.components
        if isinstance(row, discord.ActionRow)
        for child in row.children
    )
