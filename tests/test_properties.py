"""Properties over many generated inputs: whatever a member types, the answer is short and the filter holds.

Hypothesis runs derandomised (the same examples on every run and in CI) and bounded, so
the module stays fast on two cores.
"""

from __future__ import annotations

import importlib.resources
import json
import string
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.errors import InvalidRequest
from bot.jobs.flags import PROMPT_FLAGS
from bot.jobs.messages import CONTENT_LIMIT, EXCERPT_LIMIT, excerpt, fit_content, quote_excerpt
from bot.jobs.recipe import Recipe
from bot.jobs.requests import ImagineOptions, check_prompt_text, resolve_imagine
from bot.policy.content_filter import (
    ALWAYS_BLOCKED_TERMS_FILE,
    MAX_NORMALISED_GROWTH,
    NSFW_TERMS_FILE,
    check_prompt,
    normalise_prompt,
)
from models.tiny import TINY_MODEL_ID
from models.types import ModelPreset

BOUNDED = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example, HealthCheck.data_too_large],
)
FEWER = settings(BOUNDED, max_examples=60)

TINY = ModelPreset(
    model=TINY_MODEL_ID,
    family="tiny",
    width=64,
    height=64,
    steps=20,
    guidance=7.0,
    scheduler="EulerAncestralDiscreteScheduler",
    max_prompt_tokens=77,
)
MODELS = (TINY_MODEL_ID,)
MAX_PROMPT_CHARS = 6000  # the most Settings allow, and the most Discord sends in one option
DISCORD_OPTION_CHARS = 6000

# Characters that show one thing and mean another, or nothing: what a reply must never carry raw.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Characters that expand most under NFKC (U+FDFA to 18 characters, U+FDFB to 8, squares to 6...).
_EXPANDING = "\ufdfa\ufdfb\u33af\u3316\u33ae\u3356\u2474\u00bd\ufb03\u1e9e\u0390"

# -- strategies -----------------------------------------------------------------------------------

any_text = st.text(max_size=DISCORD_OPTION_CHARS)
awkward_chars = st.sampled_from(
    "\x00\x01\n\t\u202e\u202d\u2066\u200b\u200d\ufeff\u2028`*_~|<>[]\\'\"@#-:.!$ 0123456789aZ" + _EXPANDING
)
awkward_text = st.text(alphabet=awkward_chars, max_size=DISCORD_OPTION_CHARS)
long_runs = st.tuples(awkward_chars, st.integers(0, DISCORD_OPTION_CHARS)).map(lambda pair: pair[0] * pair[1])
flag_words = st.sampled_from([f"--{name}" for name in PROMPT_FLAGS] + ["--", "--x", "---ar", "--SEED", '"', "'"])
prompts_with_flags = st.lists(st.one_of(flag_words, any_text, long_runs, st.just("16:9")), max_size=8).map(
    lambda words: " ".join(words)[:DISCORD_OPTION_CHARS]
)
user_strings = st.one_of(any_text, awkward_text, long_runs, prompts_with_flags)


def assert_one_short_sentence(error: InvalidRequest) -> None:
    """What a member can be told: one line, one sentence, well within a message, nothing hidden raw."""
    message = str(error)
    assert len(message) <= CONTENT_LIMIT
    assert len(message) <= 400, message  # user values are excerpted, so sentences stay short
    assert message.endswith(".") and "\n" not in message, message
    assert not any(unicodedata.category(char) in _HIDDEN for char in message), ascii(message)
    # Outside the (single) quoted excerpt, no second sentence starts.
    outside = message[: message.find("'")] + message[message.rfind("'") + 1 :] if "'" in message else message
    assert ". " not in outside, message


def outcome(options: ImagineOptions) -> Recipe | InvalidRequest:
    try:
        return resolve_imagine(options.checked(models=MODELS, max_prompt_chars=MAX_PROMPT_CHARS), TINY)
    except InvalidRequest as error:
        assert_one_short_sentence(error)
        return error


# -- options: a request or one short sentence, never anything else -------------------------------


@BOUNDED
@given(prompt=user_strings)
def test_any_prompt_gives_a_request_or_one_short_sentence(prompt: str) -> None:
    result = outcome(ImagineOptions(prompt=prompt))
    if isinstance(result, Recipe):
        assert result.model == TINY_MODEL_ID
        assert 1 <= result.count <= 4 and len(result.prompt) <= MAX_PROMPT_CHARS


@BOUNDED
@given(value=user_strings, option=st.sampled_from(["model", "aspect", "negative"]))
def test_any_model_aspect_or_negative_gives_a_request_or_one_short_sentence(value: str, option: str) -> None:
    result = outcome(ImagineOptions(prompt="a lighthouse in a storm", **{option: value}))
    if isinstance(result, Recipe) and option == "model":
        assert value in ("", TINY_MODEL_ID)


@FEWER
@given(value=user_strings, flag=st.sampled_from(sorted(PROMPT_FLAGS)))
def test_any_flag_value_gives_a_request_or_one_short_sentence(value: str, flag: str) -> None:
    outcome(ImagineOptions(prompt=f"a cat --{flag} {value}"[:DISCORD_OPTION_CHARS]))


# -- what the bot sends: excerpts and content within their bounds ---------------------------------


@BOUNDED
@given(value=user_strings, limit=st.integers(1, 200))
def test_an_excerpt_is_short_single_line_and_shows_nothing_hidden(value: str, limit: int) -> None:
    shown = excerpt(value, limit)
    assert len(shown) <= limit + 1
    assert "\n" not in shown and not any(unicodedata.category(char) in _HIDDEN for char in shown)
    assert len(quote_excerpt(value)) <= EXCERPT_LIMIT + 3
    if len(value) <= limit and value.isascii() and value.isalnum():
        assert shown == value  # plain words are quoted as typed


@BOUNDED
@given(text=st.one_of(user_strings, st.text(min_size=1900, max_size=DISCORD_OPTION_CHARS)))
def test_fitted_content_is_within_discords_limit_and_starts_like_the_text(text: str) -> None:
    fitted = fit_content(text)
    assert len(fitted) <= CONTENT_LIMIT
    if len(text) <= CONTENT_LIMIT:
        assert fitted == text
    else:
        assert fitted.endswith(("…", "…\n```"))
        assert text.startswith(fitted.removesuffix("\n```").removesuffix("…"))


# -- the normalised prompt has a bound ------------------------------------------------------------


@BOUNDED
@given(prompt=st.one_of(any_text, awkward_text, st.text(alphabet=st.sampled_from(_EXPANDING + " a."))))
def test_normalising_never_grows_a_prompt_more_than_the_stated_bound(prompt: str) -> None:
    """``normalise_prompt`` is at most 18 times its input: NFKC's longest expansion (U+FDFA) is the
    most one character becomes, and every later step keeps or shortens. A prompt that passed
    ``check_prompt_text`` (at most ``max_chars``) so normalises to at most 18 * max_chars."""
    assert len(normalise_prompt(prompt)) <= MAX_NORMALISED_GROWTH * len(prompt)
    try:
        checked = check_prompt_text(prompt, max_chars=MAX_PROMPT_CHARS)
    except InvalidRequest:
        return
    assert len(normalise_prompt(checked)) <= MAX_NORMALISED_GROWTH * MAX_PROMPT_CHARS


@pytest.mark.parametrize("char", list(_EXPANDING))
def test_the_growth_bound_is_reached_but_never_passed_by_one_character(char: str) -> None:
    assert len(normalise_prompt(char)) <= MAX_NORMALISED_GROWTH
    assert len(normalise_prompt("\ufdfa")) == MAX_NORMALISED_GROWTH


# -- the filter catches evasions of every built-in term --------------------------------------------


def _terms(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return sorted({line for line in lines if line and not line.startswith("#")})


NSFW_TERMS = _terms(NSFW_TERMS_FILE)
ALWAYS_BLOCKED_TERMS = _terms(ALWAYS_BLOCKED_TERMS_FILE)

# Written from what people type, not from the filter's own tables, so the test can find gaps.
SEPARATORS = [*".-_*~/+,:;'^=\\|()[]{}<>", "..", "-.", "_*_", "//"]
LEET = {"a": "4@", "e": "3", "i": "1!", "o": "0", "s": "5$", "t": "7", "l": "1"}
HOMOGLYPHS = {  # Cyrillic and Greek letters that pass for Latin ones, lower and upper case
    "a": "аα",
    "c": "сϲ",
    "d": "ԁ",
    "e": "еε",
    "h": "һ",
    "i": "іι",
    "j": "ј",
    "k": "кκ",
    "l": "ӏ",
    "n": "η",
    "o": "оο",
    "p": "рρ",
    "q": "ԛ",
    "s": "ѕ",
    "t": "τ",
    "u": "υ",
    "v": "νѵ",
    "w": "ԝω",
    "x": "хχ",
    "y": "уγ",
    "A": "АΑ",
    "B": "ВΒ",
    "C": "СϹ",
    "E": "ЕΕ",
    "H": "НΗ",
    "I": "ІΙӀ",
    "J": "Ј",
    "K": "КΚ",
    "M": "МΜ",
    "N": "Ν",
    "O": "ОΟ",
    "P": "РΡ",
    "S": "Ѕ",
    "T": "ТΤ",
    "X": "ХΧ",
    "Y": "ҮΥ",
    "Z": "Ζ",
}
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\u034f"]
CONTEXTS = [("", ""), ("a photo of ", " at the beach"), ("portrait, ", ", 4k, trending"), ("", "!")]


@st.composite
def evasions(draw: st.DrawFn, terms: list[str], kinds: frozenset[str]) -> str:
    """A built-in term as someone hiding it might type it, in an ordinary sentence."""
    term = draw(st.sampled_from(terms))
    if "homoglyphs" in kinds and draw(st.booleans()):
        term = term.upper()
    words = []
    for word in term.split():
        letters = list(word)
        # A word written only in digits ("1011") reads as a number: numbers are never read as words.
        kept = draw(st.sampled_from([index for index, letter in enumerate(letters) if letter.isalpha()] or [-1]))
        for index, letter in enumerate(letters):
            if "leet" in kinds and letter in LEET and index != kept and draw(st.integers(0, 2)) == 0:
                letters[index] = draw(st.sampled_from(LEET[letter]))
            elif "homoglyphs" in kinds and letter in HOMOGLYPHS and draw(st.booleans()):
                letters[index] = draw(st.sampled_from(HOMOGLYPHS[letter]))
        gaps: list[str] = [""] * (len(letters) - 1)
        if "separators" in kinds and len(letters) > 1:
            # Spaced letters ("n u d e") are read as a word only when the whole word is spaced.
            if len(term.split()) == 1 and len(letters) >= 3 and draw(st.integers(0, 3)) == 0:
                gaps = [" " * draw(st.integers(1, 2))] * len(gaps)
            else:
                gaps = [draw(st.sampled_from(SEPARATORS)) for _ in gaps]
        if "zero-width" in kinds:
            gaps = [gap + draw(st.sampled_from(["", *ZERO_WIDTH])) for gap in gaps]
        words.append(letters[0] + "".join(gap + letter for gap, letter in zip(gaps, letters[1:], strict=True)))
    before, after = draw(st.sampled_from(CONTEXTS))
    return before + " ".join(words) + after


EVASION_KINDS = ["separators", "leet", "homoglyphs", "zero-width"]


@pytest.mark.parametrize("kind", [*EVASION_KINDS, "all"])
def test_evasions_of_builtin_nsfw_terms_are_caught(kind: str) -> None:
    kinds = frozenset(EVASION_KINDS if kind == "all" else [kind])

    @BOUNDED
    @given(prompt=evasions(NSFW_TERMS, kinds))
    def caught(prompt: str) -> None:
        verdict = check_prompt(prompt, [], nsfw_allowed=False)
        assert verdict.blocked, (prompt, ascii(prompt), normalise_prompt(prompt))

    caught()


@FEWER
@given(prompt=evasions(ALWAYS_BLOCKED_TERMS, frozenset(EVASION_KINDS)))
def test_evasions_of_always_blocked_terms_are_caught_even_where_nsfw_is_allowed(prompt: str) -> None:
    verdict = check_prompt(prompt, [], nsfw_allowed=True)
    assert verdict.blocked and verdict.source == "always", (prompt, ascii(prompt), normalise_prompt(prompt))


def _unicode_confusables() -> dict[str, list[str]]:
    """Each Latin letter's look-alikes in Unicode's confusables data (UTS #39's confusables.txt, as the
    confusable-homoglyphs package ships it), read from that data rather than from the filter's tables.

    The characters the data pairs with the letter or its capital, or with what it reads the letter as
    when that is several letters (m is "rn"). ASCII is left out: plain ASCII is read as typed, and
    leetspeak has its own test above.
    """
    data = importlib.resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text(encoding="utf-8")
    pairs = {key: [entry["c"] for entry in entries] for key, entries in json.loads(data).items()}
    confusables = {}
    for letter in string.ascii_lowercase:
        found: set[str] = set()
        for partner in pairs.get(letter, []) + pairs.get(letter.upper(), []):
            found.update(pairs.get(partner, []) if len(partner) > 1 else [partner])
        confusables[letter] = sorted(char for char in found if len(char) == 1 and not char.isascii())
    return confusables


CONFUSABLES = _unicode_confusables()
BUILTIN_TERMS = sorted({*NSFW_TERMS, *ALWAYS_BLOCKED_TERMS})


def _lookalike_spellings(term: str) -> list[str]:
    """The term with one of its letters replaced by one of that letter's look-alikes, every way."""
    return [
        term[:index] + char + term[index + 1 :]
        for index, letter in enumerate(term)
        for char in CONFUSABLES.get(letter, [])
    ]


@st.composite
def lookalike_spellings(draw: st.DrawFn) -> str:
    """A built-in term with one of its letters written as a look-alike from Unicode's data, in a sentence."""
    term = draw(st.sampled_from(BUILTIN_TERMS))
    index = draw(st.sampled_from([index for index, letter in enumerate(term) if CONFUSABLES.get(letter)]))
    lookalike = draw(st.sampled_from(CONFUSABLES[term[index]]))
    if draw(st.booleans()):
        term = term.upper()  # the other letters; the look-alike stays as the data has it
    before, after = draw(st.sampled_from(CONTEXTS))
    return before + term[:index] + lookalike + term[index + 1 :] + after


@BOUNDED
@given(prompt=lookalike_spellings())
@example(prompt="n\u057dde")  # Armenian seh, which the filter's hand-written table once missed
@example(prompt="p\u0585rn")  # Armenian oh
def test_unicode_lookalikes_of_the_letters_of_builtin_terms_are_caught(prompt: str) -> None:
    verdict = check_prompt(prompt, [], nsfw_allowed=False)
    assert verdict.blocked, (prompt, ascii(prompt), normalise_prompt(prompt))


def test_every_unicode_lookalike_of_every_letter_of_every_builtin_term_is_caught() -> None:
    """The property above, for all of them: about 51,000 spellings, each with one letter replaced."""
    missed = [
        spelling
        for term in BUILTIN_TERMS
        for spelling in _lookalike_spellings(term)
        if not check_prompt(spelling, [], nsfw_allowed=False).blocked
    ]
    assert not missed, [(spelling, ascii(spelling), normalise_prompt(spelling)) for spelling in missed[:20]]


ORDINARY_WORDS = (
    "a an the of in on at with and i am cat dog fox lighthouse storm castle portrait oil painting "
    "sussex essex analysis assassin scunthorpe cockpit middlesex classic grass glass title tilt mile "
    "pencil lollipop loyal dog lily lilies hello little island still life hall mill ill all "
    "nail tail sail pale pile tile sextant sixteen expose exposure butterfly skier bass bassist "
    "therapist cocktail shuttlecock peacock button pen is on table x-ray 4k 3d render 1920s "
    "cool moon spoon book wool sun sea sky blue red green night city street rain snow tree"
).split()


@BOUNDED
@given(words=st.lists(st.sampled_from(ORDINARY_WORDS), min_size=1, max_size=12))
def test_ordinary_prompts_pass(words: list[str]) -> None:
    prompt = " ".join(words)
    assert not check_prompt(prompt, [], nsfw_allowed=False).blocked, prompt
