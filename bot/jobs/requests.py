"""What a user asks for, checked and completed with the model's defaults.

Both front ends (the command line and Discord) build an ``ImagineOptions`` from
what the user typed. ``ImagineOptions.checked`` is the one way in: it moves the
flags typed in the prompt (``--ar 16:9 --seed 42``) into the options first, then
checks every option once, whichever way it came, and raises ``InvalidRequest``
with a sentence naming the allowed values; the ranges, defaults and choices are the
option table's (``bot.jobs.options``). ``resolve_imagine`` then fills in the
chosen model's defaults. Out-of-range values are rejected, never silently clamped,
and a sentence repeats at most a short, escaped excerpt of what the user typed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bot.errors import InvalidRequest
from bot.images.edits import describe, edit_size
from bot.jobs.flags import parse_prompt_flags
from bot.jobs.messages import CHOICE_TEXT_LIMIT, excerpt, quote_excerpt
from bot.jobs.options import ASPECT, COUNT, GUIDANCE, OPTIONS, REPEAT, STEPS, STRENGTH, NumberOption
from bot.jobs.options import check_range as check_range  # the service's name for it
from bot.jobs.recipe import JobKind, Recipe, consecutive_seeds, img2img_steps, random_seeds
from models.families import DRAFT_SCHEDULER as DRAFT_SCHEDULER  # the cogs' name for it
from models.sizes import ASPECT_RATIOS, size_for_aspect, size_multiple
from models.types import ModelPreset

# The options' ranges, as the option table (bot.jobs.options) declares them.
MIN_STEPS, MAX_STEPS = STEPS.low, STEPS.high
MIN_GUIDANCE, MAX_GUIDANCE = GUIDANCE.low, GUIDANCE.high
MIN_COUNT, MAX_COUNT = COUNT.low, COUNT.high
#: ``--repeat N``: the same prompt as N jobs.
MIN_REPEAT, MAX_REPEAT = REPEAT.low, REPEAT.high
#: How much of a member's picture /imagine redraws (its ``strength``), and the default.
MIN_STRENGTH, MAX_STRENGTH, DEFAULT_STRENGTH = STRENGTH.low, STRENGTH.high, STRENGTH.default
MAX_SIDE = 2048
# An "unknown model" sentence names at most this many of the allowed models.
MAX_MODELS_NAMED = 10
# Draft mode: this share of the model's default steps, never fewer than the minimum.
DRAFT_STEP_SHARE = 0.4
MIN_DRAFT_STEPS = 4


@dataclass(frozen=True, slots=True)
class ImagineOptions:
    """Raw options as typed by a user; ``None`` means "not given"."""

    prompt: str
    negative: str | None = None
    aspect: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    model: str | None = None
    count: int | None = None
    strength: float | None = None  # with a picture: how much of it is redrawn
    edit: str | None = None  # with a picture: an edit of it instead (bot.images.edits; the command line's)
    lora: str | None = None  # a LoRA of the guild by name (also written <lora:name:0.8> in the prompt)
    style: str | None = None  # a style of the guild by name (also --style name)
    repeat: int | None = None  # --repeat N: the same prompt as N jobs (bot.jobs.permutations)
    mood: str | None = None  # a moodboard of the guild by name (also --mood name): its pictures guide the images
    ref: str | None = None  # --ref 12:1: images of jobs posted here that guide the images (bot.jobs.references)

    def checked(self, *, models: Sequence[str], max_prompt_chars: int) -> CheckedOptions:
        """Flags typed in the prompt first, then every option checked once.

        Flags and options land in the same fields before anything is checked, so a
        value cannot skip a check by arriving as a flag (``--model`` once did).
        ``models`` are the models users may choose, the default first.
        """
        # 1. Flags typed in the prompt become options; options given explicitly win.
        options = parse_prompt_flags(self)
        # 2. Every option, whichever way it came, checked once.
        model = check_model(options.model, models)
        prompt = check_prompt_text(options.prompt, max_chars=max_prompt_chars)
        negative = " ".join((options.negative or "").split())
        if len(negative) > max_prompt_chars:
            raise InvalidRequest(
                f"The negative prompt is {len(negative)} characters long; the limit is {max_prompt_chars}."
            )
        aspect = check_aspect(options.aspect or ASPECT.default)
        for option in OPTIONS.values():  # each number in its range (bot.jobs.options)
            if isinstance(option, NumberOption) and (value := getattr(options, option.name)) is not None:
                option.check(value)
        count = options.count if options.count is not None else COUNT.default
        return CheckedOptions(
            prompt=prompt,
            negative=negative,
            model=model,
            aspect=aspect,
            count=count,
            seed=options.seed,
            steps=options.steps,
            guidance=options.guidance,
            strength=options.strength,
            edit=options.edit,
            style=options.style,
            mood=options.mood,
            ref=options.ref,
        )


@dataclass(frozen=True, slots=True)
class CheckedOptions:
    """An ``/imagine`` after ``ImagineOptions.checked``: no flags left in the prompt, every value valid.

    ``steps`` and ``guidance`` left ``None`` come from the model's preset.
    """

    prompt: str
    negative: str
    model: str
    aspect: str
    count: int
    seed: int | None
    steps: int | None
    guidance: float | None
    strength: float | None = None
    edit: str | None = None
    style: str | None = None
    mood: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Picture:
    """A member's picture for /imagine, stored already fitted to the job's size (``picture_size``): where, and that size."""

    path: str
    width: int
    height: int


# ---------------------------------------------------------------------- checks


def check_model(requested: str | None, models: Sequence[str]) -> str:
    """The model asked for, or the default (the first of ``models``) when none is; only one of ``models``."""
    if not requested:
        return models[0]
    if requested not in models:
        named = ", ".join(excerpt(model, CHOICE_TEXT_LIMIT) for model in models[:MAX_MODELS_NAMED])
        if len(models) > MAX_MODELS_NAMED:
            named += f" and {len(models) - MAX_MODELS_NAMED} more"
        raise InvalidRequest(f"Unknown model {quote_excerpt(requested)}: choose one of {named}.")
    return requested


def check_aspect(aspect: str) -> str:
    if aspect not in ASPECT.choices:
        raise InvalidRequest(
            f"Unknown aspect ratio {quote_excerpt(aspect)}: choose one of {', '.join(ASPECT.choices)}."
        )
    return aspect


def picture_size(preset: ModelPreset, width: int, height: int) -> tuple[int, int]:
    """The size a picture of ``width``x``height`` is fitted to: the model's size at the nearest aspect preset."""
    return size_for_aspect(preset, nearest_aspect(width, height))


def nearest_aspect(width: int, height: int) -> str:
    """The aspect ratio preset closest to ``width``:``height`` (compared as logarithms, so 2:1 and 1:2 are alike)."""
    shape = math.log(width / height)
    return min(ASPECT_RATIOS, key=lambda name: abs(math.log(ASPECT_RATIOS[name][0] / ASPECT_RATIOS[name][1]) - shape))


def styled(prompt: str, negative: str, style_prompt: str, style_negative: str) -> tuple[str, str]:
    """A member's prompt inside a style: at its ``{prompt}``, or first when the style has none."""
    if "{prompt}" in style_prompt:
        combined = style_prompt.replace("{prompt}", prompt)
    else:
        combined = f"{prompt}, {style_prompt}"
    return " ".join(combined.split()), ", ".join(part for part in (negative, style_negative) if part)


def check_prompt_text(prompt: str, *, max_chars: int, what: str = "prompt") -> str:
    """The prompt with its whitespace collapsed, at most ``max_chars`` long.

    The content filter reads this text; its normalised form is at most
    ``content_filter.MAX_NORMALISED_GROWTH`` times as long.
    """
    text = " ".join(prompt.split())
    if not text:
        raise InvalidRequest(f"The {what} is empty: describe the image you want.")
    if len(text) > max_chars:
        raise InvalidRequest(f"The {what} is {len(text)} characters long; the limit is {max_chars}.")
    return text


def draft_steps(preset: ModelPreset) -> int:
    """The steps of a draft (a channel in draft mode): DPM++ 2M needs about 40% of Euler a's, 10 of SD's 25."""
    return max(MIN_DRAFT_STEPS, round(preset.steps * DRAFT_STEP_SHARE))


def at_defaults(
    kind: JobKind,
    prompt: str,
    preset: ModelPreset,
    size: tuple[int, int],
    seeds: tuple[int, ...],
    *,
    steps: int | None = None,
) -> Recipe:
    """A recipe of ``kind`` at ``preset``'s defaults (its model, steps, guidance and scheduler), no negative prompt:
    what an /edit, the Edit button and an upscale of a picture start from."""
    return Recipe(
        kind=kind,
        prompt=prompt,
        negative_prompt="",
        model=preset.model,
        width=size[0],
        height=size[1],
        steps=steps if steps is not None else preset.steps,
        guidance=preset.guidance,
        seeds=seeds,
        scheduler=preset.scheduler,
    )


def resolve_imagine(
    options: CheckedOptions, preset: ModelPreset, picture: Picture | None = None, *, draft: bool = False
) -> Recipe:
    """Fill in the defaults of the model ``options`` chose; ``preset`` must be that model's.

    With a ``picture``, the job redraws it (img2img), or edits it when ``options.edit`` says how.
    A ``draft`` (a channel in draft mode) is drawn with DPM++ 2M, in ``draft_steps`` unless the
    options chose the steps.
    """
    if preset.model != options.model:
        raise ValueError(f"the options chose {options.model!r} but the preset is {preset.model!r}'s")
    if picture is None and options.strength is not None:
        raise InvalidRequest("Strength says how much of a picture to redraw: attach an image with it.")
    if picture is None and options.edit is not None:
        raise InvalidRequest(f"{describe(options.edit)} edits a picture: give one to start from.")
    width, height = (picture.width, picture.height) if picture is not None else size_for_aspect(preset, options.aspect)
    seeds = consecutive_seeds(options.seed, options.count) if options.seed is not None else random_seeds(options.count)
    drawn = Recipe(
        kind=JobKind.IMAGINE,
        prompt=options.prompt,
        negative_prompt=options.negative,
        model=preset.model,
        width=width,
        height=height,
        steps=options.steps if options.steps is not None else draft_steps(preset) if draft else preset.steps,
        guidance=options.guidance if options.guidance is not None else preset.guidance,
        seeds=seeds,
        scheduler=preset.draft_scheduler if draft else preset.scheduler,
    )
    if picture is None:
        return drawn
    if options.edit is not None:
        kind = JobKind(options.edit.partition(":")[0])
        size = edit_size(options.edit, width, height, size_multiple(preset))
        edited = drawn.as_edit(None, None, kind, options.edit, size)
        return replace(edited, seeds=seeds, source=picture.path)
    strength = options.strength if options.strength is not None else DEFAULT_STRENGTH
    return replace(
        drawn,
        kind=JobKind.IMAGE,
        steps=img2img_steps(drawn.steps, strength),
        strength=strength,
        source=picture.path,
    )
