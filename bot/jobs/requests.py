"""What a user asks for, checked and completed with the model's defaults.

Both front ends (the command line and Discord) build an ``ImagineOptions`` from
what the user typed. ``ImagineOptions.checked`` is the one way in: it moves the
flags typed in the prompt (``--ar 16:9 --seed 42``) into the options first, then
checks every option once, whichever way it came, and raises ``InvalidRequest``
with a sentence naming the allowed values. ``resolve_imagine`` then fills in the
chosen model's defaults. Out-of-range values are rejected, never silently clamped,
and a sentence repeats at most a short, escaped excerpt of what the user typed.
"""

from __future__ import annotations

import math
import re
import secrets
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from bot.errors import InvalidRequest
from bot.jobs.messages import CHOICE_TEXT_LIMIT, excerpt, quote_excerpt
from db.records import JobKind  # one list of job kinds, stored as they are named here
from models.types import ModelPreset

ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1, 1),
    "3:2": (3, 2),
    "2:3": (2, 3),
    "16:9": (16, 9),
    "9:16": (9, 16),
}
MIN_STEPS, MAX_STEPS = 1, 100
MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 30.0
MIN_COUNT, MAX_COUNT = 1, 4
MAX_SEED = 2**32 - 1
SIZE_MULTIPLE = 8  # latent space is 1/8 of the image in every Stable Diffusion VAE
MAX_SIDE = 2048
# An "unknown model" sentence names at most this many of the allowed models.
MAX_MODELS_NAMED = 10


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
        aspect = check_aspect(options.aspect or "1:1")
        if options.steps is not None:
            check_range("Steps", options.steps, MIN_STEPS, MAX_STEPS)
        if options.guidance is not None:
            check_range("Guidance", options.guidance, MIN_GUIDANCE, MAX_GUIDANCE)
        count = options.count if options.count is not None else MAX_COUNT
        check_range("Count", count, MIN_COUNT, MAX_COUNT)
        if options.seed is not None:
            check_range("Seed", options.seed, 0, MAX_SEED)
        return CheckedOptions(
            prompt=prompt,
            negative=negative,
            model=model,
            aspect=aspect,
            count=count,
            seed=options.seed,
            steps=options.steps,
            guidance=options.guidance,
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


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A complete, valid request: what will run and what it will be charged for."""

    kind: JobKind
    prompt: str
    negative_prompt: str
    model: str
    width: int
    height: int
    steps: int
    guidance: float
    seeds: tuple[int, ...]
    scheduler: str
    strength: float = 0.0  # img2img strength, 0.0 for txt2img
    parent_job_id: int | None = None
    parent_image: int | None = None  # index of the image a variation/upscale starts from
    source_image: Path | None = None

    @property
    def count(self) -> int:
        return len(self.seeds)


# ---------------------------------------------------------------------- flags typed in the prompt


@dataclass(frozen=True, slots=True)
class PromptFlag:
    """A Midjourney-style flag typed in the prompt: the option it sets and how its text is read."""

    option: str  # a field of ImagineOptions
    read: Callable[[str, str], str | int | float]  # (flag name, its text) -> the option's value


def _read_text(flag: str, raw: str) -> str:
    return raw


def _read_int(flag: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:  # also a number of more than 4,300 digits
        raise InvalidRequest(f"--{flag} takes a whole number, not {quote_excerpt(raw)}.") from None


def _read_float(flag: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise InvalidRequest(f"--{flag} takes a number, not {quote_excerpt(raw)}.") from None


#: Every flag the prompt accepts. The parser reads this table and the unknown-flag
#: sentence lists its names, so a flag cannot be accepted without being read and checked.
PROMPT_FLAGS: Final[Mapping[str, PromptFlag]] = MappingProxyType(
    {
        "ar": PromptFlag("aspect", _read_text),
        "aspect": PromptFlag("aspect", _read_text),
        "seed": PromptFlag("seed", _read_int),
        "no": PromptFlag("negative", _read_text),
        "steps": PromptFlag("steps", _read_int),
        "guidance": PromptFlag("guidance", _read_float),
        "cfg": PromptFlag("guidance", _read_float),
        "count": PromptFlag("count", _read_int),
        "model": PromptFlag("model", _read_text),
    }
)

_FLAG = re.compile(r"(?:^|\s)--([a-zA-Z]+)")


def parse_prompt_flags(options: ImagineOptions) -> ImagineOptions:
    """Move Midjourney-style flags typed in the prompt (``--ar 16:9 --seed 42 --no text``) into options.

    Options given explicitly win over flags in the prompt; ``--no`` adds to the
    negative prompt. Values are read (a number must be a number) but not checked
    against their ranges: ``ImagineOptions.checked`` does that once, for both sources.
    """
    match = _FLAG.search(options.prompt)
    if match is None:
        return options
    prompt = options.prompt[: match.start()].strip()
    try:
        words = shlex.split(options.prompt[match.start() :])
    except ValueError:
        words = options.prompt[match.start() :].split()
    texts: dict[str, list[str]] = {}  # option -> the words after its flag(s)
    typed: dict[str, str] = {}  # option -> the flag that first set it, for sentences
    current: list[str] | None = None
    for word in words:
        if word.startswith("--") and len(word) > 2:
            name = word[2:].lower()
            flag = PROMPT_FLAGS.get(name)
            if flag is None:
                accepted = ", ".join(f"--{known}" for known in PROMPT_FLAGS)
                raise InvalidRequest(f"Unknown flag {quote_excerpt(word)}: the prompt accepts {accepted}.")
            current = texts.setdefault(flag.option, [])
            typed.setdefault(flag.option, name)
        elif current is not None:
            current.append(word)
        else:
            prompt = f"{prompt} {word}".strip()

    values: dict[str, Any] = {}  # option name -> value, each read by its flag's own parser
    for option, text in texts.items():
        name = typed[option]
        if not text:
            raise InvalidRequest(f"The flag --{name} needs a value, for example --ar 16:9 or --seed 42.")
        values[option] = PROMPT_FLAGS[name].read(name, " ".join(text))

    negative = options.negative
    if (no := values.pop("negative", None)) is not None:
        negative = ", ".join(part for part in (negative, str(no)) if part)
    from_flags = {option: value for option, value in values.items() if getattr(options, option) in (None, "")}
    return replace(options, prompt=prompt, negative=negative, **from_flags)


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
    if aspect not in ASPECT_RATIOS:
        raise InvalidRequest(f"Unknown aspect ratio {quote_excerpt(aspect)}: choose one of {', '.join(ASPECT_RATIOS)}.")
    return aspect


def size_for_aspect(preset: ModelPreset, aspect: str) -> tuple[int, int]:
    """Width and height with about the model's native pixel count, rounded to the latent grid."""
    ratio_w, ratio_h = ASPECT_RATIOS[check_aspect(aspect)]
    area = preset.width * preset.height
    width = math.sqrt(area * ratio_w / ratio_h)
    height = area / width

    def snap(side: float) -> int:
        return max(SIZE_MULTIPLE, round(side / SIZE_MULTIPLE) * SIZE_MULTIPLE)

    return snap(width), snap(height)


def random_seeds(count: int) -> tuple[int, ...]:
    return tuple(secrets.randbelow(MAX_SEED + 1) for _ in range(count))


def consecutive_seeds(first: int, count: int) -> tuple[int, ...]:
    return tuple((first + offset) % (MAX_SEED + 1) for offset in range(count))


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


def check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {_number(low)} and {_number(high)}, not {_number(value)}.")


def _number(value: float) -> str:
    # A typed number can have thousands of digits: show its start.
    return excerpt(str(value) if isinstance(value, int) else f"{value:g}")


def resolve_imagine(options: CheckedOptions, preset: ModelPreset) -> GenerationRequest:
    """Fill in the defaults of the model ``options`` chose; ``preset`` must be that model's."""
    if preset.model != options.model:
        raise ValueError(f"the options chose {options.model!r} but the preset is {preset.model!r}'s")
    width, height = size_for_aspect(preset, options.aspect)
    seeds = consecutive_seeds(options.seed, options.count) if options.seed is not None else random_seeds(options.count)
    return GenerationRequest(
        kind=JobKind.IMAGINE,
        prompt=options.prompt,
        negative_prompt=options.negative,
        model=preset.model,
        width=width,
        height=height,
        steps=options.steps if options.steps is not None else preset.steps,
        guidance=options.guidance if options.guidance is not None else preset.guidance,
        seeds=seeds,
        scheduler=preset.scheduler,
    )
