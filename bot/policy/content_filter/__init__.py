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
   stripped (NFD, then combining marks dropped); and letters from other scripts
   that look like Latin ones (Cyrillic ``е``, Greek ``ο``...) become Latin.
   Capitals whose lower case looks like another letter (Greek ``Η`` is H, ``η``
   passes for n) are read before case folding.
2. The prompt is split on whitespace into chunks. Inside a chunk that contains
   a letter, leetspeak is mapped (``0→o 1→i 3→e 4→a 5→s 7→t @→a $→s !→i``);
   a chunk of digits only (``1920``, ``4``) is left alone. Trailing ``$`` and
   ``!`` are read both as letters and as punctuation (``b00b$!``).
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
"""

from __future__ import annotations

import functools
import itertools
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

#: Where the built-in NSFW list lives; one term per line, ``#`` starts a comment.
NSFW_TERMS_FILE: Final = Path(__file__).with_name("data") / "nsfw_terms.txt"

#: Terms no setting allows (sexualised minors), blocked even in age-restricted channels.
ALWAYS_BLOCKED_TERMS_FILE: Final = Path(__file__).with_name("data") / "always_blocked_terms.txt"

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

# Letters that leetspeak writes the same way ("1" is both i and l): matching treats them as one.
_MATCH_FOLD: Final = str.maketrans({"l": "i"})

#: Single-letter English words; a spaced run starting with one reads as that word plus the rest.
_SINGLE_LETTER_WORDS: Final = frozenset({"a", "i"})


FilterSource = Literal["always", "builtin", "guild"]  # which list a blocked term is on


@dataclass(frozen=True, slots=True)
class FilterVerdict:
    """Whether a prompt may run and, if not, which term on which list stopped it.

    ``rule`` is a sentence for moderators (and the log) naming the term and the
    list; the service decides what the member is told.
    """

    blocked: bool
    term: str | None = None
    source: FilterSource | None = None
    rule: str | None = None


ALLOWED: Final = FilterVerdict(blocked=False)


# ---------------------------------------------------------------------- public API


def normalise_prompt(text: str) -> str:
    """The prompt as the filter reads it (its main reading), words separated by single spaces.

    Letters repeated three or more times are shown twice (``nuuude`` ->
    ``nuude``), which keeps ``moon`` and ``cool`` intact; matching compares
    letter runs (see the module docstring), so ``nuude`` still matches ``nude``.
    An empty result means the prompt has nothing to draw: see ``is_effectively_empty``.
    """
    return " ".join(_collapse_runs(word, 2) for word in _main_reading(_chunks(text)))


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
    normalised = " ".join(_main_reading(_chunks(stripped)))
    if not normalised:
        raise ValueError("A filter term needs at least one letter, digit or symbol.")
    if len(normalised) > MAX_TERM_LENGTH:
        raise ValueError(f"A filter term can be at most {MAX_TERM_LENGTH} characters long.")
    return normalised


@functools.cache
def builtin_nsfw_terms() -> frozenset[str]:
    """The built-in NSFW list from ``bot/policy/content_filter/data/nsfw_terms.txt``, normalised like moderators' terms."""
    return _read_terms(NSFW_TERMS_FILE)


@functools.cache
def always_blocked_terms() -> frozenset[str]:
    """Terms blocked everywhere whatever the NSFW policy, from ``bot/policy/content_filter/data/always_blocked_terms.txt``."""
    return _read_terms(ALWAYS_BLOCKED_TERMS_FILE)


def _read_terms(path: Path) -> frozenset[str]:
    terms = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            terms.add(normalise_term(line))
    return frozenset(terms)


def check_prompt(prompt: str, guild_terms: Iterable[str], *, nsfw_allowed: bool) -> FilterVerdict:
    """Check a positive prompt against the guild's terms and, unless NSFW is allowed, the built-in list.

    A short built-in list (sexualised minors) is blocked everywhere, whatever the setting.

    A guild's own terms apply in every channel, age-restricted ones included:
    moderators added them to block something whatever the NSFW setting. Pass
    only the positive prompt; negative prompts are never checked.
    """
    guild_index = _term_index(tuple(sorted(set(guild_terms))))
    # Most severe list first, so the verdict names the rule that matters most.
    checks: list[tuple[_TermIndex, FilterSource, str]] = [
        (_always_blocked_index(), "always", "the built-in list of terms that are blocked everywhere"),
        (guild_index, "guild", "this server's filter list, which applies in every channel"),
    ]
    if not nsfw_allowed:
        checks.append(
            (_builtin_index(), "builtin", "the built-in NSFW list, which applies where NSFW prompts are not allowed")
        )
    graph = _WordGraph.of(
        prompt,
        prefixes=frozenset().union(*(index.prefixes for index, _, _ in checks)),
        skeletons=frozenset().union(*(index.skeletons for index, _, _ in checks)),
    )
    for index, source, where in checks:
        term = graph.find(index)
        if term is not None:
            return FilterVerdict(blocked=True, term=term, source=source, rule=f"`{term}` is on {where}.")
    return ALLOWED


# ---------------------------------------------------------------------- reading a prompt


def _clean(text: str) -> str:
    """Step 1 of the module docstring: one spelling for what looks the same to a reader."""
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


def _chunks(text: str) -> list[_Chunk]:
    return [chunk for chunk in map(_read_chunk, _clean(text).split()) if chunk.readings or chunk.letter]


def _spaced_runs(chunks: list[_Chunk]) -> list[tuple[int, int, list[str]]]:
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
    runs = {start: (end, letters) for start, end, letters in _spaced_runs(chunks)}
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


# ---------------------------------------------------------------------- matching


def _skeleton(word: str) -> str:
    """The word with every run of a repeated letter reduced to one: the key terms are indexed by."""
    return "".join(char for char, _ in itertools.groupby(word))


def _dominates(word: str, term_word: str) -> bool:
    """Same letters in the same order, each repeated at least as often as in the term."""
    word_runs = [(char, len(list(run))) for char, run in itertools.groupby(word)]
    term_runs = [(char, len(list(run))) for char, run in itertools.groupby(term_word)]
    return len(word_runs) == len(term_runs) and all(
        w_char == t_char and w_count >= t_count
        for (w_char, w_count), (t_char, t_count) in zip(word_runs, term_runs, strict=True)
    )


@dataclass(frozen=True, slots=True)
class _Term:
    """A term as verdicts name it, and its words as they are matched (folded like the graph's)."""

    text: str
    words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _TermIndex:
    """Terms by the skeleton of their first word; and the skeletons of every term word and
    their prefixes, which tell the graph which spaced-letter joins are worth trying."""

    by_first_word: dict[str, list[_Term]]
    skeletons: frozenset[str]
    prefixes: frozenset[str]


def _build_index(terms: Iterable[str]) -> _TermIndex:
    by_first_word: dict[str, list[_Term]] = {}
    skeletons: set[str] = set()
    prefixes: set[str] = set()
    for term in terms:
        words = tuple(term.translate(_MATCH_FOLD).split())
        if not words:
            continue
        by_first_word.setdefault(_skeleton(words[0]), []).append(_Term(term, words))
        for word in words:
            skeleton = _skeleton(word)
            skeletons.add(skeleton)
            prefixes.update(skeleton[:length] for length in range(1, len(skeleton) + 1))
    return _TermIndex(by_first_word, frozenset(skeletons), frozenset(prefixes))


@functools.cache
def _builtin_index() -> _TermIndex:
    return _build_index(sorted(builtin_nsfw_terms()))


@functools.cache
def _always_blocked_index() -> _TermIndex:
    return _build_index(sorted(always_blocked_terms()))


@functools.lru_cache(maxsize=256)
def _term_index(terms: tuple[str, ...]) -> _TermIndex:
    """Guild terms are stored normalised, but are read again here so that a term stored by an
    older version of the normaliser still matches the way prompts are read now."""
    normalised = []
    for term in terms:
        try:
            normalised.append(normalise_term(term))
        except ValueError:
            continue  # an unusable stored term blocks nothing rather than everything
    return _build_index(normalised)


class _WordGraph:
    """Every reading of a prompt as a graph: nodes between words, edges labelled with one word.

    Words are folded with ``_MATCH_FOLD`` as they are added, as the terms' words are.
    """

    def __init__(self, chunk_count: int) -> None:
        self._edges: list[list[tuple[str, int]]] = [[] for _ in range(chunk_count + 1)]

    @classmethod
    def of(cls, prompt: str, *, prefixes: frozenset[str], skeletons: frozenset[str]) -> _WordGraph:
        """``skeletons`` (of the words of the terms that will be searched) and their ``prefixes``
        prune the joins of spaced letters: a join is only extended while it could still become a
        term word, and only becomes an edge when it could be one.

        Joins start where the letter changes, never inside a run of one letter (which
        only repeats the join from the run's start with fewer repeats), and keep at most
        ``MAX_TERM_LENGTH`` repeats of a letter (no term needs more). So each join is
        extended at most once per letter of the longest term word's skeleton, over runs
        of any length, and thousands of spaced letters (``a a a ...``) stay cheap.
        """
        chunks = _chunks(prompt)
        graph = cls(len(chunks))
        for position, chunk in enumerate(chunks):
            for reading in chunk.readings:
                graph._add(position, reading, position + 1)
        for start, end, letters in _spaced_runs(chunks):
            letters = [letter.translate(_MATCH_FOLD) for letter in letters]
            for first in range(start, end):
                if first > start and letters[first - start] == letters[first - start - 1]:
                    continue
                joined, skeleton, repeats = "", "", 0
                for last in range(first + 1, end + 1):
                    letter = letters[last - start - 1]
                    if skeleton.endswith(letter):
                        repeats += 1
                    else:
                        skeleton, repeats = skeleton + letter, 1
                        if skeleton not in prefixes:
                            break
                    if repeats <= MAX_TERM_LENGTH:
                        joined += letter
                    if last - first >= 3 and skeleton in skeletons:
                        graph._add(first, (joined,), last)
        return graph

    def _add(self, start: int, words: tuple[str, ...], end: int) -> None:
        words = tuple(word.translate(_MATCH_FOLD) for word in words)
        node = start
        for word in words[:-1]:
            self._edges.append([])
            following = len(self._edges) - 1
            self._edges[node].append((word, following))
            node = following
        self._edges[node].append((words[-1], end))

    def find(self, index: _TermIndex) -> str | None:
        """The first term (as its normalised text) whose words lie on a path of the graph."""
        if not index.by_first_word:
            return None
        for edges in self._edges:
            for word, following in edges:
                for term in index.by_first_word.get(_skeleton(word), ()):
                    if _dominates(word, term.words[0]) and self._continues(following, term.words, 1):
                        return term.text
        return None

    def _continues(self, node: int, term: tuple[str, ...], position: int) -> bool:
        if position == len(term):
            return True
        return any(
            _dominates(word, term[position]) and self._continues(following, term, position + 1)
            for word, following in self._edges[node]
        )
