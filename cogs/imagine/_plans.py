"""Several jobs from one /imagine ({a, b} permutations, --repeat): asked first, queued only on **Yes**.

The confirmation is ephemeral: how many jobs, what each draws and what they cost together. Nothing
is charged before **Yes**; then each job is admitted (and charged) as usual, and its result posted to
the channel. **No**, or a confirmation the bot forgot in a restart, queues nothing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot.app import send_ephemeral
from bot.errors import USER_FACING_ERRORS
from bot.jobs.messages import fit_content
from cogs._shared.confirm import choice_button

if TYPE_CHECKING:
    from bot.app import LatentcordBot
    from bot.jobs.requests import ImagineOptions
    from bot.jobs.service import Origin

#: Confirmations waiting for an answer, at most this many (the oldest are forgotten first).
MAX_WAITING = 1000


@dataclass(frozen=True, slots=True)
class Plan:
    user_id: int
    origin: Origin
    jobs: tuple[ImagineOptions, ...]
    picture: bytes | None


class Plans:
    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot
        self._waiting: dict[str, Plan] = {}

    async def ask(self, interaction: discord.Interaction[Any], plan: Plan) -> None:
        """The ephemeral question: the jobs, their cost, **Yes** and **No**."""
        total = 0
        for job in plan.jobs:
            total += await self.bot.service.quote(job, plan.origin)
        token = secrets.token_hex(8)
        while len(self._waiting) >= MAX_WAITING:
            self._waiting.pop(next(iter(self._waiting)))
        self._waiting[token] = plan
        listed = "\n".join(f"• {job.prompt[:120]}" for job in plan.jobs)
        text = f"This makes {len(plan.jobs)} jobs and costs {total} credits:\n{listed}\nQueue them?"
        view = discord.ui.View(timeout=None)
        view.add_item(PlanButton(token, "yes"))
        view.add_item(PlanButton(token, "no"))
        await interaction.response.send_message(fit_content(text), view=view, ephemeral=True)

    async def answer(self, interaction: discord.Interaction[Any], token: str, choice: str) -> None:
        plan = self._waiting.get(token)
        if plan is None and not _offers_buttons(interaction.message):
            # A second click from a client that still showed Yes and No: the first answer stands.
            await send_ephemeral(interaction, "This question was already answered.")
            return
        if plan is None:
            await interaction.response.edit_message(content="This question has expired; run /imagine again.", view=None)
            return
        if interaction.user.id != plan.user_id:
            await send_ephemeral(interaction, "Only the member who asked can answer this.")
            return
        del self._waiting[token]
        if choice != "yes":
            await interaction.response.edit_message(content="Nothing was queued or charged.", view=None)
            return
        await interaction.response.edit_message(content=f"Queueing {len(plan.jobs)} jobs…", view=None)
        queued: list[str] = []
        refused: list[str] = []
        for job in plan.jobs:
            try:
                submitted = await self.bot.service.imagine(job, plan.origin, None, picture=plan.picture)
            except USER_FACING_ERRORS as error:
                refused.append(f"• {job.prompt[:80]}: {error}")
                continue
            queued.append(f"#{submitted.job_id}")
        lines = [
            f"Queued {len(queued)} of {len(plan.jobs)} jobs ({', '.join(queued) or 'none'}); "
            "each grid is posted in this channel when it is done."
        ]
        if refused:
            lines += ["Not queued:", *refused]
        await interaction.edit_original_response(content=fit_content("\n".join(lines)))


def _offers_buttons(message: discord.Message | None) -> bool:
    """Whether the question still shows Yes and No: an answer removes them, a restart does not."""
    return message is not None and any(
        isinstance(row, discord.ActionRow) and row.children for row in message.components
    )


class PlanButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"lc-plan:(?P<token>[0-9a-f]+):(?P<choice>yes|no)"
):
    def __init__(self, token: str, choice: str) -> None:
        super().__init__(
            choice_button(f"lc-plan:{token}:{choice}", choice, yes="Yes", yes_style=discord.ButtonStyle.success)
        )
        self.token, self.choice = token, choice

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> PlanButton:
        return cls(match["token"], match["choice"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        cog = interaction.client.get_cog("Imagine")
        if cog is None:
            await send_ephemeral(interaction, "The bot is starting up; run /imagine again in a moment.")
            return
        try:
            await cog.plans.answer(interaction, self.token, self.choice)
        except Exception as error:
            await interaction.client.report_error(interaction, error)
