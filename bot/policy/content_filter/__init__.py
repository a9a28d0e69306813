"""The prompt filter: does a prompt contain a blocked term, however it is spelled?

Pure functions, no SQL and no Discord: the service passes in the guild's terms
(from the store) and whether NSFW prompts are allowed in this channel (from
``bot.policy.nsfw``). Only the positive prompt is ever checked. Negative
prompts are never passed in: people put "nude, nsfw" there precisely to keep
such images away, and blocking that would punish the careful.

How a prompt is read
--------------------
1. Invisible characters (zero-width spaces and joiners, soft hyphens, BOMs: the
   Unicode "format" category) are removed; NFKC turns full-width and other
   compatibility forms into plain letters; text is case-folded; accents are
   stripped (NFD, then combining marks dropped); and characters that look like
   a single Latin letter become that letter (Cyrillic ``е``, Greek ``ο``,
   Armenian ``ս``, Cherokee ``Ꭺ``, ``×``...). Which ones is Unicode's
   confusables data (UTS #39), kept in ``data/latin_lookalikes.txt``, plus a
   short hand list of lower-case letters it does not name (Cyrillic ``п``,
   small capitals). They are read before NFKC and case folding too, since a
   capital's lower case may look like another letter (Greek ``Η`` is H, ``η``
   passes for n). Plain ASCII is never re-read, and NFKC's reading comes first:
   ``𝟎`` is 0, not o. Long ``ſ``, which NFKC makes s and which looks like f,
   is read both ways.
2. The prompt is split on whitespace into chunks. Inside a chunk that contains
   a letter, leetspeak is mapped (``0→o 1→i 3→e 4→a 5→s 7→t @→a $→s !→i``),
   and so are digits of other scripts that look like a letter (Devanagari
   ``०`` is o); a chunk of digits only (``1920``, ``4``, ``۱۵۱۱``) is left
   alone. Trailing ``$`` and ``!`` are read both as letters and as punctuation
   (``b00b$!``).
3. Separators inside a chunk split it into words (``nude-art`` reads as
   ``nude art``), except that a run of single letters is joined (``n.u.d.e`` and
   ``n*u*d*e`` read as ``nude``); the fully joined chunk is tried as well
   (``nu.de``).
4. A run of three or more single-letter chunks (``a n u d e``, ``n ! p p l e``)
   is also tried joined, and with its first letter kept apart as the article it
   usually is.
   These are alternatives, not replacements: ``i am a cat`` and ``a b c``
   still read as the words they are.
5. A term matches a word when both have the same letters in the same order and
   each letter of the word is repeated at least as often as in the term, so
   ``nuuude`` matches ``nude`` and ``moooon`` matches ``moon``, but ``as`` does
   not match a term ``ass`` and ``mon`` does not match ``moon``. Matching is by
   whole words and whole phrases, so ``sussex``, ``essex`` and ``analysis``
   pass. Matching does not tell ``l`` from ``i``, since leetspeak writes both as
   ``1`` (``s1ut``, ``4n41``).

Alternatives form a small graph of words (one path per way of reading the
prompt); a term matches when some path contains its words in a row.

The package: ``reading`` holds the character tables and steps 1 to 4 (and
``normalise_prompt``/``normalise_term``); ``matching`` holds step 5, the word
graph, the built-in lists in ``data/`` and ``check_prompt``. ``data/`` also
holds the look-alikes, the script that makes them from Unicode's data
(``make_latin_lookalikes.py``) and the Unicode licence they come under.
"""

from __future__ import annotations

from bot.policy.content_filter.matching import (
    ALLOWED,
    ALWAYS_BLOCKED_TERMS_FILE,
    NSFW_TERMS_FILE,
    FilterSource,
    FilterVerdict,
    always_blocked_terms,
    builtin_nsfw_terms,
    check_prompt,
)
from bot.policy.content_filter.reading import (
    MAX_NORMALISED_GROWTH,
    MAX_TERM_LENGTH,
    is_effectively_empty,
    normalise_prompt,
    normalise_term,
)

__all__ = [
    "ALLOWED",
    "ALWAYS_BLOCKED_TERMS_FILE",
    "MAX_NORMALISED_GROWTH",
    "MAX_TERM_LENGTH",
    "NSFW_TERMS_FILE",
    "FilterSource",
    "FilterVerdict",
    "always_blocked_terms",
    "builtin_nsfw_terms",
    "check_prompt",
    "is_effectively_empty",
    "normalise_prompt",
    "normalise_term",
]
