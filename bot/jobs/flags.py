"""Midjourney-style flags typed in the prompt (``--ar 16:9 --seed 42 --no text``).

Which flags there are, and which option each sets, is the option table's (``bot.jobs.options``).
``parse_prompt_flags`` moves them into an ``ImagineOptions``; ``ImagineOptions.checked``
(``bot.jobs.requests``) then checks every value once, whichever way it came.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from bot.errors import InvalidRequest
from bot.jobs.messages import quote_excerpt
from bot.jobs.options import OPTIONS, NumberOption, Option, TextOption

if TYPE_CHECKING:
    from bot.jobs.requests import ImagineOptions


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


def _reader(option: Option) -> Callable[[str, str], str | int | float]:
    """How a flag's text becomes the value of the option it sets."""
    if isinstance(option, NumberOption):
        return _read_int if option.kind is int else _read_float
    if isinstance(option, TextOption):
        return _read_text
    raise TypeError(f"the option {option.name} cannot be set by a flag")


#: Every flag the prompt accepts, from the option table (``bot.jobs.options``). The parser reads this
#: table and the unknown-flag sentence lists its names, so a flag cannot be accepted without being
#: read and checked.
PROMPT_FLAGS: Final[Mapping[str, PromptFlag]] = MappingProxyType(
    {flag: PromptFlag(option.name, _reader(option)) for option in OPTIONS.values() for flag in option.flags}
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
