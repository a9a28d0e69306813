"""Permutation prompts: ``{red, green, blue} bird`` is three prompts, one job each; groups nest and multiply.

``{a, b} {c, d}`` is four prompts, ``{a {x, y}, b} cat`` is three (``a x cat``, ``a y cat``, ``b cat``).
The count is known before anything is expanded, so a prompt of a million permutations is refused
without building them. ``\\{`` and ``\\}`` are literal braces; a brace that does not balance is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bot.errors import InvalidRequest

#: Jobs one /imagine may make unless the server's moderators allow more, and the most they may allow.
DEFAULT_LIMIT, MAX_LIMIT = 4, 12


@dataclass(frozen=True, slots=True)
class _Text:
    text: str


@dataclass(frozen=True, slots=True)
class _Choice:
    options: tuple[tuple[_Text | _Choice, ...], ...]


_Part = _Text | _Choice


def count(prompt: str) -> int:
    """How many prompts ``prompt`` expands to."""
    return _count(_parse(prompt))


def expand(prompt: str, limit: int) -> list[str]:
    """Every prompt ``prompt`` stands for, in order; refused in a sentence above ``limit``."""
    parts = _parse(prompt)
    total = _count(parts)
    if total > limit:
        raise InvalidRequest(f"That prompt makes {total} jobs; this server allows at most {limit} at once.")
    return [" ".join(text.split()) for text in _expand(parts)]


def _count(parts: tuple[_Part, ...]) -> int:
    return math.prod(
        sum(_count(option) for option in part.options) if isinstance(part, _Choice) else 1 for part in parts
    )


def _expand(parts: tuple[_Part, ...]) -> list[str]:
    results = [""]
    for part in parts:
        if isinstance(part, _Text):
            results = [result + part.text for result in results]
        else:
            endings = [text for option in part.options for text in _expand(option)]
            results = [result + ending for result in results for ending in endings]
    return results


def _parse(prompt: str) -> tuple[_Part, ...]:
    parts, end = _sequence(prompt, 0, top=True)
    if end != len(prompt):
        raise InvalidRequest("The prompt's braces do not balance: a } has no { before it.")
    return parts


def _sequence(prompt: str, index: int, *, top: bool) -> tuple[tuple[_Part, ...], int]:
    """Text and groups up to the end, or (inside a group) up to its next top-level ``,`` or ``}``."""
    parts: list[_Part] = []
    text: list[str] = []
    while index < len(prompt):
        char = prompt[index]
        if char == "\\" and index + 1 < len(prompt) and prompt[index + 1] in "{}":
            text.append(prompt[index + 1])
            index += 2
            continue
        if char == "{":
            if text:
                parts.append(_Text("".join(text)))
                text = []
            group, index = _group(prompt, index + 1)
            parts.append(group)
            continue
        if char == "}" or (char == "," and not top):
            break
        text.append(char)
        index += 1
    if text:
        parts.append(_Text("".join(text)))
    return tuple(parts), index


def _trimmed(option: tuple[_Part, ...]) -> tuple[_Part, ...]:
    """An option without the spaces around it (after ``{`` and commas, before ``}``), keeping those inside."""
    parts = list(option)
    if parts and isinstance(parts[0], _Text):
        parts[0] = _Text(parts[0].text.lstrip())
    if parts and isinstance(parts[-1], _Text):
        parts[-1] = _Text(parts[-1].text.rstrip())
    return tuple(parts)


def _group(prompt: str, index: int) -> tuple[_Choice, int]:
    options: list[tuple[_Part, ...]] = []
    while True:
        option, index = _sequence(prompt, index, top=False)
        options.append(_trimmed(option))
        if index >= len(prompt):
            raise InvalidRequest("The prompt's braces do not balance: a { is never closed.")
        if prompt[index] == "}":
            return _Choice(tuple(options)), index + 1
        index += 1  # past the comma
