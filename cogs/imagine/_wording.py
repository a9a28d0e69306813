"""How a job's messages read: its headline, the progress bar, the summary under a result."""

from __future__ import annotations

import discord

from bot.images.edits import describe
from bot.images.metadata import sampler_name
from bot.jobs.outcomes import JobResult
from bot.jobs.recipe import JobKind, Recipe, lora_uses
from bot.jobs.references import describe_references
from bot.jobs.requests import DRAFT_SCHEDULER


def headline(recipe: Recipe, user_id: int) -> str:
    if recipe.kind == JobKind.DESCRIBE:
        return f"**Describe** — <@{user_id}>"
    parent_image = recipe.parent_image
    image = (parent_image or 0) + 1
    edit = f" ({describe(recipe.mask)} of image {image})" if recipe.mask else ""
    what = {
        JobKind.UPSCALE: f" (image {image} upscaled)",
        JobKind.VARIATION: f" (variations of image {image})",
        JobKind.REROLL: " (re-roll)",
        JobKind.IMAGE: " (from a picture)",
        JobKind.EDIT: f" (edit of image {image})" if parent_image is not None else " (edit of a picture)",
    }.get(JobKind(recipe.kind), edit)
    if recipe.reference_images:
        what += f" (references: {describe_references(recipe)})"
    prompt = recipe.prompt
    shown = prompt if len(prompt) <= 300 else prompt[:297] + "…"
    # A prompt is shown, never obeyed: no formatting, and no pings of whoever it names.
    shown = discord.utils.escape_mentions(discord.utils.escape_markdown(shown))
    return f"**{shown}**{what} — <@{user_id}>"


def queued(position: int, waiting: str | None) -> str:
    """A queued job's status line, and why it waits (no GPU worker online) while that is so."""
    line = f"Queued: position {position}"
    return f"{line}\n{waiting}" if waiting else line


def progress_bar(step: int, total: int, width: int = 10) -> str:
    filled = round(width * step / max(total, 1))
    return "▰" * filled + "▱" * (width - filled)


def summary(result: JobResult) -> str:
    r = result.recipe
    seeds = ", ".join(str(seed) for seed in r.seeds)
    steps = f"{r.steps} steps"
    if r.scheduler == DRAFT_SCHEDULER:  # drawn in a channel in draft mode
        steps += f" (draft, {sampler_name(r.scheduler)})"
    line = f"Seeds: {seeds} · {r.width}x{r.height} · {steps} · guidance {r.guidance:g} · {r.model}"
    loras = lora_uses(r)
    if loras:
        line += " · LoRA: " + ", ".join(f"{use.name} {use.weight:g}" for use in loras)
    return line
