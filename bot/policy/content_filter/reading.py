"""Reading a prompt: the character tables, and steps 1 to 4 of the package docstring.

Text becomes chunks (one per whitespace-separated piece, each with every way it
can be read) and spaced-letter runs; ``matching`` builds its word graph from
those. The main reading is what ``normalise_prompt`` shows and what terms are
stored as.
"""

from __future__ import annotations

import itertools
import unicodedata
from dataclasses import dataclass
from typing import Final

#: Longest filter term a moderator may add (before and after normalisation).
MAX_TERM_LENGTH: Final = 64

#: ``normalise_prompt(text)`` is at most this many times as long as ``text``. NFKC's longest
#: expansion (U+FDFA, one character to 18) is the most one character can become, and every
#: later step keeps the length or shortens it; a prompt of at most ``PROMPT_MAX_CHARS``
#: characters is therefore read as at most 18 times that many.
MAX_NORMALISED_GROWTH: Final = 18

_LEET: Final = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
_LEET_TABLE: Final = str.maketrans(_LEET)

# Lower-case letters (after case folding) from other scripts that readers take for Latin ones.
_LOOKALIKES: Final = str.maketrans(
    {
        # Cyrillic
        "а": "a",
        "в": "b",
        "е": "e",
        "ё": "e",
        "һ": "h",
        "і": "i",
        "ї": "i",
        "ј": "j",
        "к": "k",
        "ӏ": "l",
        "м": "m",
        "н": "h",
        "о": "o",
        "п": "n",
        "р": "p",
        "ԛ": "q",
        "с": "c",
        "ѕ": "s",
        "т": "t",
        "у": "y",
        "ѵ": "v",
        "ԝ": "w",
        "х": "x",
        "ь": "b",
        "ԁ": "d",
        # Greek
        "α": "a",
        "β": "b",
        "γ": "y",
        "ε": "e",
        "η": "n",
        "ι": "i",
        "κ": "k",
        "μ": "u",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "ω": "w",
        # Latin letters with a stroke, which NFD does not split into letter + accent
        "ø": "o",
        "đ": "d",
        "ħ": "h",
        "ł": "l",
        "ŧ": "t",
        "ƀ": "b",
        "ɨ": "i",
        # Latin letters that are not a plain a-z: IPA and small capitals
        "ɑ": "a",
        "ɡ": "g",
        "ɩ": "i",
        "ı": "i",
        "ᴀ": "a",
        "ʙ": "b",
        "ᴄ": "c",
        "ᴅ": "d",
        "ᴇ": "e",
        "ɢ": "g",
        "ʜ": "h",
        "ɪ": "i",
        "ᴊ": "j",
        "ᴋ": "k",
        "ʟ": "l",
        "ᴍ": "m",
        "ɴ": "n",
        "ᴏ": "o",
        "ᴘ": "p",
        "ʀ": "r",
        "ꜱ": "s",
        "ᴛ": "t",
        "ᴜ": "u",
        "ᴠ": "v",
        "ᴡ": "w",
        "ʏ": "y",
        "ᴢ": "z",
        # Cyrillic straight u, which passes for y in both cases
        "ү": "y",
    }
)

# Look-alikes that NFKC or case folding would turn into a letter that looks like something else:
# capitals whose lower case passes for another letter (Greek Eta is H, but η passes for n), and the
# lunate sigmas (c-shaped, but NFKC makes them σ). Read before NFKC, and again after it for the
# compatibility forms it produces (a bold Eta becomes Η).
_BEFORE_FOLDING: Final = str.maketrans(
    {
        "Η": "h",  # Greek Eta
        "Μ": "m",  # Greek Mu (μ passes for u)
        "Ν": "n",  # Greek Nu (ν passes for v)
        "Υ": "y",  # Greek Upsilon (υ passes for u)
        "Ζ": "z",  # Greek Zeta
        "Ϳ": "j",  # Greek Yot
        "ϲ": "c",  # Greek lunate sigma
        "Ϲ": "c",  # Greek capital lunate sigma
    }
)


#: Single-letter English words; a spaced run starting with one reads as that word plus the rest.
_SINGLE_LETTER_WORDS: Final = frozenset({"a", "i"})


# ---------------------------------------------------------------------- prompts and terms as read


def normalise_prompt(text: str) -> str:
    """The prompt as the filter reads it (its main reading), words separated by single spaces.

    Letters repeated three or more times are shown twice (``nuuude`` ->
    ``nuude``), which keeps ``moon`` and ``cool`` intact; matching compares
    letter runs (see the package docstring), so ``nuude`` still matches ``nude``.
    An empty result means the prompt has nothing to draw: see ``is_effectively_empty``.
    """
    return " ".join(_collapse_runs(word, 2) for word in _main_reading(read_chunks(text)))


def is_effectively_empty(prompt: str) -> bool:
    """True for a prompt with no letter, digit or symbol once invisible characters,
    spaces and punctuation are gone; the service rejects those as empty."""
    return not normalise_prompt(prompt)


def normalise_term(term: str) -> str:
    """What a moderator's term is stored and matched as.

    Read the same way as a prompt, so that ``N.U.D.E`` and ``nude`` are the same
    term, but repeated letters are kept as typed: a term's letter counts are the
    least a prompt word needs, and collapsing ``xxx`` to ``xx`` would block ``xx``.
    Raises ``ValueError`` with one sentence for an empty or over-long term.
    """
    stripped = term.strip()
    if len(stripped) > MAX_TERM_LENGTH:
        raise ValueError(f"A filter term can be at most {MAX_TERM_LENGTH} characters long.")
    normalised = " ".join(_main_reading(read_chunks(stripped)))
    if not normalised:
        raise ValueError("A filter term needs at least one letter, digit or symbol.")
    if len(normalised) > MAX_TERM_LENGTH:
        raise ValueError(f"A filter term can be at most {MAX_TERM_LENGTH} characters long.")
    return normalised


# ---------------------------------------------------------------------- reading a prompt


def _clean(text: str) -> str:
    """Step 1 of the package docstring: one spelling for what looks the same to a reader."""
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Cf":  # zero-width space/joiners, soft hyphen, BOM, bidi controls
            continue
        kept.append(" " if category == "Cc" else char)
    text = "".join(kept).translate(_BEFORE_FOLDING)
    text = unicodedata.normalize("NFKC", text).translate(_BEFORE_FOLDING).casefold()
    text = "".join(
        char for char in unicodedata.normalize("NFD", text) if unicodedata.category(char) not in ("Mn", "Me")
    )
    return unicodedata.normalize("NFC", text).translate(_LOOKALIKES)


def _is_word_char(char: str) -> bool:
    """Letters, digits and pictographs (emoji are prompts too); everything else separates."""
    return char.isalnum() or unicodedata.category(char) == "So"


def _strip_edges(
    chunk: str, *, keep_leading: frozenset[str] = frozenset(), keep_trailing: frozenset[str] = frozenset()
) -> str:
    start, end = 0, len(chunk)
    while start < end and not _is_word_char(chunk[start]) and chunk[start] not in keep_leading:
        start += 1
    while end > start and not _is_word_char(chunk[end - 1]) and chunk[end - 1] not in keep_trailing:
        end -= 1
    return chunk[start:end]


def _split_words(text: str) -> list[str]:
    words, current = [], []
    for char in text:
        if _is_word_char(char):
            current.append(char)
        elif current:
            words.append("".join(current))
            current = []
    if current:
        words.append("".join(current))
    return words


def _join_single_letters(parts: list[str]) -> tuple[str, ...]:
    """``n.u.d.e`` -> ``nude``: separators between single letters were only there to hide a word."""
    words: list[str] = []
    for is_single, group in itertools.groupby(parts, key=lambda part: len(part) == 1):
        run = list(group)
        if is_single and len(run) >= 2 and any(part.isalpha() for part in run):
            words.append("".join(run))
        else:
            words.extend(run)
    return tuple(words)


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One whitespace-separated piece of a prompt and the ways it can be read.

    ``readings[0]`` is the main reading. ``letter`` is set when the chunk is a
    single letter (or leet digit or symbol), so that runs of them can be joined;
    a lone leet symbol has a letter but no reading of its own.
    """

    readings: tuple[tuple[str, ...], ...]
    letter: str | None


_LEET_SYMBOLS: Final = frozenset(key for key in _LEET if not key.isdigit())
_LEET_SYMBOL_CHARS: Final = "".join(sorted(_LEET_SYMBOLS))


def _read_chunk(chunk: str) -> _Chunk:
    # Punctuation at the end of a chunk is usually punctuation ("nude!"), and at the start a "$"
    # or "@" is usually a letter ("$ex"). That is the main reading; the chunk stripped of all edge
    # symbols, the chunk keeping all of them, and the chunk keeping the first of several trailing
    # ones ("b00b$!": a letter, then punctuation) are tried as well.
    main = _strip_edges(chunk, keep_leading=_LEET_SYMBOLS)
    stripped = _strip_edges(chunk)
    edged = _strip_edges(chunk, keep_leading=_LEET_SYMBOLS, keep_trailing=_LEET_SYMBOLS)
    trailing = len(edged) - len(edged.rstrip(_LEET_SYMBOL_CHARS))
    partly_edged = [edged[: len(edged) - trailing + kept] for kept in range(1, min(trailing, 3))]
    readings: dict[tuple[str, ...], None] = {}
    for form in dict.fromkeys((main, stripped, edged, *partly_edged)):
        if any(char.isalpha() for char in form):
            form = form.translate(_LEET_TABLE)
        parts = _split_words(form)
        if not parts:
            continue
        readings[_join_single_letters(parts)] = None
        if len(parts) > 1:
            readings[("".join(parts),)] = None
    # A lone "$" or "!" is a letter too among spaced letters ("n ! p p l e", "s e x $!", "l o l !!").
    forms = (stripped, main, edged, *partly_edged)
    singles = (form for form in forms if len(form) == 1 and (form.isalpha() or form in _LEET))
    return _Chunk(tuple(readings), next(singles, None))


def read_chunks(text: str) -> list[_Chunk]:
    return [chunk for chunk in map(_read_chunk, _clean(text).split()) if chunk.readings or chunk.letter]


def spaced_runs(chunks: list[_Chunk]) -> list[tuple[int, int, list[str]]]:
    """Maximal runs of three or more single-letter chunks that contain a letter, with the
    letters leet-mapped: ``(start, end, letters)``."""
    runs = []
    start = 0
    while start < len(chunks):
        end = start
        while end < len(chunks) and chunks[end].letter is not None:
            end += 1
        if end - start >= 3:
            letters = [chunk.letter for chunk in chunks[start:end] if chunk.letter is not None]
            if any(letter.isalpha() for letter in letters):
                runs.append((start, end, [letter.translate(_LEET_TABLE) for letter in letters]))
        start = max(end, start + 1)
    return runs


def _main_reading(chunks: list[_Chunk]) -> list[str]:
    """The one reading shown by ``normalise_prompt`` and used for terms.

    A spaced run is joined, except that a leading single-letter word stays
    apart ("a n u d e" -> "a nude"), and a run that is only that word and two
    letters ("a b c") is left as it is.
    """
    runs = {start: (end, letters) for start, end, letters in spaced_runs(chunks)}
    words: list[str] = []
    index = 0
    while index < len(chunks):
        if index in runs:
            end, letters = runs[index]
            if letters[0] in _SINGLE_LETTER_WORDS and len(letters) >= 4:
                words += [letters[0], "".join(letters[1:])]
            elif letters[0] in _SINGLE_LETTER_WORDS:
                words += letters
            else:
                words.append("".join(letters))
            index = end
        else:
            words.extend(chunks[index].readings[0] if chunks[index].readings else ())
            index += 1
    return words


def _collapse_runs(word: str, longest: int) -> str:
    return "".join(char * min(len(list(run)), longest) for char, run in itertools.groupby(word))
