"""Text the bot sends, fitted to Discord's limits, and what users typed quoted safely inside it.

Discord refuses a message over its limits with a 400, and the member then sees
"The application did not respond": an over-long answer is no answer at all. So
every send goes through one of the ``fit_*`` functions here, the one place that
knows the limits; they cut with an ellipsis and never raise.

Sentences that repeat what a user typed quote it with ``quote_excerpt``: a short
excerpt in which control and bidirectional characters are shown as escapes and
Discord markdown is escaped, so a typed value can neither overflow a reply nor
reorder, hide, format or ping the text around it.

Nothing here imports discord: ``bot/jobs/requests.py`` quotes user values with these
functions, and embeds are handled in their payload form (``discord.Embed.to_dict()``
in, ``discord.Embed.from_dict(...)`` back), so the cogs keep the Discord types.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeVar

# ---------------------------------------------------------------------- Discord's limits

#: Characters in a message's ``content``.
CONTENT_LIMIT: Final = 2000
#: Embeds in one message.
EMBEDS_PER_MESSAGE: Final = 10
EMBED_TITLE_LIMIT: Final = 256
EMBED_DESCRIPTION_LIMIT: Final = 4096
EMBED_FIELDS_LIMIT: Final = 25
EMBED_FIELD_NAME_LIMIT: Final = 256
EMBED_FIELD_VALUE_LIMIT: Final = 1024
EMBED_FOOTER_LIMIT: Final = 2048
EMBED_AUTHOR_LIMIT: Final = 256
#: Title, description, field names and values, footer and author of *all* of a message's embeds together.
EMBED_TOTAL_LIMIT: Final = 6000
#: The longest text a slash command's string option can carry; the prompt limit can be set up to it.
STRING_OPTION_LIMIT: Final = 6000
#: Options in one select menu.
SELECT_OPTIONS_LIMIT: Final = 25
#: Characters in a select option's label, value or description.
SELECT_OPTION_TEXT_LIMIT: Final = 100
#: Choices in one autocomplete answer, and characters in a choice's name or value.
AUTOCOMPLETE_CHOICES_LIMIT: Final = 25
CHOICE_TEXT_LIMIT: Final = 100

#: How much of a user's value a sentence repeats, in characters between the quotes.
EXCERPT_LIMIT: Final = 40
ELLIPSIS: Final = "…"

T = TypeVar("T")

# ---------------------------------------------------------------------- quoting what users typed

# Characters that start Discord formatting in the middle of a line: bold/italic, underline,
# strikethrough, code, spoilers, mentions/timestamps/custom emoji (<...>), masked links ([..](..)),
# and the backslash that escapes them all.
_MARKDOWN: Final = frozenset("\\*_~`|<>[]")
# Controls, format characters (zero-width and bidirectional controls such as U+202E), surrogates,
# private-use and unassigned code points, line and paragraph separators: shown as escapes.
_HIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def excerpt(value: object, limit: int = EXCERPT_LIMIT) -> str:
    """At most ``limit`` characters of ``value`` as it can be shown, then ``…`` if cut.

    Markdown characters get a backslash, and invisible or bidirectional characters
    are written as ``\\x01`` or ``\\u202e`` (as ``repr`` would); an escape is never
    cut in half, so the result is at most ``limit + 1`` characters long.
    """
    text = value if isinstance(value, str) else str(value)
    shown: list[str] = []
    used = 0
    for char in text:
        piece = _shown(char)
        if used + len(piece) > limit:
            return "".join(shown).rstrip() + ELLIPSIS
        shown.append(piece)
        used += len(piece)
    return "".join(shown)


def quote_excerpt(value: object, limit: int = EXCERPT_LIMIT) -> str:
    """``excerpt`` in single quotes, for a sentence that repeats a user's value: ``'4:3'``."""
    return f"'{excerpt(value, limit)}'"


def _shown(char: str) -> str:
    if char in _MARKDOWN:
        return "\\" + char
    if unicodedata.category(char) in _HIDDEN_CATEGORIES:
        code = ord(char)
        if code < 0x100:
            return f"\\x{code:02x}"
        return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    return char


# ---------------------------------------------------------------------- fitting to the limits

_FENCE: Final = "```"
_CLOSE_FENCE: Final = "\n```"
_ZWJ: Final = "\u200d"


def fit_text(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its start and ``…`` in exactly that room.

    The cut never separates a character from the accents, joiners or skin-tone
    modifiers that follow it, and a code block left open by the cut is closed.
    """
    text = text if isinstance(text, str) else str(text)
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return ELLIPSIS[: max(limit, 0)]
    room = limit - len(ELLIPSIS)
    head = _cut(text, room)
    if head.count(_FENCE) % 2 and room > len(_CLOSE_FENCE):
        head = _cut(text, room - len(_CLOSE_FENCE))
        if head.count(_FENCE) % 2:
            return head + ELLIPSIS + _CLOSE_FENCE
    return head + ELLIPSIS


def fit_content(text: str) -> str:
    """A message's ``content`` within Discord's 2,000 characters."""
    return fit_text(text, CONTENT_LIMIT)


def fit_embeds(embeds: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Embed payloads (``discord.Embed.to_dict()``) within every limit Discord sets on a message's embeds.

    Each text is cut to its own limit and fields past the 25th are dropped; if the
    embeds together still exceed 6,000 characters, the last embed gives way first:
    its description is shortened, then its last fields dropped, then its footer,
    author and title shortened. Embeds past the tenth are dropped.
    """
    fitted = [_fit_embed(embed) for embed in list(embeds)[:EMBEDS_PER_MESSAGE]]
    excess = sum(_embed_size(embed) for embed in fitted) - EMBED_TOTAL_LIMIT
    for embed in reversed(fitted):
        if excess <= 0:
            break
        excess = _shrink_embed(embed, excess)
    return fitted


def fit_embed(embed: Mapping[str, Any]) -> dict[str, Any]:
    """One embed payload, alone in its message, within Discord's limits (see ``fit_embeds``)."""
    return fit_embeds([embed])[0]


def fit_select_options(options: Sequence[T]) -> list[T]:
    """The first 25 options: what one select menu (or one autocomplete answer) can offer.

    Their labels, values and descriptions fit with ``fit_text(..., SELECT_OPTION_TEXT_LIMIT)``.
    """
    return list(options[:SELECT_OPTIONS_LIMIT])


def _cut(text: str, room: int) -> str:
    """The start of ``text`` in ``room`` characters, ending on a whole character, without trailing spaces."""
    cut = room
    while cut > 0 and (_joins_previous(text[cut]) or text[cut - 1] == _ZWJ):
        cut -= 1
    if cut == 0:  # one character with thousands of marks: cut through them rather than show nothing
        cut = room
    return text[:cut].rstrip()


def _joins_previous(char: str) -> bool:
    """Combining marks, variation selectors, joiners and skin tones belong to the character before them."""
    return unicodedata.category(char) in ("Mn", "Mc", "Me") or char == _ZWJ or "\U0001f3fb" <= char <= "\U0001f3ff"


def _fit_embed(embed: Mapping[str, Any]) -> dict[str, Any]:
    fitted = dict(embed)
    for key, limit in (("title", EMBED_TITLE_LIMIT), ("description", EMBED_DESCRIPTION_LIMIT)):
        if fitted.get(key):
            fitted[key] = fit_text(str(fitted[key]), limit)
    for key, limit in (("footer", EMBED_FOOTER_LIMIT), ("author", EMBED_AUTHOR_LIMIT)):
        part = fitted.get(key)
        if isinstance(part, Mapping):
            name = "text" if key == "footer" else "name"
            fitted[key] = {**part, name: fit_text(str(part.get(name) or ""), limit)}
    if "fields" in fitted:
        fitted["fields"] = [
            {
                **field,
                "name": fit_text(str(field.get("name") or ""), EMBED_FIELD_NAME_LIMIT),
                "value": fit_text(str(field.get("value") or ""), EMBED_FIELD_VALUE_LIMIT),
            }
            for field in list(fitted["fields"] or [])[:EMBED_FIELDS_LIMIT]
        ]
    return fitted


def _embed_size(embed: Mapping[str, Any]) -> int:
    """What counts towards the 6,000 characters, as Discord counts it."""
    size = len(embed.get("title") or "") + len(embed.get("description") or "")
    size += len((embed.get("footer") or {}).get("text") or "") + len((embed.get("author") or {}).get("name") or "")
    return size + sum(len(field["name"]) + len(field["value"]) for field in embed.get("fields") or [])


def _shrink_embed(embed: dict[str, Any], excess: int) -> int:
    """Take up to ``excess`` characters out of ``embed``, in place; return how many are still too many."""

    def shorten(text: str) -> str:
        nonlocal excess
        if excess <= 0 or not text:
            return text
        shorter = fit_text(text, max(len(text) - excess, 0))
        excess -= len(text) - len(shorter)
        return shorter

    if embed.get("description"):
        embed["description"] = shorten(embed["description"])
    fields = embed.get("fields") or []
    while excess > 0 and fields:
        dropped = fields.pop()
        excess -= len(dropped["name"]) + len(dropped["value"])
    for key, name in (("footer", "text"), ("author", "name")):
        if excess > 0 and isinstance(embed.get(key), Mapping):
            embed[key] = {**embed[key], name: shorten(embed[key].get(name) or "")}
    if excess > 0 and embed.get("title"):
        embed["title"] = shorten(embed["title"])
    return excess
