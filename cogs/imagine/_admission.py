"""From an interaction to one service call: decide first, then answer.

A refused request gets an ephemeral sentence (and, if its prompt was rejected, a line in
the moderator log); an accepted one a public message that the job's delivery then edits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord

from bot.app import send_ephemeral
from bot.errors import USER_FACING_ERRORS, PromptRejected
from bot.jobs.messages import fit_content
from bot.jobs.outcomes import ServiceEvent, SubmittedJob
from bot.jobs.service import GenerationService, Origin
from bot.jobs.upscales import UpscaleMode
from cogs._shared.moderators import post_to_modlog
from cogs._shared.usage_text import credits
from cogs.imagine._buttons import EDIT_MASKS, ButtonAction, cancel_button
from cogs.imagine._delivery import Deliveries, Delivery
from cogs.imagine._wording import headline, queued

if TYPE_CHECKING:
    from bot.app import LatentcordBot

log = logging.getLogger(__name__)

# Discord gives 3 s to answer; past this much of it, answer with an ephemeral "thinking" first.
DECISION_BUDGET_S = 2.0
STRONG_VARIATION, SUBTLE_VARIATION = 0.75, 0.35

#: One call of the service that admits a job, given where its events go.
Start = Callable[[Callable[[ServiceEvent], None]], Awaitable[SubmittedJob]]


def button_start(
    service: GenerationService, action: ButtonAction, job_id: int, n: int, origin: Origin, prompt: str | None = None
) -> Start | None:
    """The service call a button that makes a new job stands for (``prompt``: as remixed); ``None`` if none."""
    index = max(n - 1, 0)
    starters: dict[ButtonAction, Start] = {
        ButtonAction.UPSCALE: lambda listener: service.upscale(job_id, index, origin, listener),
        ButtonAction.VARIATION: lambda listener: service.variation(job_id, index, origin, listener, prompt=prompt),
        ButtonAction.REROLL: lambda listener: service.reroll(job_id, origin, listener, prompt=prompt),
        ButtonAction.VARY_STRONG: lambda listener: service.variation(
            job_id, index, origin, listener, strength=STRONG_VARIATION, prompt=prompt
        ),
        ButtonAction.VARY_SUBTLE: lambda listener: service.variation(
            job_id, index, origin, listener, strength=SUBTLE_VARIATION, prompt=prompt
        ),
        ButtonAction.UPSCALE_SUBTLE: lambda listener: service.upscale(
            job_id, index, origin, listener, mode=UpscaleMode.SUBTLE
        ),
        ButtonAction.UPSCALE_CREATIVE: lambda listener: service.upscale(
            job_id, index, origin, listener, mode=UpscaleMode.CREATIVE
        ),
        ButtonAction.DESCRIBED_PROMPT: lambda listener: service.imagine_described(job_id, index, origin, listener),
    }
    mask = EDIT_MASKS.get(action)
    if mask is not None:
        return edit_start(service, job_id, n, mask, origin, prompt)
    return starters.get(action)


def edit_start(
    service: GenerationService, job_id: int, n: int, mask: str, origin: Origin, prompt: str | None = None
) -> Start:
    """The service call of an edit (Zoom Out, Pan, Vary (Region): ``mask``) of image ``n`` of a job."""
    return lambda listener: service.edit(job_id, max(n - 1, 0), mask, origin, listener, prompt=prompt)


async def admit(
    bot: LatentcordBot, deliveries: Deliveries, interaction: discord.Interaction[Any], start: Start
) -> None:
    """Run the service's checks, answering ephemerally on rejection and publicly on acceptance.

    If the checks take longer than Discord's window allows (a model loading),
    the first answer is an ephemeral "thinking", never a public one that would
    then have to say no.
    """
    delivery = Delivery(interaction=interaction, headline="")
    attempt = asyncio.ensure_future(start(delivery.receive))
    done, _ = await asyncio.wait({attempt}, timeout=DECISION_BUDGET_S)
    deferred = not done
    if deferred:
        await interaction.response.defer(ephemeral=True, thinking=True)
    try:
        submitted = await attempt
    except USER_FACING_ERRORS as error:
        await send_ephemeral(interaction, str(error))
        if isinstance(error, PromptRejected) and interaction.guild_id is not None:
            await post_to_modlog(
                bot,
                interaction.guild_id,
                f"🚫 Prompt from <@{interaction.user.id}> rejected in <#{interaction.channel_id}>: "
                f"{error.rule or error}",
            )
        return
    delivery.headline = headline(submitted.recipe, interaction.user.id)
    delivery.headline += f"\nCost: {credits(submitted.cost)}."
    if submitted.notice:
        delivery.headline += f"\n⚠️ {submitted.notice}"
    status = f"{delivery.headline}\n{queued(submitted.position, submitted.waiting)}"
    view = cancel_button(submitted.job_id)
    message_id: int | None = None
    try:
        if deferred:
            await interaction.edit_original_response(content=f"Accepted: job {submitted.job_id}.")
            message = await interaction.followup.send(fit_content(status), view=view, wait=True)
            delivery.edit, message_id = message.edit, message.id
        else:
            callback = await interaction.response.send_message(fit_content(status), view=view)
            delivery.edit, message_id = interaction.edit_original_response, callback.message_id
        await bot.service.record_status_message(
            submitted.job_id,
            message_id=message_id,
            interaction_token=interaction.token,
            token_created_at=interaction.created_at.timestamp(),
        )
    except discord.HTTPException:
        log.warning("could not post the status of job %s; the result goes to the channel", submitted.job_id)
    delivery.message_id = message_id
    delivery.last_edit_at = bot.clock()
    delivery.ready.set()
    deliveries.spawn(deliveries.follow(submitted.job_id, delivery), name=f"deliver-{submitted.job_id}")
