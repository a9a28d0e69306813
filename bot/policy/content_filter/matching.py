"""Matching: the built-in term lists, the term index, the word graph, and ``check_prompt``.

Step 5 of the package docstring: a prompt's readings (from ``reading``) form a
graph of words, and a term matches when some path holds its words in a row,
each word with the term word's letters in order and repeated at least as often.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from bot.policy.content_filter.reading import MAX_TERM_LENGTH, normalise_term, read_chunks, spaced_runs

#: Where the built-in NSFW list lives; one term per line, ``#`` starts a comment.
NSFW_TERMS_FILE: Final = Path(__file__).with_name("data") / "nsfw_terms.txt"

#: Terms no setting allows (sexualised minors), blocked even in age-restricted channels.
ALWAYS_BLOCKED_TERMS_FILE: Final = Path(__file__).with_name("data") / "always_blocked_terms.txt"

# Letters that leetspeak writes the same way ("1" is both i and l): matching treats them as one.
_MATCH_FOLD: Final = str.maketrans({"l": "i"})


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


# ---------------------------------------------------------------------- the built-in lists and check_prompt


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
        chunks = read_chunks(prompt)
        graph = cls(len(chunks))
        for position, chunk in enumerate(chunks):
            for reading in chunk.readings:
                graph._add(position, reading, position + 1)
        for start, end, letters in spaced_runs(chunks):
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
