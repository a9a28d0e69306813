"""Prompt weights as people type them, turned into compel's syntax; and the plain words the filter reads.

Accepted (AUTOMATIC1111's and Midjourney's conventions):

- ``(word:1.3)``: that weight; ``(word)``: 1.1; ``[word]``: 1/1.1; nesting multiplies
  (``((word))`` is 1.21); ``\\(`` and ``\\)`` are literal brackets;
- ``a::2 b::1``: Midjourney's multi-prompt, each part with its weight (1 when none is written).

``compel_prompt`` writes the same thing in compel's syntax (``(word)1.3``, and
``("a", "b").and(2, 1)`` for a multi-prompt), which the worker encodes; a weight of exactly 1
writes the words plainly, so ``(word:1.0)`` makes exactly the image ``word`` makes.
``plain_words`` drops the syntax and keeps the words, so ``(n:1.2)ude`` reads as ``nude`` to the
content filter. A weight outside 0-3 or an unbalanced bracket is refused in one sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from bot.errors import InvalidRequest

MIN_WEIGHT, MAX_WEIGHT = 0.0, 3.0
PAREN_WEIGHT: Final = 1.1
_MULTI: Final = re.compile(r"::\s*(-?[0-9]*\.?[0-9]+)?")
_SYNTAX: Final = re.compile(r"[()\[\]]|::")


@dataclass(frozen=True, slots=True)
class _Span:
    text: str
    weight: float


def has_weights(prompt: str) -> bool:
    """Whether ``prompt`` uses weight syntax (then the worker encodes it with compel)."""
    return bool(_SYNTAX.search(prompt.replace("\\(", "").replace("\\)", "")))


def plain_words(prompt: str) -> str:
    """The prompt's words without weight syntax: what the content filter reads."""
    text = _MULTI.sub(" ", prompt)
    text = re.sub(r"(?<!\\):\s*-?[0-9]*\.?[0-9]+\s*\)", ")", text)  # the ":1.3" of "(word:1.3)"
    text = re.sub(r"(?<!\\)[()\[\]]", "", text).replace("\\(", "(").replace("\\)", ")")
    return " ".join(text.split())


def compel_prompt(prompt: str) -> str:
    """``prompt`` in compel's syntax; ``InvalidRequest`` for unbalanced brackets or a weight outside 0-3."""
    parts = _multi_parts(prompt)
    if len(parts) == 1 and parts[0][1] == 1.0:
        return _weighted(parts[0][0])
    texts = ", ".join(_quoted(_weighted(text)) for text, _ in parts)
    weights = ", ".join(f"{weight:g}" for _, weight in parts)
    return f"({texts}).and({weights})"


def check_prompt_weights(prompt: str) -> None:
    compel_prompt(prompt)


def _multi_parts(prompt: str) -> list[tuple[str, float]]:
    """Midjourney's ``a::2 b::1``: each part and its weight (a part with no ``::`` after it weighs 1)."""
    if "::" not in prompt:
        return [(prompt, 1.0)]
    parts: list[tuple[str, float]] = []
    start = 0
    for match in _MULTI.finditer(prompt):
        weight = float(match.group(1)) if match.group(1) else 1.0
        _check_weight(weight)
        text = prompt[start : match.start()].strip()
        if text:
            parts.append((text, weight))
        start = match.end()
    rest = prompt[start:].strip()
    if rest:
        parts.append((rest, 1.0))
    if not parts:
        raise InvalidRequest("The prompt has weights but no words: write them before each ::.")
    return parts


def _check_weight(weight: float) -> None:
    if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
        raise InvalidRequest(f"A prompt weight must be between 0 and 3, not {weight:g}.")


def _spans(prompt: str) -> list[_Span]:
    """The prompt as runs of text with their weights, A1111's brackets applied and checked."""
    spans: list[_Span] = []
    stack: list[tuple[str, int]] = []  # the open brackets and where their text starts in ``buffer``
    buffer: list[tuple[str, list[float]]] = []  # each character with the weights of the groups around it
    index = 0
    while index < len(prompt):
        char = prompt[index]
        if char == "\\" and index + 1 < len(prompt) and prompt[index + 1] in "()[]":
            buffer.append((prompt[index + 1], []))
            index += 2
            continue
        if char in "([":
            stack.append((char, len(buffer)))
        elif char == ")":
            if not stack or stack[-1][0] != "(":
                raise InvalidRequest("The prompt's brackets do not balance: every ( needs a ) after it.")
            _, begin = stack.pop()
            inner = "".join(c for c, _ in buffer[begin:])
            weight = PAREN_WEIGHT
            explicit = re.search(r":\s*(-?[0-9]*\.?[0-9]+)\s*$", inner)
            if explicit:
                weight = float(explicit.group(1))
                _check_weight(weight)
                del buffer[begin + explicit.start() :]
            for position in range(begin, len(buffer)):
                buffer[position][1].append(weight)
        elif char == "]":
            if not stack or stack[-1][0] != "[":
                raise InvalidRequest("The prompt's brackets do not balance: every [ needs a ] after it.")
            _, begin = stack.pop()
            for position in range(begin, len(buffer)):
                buffer[position][1].append(1 / PAREN_WEIGHT)
        else:
            buffer.append((char, []))
        index += 1
    if stack:
        raise InvalidRequest(f"The prompt's brackets do not balance: a {stack[-1][0]} is never closed.")
    for char, weights in buffer:
        weight = 1.0
        for factor in weights:
            weight *= factor
        weight = round(weight, 4)
        if spans and spans[-1].weight == weight:
            spans[-1] = _Span(spans[-1].text + char, weight)
        else:
            spans.append(_Span(char, weight))
    return spans


def _weighted(prompt: str) -> str:
    out = []
    for span in _spans(prompt):
        text = _escaped(span.text)
        if span.weight == 1.0 or not text.strip():
            out.append(text)
        else:
            out.append(f"({text.strip()}){span.weight:g} ")
    return " ".join("".join(out).split())


def _escaped(text: str) -> str:
    return text.replace("\\", "").replace("(", "\\(").replace(")", "\\)")


def _quoted(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'
