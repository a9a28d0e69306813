"""The Edit window: an instruction for the image under an upscale, such as "make it night".

The Edit button opens a window titled **Edit** with one **Instruction** box; submitting it starts
an edit of that image (``GenerationService.edit_image``), closing it starts nothing and charges
nothing. As with Remix, the window names its job and image in its custom id
(``lc-edit:<job>:<n>``) and the cog answers the submission from that id alone, so a window opened
before a restart still starts its edit after it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import discord

from cogs._shared.windows import submitted_value
from cogs.imagine._remix import TEXT_INPUT_LIMIT

INSTRUCTION_INPUT_ID = "instruction"
EDIT_ID = re.compile(r"lc-edit:(?P<job>[0-9]+):(?P<n>[0-9]+)")


@dataclass(frozen=True, slots=True)
class EditRequest:
    """A submitted Edit window: which image, and what to do to it."""

    job_id: int
    n: int
    instruction: str


def edit_custom_id(job_id: int, n: int) -> str:
    return f"lc-edit:{job_id}:{n}"


def edit_request(data: Mapping[str, Any] | None) -> EditRequest | None:
    """An Edit window's submission read from the interaction's data alone; ``None`` if it is not one."""
    match = EDIT_ID.fullmatch(str((data or {}).get("custom_id", "")))
    if match is None:
        return None
    instruction = submitted_value(data or {}, INSTRUCTION_INPUT_ID)
    return EditRequest(int(match["job"]), int(match["n"]), instruction or "")


class EditModal(discord.ui.Modal, title="Edit"):
    """The Edit window: one **Instruction** box. Its submission is answered by the cog (``edit_request``)."""

    def __init__(self, max_chars: int, custom_id: str) -> None:
        super().__init__(timeout=15 * 60, custom_id=custom_id)
        self.instruction: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
            label="Instruction",
            custom_id=INSTRUCTION_INPUT_ID,
            style=discord.TextStyle.paragraph,
            placeholder='What to change, such as "make it night" or "give her a red scarf"',
            required=True,
            min_length=1,
            max_length=min(TEXT_INPUT_LIMIT, max_chars),
        )
        self.add_item(self.instruction)
