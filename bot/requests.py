"""What a user asks for, checked and completed with the model's defaults.

Both front ends (the command line and Discord) build an ``ImagineOptions`` from
what the user typed, and ``resolve_imagine`` turns it into a ``GenerationRequest``
or raises ``InvalidRequest`` with a sentence naming the allowed values. Out-of-range
values are rejected, never silently clamped.
"""

from __future__ import annotations

import math
import re
import secrets
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from bot.errors import InvalidRequest
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


_FLAG = re.compile(r"(?:^|\s)--([a-zA-Z]+)")
_FLAG_ALIASES = {"ar": "aspect", "aspect": "aspect", "seed": "seed", "no": "no", "steps": "steps"}
_FLAG_ALIASES |= {"guidance": "guidance", "cfg": "guidance", "count": "count", "model": "model"}


def parse_prompt_flags(options: ImagineOptions) -> ImagineOptions:
    """Move Midjourney-style flags typed in the prompt (``--ar 16:9 --seed 42 --no text``) into options.

    Options given explicitly win over flags in the prompt; ``--no`` adds to the
    negative prompt.
    """
    match = _FLAG.search(options.prompt)
    if match is None:
        return options
    prompt = options.prompt[: match.start()].strip()
    try:
        words = shlex.split(options.prompt[match.start() :])
    except ValueError:
        words = options.prompt[match.start() :].split()
    flags: dict[str, list[str]] = {}
    current: list[str] | None = None
    for word in words:
        if word.startswith("--") and len(word) > 2:
            name = _FLAG_ALIASES.get(word[2:].lower())
            if name is None:
                allowed = ", ".join(f"--{flag}" for flag in ("ar", "seed", "no", "steps", "guidance", "count"))
                raise InvalidRequest(f"Unknown flag {word}: the prompt accepts {allowed}.")
            current = flags.setdefault(name, [])
        elif current is not None:
            current.append(word)
        else:
            prompt = f"{prompt} {word}".strip()

    def value(name: str) -> str | None:
        if name not in flags:
            return None
        if not flags[name]:
            raise InvalidRequest(f"The flag --{name} needs a value, for example --ar 16:9 or --seed 42.")
        return " ".join(flags[name])

    negative = options.negative
    if (no := value("no")) is not None:
        negative = ", ".join(part for part in (negative, no) if part)
    return replace(
        options,
        prompt=prompt,
        negative=negative,
        aspect=options.aspect or value("aspect"),
        seed=options.seed if options.seed is not None else _parse_int("seed", value("seed")),
        steps=options.steps if options.steps is not None else _parse_int("steps", value("steps")),
        guidance=options.guidance if options.guidance is not None else _parse_float("guidance", value("guidance")),
        count=options.count if options.count is not None else _parse_int("count", value("count")),
        model=options.model or value("model"),
    )


def _parse_int(name: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"--{name} takes a whole number, not {raw!r}.") from None


def _parse_float(name: str, raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise InvalidRequest(f"--{name} takes a number, not {raw!r}.") from None


def size_for_aspect(preset: ModelPreset, aspect: str) -> tuple[int, int]:
    """Width and height with about the model's native pixel count, rounded to the latent grid."""
    if aspect not in ASPECT_RATIOS:
        raise InvalidRequest(f"Unknown aspect ratio {aspect!r}: choose one of {', '.join(ASPECT_RATIOS)}.")
    ratio_w, ratio_h = ASPECT_RATIOS[aspect]
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
    return str(value) if isinstance(value, int) else f"{value:g}"


def resolve_imagine(options: ImagineOptions, preset: ModelPreset, *, max_prompt_chars: int) -> GenerationRequest:
    """Check every option and fill in the model's defaults."""
    options = parse_prompt_flags(options)
    prompt = check_prompt_text(options.prompt, max_chars=max_prompt_chars)
    negative = " ".join((options.negative or "").split())
    if len(negative) > max_prompt_chars:
        raise InvalidRequest(
            f"The negative prompt is {len(negative)} characters long; the limit is {max_prompt_chars}."
        )
    width, height = size_for_aspect(preset, options.aspect or "1:1")
    steps = options.steps if options.steps is not None else preset.steps
    check_range("Steps", steps, MIN_STEPS, MAX_STEPS)
    guidance = options.guidance if options.guidance is not None else preset.guidance
    check_range("Guidance", guidance, MIN_GUIDANCE, MAX_GUIDANCE)
    count = options.count if options.count is not None else MAX_COUNT
    check_range("Count", count, MIN_COUNT, MAX_COUNT)
    if options.seed is not None:
        check_range("Seed", options.seed, 0, MAX_SEED)
        seeds = consecutive_seeds(options.seed, count)
    else:
        seeds = random_seeds(count)
    return GenerationRequest(
        kind=JobKind.IMAGINE,
        prompt=prompt,
        negative_prompt=negative,
        model=preset.model,
        width=width,
        height=height,
        steps=steps,
        guidance=guidance,
        seeds=seeds,
        scheduler=preset.scheduler,
    )
