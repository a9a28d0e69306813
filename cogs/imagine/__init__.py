"""/imagine and the buttons under its grids: interactions in, service calls out, events rendered back.

The cog decides before it answers: a rejected request gets an ephemeral first
response, an accepted one a public message that is edited with the queue position,
progress and preview, then the grid with its buttons. Buttons are ``DynamicItem``s
whose custom id names the job and the image, so they work after a restart.

``_cog`` holds the cog and its command, ``_buttons`` the buttons and their custom ids,
``_admission`` the one service call an interaction becomes and the refusals,
``_delivery`` a job's messages up to its posted result, ``_resumed`` the jobs a restart
left without an interaction, ``_remix`` the Remix window and the Vary (Region) menu,
``_wording`` how their messages read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cogs.imagine._buttons import JobButton
from cogs.imagine._cog import Imagine
from cogs.imagine._plans import PlanButton
from cogs.imagine._remix import RegionSelect

if TYPE_CHECKING:
    from bot.app import LatentcordBot

__all__ = ["Imagine", "JobButton", "setup"]


async def setup(bot: LatentcordBot) -> None:
    bot.add_dynamic_items(JobButton, RegionSelect, PlanButton)
    await bot.add_cog(Imagine(bot))
