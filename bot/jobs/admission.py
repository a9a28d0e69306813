"""The checks a job passes before anything is charged, and the sentences that refuse it.

In the service's order: the prompt against the content filter and the channel's NSFW
policy, the text encoder's token limit (a notice, not a refusal), then the price. The
quota itself is checked and charged by the store, in the transaction that records the
job; ``quota_sentence`` words its refusal.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bot.errors import InvalidRequest, PromptRejected
from bot.jobs.prompts import check_prompt_weights, has_weights, plain_words
from bot.policy import content_filter
from bot.policy.nsfw import NsfwDecision, NsfwMode, decide
from bot.policy.pricing import job_cost
from db.records import DM_GUILD_ID  # quotas of direct messages are kept under guild 0
from models.compute import flops_per_pixel_step
from models.families import family

if TYPE_CHECKING:
    from bot.jobs.recipe import Recipe
    from bot.workers.protocol import WorkerClient
    from db.errors import QuotaExhausted
    from db.store import Store
    from models.types import ModelPreset


@dataclass(frozen=True, slots=True)
class Origin:
    """Who asks, and where: everything the policy depends on."""

    user_id: int
    guild_id: int | None = None
    channel_id: int | None = None
    role_ids: tuple[int, ...] = ()
    channel_age_restricted: bool = False
    member_name: str = ""  # their display name as Discord showed it (the gallery's "made by")
    # The owner's own console (the command line): no quota, no Discord channel to protect.
    console: bool = False

    @property
    def is_dm(self) -> bool:
        return self.guild_id is None and not self.console

    @property
    def quota_guild(self) -> int:
        return self.guild_id if self.guild_id is not None else DM_GUILD_ID


class Admission:
    """The policy checks of one admission, reading the guild's settings from the store."""

    def __init__(self, *, store: Store[Recipe], worker: WorkerClient, clock: Callable[[], float]) -> None:
        self._store = store
        self._worker = worker
        self._clock = clock

    async def nsfw_decision(self, origin: Origin) -> NsfwDecision:
        if origin.console:
            return NsfwDecision(allow_nsfw_prompts=True, classify_images=False)
        if origin.guild_id is None:
            return decide(NsfwMode.BLOCK, channel_age_restricted=False, is_dm=True)
        settings = await self._store.guild_settings(origin.guild_id)
        mode = NsfwMode(settings.nsfw_mode)
        return decide(mode, channel_age_restricted=origin.channel_age_restricted, is_dm=False)

    async def check_prompt(self, prompt: str, origin: Origin, decision: NsfwDecision) -> None:
        """The prompt's words (weight syntax removed, so ``(n:1.2)ude`` is read as ``nude``) against the filter."""
        check_prompt_weights(prompt)
        prompt = plain_words(prompt)
        if content_filter.is_effectively_empty(prompt):
            raise InvalidRequest("The prompt is empty: describe the image you want.")
        terms = await self._store.filter_terms(origin.guild_id) if origin.guild_id is not None else []
        verdict = content_filter.check_prompt(prompt, terms, nsfw_allowed=decision.allow_nsfw_prompts)
        if verdict.blocked:
            if verdict.source == "always":
                message = "Your prompt asks for something that is not allowed anywhere on this bot."
            elif verdict.source == "guild":
                message = "Your prompt contains a term this server's moderators have blocked; rephrase it."
            elif origin.guild_id is None:
                message = "NSFW prompts are not allowed in direct messages."
            elif (await self._store.guild_settings(origin.guild_id)).nsfw_mode == NsfwMode.AGE_RESTRICTED:
                message = "NSFW prompts are not allowed in this channel, only in this server's age-restricted channels."
            else:
                message = "NSFW prompts are not allowed in this channel: this server blocks them everywhere."
            raise PromptRejected(message, rule=verdict.rule)

    async def prompt_chunks(self, recipe: Recipe, preset: ModelPreset) -> int:
        """How many of the text encoder's windows the prompt (or the negative) fills; each takes 75 tokens
        between its start and end markers, and the worker encodes them all (nothing is cut)."""
        window = max(1, preset.max_prompt_tokens - 2)
        longest = 0
        for text in (plain_words(recipe.prompt), plain_words(recipe.negative_prompt)):
            # CLIP's byte-level BPE makes at most one token per byte, so a short text needs no tokenizer.
            if len(text.encode()) <= window:
                continue
            longest = max(longest, await self._worker.count_prompt_tokens(recipe.model, text) - 2)
        return max(1, math.ceil(longest / window))

    def quota_sentence(self, exhausted: QuotaExhausted) -> str:
        left = max(0, exhausted.limit - exhausted.used)
        when = ""
        if exhausted.next_free_at is not None:
            when = f"; credits free up {describe_wait(exhausted.next_free_at - self._clock())}"
        return (
            f"This job costs {exhausted.cost} credits but you have {left} of {exhausted.limit} left "
            f"in the last 24 hours{when}."
        )


def fit_to_family(recipe: Recipe, preset: ModelPreset) -> tuple[Recipe, list[str]]:
    """``recipe`` as its model's family reads a prompt, and a notice for each thing it leaves out.

    Weight syntax on a family without weighting (FLUX.2 klein, Z-Image) is taken out, and a negative
    prompt on one that reads none (FLUX.2 klein) is dropped: the job runs, and the member is told; the
    recipe keeps what was run, so its image's parameters say so too.
    """
    entry = family(preset.family)
    notices: list[str] = []
    if not entry.weighted_prompts and (has_weights(recipe.prompt) or has_weights(recipe.negative_prompt)):
        recipe = replace(recipe, prompt=plain_words(recipe.prompt), negative_prompt=plain_words(recipe.negative_prompt))
        notices.append(f"Prompt weights were ignored: {entry.label} models do not read them.")
    if not entry.negative_prompt and recipe.negative_prompt:
        recipe = replace(recipe, negative_prompt="")
        notices.append(f"The negative prompt was ignored: {entry.label} models do not use one.")
    return recipe, notices


def cost_of(recipe: Recipe, preset: ModelPreset, *, reference: ModelPreset, input_pixels: int = 0) -> int:
    """Credits for ``recipe`` on ``preset``'s model, one credit being a default image of ``reference`` (SD_MODEL's
    preset): a member pays for the GPU work, whichever model does it (``bot.policy.pricing``); ``input_pixels``:
    those of the images it reads (an edit's picture, its references)."""
    return job_cost(
        images=recipe.count,
        width=recipe.width,
        height=recipe.height,
        steps=recipe.steps,
        flops_per_pixel_step=flops_per_pixel_step(preset.family),
        reference_width=reference.width,
        reference_height=reference.height,
        reference_steps=reference.steps,
        reference_flops_per_pixel_step=flops_per_pixel_step(reference.family),
        input_pixels=input_pixels,
    )


def describe_wait(seconds: float) -> str:
    """'in 3 h 12 min' — a wait as people say it."""
    minutes = max(1, math.ceil(seconds / 60))
    if minutes < 60:
        return f"in {minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"in {hours} h {minutes} min" if minutes else f"in {hours} h"
