"""Every option of an ``/imagine``, declared once; the front ends and the checks are derived from it.

An option is one entry of ``OPTIONS``: its name (the field of ``ImagineOptions``, the /imagine
parameter and the command line's ``dest``), its type, its range or choices, its default, the sentence
that describes it, the flags that set it from the prompt, and where else it is offered. Read from it:

* the range checks of ``ImagineOptions.checked`` and their sentences (``NumberOption.check``);
* the flags the prompt accepts (``bot.jobs.flags.PROMPT_FLAGS``) and how each one's text is read;
* the command line's arguments and their help (``bot.runtime.cli``);
* /imagine's descriptions, choices and bounds (``cogs.imagine``: its signature stays written out, as
  discord.py reads it, and a test holds it to this table both ways);
* the defaults a member may keep in /settings and the values it steps through (``cogs.preferences``).

So a new option is one entry here plus the code that uses its value. What users already know of the
existing ones (names, flags, ranges, sentences) is these entries: change them knowingly. The order of
the entries is the order the unknown-flag sentence lists the flags in and the command line its
arguments; /imagine's order is its signature's.

A help text may name ``{low}``, ``{high}``, ``{default}`` and ``{choices}`` (``str.format``, so a
literal brace is doubled); they are filled in from the entry, so a sentence cannot state an old range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Generic, TypeVar

from bot.errors import InvalidRequest
from bot.images.uploads import MAX_UPLOAD_BYTES
from bot.jobs.messages import STRING_OPTION_LIMIT, excerpt
from bot.jobs.recipe import MAX_SEED
from models.sizes import ASPECT_RATIOS

N = TypeVar("N", int, float)  # a number option's type
D = TypeVar("D")  # its default: a number, or None for "the model's" / "none"

#: The longest name of a guild's LoRA or style /imagine takes.
NAME_LENGTH_LIMIT: Final = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Option:
    """What every option declares; ``NumberOption``, ``TextOption`` and ``PictureOption`` add their type's part."""

    name: str
    #: /imagine's description of it; the command line's too, with its first letter in lower case.
    help: str
    #: The command line's argument ("--ar"; a name without dashes is positional); None: not on the command line.
    cli: str | None = None
    #: The command line's help, where the terminal words it otherwise than ``help``.
    cli_help: str | None = None
    #: Midjourney-style flags that set it from the prompt, without their dashes.
    flags: tuple[str, ...] = ()
    #: An option of /imagine.
    slash: bool = True
    #: Every front end requires it (the prompt).
    required: bool = False
    #: A member may keep a default of it in /settings (a column of ``member_preferences``).
    setting: bool = False

    @property
    def label(self) -> str:
        """How a sentence names it: "Steps must be between 1 and 100, not 0."."""
        return self.name.capitalize()

    @property
    def description(self) -> str:
        """/imagine's description, its placeholders filled in."""
        return self.help.format_map(self._placeholders())

    @property
    def cli_description(self) -> str:
        """The command line's help, its placeholders filled in."""
        text = self.cli_help if self.cli_help is not None else self.help[:1].lower() + self.help[1:]
        return text.format_map(self._placeholders())

    def _placeholders(self) -> dict[str, str]:
        return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberOption(Option, Generic[N, D]):
    """A whole number or a number in a closed range: out of it is refused with a sentence, never clamped."""

    kind: type[N]
    low: N
    high: N
    #: Used when none is given (``None``: the model's, or none at all).
    default: D
    #: What /settings steps through, where it offers a choice of them.
    presets: tuple[N, ...] = ()

    def check(self, value: float) -> None:
        check_range(self.label, value, self.low, self.high)

    def _placeholders(self) -> dict[str, str]:
        default = _number(self.default) if isinstance(self.default, int | float) else ""
        return {"low": _number(self.low), "high": _number(self.high), "default": default}


@dataclass(frozen=True, slots=True, kw_only=True)
class TextOption(Option, Generic[D]):
    """Text; with ``choices``, one of them."""

    #: Used when none is given (``None``: the server's, or none at all).
    default: D
    #: The longest text /imagine takes for it (at least one character); None: Discord's own limit.
    max_length: int | None = None
    choices: tuple[str, ...] = ()

    def _placeholders(self) -> dict[str, str]:
        return {"choices": ", ".join(self.choices), "default": "" if self.default is None else str(self.default)}


@dataclass(frozen=True, slots=True, kw_only=True)
class PictureOption(Option):
    """A picture to start from: a file on the command line, an attachment on Discord.

    It travels beside the options as bytes (``GenerationService.imagine(picture=...)``), so it is no
    field of ``ImagineOptions``. ``many`` pictures of it may be given on the command line (its flag repeated).
    """

    many: int = 1

    def _placeholders(self) -> dict[str, str]:
        return {"many": str(self.many)}


PROMPT: Final = TextOption(
    name="prompt",
    help="What to draw; flags such as --ar 16:9 --seed 42 --no text work here too",
    cli="prompt",
    cli_help='what to draw; Midjourney-style flags such as "--ar 16:9" work inside it, and "{{a, b}}" or '
    '"--repeat N" make several grids',
    # Discord's own cap; the server's PROMPT_MAX_CHARS is checked by the service, with a sentence.
    max_length=STRING_OPTION_LIMIT,
    required=True,
    default=None,
)
ASPECT: Final = TextOption(
    name="aspect",
    help="Aspect ratio (default {default})",
    cli="--ar",
    cli_help="aspect ratio: {choices} (default {default})",
    flags=("ar", "aspect"),
    choices=tuple(ASPECT_RATIOS),
    default="1:1",
    setting=True,
)
SEED: Final = NumberOption(
    name="seed",
    help="Seed of the first image; the others use the next seeds",
    cli="--seed",
    flags=("seed",),
    kind=int,
    low=0,
    high=MAX_SEED,
    default=None,
)
NEGATIVE: Final = TextOption(
    name="negative",
    help="What to keep out of the image",
    cli="--negative",
    flags=("no",),
    max_length=STRING_OPTION_LIMIT,
    setting=True,
    default=None,
)
STEPS: Final = NumberOption(
    name="steps",
    help="Denoising steps (default: the model's)",
    cli="--steps",
    flags=("steps",),
    kind=int,
    low=1,
    high=100,
    default=None,
    setting=True,
    presets=(10, 20, 25, 30, 40, 50),
)
GUIDANCE: Final = NumberOption(
    name="guidance",
    help="How closely to follow the prompt (default: the model's)",
    cli="--guidance",
    cli_help="classifier-free guidance scale (default: the model's)",
    flags=("guidance", "cfg"),
    kind=float,
    low=0.0,
    high=30.0,
    default=None,
    setting=True,
    presets=(3.0, 5.0, 7.0, 9.0, 12.0),
)
COUNT: Final = NumberOption(
    name="count",
    help="How many images (default {default})",
    cli="--count",
    cli_help="how many images, {low}-{high} (default {default})",
    flags=("count",),
    kind=int,
    low=1,
    high=4,
    default=4,
    setting=True,
)
MODEL: Final = TextOption(
    name="model",
    help="Which model to use",
    cli="--model",
    cli_help="hub id, local diffusers folder, .safetensors file or builtin:tiny (default: SD_MODEL)",
    flags=("model",),
    setting=True,
    default=None,
)
IMAGE: Final = PictureOption(
    name="image",
    help=f"A picture to start from (PNG, JPEG or WebP, up to {MAX_UPLOAD_BYTES // 1024 // 1024} MB)",
    cli="--image",
    cli_help="a PNG, JPEG or WebP picture to start from (img2img)",
)
STRENGTH: Final = NumberOption(
    name="strength",
    help="With a picture: how much of it to redraw, {low}-{high} (default {default})",
    cli="--strength",
    cli_help="with --image: how much of it to redraw, {low}-{high} (default {default})",
    flags=("strength",),
    kind=float,
    low=0.05,
    high=1.0,
    default=0.6,
)
LORA: Final = TextOption(
    name="lora",
    help="A LoRA of this server (more: write <lora:name:0.8> in the prompt)",
    max_length=NAME_LENGTH_LIMIT,
    default=None,
)
STYLE: Final = TextOption(
    name="style",
    help="A style of this server, around your prompt (also --style name)",
    flags=("style",),
    max_length=NAME_LENGTH_LIMIT,
    setting=True,
    default=None,
)
REFERENCE: Final = PictureOption(
    name="reference",
    help="A picture to guide the images (keep this character, this style); needs FLUX.2 klein",
    cli="--reference",
    cli_help="a picture to guide the images (keep this character, this style); up to {many} (--reference each); "
    "runs on an edit-capable model (SD_EDIT_MODEL)",
    many=3,
)
REFERENCE2: Final = PictureOption(name="reference2", help="A second picture to guide the images")
REFERENCE3: Final = PictureOption(name="reference3", help="A third picture to guide the images")
MOOD: Final = TextOption(
    name="mood",
    help="A moodboard of this server: its pictures guide the images (also --mood name)",
    flags=("mood",),
    max_length=NAME_LENGTH_LIMIT,
    default=None,
)
REF: Final = TextOption(
    name="ref",
    help="Images already posted on this server that guide the new ones: --ref 12:1 (job 12, image 1)",
    flags=("ref",),
    slash=False,
    default=None,
)
REPEAT: Final = NumberOption(
    name="repeat",
    help="The same prompt as this many jobs",  # a flag only (bot.jobs.permutations)
    flags=("repeat",),
    slash=False,
    kind=int,
    low=2,
    high=4,
    default=None,
)

#: Every option by name, in the order described above.
OPTIONS: Final[Mapping[str, Option]] = MappingProxyType(
    {
        option.name: option
        for option in (
            PROMPT,
            ASPECT,
            SEED,
            NEGATIVE,
            STEPS,
            GUIDANCE,
            COUNT,
            MODEL,
            IMAGE,
            STRENGTH,
            LORA,
            STYLE,
            REFERENCE,
            REFERENCE2,
            REFERENCE3,
            MOOD,
            REF,
            REPEAT,
        )
    }
)


def check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {_number(low)} and {_number(high)}, not {_number(value)}.")


def _number(value: float) -> str:
    # A typed number can have thousands of digits: show its start.
    return excerpt(str(value) if isinstance(value, int) else f"{value:g}")
